"""Ctrl-C or SIGTERM in the first seconds of ``asyncfc run`` (imports, the
LiteLLM import, the simulated model's server, the header): the run leaves
a trace that reads, or none, and ``asyncfc trace latest`` never breaks
(docs/reliability.md).

Every run is a real process of the installed ``asyncfc`` command; they
start together and each gets its signal at its own moment, so the moments
fall across the whole start-up whatever the machine's speed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asyncfc_cli.trace import read_trace
from conftest import invoke

REPO = Path(__file__).parent.parent
TASK = REPO / "tasks" / "quickstart.toml"
COMMAND = Path(sys.executable).parent / "asyncfc"  # the console script, as a user runs it

# (signal, when): seconds after the start, or "header": as soon as the trace file has its header.
MOMENTS = [(signal.SIGINT, 0.3), (signal.SIGTERM, 0.3), (signal.SIGINT, 1.5), (signal.SIGTERM, 1.5),
           (signal.SIGINT, 3.0), (signal.SIGTERM, 3.0), (signal.SIGINT, "header"), (signal.SIGTERM, "header")]


def before_asyncfc_code(err: bytes) -> bool:
    """Python's KeyboardInterrupt traceback with no frame of asyncfc's code in it:
    only the console script (its import of the entry module) and the import system."""
    lines = err.decode(errors="replace").splitlines()
    files = [line.split('"')[1] for line in lines if line.startswith('  File "')]
    return (bool(lines) and lines[0].startswith("Traceback") and lines[-1] == "KeyboardInterrupt"
            and bool(files) and files[0] == str(COMMAND)
            and all(f == str(COMMAND) or f.startswith("<frozen ") for f in files))


def header_written(cwd: Path) -> bool:
    return any(p.stat().st_size > 0 for p in (cwd / ".asyncfc" / "runs").glob("*.jsonl"))


@pytest.mark.skipif(not COMMAND.exists(), reason="the asyncfc console script is not installed")
def test_signals_during_start_leave_a_readable_trace_or_none(tmp_path):
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    procs = []
    for i, (signum, when) in enumerate(MOMENTS):
        cwd = tmp_path / f"run{i}"
        cwd.mkdir()
        # The task is the repository's: its runs would go to the repository's .asyncfc (the project's).
        proc = subprocess.Popen([str(COMMAND), "run", str(TASK), "-q"], cwd=cwd,
                                env={**env, "ASYNCFC_RUNS_DIR": str(cwd / ".asyncfc" / "runs")},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append((proc, signum, when, cwd))
    start = time.monotonic()
    pending = list(procs)
    try:
        while pending and time.monotonic() - start < 300:  # minutes on a loaded machine
            for item in list(pending):
                proc, signum, when, cwd = item
                due = header_written(cwd) if when == "header" else time.monotonic() - start >= when
                if due or proc.poll() is not None:
                    if proc.poll() is None:
                        proc.send_signal(signum)
                    pending.remove(item)
            time.sleep(0.01)
        results = [(proc.communicate(timeout=120), proc.returncode, signum, when, cwd)
                   for proc, signum, when, cwd in procs]
    finally:
        for proc, *_ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for (out, err), code, signum, when, cwd in results:
        label = f"{signal.Signals(signum).name} at {when}"
        # On a loaded machine the earliest moments can fall before any of asyncfc runs:
        # inside the interpreter's own start (CPython's "Fatal Python error", exit 1), or
        # while the console script imports asyncfc's entry module (Python's traceback of
        # that one line, then the signal's own exit). Nothing asyncfc could catch, and no
        # trace can exist yet.
        in_interpreter_start = code == 1 and b"Fatal Python error: init_import_site" in err
        in_console_script = code == -signal.SIGINT and before_asyncfc_code(err)
        if in_interpreter_start or in_console_script:
            assert not (cwd / ".asyncfc").exists(), label
        else:
            # 130 once asyncfc handles it; killed by the signal itself only before Python set up its handlers.
            assert code in (130, -signal.SIGTERM, -signal.SIGINT), (label, code, err)
            assert b"Traceback" not in err, (label, err.decode())
        traces = sorted((cwd / ".asyncfc" / "runs").glob("*.jsonl"))
        if when == "header":
            assert traces, label
        for path in traces:
            data = read_trace(path)  # raises if it is not a trace
            assert not data.problems, (label, data.problems)
            assert path.read_bytes().startswith(b'{"type": "header"'), label
        old = Path.cwd()
        try:
            os.chdir(cwd)
            shown = invoke("trace", "latest", catch_exceptions=False)
        finally:
            os.chdir(old)
        if traces:
            assert shown.exit_code == 0, (label, shown.output)
        else:
            assert shown.exit_code == 2 and "no traces in" in shown.stderr, (label, shown.output)


# --- an interrupt Python drops ------------------------------------------------------------------
# A Ctrl-C that lands inside a callback the interpreter runs on its own (an
# import's module-lock callback, a finalizer) is printed and dropped by Python
# ("Exception ignored in ..."): at load 30, a run went on to the end and exited
# 0 after a Ctrl-C at 0.3 s. A finalizer that raises KeyboardInterrupt is
# dropped the same way, at a moment the test chooses.

DROP_DURING_IMPORTS = """
import sys
from asyncfc_cli import __main__ as entry, interrupts

class Dropped:
    def __del__(self):
        raise KeyboardInterrupt  # Python cannot raise from a finalizer: it drops it

watch = interrupts.watch
def watch_then_drop():
    watch()
    Dropped()  # gone at once: dropped while the command starts, as inside an import
interrupts.watch = watch_then_drop
sys.argv = ["asyncfc", "run", sys.argv[1], "-q"]
entry.main()
"""


def test_a_ctrl_c_python_drops_during_the_imports_still_exits_130(tmp_path):
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    proc = subprocess.run([sys.executable, "-c", DROP_DURING_IMPORTS, str(TASK)], cwd=tmp_path, env=env,
                          capture_output=True, timeout=300)
    assert proc.returncode == 130, proc.stderr.decode()
    assert b"Traceback" not in proc.stderr and b"Exception ignored" not in proc.stderr
    assert proc.stdout == b""  # no answer: the run never started
    assert not list(tmp_path.glob(".asyncfc/runs/*.jsonl"))


def test_a_ctrl_c_python_drops_before_the_run_interrupts_the_run(tmp_path, monkeypatch):
    from asyncfc_cli import interrupts

    class Dropped:
        def __del__(self):
            raise KeyboardInterrupt

    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # put back after the test
    monkeypatch.chdir(tmp_path)
    interrupts.watch()
    Dropped()  # dropped after the imports, before the run's own handler is in place
    trace = tmp_path / "t.jsonl"
    result = invoke("run", str(TASK), "--trace", str(trace), "-q", catch_exceptions=False)
    assert result.exit_code == 130, result.output
    assert result.stdout == ""  # no answer
    # Cancelled as it began, like a Ctrl-C at that moment: the trace is closed as interrupted.
    data = read_trace(trace)
    assert not data.problems and data.summary is not None and data.summary["status"] == "interrupted"
    assert all(s.status == "cancelled" for s in data.spans("model")) and not data.spans("tool")
    assert not interrupts.take()  # honoured once, not again by the next run
