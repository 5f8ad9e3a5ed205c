"""The ``mcp`` tool kind through the CLI, against real MCP servers written with
the SDK's server API (tests/mcp_server.py), over stdio and streamable HTTP on
127.0.0.1. The client runs on trio through anyio (asyncfc_cli/tools/mcp/__init__.py
says why); these tests are what proves that path.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from asyncfc_cli.trace import read_trace

from conftest import free_port, invoke, process_gone, wait_until

HERE = Path(__file__).parent
SERVER = HERE / "mcp_server.py"
PY = sys.executable
ENV = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
STDIO = f'{{ command = [{json.dumps(PY)}, {json.dumps(str(SERVER))}] }}'


def steps(*items: tuple[str, str, dict], final: str = "done") -> str:
    out = "[sim]\ndecode_tps = 5000\nttft = 0\n\n"
    for step_id, tool, args in items:
        out += f'[[sim.steps]]\nid = "{step_id}"\ntool = "{tool}"\nargs = {_toml_inline(args)}\n\n'
    return out + f"[sim.final]\nanswer = {json.dumps(final)}\n"


def _toml_inline(args: dict) -> str:
    return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in args.items()) + " }"


def task(tmp_path: Path, tools_table: str, sim: str, tools: str = '["srv"]', agent_extra: str = "") -> Path:
    (tmp_path / "agents.toml").write_text("")
    path = tmp_path / "task.toml"
    path.write_text(f'prompt = "p"\n[agent]\nmodel = "sim"\ntools = {tools}\n{agent_extra}\n'
                    + textwrap.dedent(tools_table) + "\n" + sim)
    return path


def run(path: Path, *extra: str, env: dict | None = None):
    trace = path.parent / "trace.jsonl"
    result = invoke("run", str(path), "--json", "--trace", str(trace), *extra,
                    env=env, catch_exceptions=False)
    report = json.loads(result.stdout) if result.stdout.strip() else None
    return result, report, trace


def calls(report: dict) -> dict[str, dict]:
    return {c["tool"]: c for c in report["tool_calls"]}


# --- stdio: the tools, their settings, and the session's life ------------------------------


@pytest.mark.parametrize("mode", ["sync", "parallel", "async"])
def test_a_stdio_server_brings_its_tools_with_their_settings(tmp_path, mode):
    marker = tmp_path / "slow"
    path = task(tmp_path, f"""
        [tools.srv]
        mcp = {STDIO}
        prefix = "s_"
        exclude = ["crash", "env", "protocol_error"]
        timeout = 10
        [tools.srv.overrides.slow]
        timeout = 1
        description = "Sleep (overridden description)."
        """, steps(
        ("sum", "s_add", {"a": 2, "b": 3}),
        ("bad", "s_fail", {"reason": "no"}),
        ("nap", "s_slow", {"seconds": 30, "marker": str(marker)}),
        ("dot", "s_files_read", {"path": "x"}),
        ("who", "s_pid", {}),
        final="sum={sum} bad={bad.error} nap={nap.error} dot={dot} pid={who.result}"))
    result, report, trace = run(path, "--mode", mode)
    assert result.exit_code == 0, result.output
    by_tool = calls(report)
    assert by_tool["s_add"]["status"] == "ok"
    assert by_tool["s_fail"]["status"] == "error" and "refused: no" in by_tool["s_fail"]["error"]
    assert by_tool["s_slow"]["status"] == "timeout" and by_tool["s_slow"]["error"] == "timed out after 1s"
    assert by_tool["s_files_read"]["status"] == "ok"  # MCP name "files.read", exposed as s_files_read
    assert 'sum={"result": 5}' in report["answer"] and 'dot={"result": "read x"}' in report["answer"]
    # The timeout cancelled the call on the server too.
    assert wait_until(lambda: (tmp_path / "slow.cancelled").exists(), 5)
    # The session lived exactly as long as the run: the server is gone.
    server_pid = int(report["answer"].rsplit("pid=", 1)[1])
    assert wait_until(lambda: process_gone(server_pid), 5)
    data = read_trace(trace)
    assert data.header["tool_kinds"] == {"srv": "mcp"}
    (source,) = data.of_type("tool_source")
    assert source["kind"] == "mcp" and sorted(source["tools"]) == sorted(
        ["s_add", "s_echo", "s_slow", "s_fail", "s_pid", "s_files_read"])


def test_include_override_settings_reach_the_tools(tmp_path):
    from asyncfc_cli import spec
    import trio

    from asyncfc_cli.modes import RESERVED_TOOL_NAMES
    from asyncfc_cli.tools import open_tools

    path = task(tmp_path, f"""
        [tools.srv]
        mcp = {STDIO}
        include = ["add", "slow", "echo"]
        ordered = true
        max_concurrency = 3
        [tools.srv.overrides.slow]
        ordered = false
        max_concurrency = 1
        description = "Nap."
        """, steps(final="x"), agent_extra="tool_timeout = 7")
    run_spec = spec.resolve_run(path)

    class Quiet:
        sinks: list = []

        def emit(self, *a, **k):
            pass

    async def main():
        async with open_tools(run_spec.tool_sources, Quiet(), reserved=RESERVED_TOOL_NAMES) as tools:
            return {n: (t.ordered, t.max_concurrency, t.timeout, t.description, t.kind) for n, t in tools.items()}, \
                tools["add"].openai_schema()

    got, schema = trio.run(main)
    assert got == {"add": (True, 3, 7, "Add two integers.", "mcp"),
                   "echo": (True, 3, 7, "Return the text unchanged.", "mcp"),
                   "slow": (False, 1, 7, "Nap.", "mcp")}
    assert schema["function"]["parameters"]["required"] == ["a", "b"]


def test_max_concurrency_and_ordered_overrides_hold_in_a_run(tmp_path):
    path = task(tmp_path, f"""
        [tools.srv]
        mcp = {STDIO}
        include = ["slow", "echo"]
        ordered = true
        max_concurrency = 1
        [tools.srv.overrides.slow]
        ordered = false
        [tools.srv.overrides.echo]
        max_concurrency = 4
        """, steps(("a", "slow", {"seconds": 0.4}), ("b", "slow", {"seconds": 0.4}),
                   ("c", "echo", {"text": "one"}), ("d", "echo", {"text": "two"}), final="{a.result} {b.result} {c.result} {d.result}"),
        agent_extra='mode = "async"')
    result, report, trace = run(path)
    assert result.exit_code == 0, result.output
    assert report["answer"] == "slept 0.4 slept 0.4 one two"
    slow = sorted((c for c in report["tool_calls"] if c["tool"] == "slow"), key=lambda c: c["start"])
    assert slow[1]["start"] >= slow[0]["end"] - 0.01  # one at a time
    created = {e["call_id"]: e for e in read_trace(trace).of_type("future_created")}
    echo = [c for c in report["tool_calls"] if c["tool"] == "echo"]
    assert created[echo[1]["id"]]["ordered_after"] == created[echo[0]["id"]]["future"]  # the table's ordered
    assert all(created[c["id"]]["ordered_after"] is None for c in slow)  # the override's ordered = false


# --- HTTP, headers, ${VAR}, secrets -----------------------------------------------------------


@pytest.fixture
def http_server(tmp_path):
    port = free_port()
    secret = "Bearer mcp-SECRET-4f9a1c"
    proc = subprocess.Popen([PY, str(SERVER), "--http", str(port), "--require-header", secret],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        assert wait_until(listening, 30), proc.stderr.read().decode() if proc.poll() is not None else "not listening"
        yield port, secret
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_an_http_server_with_a_secret_header_from_the_environment(tmp_path, http_server):
    port, secret = http_server
    path = task(tmp_path, """
        [tools.web]
        mcp = { url = "http://127.0.0.1:${MCP_TEST_PORT}/mcp", headers = { Authorization = "${MCP_TEST_AUTH}" } }
        include = ["add", "echo"]
        """, steps(("sum", "add", {"a": 20, "b": 22}), ("leak", "echo", {"text": secret}),
                   final="sum={sum.result}"), tools='["web"]')
    env = {"MCP_TEST_PORT": str(port), "MCP_TEST_AUTH": secret}
    result, report, trace = run(path, env=env)
    assert result.exit_code == 0, result.output
    assert report["answer"] == "sum=42"  # the header reached the server (it refuses requests without it)
    # A header value is a secret: the model echoing it does not put it in the trace.
    text = trace.read_text()
    assert secret not in text and "***" in text
    assert secret not in result.stderr


def test_a_wrong_header_is_a_start_failure_with_exit_2(tmp_path, http_server):
    port, _ = http_server
    path = task(tmp_path, f"""
        [tools.web]
        mcp = {{ url = "http://127.0.0.1:{port}/mcp", headers = {{ Authorization = "Bearer wrong-token-1234" }} }}
        startup_timeout = 10
        """, steps(final="x"), tools='["web"]')
    result, report, _ = run(path)
    assert result.exit_code == 2, result.output
    assert "tool 'web': MCP server" in result.stderr and "failed to start" in result.stderr
    assert "wrong-token-1234" not in result.stderr  # the header value is not repeated


def test_env_vars_reach_a_stdio_server_and_secret_ones_stay_out_of_the_trace(tmp_path):
    path = task(tmp_path, f"""
        [tools.srv]
        mcp = {{ command = [{json.dumps(PY)}, {json.dumps(str(SERVER))}], env = {{ GREETING = "${{MCP_GREETING}}", API_TOKEN = "${{MCP_TOKEN}}" }}, cwd = "." }}
        include = ["env", "echo"]
        """, steps(("g", "env", {"name": "GREETING"}), ("t", "echo", {"text": "tok-9f8e7d6c5b"}),
                   final="{g.result}"))
    result, report, trace = run(path, env={"MCP_GREETING": "hello-from-env", "MCP_TOKEN": "tok-9f8e7d6c5b"})
    assert result.exit_code == 0, result.output
    assert report["answer"] == "hello-from-env"
    assert "tok-9f8e7d6c5b" not in trace.read_text()


# --- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["exits", "hangs listing", "no such program", "unknown include"])
def test_a_server_that_cannot_start_is_exit_2_with_a_clear_message(tmp_path, case):
    table = {
        "exits": f'mcp = {{ command = [{json.dumps(PY)}, {json.dumps(str(SERVER))}, "--mode", "exit"] }}',
        "hangs listing": f'mcp = {{ command = [{json.dumps(PY)}, {json.dumps(str(SERVER))}, "--mode", "hang-list"] }}\n'
                         "startup_timeout = 4",
        "no such program": 'mcp = { command = ["no-such-mcp-server-xyz"] }',
        "unknown include": f'mcp = {STDIO}\ninclude = ["add", "nope"]',
    }[case]
    needle = {
        "exits": "refusing to start (mode exit)",  # the server's own stderr, in the message
        "hangs listing": "within 4s (startup_timeout)",
        "no such program": "program 'no-such-mcp-server-xyz' is not found on PATH",
        "unknown include": "include names 'nope', which the server does not have",
    }[case]
    path = task(tmp_path, f"[tools.srv]\n{table}\n", steps(final="x"))
    start = time.monotonic()
    result, _, _ = run(path)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and ("tool 'srv'" in result.stderr or "tools.srv" in result.stderr)
    assert "Traceback" not in result.stderr
    assert time.monotonic() - start < 60  # never a hang
    # validate says the same, starting the server with its timeout.
    checked = invoke("validate", str(path), catch_exceptions=True)
    assert checked.exit_code == 2 and needle in checked.stderr


def test_validate_starts_the_server_and_lists_its_tools(tmp_path):
    agents = tmp_path / "agents.toml"
    agents.write_text(f'[tools.srv]\nmcp = {STDIO}\n[agents.a]\nmodel = "sim"\ntools = ["srv"]\n')
    result = invoke("validate", str(agents), catch_exceptions=True)
    assert result.exit_code == 0, result.output
    assert "agents ok" in result.stderr


def test_a_server_that_crashes_mid_run_is_an_error_the_model_sees(tmp_path):
    path = task(tmp_path, f"[tools.srv]\nmcp = {STDIO}\n", steps(
        ("boom", "crash", {}), ("after", "add", {"a": 1, "b": 1}),
        final="boom={boom.error} after={after.error}"), agent_extra='mode = "sync"')
    result, report, _ = run(path)
    assert result.exit_code == 0, result.output
    by_tool = calls(report)
    assert by_tool["crash"]["status"] == "error" and by_tool["add"]["status"] == "error"
    assert "after=cannot call 'add'" in report["answer"] or "MCP error" in by_tool["add"]["error"]


def test_a_protocol_error_is_an_error_the_model_sees(tmp_path):
    path = task(tmp_path, f"[tools.srv]\nmcp = {STDIO}\ninclude = [\"add\", \"protocol_error\"]\n",
                steps(("proto", "protocol_error", {}), ("bad", "add", {"a": "not a number", "b": 1}),
                      ("after", "add", {"a": 1, "b": 2}), final="{proto.error} | {bad.error} | {after.result}"),
                agent_extra='mode = "sync"')
    result, report, _ = run(path)
    assert result.exit_code == 0, result.output
    proto, bad, after = report["answer"].split(" | ")
    assert proto == "MCP error -32602: invalid params, on purpose"
    assert "reported an error" in bad and "valid integer" in bad  # the server's own argument check
    assert after == "3"  # the session goes on


# --- leaving the run ------------------------------------------------------------------------------


def _start_slow_run(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    marker = tmp_path / "slow"
    path = task(tmp_path, f"[tools.srv]\nmcp = {STDIO}\n",
                steps(("nap", "slow", {"seconds": 120, "marker": str(marker)}), final="{nap}"))
    proc = subprocess.Popen([PY, "-m", "asyncfc_cli.cli", "run", str(path), "-q", "--trace", str(tmp_path / "t.jsonl")],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = tmp_path / "slow.started"
    assert wait_until(lambda: started.exists() and started.read_text(), 90), "the call never reached the server"
    return proc, started


@pytest.mark.parametrize("how", ["ctrl-c", "kill -9"])
def test_the_server_is_gone_after_ctrl_c_or_kill_9(tmp_path, how):
    proc, started = _start_slow_run(tmp_path)
    server = int(started.read_text())
    try:
        proc.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    if how == "ctrl-c":
        assert proc.returncode == 130
        assert read_trace(tmp_path / "t.jsonl").summary["status"] == "interrupted"
    # Ctrl-C: the session closed with the run; kill -9: the run's guard stopped it.
    assert wait_until(lambda: process_gone(server), 15), "the MCP server outlived asyncfc"
    if how == "kill -9" and not process_gone(server):
        os.kill(server, signal.SIGKILL)


def test_the_run_timeout_closes_the_session(tmp_path):
    marker = tmp_path / "slow"
    path = task(tmp_path, f"[tools.srv]\nmcp = {STDIO}\n",
                steps(("nap", "slow", {"seconds": 120, "marker": str(marker)}), final="{nap}"),
                agent_extra="timeout = 6")
    result, report, _ = run(path)
    assert result.exit_code == 1 and report["status"] == "timeout"
    server = int((tmp_path / "slow.started").read_text())
    assert wait_until(lambda: process_gone(server), 10)


# --- MCP tasks as futures --------------------------------------------------------------------------

TASKS = f'{{ command = [{json.dumps(PY)}, {json.dumps(str(HERE / "mcp_task_server.py"))}] }}'


def test_an_mcp_task_is_followed_to_its_result_with_its_states_in_the_trace(tmp_path):
    path = task(tmp_path, f"[tools.jobs]\nmcp = {TASKS}\n",
                steps(("j", "job", {"seconds": 0.6}), ("q", "quick", {"text": "meanwhile"}),
                      ("bad", "job", {"seconds": 0.2, "fail": True}),
                      final="{j} / {q} / {bad.error}"), tools='["jobs"]', agent_extra='mode = "async"')
    result, report, trace = run(path)
    assert result.exit_code == 0, result.output
    assert report["answer"] == "done after 0.6s / meanwhile / the MCP tool 'job' reported an error: the job failed on purpose"
    progress = read_trace(trace).of_type("tool_progress")
    job_calls = [c["id"] for c in report["tool_calls"] if c["tool"] == "job"]
    first = [(e["status"], e.get("message")) for e in progress if e["call_id"] == job_calls[0]]
    assert first[0] == ("working", None) and first[-1] == ("completed", "halfway")
    assert all(e["mcp_task"] for e in progress)
    failed = [e["status"] for e in progress if e["call_id"] == job_calls[1]]
    assert failed[-1] == "failed"
    # The quick tool has no task support: a plain call, no task states.
    quick = next(c["id"] for c in report["tool_calls"] if c["tool"] == "quick")
    assert not [e for e in progress if e["call_id"] == quick]


def test_cancelling_the_future_cancels_the_mcp_task(tmp_path):
    marker = tmp_path / "job"
    path = task(tmp_path, f"[tools.jobs]\nmcp = {TASKS}\ntimeout = 1\n",
                steps(("j", "job", {"seconds": 60, "marker": str(marker)}), final="{j.error}"), tools='["jobs"]')
    result, report, trace = run(path)
    assert result.exit_code == 0, result.output
    assert report["tool_calls"][0]["status"] == "timeout"
    assert wait_until(lambda: (tmp_path / "job.cancelled").exists(), 5), "the server never got tasks/cancel"
    states = [e["status"] for e in read_trace(trace).of_type("tool_progress")]
    assert states[0] == "working" and states[-1] == "cancelled"


def test_tasks_never_makes_plain_calls(tmp_path):
    path = task(tmp_path, f'[tools.jobs]\nmcp = {TASKS}\ntasks = "never"\n',
                steps(("j", "job", {"seconds": 0.2}), final="{j}"), tools='["jobs"]')
    result, report, trace = run(path)
    assert result.exit_code == 0, result.output
    assert report["answer"] == "done inline"
    assert not read_trace(trace).of_type("tool_progress")


# --- the shipped example ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "parallel", "async"])
def test_the_mcp_example_task_runs_in_every_mode(tmp_path, mode):
    # agents.toml runs the server with ${ASYNCFC_PYTHON}: asyncfc's own interpreter, unless set.
    env = {"ASYNCFC_PYTHON": None}
    repo = HERE.parent
    trace = tmp_path / "t.jsonl"
    result = invoke("run", str(repo / "tasks" / "mcp.toml"), "--mode", mode, "--json",
                    "--trace", str(trace), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output  # 3 would mean the [expect] block failed
    report = json.loads(result.stdout)
    assert {c["tool"] for c in report["tool_calls"]} == {"search", "book", "copies"}
    assert read_trace(trace).header["tool_kinds"] == {"library": "mcp"}


def test_a_server_tool_named_like_another_tool_is_exit_2_until_prefixed(tmp_path):
    (tmp_path / "localtools.py").write_text('def echo(text: str) -> str:\n    """Echo."""\n    return text\n')
    table = f'[tools.echo]\npython = "localtools:echo"\n[tools.srv]\nmcp = {STDIO}\ninclude = ["echo"]\n'
    path = task(tmp_path, table, steps(final="x"), tools='["echo", "srv"]')
    result, _, _ = run(path)
    assert result.exit_code == 2, result.output
    assert "tool 'srv': brings a tool named 'echo', which tool 'echo' already has" in result.stderr
    assert "prefix" in result.stderr
    path = task(tmp_path, table + 'prefix = "srv_"\n',
                steps(("a", "echo", {"text": "local"}), ("b", "srv_echo", {"text": "remote"}), final="{a} {b.result}"),
                tools='["echo", "srv"]')
    result, report, _ = run(path)
    assert result.exit_code == 0, result.output
    assert report["answer"] == "local remote"
