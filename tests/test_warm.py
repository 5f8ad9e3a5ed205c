"""The warm start (docs/warm-start.md), through the real ``asyncfc`` command.

Each test has its own XDG_RUNTIME_DIR, so its worker is its own; the tests
that only compare outputs share one worker per module (starting one costs
LiteLLM's import). Whether a command went warm is read from the worker's
own count of what it served, not inferred from timing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from asyncfc_cli.trace import read_trace
from asyncfc_cli.warm import policy

from conftest import process_gone, wait_until

PY = sys.executable
ASYNCFC = str(Path(PY).with_name("asyncfc"))
REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
MCP_SERVER = Path(__file__).parent / "mcp_server.py"
START = 300  # seconds a worker may take to import LiteLLM on a loaded machine


def warm_env(base: Path, **extra: str) -> dict[str, str]:
    xdg = base / "xdg"
    xdg.mkdir(mode=0o700, exist_ok=True)
    os.chmod(xdg, 0o700)
    return {**os.environ, "XDG_RUNTIME_DIR": str(xdg), "ASYNCFC_WARM": "1", "ASYNCFC_WARM_IDLE": "600", **extra}


def asyncfc(*args: str, env: dict[str, str], cwd: Path, timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([ASYNCFC, *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def status(env: dict[str, str]) -> dict:
    return json.loads(asyncfc("worker", "status", "--json", env=env, cwd=Path("/")).stdout)


def start_worker(env: dict[str, str]) -> dict:
    done = asyncfc("worker", "start", "--json", "--timeout", str(START), env=env, cwd=Path("/"), timeout=START + 30)
    data = json.loads(done.stdout)
    assert done.returncode == 0 and data["serves_this_environment"], (done.stdout, done.stderr)
    return data


def stop_worker(env: dict[str, str]) -> None:
    data = status(env)
    asyncfc("worker", "stop", env=env, cwd=Path("/"))
    if data.get("running"):
        if not wait_until(lambda: process_gone(data["pid"]), 30):
            os.kill(data["pid"], signal.SIGKILL)
            pytest.fail("the worker did not stop")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    env = warm_env(tmp_path_factory.mktemp("warm"))
    start_worker(env)
    yield env
    stop_worker(env)


@pytest.fixture
def own(tmp_path):
    env = warm_env(tmp_path)
    yield env
    stop_worker(env)


def served(env: dict[str, str]) -> int:
    return status(env)["served"]


def cold(env: dict[str, str]) -> dict[str, str]:
    return {**env, "ASYNCFC_WARM": "0"}


# --- the policy, on its own --------------------------------------------------------------


@pytest.mark.parametrize("argv, warm", [
    (["asyncfc", "run", "t.toml"], True),
    (["asyncfc", "batch", "t.toml", "--json"], True),
    (["asyncfc", "bench", "--no-prefix-cache", "dag"], True),
    (["asyncfc", "validate", "agents.toml"], True),
    (["asyncfc", "sim", "serve", "t.toml"], True),
    (["asyncfc", "sim", "--help"], False),
    (["asyncfc", "run", "t.toml", "-h"], False),
    (["asyncfc", "--version"], False),
    (["asyncfc", "trace", "list"], False),
    (["asyncfc", "worker", "status"], False),
    (["asyncfc"], False),
    (["asyncfc", "run", "-a", "bot", "--", "--help"], True),  # after --, a prompt
])
def test_which_commands_go_warm(argv, warm):
    assert policy.wants_warm(argv, {}) is warm
    assert policy.wants_warm(argv, {"ASYNCFC_WARM": "0"}) is False
    assert policy.wants_warm(argv, {"ASYNCFC_WARM": "off", "X": "1"}) is False


def test_the_cold_flag_is_taken_out_anywhere_before_a_double_dash():
    assert policy.strip_cold_flag(["asyncfc", "--cold", "run", "t", "--cold"]) == (["asyncfc", "run", "t"], True)
    assert policy.strip_cold_flag(["asyncfc", "run", "-a", "b", "--", "--cold"]) == \
        (["asyncfc", "run", "-a", "b", "--", "--cold"], False)


# --- the same outputs, exit codes, traces and files -------------------------------------------


def inheritance_project(base: Path) -> Path:
    """A task whose tools report what they inherited: the working directory, the
    umask, a variable, and the mode of a file they create (in-process and as a command)."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "inherit.py").write_text(textwrap.dedent("""\
        import os
        from pathlib import Path

        def inherited(name: str) -> str:
            \"\"\"What this process inherited.\"\"\"
            mask = os.umask(0)
            os.umask(mask)
            Path(name).write_text("x")
            return f"{os.getcwd()} {oct(mask)} {os.environ.get('WARM_PROBE')} {oct(os.stat(name).st_mode & 0o777)}"
        """))
    command = ("import os, sys, pathlib; m = os.umask(0); os.umask(m); p = pathlib.Path(sys.argv[1]); "
               "p.write_text('y'); print(os.getcwd(), oct(m), os.environ.get('WARM_PROBE'), "
               "oct(p.stat().st_mode & 0o777), sys.stdin.read() == '')")
    (base / "agents.toml").write_text(textwrap.dedent(f"""\
        [tools.inherited]
        python = "inherit:inherited"
        [tools.shell]
        description = "What a command inherits."
        command = [{json.dumps(PY)}, "-c", {json.dumps(command)}, "{{name}}"]
        [tools.shell.params]
        name = {{ type = "string", description = "a file to create" }}
        [agents.probe]
        model = "sim"
        tools = ["inherited", "shell"]
        mode = "sync"
        """))
    task = base / "task.toml"
    task.write_text(textwrap.dedent("""\
        agent = "probe"
        prompt = "What did you inherit?"
        [expect]
        contains = ["inherited"]
        [sim]
        decode_tps = 5000
        ttft = 0
        [[sim.steps]]
        id = "a"
        tool = "inherited"
        args = { name = "made-in-process" }
        [[sim.steps]]
        id = "b"
        tool = "shell"
        args = { name = "made-by-command" }
        [sim.final]
        answer = "inherited: {a} | {b.stdout}"
        """))
    return task


def comparable_report(text: str, base: Path) -> dict:
    report = json.loads(text.replace(str(base), "BASE"))
    for key in ("wall", "trace"):
        report.pop(key)
    for call in report["tool_calls"]:
        for key in ("id", "start", "end", "duration"):  # call ids are random
            call.pop(key)
    report.pop("usage")  # token counts of the simulated model include its timing notes
    report.pop("messages")
    return report


def comparable_trace(path: Path) -> tuple:
    data = read_trace(path)
    header = {k: str(v).replace(str(path.parent), "BASE") for k, v in data.header.items()
              if k not in ("run_id", "t", "started_at")}
    # model_progress comes every PROGRESS_INTERVAL of decoding: how many there are
    # is a matter of speed (a warm first request is faster), not of what happened.
    return header, [e["type"] for e in data.events if e["type"] != "model_progress"], data.summary["status"]


def both(args: list[str], env: dict[str, str], cwd: Path, **kw) -> tuple[subprocess.CompletedProcess, ...]:
    """``args`` cold, then warm; the warm one must have been served by the worker."""
    before = served(env)
    cold_run = asyncfc(*args, env=cold(env), cwd=cwd, **kw)
    assert served(env) == before, "ASYNCFC_WARM=0 went to the worker"
    warm_run = asyncfc(*args, env=env, cwd=cwd, **kw)
    assert served(env) == before + 1, ("not served warm", warm_run.stderr)
    return cold_run, warm_run


def test_run_gives_the_same_answer_exit_code_trace_and_files_cold_and_warm(shared, tmp_path):
    outputs = {}
    for how in ("cold", "warm"):
        base = tmp_path / how
        task = inheritance_project(base)
        env = {**(cold(shared) if how == "cold" else shared), "WARM_PROBE": "probe-value"}
        before = served(shared)
        # A umask and a directory of its own: the child must take both from its caller.
        done = subprocess.run(["sh", "-c", 'umask 027 && exec "$@"', "sh", ASYNCFC, "run", str(task), "--json",
                               "--trace", str(base / "t.jsonl")], env=env, cwd=base, capture_output=True,
                              text=True, timeout=180, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        assert served(shared) == before + (how == "warm")
        report = comparable_report(done.stdout, base)
        answer = report.pop("answer")
        # The command tool gets only the variables asyncfc passes on (WARM_PROBE is not one).
        assert answer.strip() == "inherited: BASE 0o27 probe-value 0o640 | BASE 0o27 None 0o640 True"
        files = sorted((p.name, oct(p.stat().st_mode & 0o777)) for p in base.iterdir() if p.name.startswith("made"))
        outputs[how] = (report, comparable_trace(base / "t.jsonl"), files, done.stderr.count("\n"))
    assert outputs["cold"] == outputs["warm"]


@pytest.mark.parametrize("model", ["sim", "sim:anthropic", "sim:gemini", "sim:responses"])
def test_what_the_first_request_loads_is_loaded_ahead_and_every_wire_format_runs_warm(shared, tmp_path, model):
    # The worker rehearsed one request per wire format in a child (rehearsal.py)
    # and loaded what it imported: a child forked after that must still stream
    # on every route as a cold process does.
    first = status(shared)["first_request"]
    assert first["error"] is None and first["modules"] > 0, first
    human = asyncfc("worker", "status", env=shared, cwd=tmp_path).stdout
    assert f"{first['modules']} modules" in human and "first model request: rehearsed" in human
    answers = {}
    for how, env in (("cold", cold(shared)), ("warm", shared)):
        before = served(shared)
        done = asyncfc("run", REPO / "tasks" / "quickstart.toml", "--model", model, "--json",
                       "--trace", tmp_path / f"{how}.jsonl", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert served(shared) == before + (how == "warm")
        report = json.loads(done.stdout)
        answers[how] = (report["answer"], [(c["tool"], c["status"]) for c in report["tool_calls"]])
    assert answers["cold"] == answers["warm"]


def test_a_rehearsal_that_does_not_report_in_time_is_killed_and_said(tmp_path):
    # The worker serves on without what it would have learned; nothing is left behind.
    code = textwrap.dedent("""
        import os
        from asyncfc_cli.warm import rehearsal
        learned = rehearsal.rehearse("asyncfc_cli", deadline=0.05)
        try:
            os.waitpid(-1, os.WNOHANG)
            left = "a child is left"
        except ChildProcessError:
            left = "no child"
        print(learned.error, "|", learned.modules, "|", left, "|", len(os.listdir("/proc/self/task")))
    """)
    done = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert done.stdout.strip() == "the rehearsal did not report within 0.05 s | [] | no child | 1", done.stderr


def test_exit_codes_and_messages_are_the_same_cold_and_warm(shared, tmp_path):
    cases = [
        (["run", DATA / "ok.toml", "-q"], 0),
        (["run", DATA / "unmet.toml", "-q"], 3),
        (["run", tmp_path / "missing.toml"], 2),
        (["run", DATA / "ok.toml", "--no-such-option", "--json"], 2),
        (["validate", REPO / "agents.toml", DATA / "ok.toml", DATA / "bad_spec.toml"], 2),
        (["validate", REPO / "agents.toml", "--json"], 0),
    ]
    for args, code in cases:
        extra = ["--trace", str(tmp_path / "t.jsonl")] if args[0] == "run" else []
        cold_run, warm_run = both([*map(str, args), *extra], shared, tmp_path)
        assert cold_run.returncode == warm_run.returncode == code, (args, cold_run.stderr, warm_run.stderr)
        clean = lambda text: re.sub(r"\d+\.\d+s", "Ns", text)  # noqa: E731
        assert clean(cold_run.stdout) == clean(warm_run.stdout), args
        assert clean(cold_run.stderr) == clean(warm_run.stderr), args


def test_a_missing_key_is_the_same_message_warm(shared, tmp_path):
    (tmp_path / "agents.toml").write_text('[agents.a]\nmodel = "openai/gpt-4o-mini"\n')
    (tmp_path / "task.toml").write_text('agent = "a"\nprompt = "hi"\n')
    env = {k: v for k, v in shared.items() if k != "OPENAI_API_KEY"}
    before = served(env)
    cold_run = asyncfc("run", "task.toml", env=cold(env), cwd=tmp_path)
    warm_run = asyncfc("run", "task.toml", env=env, cwd=tmp_path)
    assert served(env) == before + 1
    assert cold_run.returncode == warm_run.returncode == 2
    assert cold_run.stderr == warm_run.stderr and "OPENAI_API_KEY is not set" in warm_run.stderr


def test_batch_and_bench_give_the_same_results_cold_and_warm(shared, tmp_path):
    reports = {}
    for how in ("cold", "warm"):
        before = served(shared)
        done = asyncfc("batch", DATA / "ok.toml", "--repeat", "2", "--json", "--out", tmp_path / how,
                       env=cold(shared) if how == "cold" else shared, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert served(shared) == before + (how == "warm")
        report = json.loads(done.stdout)
        reports[how] = (report["status"], report["counts"],
                        sorted((r["label"], r["status"], r["answer"], r["requests"]) for r in report["runs"]),
                        sorted(p.name for p in (tmp_path / how).iterdir()))
    assert reports["cold"] == reports["warm"]
    # A deterministic benchmark (the simulated model under a mock clock): identical figures.
    args = ["bench", "dag", "--transport", "mock", "--seeds", "1", "--width", "2", "--depth", "2", "--json", "-q"]
    cold_run, warm_run = both(args, shared, tmp_path)
    assert cold_run.returncode == warm_run.returncode == 0, warm_run.stderr
    assert without_overheads(json.loads(cold_run.stdout)) == without_overheads(json.loads(warm_run.stdout))


def without_overheads(value):
    """A benchmark's document without the executor overheads, the one real-clock figure."""
    if isinstance(value, dict):
        return {k: without_overheads(v) for k, v in value.items() if "overhead" not in k}
    if isinstance(value, list):
        return [without_overheads(v) for v in value]
    return value


