"""Processes left behind, threads starved, the loop blocked (docs/reliability.md).

Each mechanism of asyncfc_cli/tools/processes.py is tested on its own: the sweep
by token with the subreaper (a double-forked daemon), the parent-death signal
(a command whose asyncfc is killed without a guard), the guard (kill -9 of a
whole ``asyncfc run``). Then the thread pool after 64 hung sync tools, and an
``async def`` tool that blocks the loop.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from asyncfc_cli.trace import read_trace
from conftest import invoke, process_gone, wait_until

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SPAWNER = DATA / "spawner.py"
ENV = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
# How long a fresh asyncfc process (it imports LiteLLM) may take to reach its tool:
# seconds on an idle machine, minutes at load 10 or more. Only a failure waits it out.
STARTUP = 240


def reaped(pid: int) -> bool:
    """Gone entirely: not even a zombie waiting for its parent."""
    return not Path(f"/proc/{pid}").exists()


def kill_quietly(*pids: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


CHECK = ("import sys; from pathlib import Path; pid = Path(sys.argv[1]).read_text().split()[0]; "
         "stat = Path('/proc/%s/stat' % pid); state = stat.read_text().rsplit(')', 1)[1].split()[0] "
         "if stat.exists() else 'gone'; "
         "print('gone' if state == 'gone' else 'zombie' if state in 'ZX' else 'alive')")


def spawner_task(tmp_path: Path, mode: str, pidfile: Path, timeout: float = 30) -> Path:
    """One call of the spawner; then (if it returns) a call that reports whether
    the first call's daemon is still alive, while the run goes on."""
    (tmp_path / "agents.toml").write_text("")
    task = tmp_path / "task.toml"
    task.write_text(textwrap.dedent(f"""\
        prompt = "p"
        [agent]
        model = "sim"
        mode = "sync"
        tools = ["spawn", "check"]
        [tools.spawn]
        description = "Leave processes behind."
        command = [{json.dumps(PY)}, {json.dumps(str(SPAWNER))}, "{{pidfile}}", "{mode}"]
        timeout = {timeout}
        [tools.spawn.params]
        pidfile = {{ type = "string", description = "where the pids go" }}
        [tools.check]
        description = "Is the daemon alive?"
        command = [{json.dumps(PY)}, "-c", {json.dumps(CHECK)}, {json.dumps(str(pidfile))}]
        [sim]
        decode_tps = 5000
        ttft = 0
        [[sim.steps]]
        id = "s"
        tool = "spawn"
        args = {{ pidfile = {json.dumps(str(pidfile))} }}
        [[sim.steps]]
        id = "c"
        tool = "check"
        needs = ["s"]
        [sim.final]
        answer = "{{c.stdout}}"
        """))
    return task


def test_a_double_forked_daemon_is_adopted_then_killed_and_reaped_when_its_call_ends(tmp_path):
    pidfile = tmp_path / "daemon.pid"
    task = spawner_task(tmp_path, "escape", pidfile)
    # Its own process, as the asyncfc command: only then is asyncfc a subreaper.
    proc = subprocess.Popen([PY, "-m", "asyncfc_cli.cli", "run", str(task), "--json", "--trace", str(tmp_path / "t.jsonl")],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=2 * STARTUP)
    daemon, adopted_by = map(int, pidfile.read_text().split())
    try:
        assert proc.returncode == 0, err
        report = json.loads(out)
        assert report["tool_calls"][0]["status"] == "ok"
        # The subreaper: once orphaned, the daemon's parent was asyncfc, not init.
        assert adopted_by == proc.pid
        # The sweep and the reaping: it left the process group but carried the
        # call's token, so by the next call it was killed and reaped (not even a
        # zombie), while the run went on.
        assert report["answer"].strip() == "gone"
    finally:
        kill_quietly(daemon)


