"""Async mode through the real path: LiteLLM over HTTP to the simulated server,
real tool processes, the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from asyncfc_cli import runner, spec
from asyncfc_cli.trace import TraceWriter, read_trace

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent


def test_tools_start_mid_stream_and_overlap_each_other_and_decoding(tmp_path):
    run_spec = spec.resolve_run(DATA / "async_overlap.toml")
    outcome = runner.execute(run_spec, TraceWriter(tmp_path / "t.jsonl"))
    assert outcome.result.status == "ok"
    assert outcome.result.answer == "sizes 21 and 21, INDEPENDENT"

    data = read_trace(tmp_path / "t.jsonl")
    model = data.spans("model")
    fetches = sorted((s for s in data.spans("tool") if s.begin["tool"] == "fetch"), key=lambda s: s.start)
    a, b = fetches
    first_request_end = model[0].end
    # Both fetches started while the first response was still streaming...
    assert a.start < b.start < first_request_end - 0.1
    # ...ran at the same time...
    assert b.start < a.end - 0.2
    # ...while the model went on decoding (the third call's thinking).
    assert first_request_end - b.start > 0.25
    assert all(s.status == "ok" for s in fetches)
    # Results already there when the next request was built skip the handle.
    via = {f: e["via"] for e in data.of_type("delivery") for f in e["futures"]}
    assert via["f1"] == "result"


def test_sync_mode_gives_the_same_answer_without_overlap(tmp_path):
    run_spec = spec.resolve_run(DATA / "async_overlap.toml", mode_override="sync")
    outcome = runner.execute(run_spec, TraceWriter(tmp_path / "t.jsonl"))
    assert outcome.result.answer == "sizes 21 and 21, INDEPENDENT"
    data = read_trace(tmp_path / "t.jsonl")
    spans = sorted(data.spans("tool"), key=lambda s: s.start)
    model = data.spans("model")
    for earlier, later in zip(spans, spans[1:]):
        assert later.start >= earlier.end
    assert spans[0].start >= model[0].end  # nothing ran while the model decoded


def _gone(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


def test_ctrl_c_cancels_a_running_subprocess_tool_and_closes_the_trace(tmp_path):
    pidfile = tmp_path / "pid"
    trace = tmp_path / "run.jsonl"
    env = dict(os.environ, ASYNCFC_TEST_PIDFILE=str(pidfile), LITELLM_LOCAL_MODEL_COST_MAP="True")
    proc = subprocess.Popen(
        [sys.executable, "-m", "asyncfc_cli.cli", "run", str(DATA / "async_hang.toml"), "--trace", str(trace),
         "--quiet"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the tool never started"
            time.sleep(0.05)
        tool_pid = int(pidfile.read_text())
        assert not _gone(tool_pid)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    deadline = time.monotonic() + 5
    while not _gone(tool_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(tool_pid), "the tool's process outlived the run"
    data = read_trace(trace)
    assert data.summary is not None and data.summary["status"] == "interrupted"
    ends = [e for e in data.events if e["type"] == "tool_end"]
    assert [e["status"] for e in ends] == ["cancelled"]
    assert out.decode() == ""