def test_sim_serve_starts_and_stops_the_same_cold_and_warm(shared, tmp_path):
    lines = {}
    for how in ("cold", "warm"):
        before = served(shared)
        proc = subprocess.Popen([ASYNCFC, "sim", "serve", str(DATA / "protocols" / "task.toml"), "--port", "0"],
                                env=cold(shared) if how == "cold" else shared, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        try:
            line = proc.stderr.readline()
            assert "simulated model" in line, line
            assert served(shared) == before + (how == "warm")
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        lines[how] = (re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line), out, err, proc.returncode)
    assert lines["cold"] == lines["warm"]


def test_the_live_view_draws_on_the_callers_terminal(shared, tmp_path):
    """stdout and stderr are a terminal: the warm child sees it (Rich draws its live
    timeline with cursor movements), sized like the caller's."""
    import pty

    outputs = {}
    for how in ("cold", "warm"):
        main, secondary = pty.openpty()
        import fcntl
        import struct
        import termios

        fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 97, 0, 0))
        env = {**(cold(shared) if how == "cold" else shared), "TERM": "xterm-256color"}
        env.pop("CI", None)
        env.pop("NO_COLOR", None)
        proc = subprocess.Popen([ASYNCFC, "run", str(DATA / "ok.toml"), "--trace", str(tmp_path / f"{how}.jsonl")],
                                env=env, cwd=tmp_path, stdin=secondary, stdout=secondary, stderr=secondary,
                                start_new_session=True)
        os.close(secondary)
        chunks = []
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=120)
        os.close(main)
        outputs[how] = (proc.returncode, b"".join(chunks))
    for how, (code, text) in outputs.items():
        assert code == 0, text
        assert b"\x1b[" in text, how  # colour and cursor control: a terminal, seen as one
        assert b"The echo said hello." in text
    # The live view is laid out for 97 columns both ways: no line of it is wider.
    widths = {how: max(len(re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", line).decode("utf-8", "replace"))
                       for line in text.splitlines()) for how, (_, text) in outputs.items()}
    assert widths["warm"] <= 97 and widths["cold"] <= 97


# --- signals ---------------------------------------------------------------------------------


def slow_task(base: Path, marker: Path, mcp: bool = False) -> Path:
    """A command tool that leaves a daemon behind and hangs (and, with ``mcp``, an
    MCP server busy in a slow call), started in parallel."""
    base.mkdir(parents=True, exist_ok=True)
    mcp_table = f"[tools.srv]\nmcp = {{ command = [{json.dumps(PY)}, {json.dumps(str(MCP_SERVER))}] }}\n" if mcp else ""
    steps = [f"""\
        [[sim.steps]]
        id = "h"
        tool = "hang"
        args = {{ pidfile = {json.dumps(str(marker))} }}
        """]
    if mcp:
        steps.append(f"""\
        [[sim.steps]]
        id = "s"
        tool = "slow"
        args = {{ seconds = 120, marker = {json.dumps(str(marker) + ".mcp")} }}
        """)
    task = base / "task.toml"
    task.write_text(textwrap.dedent(f"""\
        prompt = "p"
        [agent]
        model = "sim"
        mode = "parallel"
        tools = ["hang"{', "srv"' if mcp else ''}]
        [tools.hang]
        description = "Leave processes behind and hang."
        command = [{json.dumps(PY)}, {json.dumps(str(DATA / "spawner.py"))}, "{{pidfile}}", "hang"]
        timeout = 300
        [tools.hang.params]
        pidfile = {{ type = "string", description = "where the pids go" }}
        {mcp_table}
        [sim]
        decode_tps = 5000
        ttft = 0
        """) + "".join(textwrap.dedent(s) for s in steps) + '[sim.final]\nanswer = "done"\n')
    (base / "agents.toml").write_text("")
    return task


def pids_of(marker: Path, mcp: bool) -> list[int]:
    pids = [int(p) for p in marker.read_text().split()]
    if mcp:
        pids.append(int(Path(str(marker) + ".mcp.started").read_text()))
    return pids


def started(marker: Path, mcp: bool) -> bool:
    try:
        return len(pids_of(marker, mcp)) == 3 + mcp
    except (OSError, ValueError):
        return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_and_sigterm_end_a_warm_run_as_a_cold_one(shared, tmp_path, signum):
    results = {}
    for how in ("cold", "warm"):
        marker = tmp_path / how / "pids"
        task = slow_task(tmp_path / how, marker)
        trace = tmp_path / how / "t.jsonl"
        proc = subprocess.Popen([ASYNCFC, "run", str(task), "--trace", str(trace), "-q"],
                                env=cold(shared) if how == "cold" else shared, cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        try:
            assert wait_until(lambda: started(marker, False), 120), "the tool never started"
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert wait_until(lambda: all(process_gone(p) for p in pids_of(marker, False)), 30), how
        data = read_trace(trace)
        results[how] = (proc.returncode, data.summary["status"], re.sub(r"\S*t\.jsonl", "TRACE", err))
    assert results["cold"] == results["warm"]
    assert results["warm"][:2] == (130, "interrupted")


def test_kill_9_of_the_client_leaves_no_child_tool_process_or_mcp_server(shared, tmp_path):
    marker = tmp_path / "pids"
    task = slow_task(tmp_path, marker, mcp=True)
    trace = tmp_path / "t.jsonl"
    proc = subprocess.Popen([ASYNCFC, "run", str(task), "--trace", str(trace), "-q"], env=shared, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: started(marker, True), 120), "the tools never started"
        children = [c["pid"] for c in status(shared)["children"] if c["command"] == "run"]
        assert len(children) == 1
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = pids_of(marker, True) + children  # the tool, its child, its daemon, the MCP server, the run
    assert wait_until(lambda: all(process_gone(p) for p in left), 60), \
        [p for p in left if not process_gone(p)]
    # Stopped by SIGTERM, not cut: the trace is closed.
    assert read_trace(trace).summary["status"] == "interrupted"
    assert status(shared)["children"] == []


# --- freshness and safety ---------------------------------------------------------------------


def worker_replaced(env: dict[str, str], old: int) -> bool:
    data = status(env)
    return process_gone(old) and data["running"] and data["pid"] != old and data["serves_this_environment"]


def test_a_worker_of_another_configuration_or_interpreter_is_replaced(own, tmp_path):
    old = start_worker(own)["pid"]
    # LITELLM_LOG is read when LiteLLM is imported: a worker that imported it
    # without this value cannot serve it. The command runs cold, the old worker
    # goes, and a new one (started by that command) serves the new value.
    changed = {**own, "LITELLM_LOG": "ERROR"}
    data = status(changed)
    assert not data["serves_this_environment"] and any("LITELLM_LOG" in r for r in data["stale"])
    before = data["served"]
    done = asyncfc("run", DATA / "ok.toml", "-q", "--trace", tmp_path / "t.jsonl", env=changed, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert wait_until(lambda: process_gone(old), 30), "the stale worker kept running"
    assert wait_until(lambda: worker_replaced(changed, old), START), status(changed)
    new = status(changed)
    assert new["served"] == 0 and before >= 0
    done = asyncfc("run", DATA / "ok.toml", "-q", "--trace", tmp_path / "t.jsonl", env=changed, cwd=tmp_path)
    assert done.returncode == 0 and status(changed)["served"] == 1
    # Another interpreter path: python3.X -m asyncfc_cli instead of the script's python.
    other = Path(PY).with_name(f"python{sys.version_info[0]}.{sys.version_info[1]}")
    if not other.exists() or str(other) == status(changed)["executable"]:
        other = Path(PY).with_name("python3")
    assert str(other) != new["executable"]
    done = subprocess.run([str(other), "-m", "asyncfc_cli", "run", str(DATA / "ok.toml"), "-q", "--trace",
                           str(tmp_path / "t.jsonl")], env=changed, cwd=tmp_path, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    assert wait_until(lambda: process_gone(new["pid"]), 30)


def test_an_edited_copy_of_asyncfc_is_not_served_old_code(own, tmp_path):
    """python -m asyncfc_cli from a checkout (found through the working directory):
    the worker imports that copy, and after an edit it is replaced."""
    import asyncfc_cli

    copy = tmp_path / "checkout"
    shutil.copytree(Path(asyncfc_cli.__file__).parent, copy / "asyncfc_cli",
                    ignore=shutil.ignore_patterns("__pycache__"))
    version = copy / "asyncfc_cli" / "__init__.py"
    version.write_text(version.read_text().replace('__version__ = "', '__version__ = "9.9.9+'))

    def run_copy() -> subprocess.CompletedProcess:
        return subprocess.run([PY, "-m", "asyncfc_cli", "run", str(DATA / "ok.toml"), "-q", "--trace",
                               str(tmp_path / "t.jsonl")], env=own, cwd=copy, capture_output=True, text=True,
                              timeout=180)

    assert run_copy().returncode == 0  # cold; starts a worker from the copy
    assert wait_until(lambda: json.loads(subprocess.run(
        [PY, "-m", "asyncfc_cli", "worker", "status", "--json"], env=own, cwd=copy, capture_output=True,
        text=True).stdout).get("serves_this_environment"), START)
    first = json.loads(subprocess.run([PY, "-m", "asyncfc_cli", "worker", "status", "--json"], env=own, cwd=copy,
                                      capture_output=True, text=True).stdout)
    assert first["version"].startswith("9.9.9+") and first["package"] == str(copy / "asyncfc_cli")
    assert run_copy().returncode == 0
    # The installed asyncfc is another one: this worker does not serve it.
    assert not status(own)["serves_this_environment"]
    edited = copy / "asyncfc_cli" / "output.py"
    edited.write_text(edited.read_text() + "\n# edited\n")
    assert run_copy().returncode == 0
    assert wait_until(lambda: process_gone(first["pid"]), 30), "a worker with old code kept serving"


def test_directory_and_socket_modes(own, tmp_path):
    start_worker(own)
    directory = Path(own["XDG_RUNTIME_DIR"]) / "asyncfc"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    sock = directory / "worker.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE((directory / "worker.log").stat().st_mode) == 0o600
    before = served(own)
    # A directory others may enter is not trusted: the command runs cold.
    os.chmod(directory, 0o755)
    try:
        done = asyncfc("run", DATA / "ok.toml", "-q", "--trace", tmp_path / "t.jsonl", env=own, cwd=tmp_path)
        assert done.returncode == 0
        data = status(own)
        assert not data["running"] and "must be 700" in data["problem"]
    finally:
        os.chmod(directory, 0o700)
    assert served(own) == before
    # A symlink in its place is not followed.
    moved = Path(own["XDG_RUNTIME_DIR"]) / "elsewhere"
    directory.rename(moved)
    directory.symlink_to(moved)
    try:
        assert "problem" in status(own)
    finally:
        directory.unlink()
        moved.rename(directory)


def test_the_worker_exits_when_idle(tmp_path):
    env = warm_env(tmp_path, ASYNCFC_WARM_IDLE="3")
    pid = start_worker(env)["pid"]
    done = asyncfc("run", DATA / "ok.toml", "-q", "--trace", tmp_path / "t.jsonl", env=env, cwd=tmp_path)
    assert done.returncode == 0
    assert wait_until(lambda: process_gone(pid), 60), "the idle worker kept running"
    assert not (Path(env["XDG_RUNTIME_DIR"]) / "asyncfc" / "worker.sock").exists()
    assert status(env)["running"] is False


def test_worker_status_and_stop(own, tmp_path):
    assert status(own)["running"] is False
    human = asyncfc("worker", "status", env=own, cwd=tmp_path)
    assert human.returncode == 1 and "no worker running" in human.stdout
    data = start_worker(own)
    for key in ("pid", "socket", "version", "idle_for", "idle_timeout", "serves_this_environment", "served"):
        assert key in data
    assert data["socket"] == str(Path(own["XDG_RUNTIME_DIR"]) / "asyncfc" / "worker.sock")
    human = asyncfc("worker", "status", env=own, cwd=tmp_path)
    assert human.returncode == 0 and f"worker {data['pid']}" in human.stdout and "serves this environment: yes" \
        in human.stdout
    stopped = asyncfc("worker", "stop", "--json", env=own, cwd=tmp_path)
    assert json.loads(stopped.stdout) == {"stopped": True, "pid": data["pid"], "active": 0, "exited": True}
    assert process_gone(data["pid"])
    assert status(own)["running"] is False


def test_warm_off_by_variable_or_flag_and_the_first_command_starts_the_worker(own, tmp_path):
    run = ["run", DATA / "ok.toml", "-q", "--trace", tmp_path / "t.jsonl"]
    # Off: no worker is started either.
    assert asyncfc(*run, env=cold(own), cwd=tmp_path).returncode == 0
    assert asyncfc(*run, "--cold", env=own, cwd=tmp_path).returncode == 0
    assert not (Path(own["XDG_RUNTIME_DIR"]) / "asyncfc").exists()
    # The first command runs cold and leaves a worker starting behind it.
    assert asyncfc(*run, env=own, cwd=tmp_path).returncode == 0
    assert wait_until(lambda: status(own).get("serves_this_environment"), START)
    before = served(own)
    assert asyncfc(*run, "--cold", env=own, cwd=tmp_path).returncode == 0
    assert asyncfc("--cold", *run, env=cold(own), cwd=tmp_path).returncode == 0
    assert served(own) == before
    assert asyncfc(*run, env=own, cwd=tmp_path).returncode == 0
    assert served(own) == before + 1


# --- per-run state of a forked child ------------------------------------------------------


def test_a_forked_child_renews_the_process_state_of_tools_processes():
    """The worker imports tools/processes.py once; every forked child must get a
    process token, call numbers, waited pids and a subreaper flag of its own."""
    from asyncfc_cli.tools import processes

    next(processes._calls)
    processes._waited.add(12345)
    before = (processes._PROCESS_TOKEN, processes.new_call_token())
    seen = []
    for _ in range(2):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # keep to os calls: this is a copy of the test runner
            try:
                report = [processes._PROCESS_TOKEN, processes.new_call_token(), sorted(processes._waited),
                          processes._subreaper, processes._SETPRIV]
                os.write(write_end, json.dumps(report).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as f:
            seen.append(json.loads(f.read()))
        os.waitpid(pid, 0)
    processes._waited.discard(12345)
    for token, call, waited, subreaper, setpriv in seen:
        assert token != before[0] and call == f"{token}:1"
        assert waited == [] and subreaper is False and setpriv is False
    assert seen[0][0] != seen[1][0]


def test_what_the_worker_imports_sets_up_nothing_for_one_process(tmp_path):
    """asyncfc's modules the worker imports before forking create no Rich console
    (made for the terminal it starts on) and read no working directory at import;
    the ones that do are imported by each child (warm/modules.py)."""
    probe = textwrap.dedent("""\
        import json, os, sys
        import asyncfc_cli
        from asyncfc_cli.warm import modules
        import rich.console
        made = []
        real_init, real_getcwd = rich.console.Console.__init__, os.getcwd
        def init(self, *a, **k):
            made.append(("console", sys._getframe(1).f_globals.get("__name__")))
            real_init(self, *a, **k)
        def getcwd():
            made.append(("cwd", sys._getframe(1).f_globals.get("__name__")))
            return real_getcwd()
        rich.console.Console.__init__, os.getcwd = init, getcwd
        found = modules.scan("asyncfc_cli", os.path.dirname(asyncfc_cli.__file__))
        for name in modules.preimported(found):
            __import__(name)
        sys.modules["asyncfc_cli.cli"].command()  # what the worker builds before it forks
        leaked = sorted(n for n in modules.per_command(found) if n in sys.modules)
        print(json.dumps({"made": made, "leaked": leaked, "per_command": sorted(modules.per_command(found))}))
        """)
    done = subprocess.run([PY, "-c", probe], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["made"] == [] and data["leaked"] == []
    assert {"asyncfc_cli.bench.suite", "asyncfc_cli.bench.workloads"} <= set(data["per_command"])
    assert "asyncfc_cli.cli" not in data["per_command"]


def token_task(base: Path, go: Path) -> Path:
    """A task whose command tool reports the call token it got, after waiting for ``go``."""
    base.mkdir(parents=True, exist_ok=True)
    command = ("import os, sys, time, pathlib; token = os.environ['ASYNCFC_TOOL_TOKEN']; "
               "pathlib.Path(sys.argv[1]).write_text(token); "
               f"[time.sleep(0.01) for _ in iter(lambda: os.path.exists({str(go)!r}), True)]; print(token)")
    (base / "agents.toml").write_text("")
    task = base / "task.toml"
    task.write_text(textwrap.dedent(f"""\
        prompt = "p"
        [agent]
        model = "sim"
        mode = "sync"
        tools = ["token"]
        [tools.token]
        description = "Say the call token."
        command = [{json.dumps(PY)}, "-c", {json.dumps(command)}, "{{path}}"]
        [tools.token.params]
        path = {{ type = "string", description = "where the token goes" }}
        [sim]
        decode_tps = 5000
        ttft = 0
        [[sim.steps]]
        id = "a"
        tool = "token"
        args = {{ path = {json.dumps(str(base / "a"))} }}
        [[sim.steps]]
        id = "b"
        tool = "token"
        args = {{ path = {json.dumps(str(base / "b"))} }}
        [sim.final]
        answer = "{{a.stdout}} {{b.stdout}}"
        """))
    return task


def test_two_warm_runs_side_by_side_each_have_their_own_tokens(shared, tmp_path):
    go = tmp_path / "go"
    before = served(shared)
    procs = []
    try:
        for name in ("one", "two"):
            task = token_task(tmp_path / name, go)
            procs.append(subprocess.Popen([ASYNCFC, "run", str(task), "-q", "--trace", str(tmp_path / f"{name}.jsonl")],
                                          env=shared, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True, stdin=subprocess.DEVNULL))
        assert wait_until(lambda: all((tmp_path / n / "a").exists() for n in ("one", "two")), 120)
        assert len(status(shared)["children"]) == 2  # both children live at once
        go.write_text("")
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert served(shared) == before + 2
    tokens = [out.split() for out, _ in outputs]
    runs = set()
    for first, second in tokens:
        run, call = first.rsplit(":", 1)
        assert call == "1" and second == f"{run}:2"  # each run numbers its own calls
        runs.add(run)
    assert len(runs) == 2  # and has a token of its own


def test_a_caller_socket_closed_with_its_reaped_child_does_not_end_the_worker():
    """One select() round can report a child's end and its caller's socket; the child
    was reaped first, which closed the socket. That once ended the whole worker
    (ValueError from the selector) and every later command started cold."""
    import selectors
    import socket as socket_mod

    from asyncfc_cli.warm import protocol as warm_protocol
    from asyncfc_cli.warm.worker import Invocation, Worker

    worker = Worker(place=None, snapshot=None, env_effects={}, codes={}, idle_timeout=0, refusing=None,
                    preimported=0, import_seconds=0.0)
    ours, theirs = socket_mod.socketpair()
    inv = Invocation(ours, warm_protocol.Channel(ours), pid=-1, pidfd=-1, command="run", started=0.0)
    worker.selector.register(ours, selectors.EVENT_READ, ("conn", inv))
    try:
        worker.selector.unregister(ours)  # what _reap does with the caller's socket
        ours.close()
        worker._from_client(inv)  # the same round's event for it: nothing to do, no error
        assert not inv.abandoned and inv.kill_at is None
    finally:
        theirs.close()
        worker.selector.close()