def test_in_another_program_the_sweep_still_kills_the_daemon_without_adopting_it(tmp_path):
    # In process (CliRunner): asyncfc must not make its host a subreaper.
    pidfile = tmp_path / "daemon.pid"
    task = spawner_task(tmp_path, "escape", pidfile)
    result = invoke("run", str(task), "--json", "--trace", str(tmp_path / "t.jsonl"),
                    catch_exceptions=False)
    daemon, adopted_by = map(int, pidfile.read_text().split())
    try:
        assert result.exit_code == 0, result.output
        assert adopted_by != os.getpid()
        assert json.loads(result.stdout)["answer"].strip() in ("gone", "zombie")  # killed; init reaps it
    finally:
        kill_quietly(daemon)


PDEATHSIG_SCRIPT = """
import sys, trio
from pathlib import Path
from asyncfc_cli.tools import processes
from asyncfc_cli.tools import build_tool

if sys.argv[2] == "preexec":
    processes._SETPRIV = None  # as on a machine without util-linux's setpriv
else:
    assert processes._setpriv(), "this machine has no setpriv with --pdeathsig"

tool = build_tool("hang", {"description": "hang", "command": [sys.executable, "-c",
    "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)", sys.argv[1]]},
    Path("."))
# No open_tools(): no guard process. Only the parent-death signal can stop the command.
trio.run(tool.invoke, {})
"""


@pytest.mark.parametrize("how", ["setpriv", "preexec"])
def test_the_parent_death_signal_kills_the_command_when_asyncfc_is_killed(tmp_path, how):
    pidfile = tmp_path / "pid"
    proc = subprocess.Popen([PY, "-c", PDEATHSIG_SCRIPT, str(pidfile), how], cwd=REPO, env=ENV)
    try:
        assert wait_until(lambda: pidfile.exists() and pidfile.read_text(), STARTUP), "the command never started"
        command = int(pidfile.read_text())
        assert not process_gone(command)
        proc.kill()
        proc.wait()
        assert wait_until(lambda: process_gone(command), 60), "the command outlived asyncfc"
    finally:
        if proc.poll() is None:
            proc.kill()
        if pidfile.exists():
            kill_quietly(int(pidfile.read_text()))


def test_kill_9_of_asyncfc_leaves_no_tool_process_behind(tmp_path):
    pidfile = tmp_path / "pids"
    task = spawner_task(tmp_path, "hang", pidfile, timeout=100)
    proc = subprocess.Popen([PY, "-m", "asyncfc_cli.cli", "run", str(task), "-q", "--trace", str(tmp_path / "t.jsonl")],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pids: list[int] = []
    try:
        assert wait_until(lambda: pidfile.exists(), STARTUP), proc.communicate(timeout=5) if proc.poll() is not None else "no pids"
        pids = [int(p) for p in pidfile.read_text().split()]
        command, child, daemon = pids
        assert not any(process_gone(p) for p in pids)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        # The command by its parent-death signal; its child (same group) and the
        # daemon (its own session) by the run's guard process.
        assert wait_until(lambda: all(process_gone(p) for p in pids), 60), \
            [p for p in pids if not process_gone(p)]
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_quietly(*pids)


# --- runs of one process ---------------------------------------------------------------------


def test_two_runs_of_one_trio_run_have_their_own_token_and_sweep():
    """``asyncfc batch`` runs every run in one trio.run: the run that ends first must
    kill only its own processes (the guard's sweep), and a run after it in the same
    task starts with a token of its own (tests/test_isolation.py has the whole runs)."""
    import trio

    from asyncfc_cli.tools import processes

    sleeper = [PY, "-c", "import time; time.sleep(60)"]

    async def run(name: str, first_done: trio.Event, seen: dict) -> None:
        async with processes.guard():
            child = processes.spawn(sleeper, str(REPO), dict(os.environ))
            seen[name] = (processes.run_token(), child)
            if name == "first":
                return  # its guard sweeps its token now, while the second run's command runs
            await first_done.wait()
            seen["second alive after the first ended"] = child.popen.poll() is None
            processes.kill_group(child.pid)
            seen["second exit"] = await child.wait()

    async def main() -> dict:
        seen: dict = {}
        first_done = trio.Event()

        async def first() -> None:
            await run("first", first_done, seen)
            first_done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "second", first_done, seen)
            nursery.start_soon(first)
        async with processes.guard():  # a third run, later, in the same task
            seen["third"] = processes.run_token()
        for _, child in (seen["first"], seen["second"]):
            for stream in (child.stdout, child.stderr):
                await stream.aclose()
        return seen

    seen = trio.run(main)
    first_token, first_child = seen["first"]
    assert first_child.popen.wait(timeout=10) == -signal.SIGKILL  # swept when its run ended
    assert seen["second alive after the first ended"] and seen["second exit"] == -signal.SIGKILL
    assert len({first_token, seen["second"][0], seen["third"]}) == 3


