"""The fault matrix of docs/reliability.md, one test per row, through the CLI.

Most rows run the real ``asyncfc`` command in process (typer's CliRunner:
the same code path, LiteLLM imported once); the signal rows need a real
process and run ``python -m asyncfc_cli.cli``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asyncfc_cli.trace import read_trace

from conftest import Reply, ScriptedServer, chunk, free_port, invoke, process_gone, tool_call_stream, wait_until

FAULTS = Path(__file__).parent / "data" / "faults"
DATA = Path(__file__).parent / "data"
PLANTED = "sk-PLANTED-secret-0123456789"


def run_json(tmp_path, task: Path, *extra: str, env: dict[str, str] | None = None):
    trace = tmp_path / "trace.jsonl"
    result = invoke("run", str(task), "--json", "--trace", str(trace), *extra, env=env)
    report = json.loads(result.stdout) if result.stdout.strip() else None
    return result, report, trace


# --- tools ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_failing_hanging_and_flooding_tools_become_errors_the_model_sees(tmp_path, mode):
    pidfile = tmp_path / "pids"
    result, report, trace = run_json(tmp_path, FAULTS / "tools.toml", "--mode", mode,
                                     env={"ASYNCFC_TEST_PIDFILE": str(pidfile)})
    assert result.exit_code == 0, result.output
    calls = {c["tool"]: c for c in report["tool_calls"]}
    assert calls["boom"]["status"] == "error" and "RuntimeError: the tool broke" in calls["boom"]["error"]
    assert calls["unserializable"]["status"] == "error" and "JSON" in calls["unserializable"]["error"]
    assert calls["hang_py"]["status"] == "timeout" and "timed out after 0.5s" in calls["hang_py"]["error"]
    assert calls["hang_cmd"]["status"] == "timeout"
    assert 1.4 < calls["hang_cmd"]["duration"] < 15  # its 1.5 s timeout, not its 120 s (wide: a loaded machine)
    # The run went on and answered with every error in it.
    assert "boom=RuntimeError: the tool broke" in report["answer"]
    assert "py=timed out after 0.5s" in report["answer"]
    # The huge result was cut to the agent's max_result_chars for the model.
    big = next(m for m in report["messages"] if m["role"] == "tool" and m["content"].startswith("xxxx"))
    assert len(big["content"]) < 1100 and "199000 more characters cut" in big["content"]
    # The command tool's process and its child were killed.
    parent, child = map(int, pidfile.read_text().split())
    assert wait_until(lambda: process_gone(parent) and process_gone(child), 60)
    data = read_trace(trace)
    assert data.summary["status"] == "ok" and not data.truncated


def test_model_protocol_mistakes_are_errors_the_model_sees(tmp_path):
    result, report, _ = run_json(tmp_path, FAULTS / "model_mistakes.toml", "--mode", "async")
    assert result.exit_code == 0, result.output
    errors = [c["error"] for c in report["tool_calls"] if c["status"] == "error"]
    text = " | ".join(errors)
    assert "arguments are not valid JSON" in text  # malformed_json, then fixed and re-issued
    assert "unknown tool 'no_such_tool'" in text
    assert "size" in text and "integer" in text  # wrong type, named
    assert "unknown future $f999" in text
    assert "dependency $f" in text and "(slow_boom) failed: RuntimeError: the tool broke" in text
    assert report["answer"].startswith("first=hello ghost=unknown tool")


def test_wait_on_nothing_is_an_error_the_model_sees(tmp_path):
    script = [
        Reply(chunks=tool_call_stream([("w1", "wait", '{"futures": []}')])),
        Reply(chunks=[chunk({"role": "assistant", "content": "ok"}), chunk({}, "stop")]),
    ]
    with ScriptedServer(script) as server:
        result, report, _ = run_json(tmp_path, FAULTS / "remote.toml", "--mode", "async",
                                     env={"ASYNCFC_TEST_API_BASE": server.base_url})
    assert result.exit_code == 0, result.output
    wait_reply = next(m for m in report["messages"] if m["role"] == "tool")
    assert "wait needs futures" in json.loads(wait_reply["content"])["error"]


# --- the model endpoint ----------------------------------------------------------------


def _disconnect() -> Reply:
    # Half a stream, then the server hangs up: no finish_reason ever comes.
    return Reply(chunks=[chunk({"role": "assistant", "content": ""}), chunk({"content": "half an ans"})])


@pytest.mark.parametrize("fault", ["429", "500", "disconnect"])
def test_endpoint_faults_are_retried_then_exit_1_with_a_clear_message(tmp_path, fault):
    replies = {"429": Reply.error(429, "slow down"), "500": Reply.error(500, "boom"), "disconnect": _disconnect()}
    env = {"ASYNCFC_TEST_API_KEY": PLANTED}
    with ScriptedServer([replies[fault]]) as server:
        env["ASYNCFC_TEST_API_BASE"] = server.base_url
        result, report, trace = run_json(tmp_path, FAULTS / "remote.toml", env=env)
        served = len(server.requests)
    assert result.exit_code == 1, result.output
    assert report["status"] == "error" and report["error"].startswith("model error:")
    assert "cannot reach" not in report["error"] and "fix" not in report  # it was reached, and answered
    assert served == 3  # the first try and two retries, no more
    data = read_trace(trace)
    assert [e["attempt"] for e in data.of_type("retry")] == [1, 2]
    assert data.summary is not None and data.summary["status"] == "error"
    everything = result.stdout + result.stderr + trace.read_text()
    assert PLANTED not in everything


# --- a model server that cannot be reached ------------------------------------------------


def _agents_for(tmp_path: Path, model: str, api_base: str, **settings: float) -> Path:
    path = tmp_path / "agents.toml"
    lines = [f'model = "{model}"', f'api_base = "{api_base}"', *(f"{k} = {v}" for k, v in settings.items())]
    path.write_text("[models.local]\n" + "\n".join(lines) + '\n\n[agents.a]\nmodel = "local"\ntools = []\n')
    return path


@pytest.mark.parametrize("model, host, start", [
    ("openai/x", "127.0.0.1", "start the model server"),
    ("openai/x", "localhost", "start the model server"),
    ("openai/x", "[::1]", "start the model server"),
    ("ollama/llama3", "127.0.0.1", "start Ollama (ollama serve)"),
])
def test_a_local_model_server_that_is_down_fails_at_once_naming_its_url(tmp_path, model, host, start):
    # A refused connection on this machine means no server is running: not
    # retried (the backoff would be seconds of nothing), said with the URL and a fix.
    port = free_port()
    path = "/v1/chat/completions" if model.startswith("openai/") else "/api/generate"
    agents = _agents_for(tmp_path, model, f"http://{host}:{port}" + ("/v1" if model.startswith("openai/") else ""),
                         retries=3)
    trace = tmp_path / "t.jsonl"
    result = invoke("run", "-a", "a", "--agents", str(agents), "--trace", str(trace), "hi")
    assert result.exit_code == 1, result.output
    assert (f"error: model error: cannot reach the model server at http://{host}:{port}{path}: "
            "connection refused (nothing listens at that address)\n") in result.stderr
    assert f"  fix: {start}, or set api_base in [models.local] to the address it listens on\n" in result.stderr
    for noise in ("object at 0x", "ssl:", "InternalServerError", "Connection error"):
        assert noise not in result.output
    data = read_trace(trace)
    assert data.of_type("retry") == []
    assert len(data.of_type("model_begin")) == 1
    assert data.summary["status"] == "error" and f"{host}:{port}" in data.summary["error"]


def test_a_local_model_server_that_is_down_as_json(tmp_path):
    port = free_port()
    agents = _agents_for(tmp_path, "ollama/llama3", f"http://127.0.0.1:{port}")
    result = invoke("run", "-a", "a", "--agents", str(agents), "--json", "--trace", str(tmp_path / "t.jsonl"), "hi")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["status"] == "error" and report["exit_code"] == 1
    assert report["error"] == (f"model error: cannot reach the model server at http://127.0.0.1:{port}/api/generate: "
                               "connection refused (nothing listens at that address)")
    assert report["fix"] == "start Ollama (ollama serve), or set api_base in [models.local] to the address it listens on"


def test_a_model_server_that_does_not_answer_is_named_with_its_timeout(tmp_path):
    # Connected (the listening socket's backlog accepts) but never answered: a
    # timeout, which is retried (a slow server may answer the next time).
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        base = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        agents = _agents_for(tmp_path, "openai/x", base, request_timeout=1, retries=1)
        trace = tmp_path / "t.jsonl"
        result = invoke("run", "-a", "a", "--agents", str(agents), "--trace", str(trace), "hi")
    assert result.exit_code == 1, result.output
    assert "model error: the model server at http://127.0.0.1:" in result.stderr
    assert "sent no tokens for 1s (request_timeout)" in result.stderr  # our own timer ended the wait
    assert "  fix: check that the server at that address is up and answers; if it is slow to start or to answer, " \
           "raise request_timeout in [models.local]" in result.stderr
    retries = read_trace(trace).of_type("retry")
    assert [r["attempt"] for r in retries] == [1] and base in retries[0]["error"]


def test_a_stalled_stream_times_out_is_retried_then_exit_1(tmp_path):
    start = time.monotonic()
    result, report, trace = run_json(tmp_path, FAULTS / "stall.toml")
    assert result.exit_code == 1, result.output
    assert "model error" in report["error"] and "imeout" in report["error"]
    assert len(read_trace(trace).of_type("retry")) == 2
    assert time.monotonic() - start < 40  # bounded: three 1 s stalls and two backoffs (wide: a loaded machine)


# --- bad specs and bad paths -----------------------------------------------------------------


BAD_SPECS = {
    "toml syntax": ('agent = "a"\nprompt = \n', "TOML syntax error"),
    "unknown key": ('agent = "a"\nprompt = "p"\ncolour = 1\n', "colour: unknown key"),
    "wrong type": ('prompt = "p"\n[agent]\nmodel = "sim"\nmax_turns = "ten"\n', "agent.max_turns"),
    "missing env var": ('prompt = "p"\n[agent]\nmodel = "${ASYNCFC_SURELY_UNSET_VAR}"\n', "ASYNCFC_SURELY_UNSET_VAR"),
    "unknown tool": ('prompt = "p"\n[agent]\nmodel = "sim"\ntools = ["nope"]\n[sim.final]\nanswer = "x"\n', "'nope'"),
    "unknown model": ('prompt = "p"\n[agent]\nmodel = "nomodel"\n', "nomodel"),
    "import fails": ('prompt = "p"\n[agent]\nmodel = "sim"\ntools = ["t"]\n[tools.t]\npython = "no_such_module_xyz:f"\n'
                     '[sim.final]\nanswer = "x"\n', "no_such_module_xyz"),
}


@pytest.mark.parametrize("kind", list(BAD_SPECS))
def test_bad_specs_exit_2_naming_file_key_and_fix(tmp_path, kind):
    text, needle = BAD_SPECS[kind]
    task = tmp_path / "task.toml"
    task.write_text(text)
    (tmp_path / "agents.toml").write_text("")  # keep discovery inside tmp_path
    trace = tmp_path / "t.jsonl"
    result = invoke("run", str(task), "--trace", str(trace))
    assert result.exit_code == 2
    assert str(task) in result.stderr and needle in result.stderr
    assert "fix:" in result.stderr
    assert not trace.exists()  # nothing ran


@pytest.mark.parametrize("path", ["/dev/full", "/proc/asyncfc-cannot-write/t.jsonl"])
def test_full_disk_or_unwritable_trace_fails_before_the_run(tmp_path, path):
    with ScriptedServer([Reply.error(500, "must not be called")]) as server:
        result = invoke("run", str(FAULTS / "remote.toml"), "--trace", path,
                         env={"ASYNCFC_TEST_API_BASE": server.base_url})
        assert len(server.requests) == 0
    assert result.exit_code == 2
    assert "cannot write the trace" in result.stderr and path in result.stderr


def _file_size_limited(limit: int):
    """A child's regular files may not grow past ``limit`` bytes: writes beyond it fail
    with EFBIG, as they fail with ENOSPC on a full disk (Python ignores SIGXFSZ)."""
    import resource

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("command", ["run", "batch"])
def test_trace_that_fails_mid_run_makes_the_run_an_error(tmp_path, command):
    # The header (about 530 bytes) is written; the trace's later lines (1.7 KB in all)
    # cannot be: the run goes on, and its outcome says the trace failed.
    task, trace = DATA / "ok.toml", tmp_path / "t.jsonl"
    args = (["run", str(task), "--json", "--trace", str(trace)] if command == "run"
            else ["batch", str(task), "--json", "--out", str(tmp_path / "out")])
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-m", "asyncfc_cli.cli", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=_file_size_limited(1024))
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    run = report if command == "run" else report["runs"][0]
    if command == "batch":
        trace = Path(run["trace"])
        assert run["status"] == "failed" and run["exit_code"] == 1
    assert run["error"].startswith(f"cannot write the trace to {trace}: File too large"), run["error"]
    assert run["answer"] == "The echo said hello."  # the run itself went on to its answer
    if command == "run":
        assert report["status"] == "error" and report["exit_code"] == 1 and "--trace" in report["fix"]
    written = read_trace(trace)
    assert written.header.task == str(task) and written.summary is None  # the header, not the end


def test_trace_that_fails_mid_run_is_reported_on_stderr(tmp_path):
    task, trace = DATA / "ok.toml", tmp_path / "t.jsonl"
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-m", "asyncfc_cli.cli", "run", str(task), "-q", "--trace", str(trace)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=_file_size_limited(1024))
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == "The echo said hello.\n"
    assert f"error: cannot write the trace to {trace}: File too large" in proc.stderr
    assert "fix: free space" in proc.stderr


# --- signals -----------------------------------------------------------------------------------


def _start(tmp_path, trace):
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", ASYNCFC_TEST_PIDFILE=str(tmp_path / "pid"))
    return subprocess.Popen(
        [sys.executable, "-m", "asyncfc_cli.cli", "run", str(DATA / "async_hang.toml"), "--trace", str(trace), "-q"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _wait_for_tool(tmp_path, proc) -> int:
    pidfile = tmp_path / "pid"
    deadline = time.monotonic() + 240  # a process importing LiteLLM on a loaded machine: minutes
    while not (pidfile.exists() and pidfile.read_text()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return int(pidfile.read_text())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_cancels_everything_and_exits_130(tmp_path, signum):
    trace = tmp_path / "t.jsonl"
    proc = _start(tmp_path, trace)
    try:
        tool = _wait_for_tool(tmp_path, proc)
        assert not process_gone(tool)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert wait_until(lambda: process_gone(tool), 60), "the tool's process outlived the run"
    data = read_trace(trace)
    assert data.summary["status"] == "interrupted"
    assert [e["status"] for e in data.of_type("tool_end")] == ["cancelled"]
    assert out.decode() == ""


def test_sigkill_leaves_a_trace_that_reads_and_renders(tmp_path):
    trace = tmp_path / "t.jsonl"
    proc = _start(tmp_path, trace)
    try:
        tool = _wait_for_tool(tmp_path, proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        try:
            os.kill(tool, signal.SIGKILL)  # the tool was orphaned by the SIGKILL: not ours to keep
        except (ProcessLookupError, UnboundLocalError):
            pass
    data = read_trace(trace)
    assert data.truncated and data.summary is None
    assert [s.status for s in data.spans("tool")] == ["unfinished"]
    shown = invoke("trace", str(trace), "--width", "120")
    assert shown.exit_code == 0
    assert "hang" in shown.stdout


@pytest.mark.parametrize("mode", ["sync", "parallel", "async"])
def test_a_tool_max_concurrency_limits_running_calls_in_every_mode(tmp_path, mode):
    # The README's agents.toml example sets max_concurrency on a tool; it once
    # crashed every run because only the parser was tested.
    result, report, trace = run_json(tmp_path, DATA / "limited.toml", "--mode", mode)
    assert result.exit_code == 0, result.output
    assert [c["status"] for c in report["tool_calls"]] == ["ok"] * 5
    spans = read_trace(trace).spans("tool")
    edges = sorted([(s.start, 1) for s in spans] + [(s.end, -1) for s in spans], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == (1 if mode == "sync" else 2)


# --- secrets ---------------------------------------------------------------------------

SECRETS = Path(__file__).parent / "data" / "secrets"
ENV_KEY = "sk-Qv7Xe2Lr9Tz4Wm8Kp3Hd"
HEADER_SECRET = "hdr-5Nc8Yb1Gf6Uj0Rs"


def _leaks(text: str, secret: str) -> list[str]:
    """Every 8-character piece of ``secret`` found in ``text``: a key cut in half still leaks."""
    return sorted({secret[i:i + 8] for i in range(len(secret) - 7) if secret[i:i + 8] in text})


def _echo_credentials(request):
    key = request["headers"].get("authorization", "").removeprefix("Bearer ")
    header = request["headers"].get("x-team-credential", "")
    if len([m for m in request["body"]["messages"] if m["role"] == "assistant"]) == 0:
        # The model quotes the credentials as arguments, then forwards a result that holds one.
        return Reply(chunks=tool_call_stream([
            ("call_1", "echo", json.dumps({"text": f"key {key} header {header}"})),
            ("call_2", "echo", json.dumps({"text": "$f1"})),
        ]))
    return Reply(chunks=[chunk({"role": "assistant", "content": ""}),
                         chunk({"content": f"Your key is {key} and your header is {header}."}), chunk({}, "stop")])


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_secrets_the_run_knows_never_reach_any_output(tmp_path, mode):
    # OPENAI_API_KEY is read by LiteLLM from the environment (the README's flow),
    # the header credential sits in params.extra_headers; an endpoint echoes both
    # into tool arguments, a forwarded result and the answer.
    with ScriptedServer([_echo_credentials]) as server:
        env = {"OPENAI_API_KEY": ENV_KEY, "ASYNCFC_TEST_API_BASE": server.base_url,
               "ASYNCFC_TEST_HEADER": HEADER_SECRET}
        result, report, trace = run_json(tmp_path, SECRETS / "leak.toml", "--mode", mode, env=env)
        plain = invoke("run", str(SECRETS / "leak.toml"), "--mode", mode, "--trace", str(tmp_path / "p.jsonl"),
                        env=env)
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {ENV_KEY}"  # both were sent...
    assert server.requests[0]["headers"]["x-team-credential"] == HEADER_SECRET
    assert result.exit_code == 0 and plain.exit_code == 0, result.output
    assert "Your key is *** and your header is ***." in report["answer"]
    assert any(m.get("content") == "key *** header ***" for m in report["messages"])
    everything = (result.stdout + result.stderr + trace.read_text() + plain.stdout + plain.stderr
                  + (tmp_path / "p.jsonl").read_text())
    assert _leaks(everything, ENV_KEY) == [] and _leaks(everything, HEADER_SECRET) == []  # ...and never shown


def test_a_secret_across_the_error_cut_is_redacted_before_the_cut(tmp_path):
    # The message is cut at 400 characters; the key straddles the cut. (A server
    # error, not a refused key: that exits 2 with a fix, tests/test_credentials.py.)
    def quote_key(request):
        key = request["headers"].get("authorization", "").removeprefix("Bearer ")
        return Reply.error(500, "x" * 380 + f" upstream said {key}")

    with ScriptedServer([quote_key]) as server:
        env = {"OPENAI_API_KEY": ENV_KEY, "ASYNCFC_TEST_API_BASE": server.base_url}
        result, report, trace = run_json(tmp_path, SECRETS / "leak.toml", env=env)
    assert result.exit_code == 1 and report["error"].startswith("model error:")
    everything = result.stdout + result.stderr + trace.read_text()
    assert _leaks(everything, ENV_KEY) == []


def test_text_that_cannot_be_encoded_reaches_the_next_request_as_a_replacement(tmp_path):
    # A lone surrogate in a tool name, an argument and text: the conversation is
    # still sent (with U+FFFD), the run answers, and nothing prints a traceback.
    def script(request):
        if not any(m["role"] == "assistant" for m in request["body"]["messages"]):
            return Reply(chunks=[chunk({"role": "assistant", "content": "thinking \ud800 "}),
                                 *tool_call_stream([("c1", "bo\ud800om", '{"message": "x\\ud800y"}')])[1:]])
        sent = json.dumps(request["body"]["messages"])
        assert "\\ufffd" in sent or "\ufffd" in sent
        return Reply(chunks=[chunk({"role": "assistant", "content": "done"}), chunk({}, "stop")])

    with ScriptedServer([script]) as server:
        env = {"ASYNCFC_TEST_API_BASE": server.base_url}
        for mode in ("sync", "async"):
            result, report, trace = run_json(tmp_path, FAULTS / "remote.toml", "--mode", mode, env=env)
            assert result.exit_code == 0, result.output
            assert report["answer"] == "done" and "Traceback" not in result.stderr
            assert "unknown tool" in report["tool_calls"][0]["error"]


def test_references_the_engine_cannot_honour_and_duplicate_ids_through_the_cli(tmp_path):
    # A hostile model: a call that references itself, two that reference each other,
    # a reference to a call it never makes, two calls with one id, a wait with NaN.
    first = tool_call_stream([
        ("c1", "echo", '{"text": "$f1"}'),
        ("c2", "echo", '{"text": "${f3}"}'),
        ("c3", "echo", '{"text": "$f2"}'),
        ("c4", "echo", '{"text": "${f9}"}'),
        ("dup", "echo", '{"text": "one"}'),
        ("dup", "echo", '{"text": "two"}'),
        ("w1", "wait", '{"futures": ["f5"], "timeout": NaN}'),
        ("w2", "wait", '{}'),
    ])
    answer = Reply(chunks=[chunk({"role": "assistant", "content": "done"}), chunk({}, "stop")])
    with ScriptedServer([Reply(chunks=first), answer]) as server:
        result, report, trace = run_json(tmp_path, FAULTS / "remote.toml", "--mode", "async",
                                         env={"ASYNCFC_TEST_API_BASE": server.base_url})
    assert result.exit_code == 0 and report["answer"] == "done", result.output
    errors = [c["error"] or "" for c in report["tool_calls"]]
    assert "refers to this call itself" in errors[0]
    assert "cyclic reference" in errors[2] and "dependency $f3" in errors[1]
    assert "no call f9 was made" in errors[3]
    replies = [m for m in report["messages"] if m["role"] == "tool"]
    # Both calls with the id "dup" ran and each answer came back (in its own message).
    assert [m["content"] for m in replies if m["tool_call_id"] == "dup"] == ["one", "two"]
    waited = json.loads(replies[-1]["content"])  # wait(): what is not already in its own message
    assert "f5" not in waited and "f6" not in waited and "no call f9" in waited["f4"]["error"]
    assert "not valid JSON" in json.loads(replies[-2]["content"])["error"]  # NaN is no number
    # Every renderer reads what the engine wrote, the dependency cycle included.
    for args in (["trace", str(trace)], ["trace", str(trace), "--json"],
                 ["trace", str(trace), "--export", "chrome", "-o", str(tmp_path / "c.json")],
                 ["trace", str(trace), "--export", "otel", "-o", str(tmp_path / "o.json")]):
        shown = invoke(*args)
        assert shown.exit_code == 0 and "Traceback" not in shown.output, (args, shown.output)
