"""Nothing a model writes in a call's arguments blocks the event loop or ends the run
(docs/reliability.md, issue 17 item 3).

A scripted endpoint (conftest's ScriptedServer, through LiteLLM's real HTTP
path) writes what no honest model would: megabytes of backslashes around
references, arguments nested 100,000 levels deep, references past the end of
a list. Each ends as an error in that call's own tool message, or as the call
it means; the other calls and the run go on, and ``--timeout`` and Ctrl-C
still stop the run.
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

from conftest import Reply, ScriptedServer, chunk, invoke, process_gone, tool_call_stream, wait_until

DATA = Path(__file__).parent / "data" / "hostile_args"
TASK = DATA / "task.toml"
# Far past where the old scanner stalled (32,000 backslashes took 8 s, and the
# time grew with the square of the length).
BACKSLASHES = 1_000_000


def answer(text: str = "done") -> Reply:
    return Reply(chunks=[chunk({"role": "assistant", "content": text}), chunk({}, "stop")])


def run(tmp_path: Path, server: ScriptedServer, *extra: str):
    trace = tmp_path / "trace.jsonl"
    result = invoke("run", str(TASK), "--json", "--trace", str(trace), *extra,
                    env={"ASYNCFC_TEST_API_BASE": server.base_url}, catch_exceptions=False)
    report = json.loads(result.stdout) if result.stdout.strip() else None
    return result, report, trace


def args(text: str) -> str:
    return json.dumps({"text": text})


@pytest.mark.parametrize("mode", ["async", "parallel"])
def test_megabytes_of_backslashes_around_references_run_and_the_run_goes_on(tmp_path, mode):
    n = BACKSLASHES
    calls = [
        # A run of backslashes that no reference follows: the old scanner
        # retried its regex at every backslash of it.
        ("c1", "echo", args("\\" * n + "$HOME")),
        ("c2", "echo", args("\\" * (n + 1) + "${f1}")),  # odd: the reference is literal text
        ("c3", "echo", args("${f1}" + "\\" * n)),
        ("c4", "echo", args("\\" * n + " id $f1")),  # a bare reference inside text: refused
        ("c5", "echo", args("${" * n)),
        ("c6", "echo", args("${f1." + "a." * n)),  # never closed
    ]
    with ScriptedServer([Reply(chunks=tool_call_stream(calls)), answer()]) as server:
        result, report, trace = run(tmp_path, server, "--mode", mode)
    assert result.exit_code == 0, result.output
    assert report["answer"] == "done"
    got = {c["id"]: c for c in report["tool_calls"]}
    if mode == "async":
        assert [got[f"c{i}"]["status"] for i in range(1, 7)] == ["ok", "ok", "ok", "error", "ok", "error"]
        assert got["c1"]["arguments"]["text"] == "\\" * n + "$HOME"
        assert got["c2"]["arguments"]["text"] == "\\" * (n // 2) + "${f1}"
        assert got["c3"]["arguments"]["text"] == "\\" * n + "$HOME" + "\\" * n
        assert "ambiguous reference '$f1'" in got["c4"]["error"]
        assert "unterminated or malformed reference" in got["c6"]["error"]
    else:  # references are a futures feature: the other modes pass the text as written
        assert all(c["status"] == "ok" for c in got.values())
    assert read_trace(trace).summary["status"] == "ok"


DEPTHS = [101, 700, 5_000, 100_000]


@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("depth", DEPTHS + ["unclosed"])
def test_arguments_nested_too_deep_fail_their_own_call_and_the_run_goes_on(tmp_path, mode, depth):
    # Before: 700 levels crashed the reference substitution (RecursionError),
    # 5,000 failed the stream's JSON decode as a model error that ended the run.
    levels = 100_000 if depth == "unclosed" else depth
    nested = '{"text": "x", "deep": ' + "[" * levels + ("]" * levels + "}" if depth != "unclosed" else "")
    calls = [("c1", "echo", args("before")), ("c2", "echo", nested), ("c3", "echo", args("after"))]
    with ScriptedServer([Reply(chunks=tool_call_stream(calls)), answer()]) as server:
        result, report, trace = run(tmp_path, server, "--mode", mode)
    assert result.exit_code == 0, result.output
    assert report["answer"] == "done" and "Traceback" not in result.stderr
    statuses = {c["id"]: c["status"] for c in report["tool_calls"]}
    assert statuses == {"c1": "ok", "c2": "error", "c3": "ok"}
    error = next(c["error"] for c in report["tool_calls"] if c["id"] == "c2")
    assert f"nested {levels + 1} levels deep; at most 100" in error
    # The model reads it in that call's own tool message.
    own = next(m for m in report["messages"] if m.get("tool_call_id") == "c2")
    assert "levels deep" in json.loads(own["content"])["error"]
    for args_ in (["trace", str(trace)], ["trace", str(trace), "--json"]):
        assert invoke(*args_, catch_exceptions=False).exit_code == 0


def test_a_list_index_equal_to_the_length_is_an_error_the_model_sees(tmp_path):
    # ${f1.items.3} on a three-item list: one past the end. It once let an
    # IndexError escape; -3 is the first item, -4 one before it.
    first = tool_call_stream([("c1", "listing", "{}")])
    second = tool_call_stream([
        ("c2", "echo", args("${f1.items.3}")),
        ("c3", "echo", args("${f1.items.2}")),
        ("c4", "echo", args("${f1.items.-3}")),
        ("c5", "echo", args("${f1.items.-4}")),
    ])
    with ScriptedServer([Reply(chunks=first), Reply(chunks=second), answer()]) as server:
        result, report, _ = run(tmp_path, server)
    assert result.exit_code == 0, result.output
    got = {c["id"]: c for c in report["tool_calls"]}
    assert got["c2"]["status"] == "error"
    assert "has no part '3' (it is a list; 3 items)" in got["c2"]["error"]
    assert got["c3"]["status"] == "ok" and got["c3"]["arguments"] == {"text": "c"}
    assert got["c4"]["status"] == "ok" and got["c4"]["arguments"] == {"text": "a"}
    assert got["c5"]["status"] == "error" and "has no part '-4'" in got["c5"]["error"]


# --- the loop stays responsive: --timeout and Ctrl-C ---------------------------------------------

# The margins are wide on purpose (a loaded machine): before the fix the run
# could not be stopped for hours at this size, so any bound tells them apart.
STOPPED_WITHIN = 15.0


def hostile_then_hang(pidfile: Path) -> list[tuple[str, str, str]]:
    n = BACKSLASHES
    return [
        ("c1", "echo", args("\\" * n + "$HOME")),
        ("c2", "echo", args("${f1} " + "\\" * n)),
        ("c3", "hang", json.dumps({"pidfile": str(pidfile)})),
    ]


def test_timeout_stops_a_run_that_reads_a_huge_backslash_argument(tmp_path):
    pidfile = tmp_path / "pid"
    with ScriptedServer([Reply(chunks=tool_call_stream(hostile_then_hang(pidfile))), answer()]) as server:
        result, report, trace = run(tmp_path, server, "--timeout", "3")
    assert report["status"] == "timeout", result.output
    assert pidfile.exists()  # the calls after the huge ones started: the loop was not held
    assert wait_until(lambda: process_gone(int(pidfile.read_text())), 10)
    summary = read_trace(trace).summary
    # On the run's own clock (from its first event, after the imports).
    assert summary["status"] == "timeout" and summary["t"] < 3 + STOPPED_WITHIN


def test_ctrl_c_stops_a_run_that_reads_a_huge_backslash_argument(tmp_path):
    pidfile = tmp_path / "pid"
    trace = tmp_path / "trace.jsonl"
    with ScriptedServer([Reply(chunks=tool_call_stream(hostile_then_hang(pidfile))), answer()]) as server:
        env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", ASYNCFC_TEST_API_BASE=server.base_url)
        proc = subprocess.Popen([sys.executable, "-m", "asyncfc_cli.cli", "run", str(TASK), "--trace", str(trace),
                                 "-q"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            # The hanging call comes after the huge ones: once it runs, they were read.
            assert wait_until(lambda: pidfile.exists() and pidfile.read_text(), 300), proc.poll()
            tool = int(pidfile.read_text())
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
            out, err = proc.communicate(timeout=60)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, err
    assert took < STOPPED_WITHIN
    assert wait_until(lambda: process_gone(tool), 10)
    data = read_trace(trace)
    assert data.summary["status"] == "interrupted"
    ends = {e["call_id"]: e["status"] for e in data.of_type("tool_end")}
    assert ends["c1"] == "ok" and ends["c3"] == "cancelled"