def test_a_sweep_never_reaps_a_command_its_call_is_waiting_for():
    """A sweep kills every holder of the token, but reaping the command itself would
    take its exit status from the task waiting for it, which then read exit 0."""
    import trio

    from asyncfc_cli.tools import processes

    async def main() -> int:
        child = processes.spawn([PY, "-c", "import time; time.sleep(60)"], str(REPO), dict(os.environ))
        try:
            async with trio.open_nursery() as nursery:
                code: list[int] = []

                async def wait() -> None:
                    code.append(await child.wait())

                nursery.start_soon(wait)
                await trio.sleep(0.05)
                assert processes.sweep(child.token) == [child.pid]
            return code[0]
        finally:
            for stream in (child.stdout, child.stderr):
                await stream.aclose()

    assert trio.run(main) == -signal.SIGKILL


# --- threads ----------------------------------------------------------------------------------


THREAD_TOOLS = '''
import time

def hang() -> str:
    """Block the worker thread far longer than the timeout."""
    time.sleep(8)
    return "late"

def quick(text: str) -> str:
    """Return at once.

    Args:
        text: anything
    """
    return text
'''


def test_hung_sync_tools_do_not_starve_later_ones(tmp_path):
    (tmp_path / "threadtools.py").write_text(THREAD_TOOLS)
    (tmp_path / "agents.toml").write_text("")
    hung = 70  # more than the 64 live worker threads allowed at once
    steps = "".join(f'[[sim.steps]]\nid = "h{i}"\ntool = "hang"\n\n' for i in range(hung))
    (tmp_path / "task.toml").write_text(textwrap.dedent("""\
        prompt = "p"
        [agent]
        model = "sim"
        tools = ["hang", "quick"]
        mode = "async"
        max_concurrency = 100
        [tools.hang]
        python = "threadtools:hang"
        timeout = 0.3
        [tools.quick]
        python = "threadtools:quick"
        timeout = 5
        [sim]
        decode_tps = 5000
        ttft = 0
        """) + steps + textwrap.dedent(f"""\
        [[sim.steps]]
        id = "after"
        tool = "quick"
        args = {{ text = "still runs" }}
        needs = ["h{hung - 1}"]

        [[sim.steps]]
        id = "again"
        tool = "quick"
        args = {{ text = "and again" }}
        needs = ["after"]

        [sim.final]
        answer = "{{after}} / {{again}}"
        """))
    # A subprocess: the abandoned threads go with it.
    proc = subprocess.run([PY, "-m", "asyncfc_cli.cli", "run", "task.toml", "--json", "--trace", "t.jsonl"],
                          cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=2 * STARTUP)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    statuses = [c["status"] for c in report["tool_calls"] if c["tool"] == "hang"]
    assert statuses == ["timeout"] * hung
    quick = [c for c in report["tool_calls"] if c["tool"] == "quick"]
    assert [c["status"] for c in quick] == ["ok", "ok"], quick
    assert report["answer"] == "still runs / and again"


# --- a blocking async def -------------------------------------------------------------------------


BLOCKING_TOOLS = '''
import time
from pathlib import Path

async def stuck(seconds: float, marker: str = "") -> str:
    """An async tool that blocks the loop (the mistake this test is about).

    Args:
        seconds: how long to block
        marker: a file to create first
    """
    if marker:
        Path(marker).write_text("started")
    time.sleep(seconds)
    return "finished"
'''


def blocking_task(tmp_path: Path, seconds: float, timeout: float | None, marker: str = "") -> Path:
    module = f"blocktools_{uuid.uuid4().hex[:8]}"  # in-process runs share sys.modules
    (tmp_path / f"{module}.py").write_text(BLOCKING_TOOLS)
    (tmp_path / "agents.toml").write_text("")
    task = tmp_path / "task.toml"
    task.write_text(textwrap.dedent(f"""\
        prompt = "p"
        [agent]
        model = "sim"
        tools = ["stuck"]
        mode = "sync"
        [tools.stuck]
        python = "{module}:stuck"
        {f"timeout = {timeout}" if timeout else ""}
        [sim]
        decode_tps = 5000
        ttft = 0
        [[sim.steps]]
        id = "s"
        tool = "stuck"
        args = {{ seconds = {seconds}, marker = {json.dumps(marker)} }}
        [sim.final]
        answer = "got {{s}}"
        """))
    return task


def test_a_blocking_async_tool_is_reported_to_the_user_the_model_and_the_trace(tmp_path):
    task = blocking_task(tmp_path, 1.6, timeout=0.5)
    trace = tmp_path / "t.jsonl"
    result = invoke("run", str(task), "--json", "--trace", str(trace), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (call,) = report["tool_calls"]
    assert call["status"] == "error"
    blocked_for = re.search(r"blocked the event loop for (\d+\.\d)s", call["error"])
    assert blocked_for and float(blocked_for.group(1)) >= 1.5, call["error"]  # 1.6 s, or more on a loaded machine
    assert "past its 0.5s timeout" in call["error"]
    # The user was told while it happened.
    assert "tool 'stuck' has blocked the event loop" in result.stderr
    assert "make it a plain def" in result.stderr
    blocked = read_trace(trace).of_type("tool_blocked")
    assert len(blocked) == 1 and blocked[0]["tool"] == "stuck" and blocked[0]["seconds"] >= 1.5
    assert blocked[0]["call_id"] == call["id"]


def test_a_short_block_within_the_timeout_keeps_its_result(tmp_path, monkeypatch):
    # 0.7 s is a block (0.5 s or more) but short of the warning; on a loaded machine
    # the sleep can overrun the 1 s WARN_AFTER, so the warning waits longer here.
    monkeypatch.setattr("asyncfc_cli.tools.blocking.WARN_AFTER", 3.0)
    task = blocking_task(tmp_path, 0.7, timeout=5)
    trace = tmp_path / "t.jsonl"
    result = invoke("run", str(task), "--json", "--trace", str(trace), catch_exceptions=False)
    report = json.loads(result.stdout)
    assert report["answer"] == "got finished"
    assert len(read_trace(trace).of_type("tool_blocked")) == 1  # recorded, not held against the model
    assert "has blocked the event loop" not in result.stderr  # under WARN_AFTER: no warning


def test_ctrl_c_during_a_blocking_async_tool_is_explained_then_honoured(tmp_path):
    marker = tmp_path / "started"
    task = blocking_task(tmp_path, 3, timeout=None, marker=str(marker))
    proc = subprocess.Popen([PY, "-m", "asyncfc_cli.cli", "run", str(task), "-q", "--trace", str(tmp_path / "t.jsonl")],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(marker.exists, STARTUP), "the tool never started"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "tool 'stuck' has blocked the event loop" in err
    assert "Ctrl-C" in err
    data = read_trace(tmp_path / "t.jsonl")
    assert data.summary["status"] == "interrupted"
    assert data.of_type("tool_blocked")
