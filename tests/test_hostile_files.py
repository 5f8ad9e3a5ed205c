"""Hostile files and paths, through the CLI (docs/reliability.md: the fault matrix, and
"Files asyncfc writes" under Security): links planted where asyncfc writes (``batch --out``, ``run``'s traces,
exports, ``init``), a latency store that is a FIFO, a link to ``/dev/zero`` or garbage, and
``results.jsonl`` lines that are JSON but not reports.

Anything that could hang (a FIFO, ``/dev/zero``) runs as a real ``asyncfc`` process with a
timeout; the rest calls the typer app in process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import JUnitXml

from asyncfc_cli.trace import read_trace
from conftest import DATA, invoke

OK, UNMET = DATA / "ok.toml", DATA / "unmet.toml"
VICTIM_TEXT = "precious: must never be overwritten\n"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    # Runs remember tool durations in ./.asyncfc/latency.json: not in the repository.
    monkeypatch.chdir(tmp_path)


def cli_process(*args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """A real ``asyncfc`` process: a hang fails the test at ``timeout`` instead of wedging it."""
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", ASYNCFC_TEST_PYTHON=sys.executable)
    env.pop("FORCE_COLOR", None)
    return subprocess.run([sys.executable, "-m", "asyncfc_cli.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def victim(tmp_path: Path, name: str = "victim.txt") -> Path:
    path = tmp_path / "elsewhere" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(VICTIM_TEXT)
    return path


def untouched(*victims: Path) -> bool:
    return all(v.read_text() == VICTIM_TEXT for v in victims)


def one_line(text: str) -> str:
    return " ".join(text.split())


# --- item 5: links planted where asyncfc writes ---------------------------------------------


def test_links_planted_in_batch_out_are_replaced_never_followed(tmp_path):
    out, junit = tmp_path / "out", tmp_path / "junit.xml"
    first = invoke("batch", OK, "--out", out, "--json", "-q")
    assert first.exit_code == 0, first.output
    trace_name = Path(json.loads(first.stdout)["runs"][0]["trace"]).name  # stable across invocations
    # Someone plants links at every name the next batch will write.
    results_target, trace_target, junit_target = (victim(tmp_path, n) for n in ("r.txt", "t.txt", "j.txt"))
    (out / "results.jsonl").unlink()
    (out / "results.jsonl").symlink_to(results_target)
    (out / "traces" / trace_name).unlink()
    (out / "traces" / trace_name).symlink_to(trace_target)
    junit.symlink_to(junit_target)

    again = invoke("batch", OK, "--out", out, "--json", "-q", "--junit", junit)
    assert again.exit_code == 0, again.output
    assert untouched(results_target, trace_target, junit_target)
    for path in (out / "results.jsonl", out / "traces" / trace_name, junit):
        assert path.is_file() and not path.is_symlink(), path
    assert json.loads((out / "results.jsonl").read_text())["status"] == "passed"
    assert read_trace(out / "traces" / trace_name).summary is not None
    assert JUnitXml.fromfile(str(junit)).tests == 1
    # No temporary file is left beside them.
    assert sorted(p.name for p in out.iterdir()) == ["results.jsonl", "traces"]


def test_a_fifo_at_results_jsonl_is_replaced_not_opened(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "results.jsonl")  # opening it for writing would block forever
    done = cli_process("batch", OK, "--out", out, "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (out / "results.jsonl").is_file() and json.loads((out / "results.jsonl").read_text())["status"] == "passed"


@pytest.mark.parametrize("link", ["outside", "dangling"])
def test_a_traces_dir_that_leads_out_of_out_is_exit_2_and_nothing_runs(tmp_path, link):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "traces").symlink_to(elsewhere if link == "outside" else tmp_path / "nothing-here")
    result = invoke("batch", OK, "--out", out, "--json")
    assert result.exit_code == 2
    message = one_line(result.stderr)
    assert f"{out}/traces is a symbolic link to" in message and "fix: remove or replace" in message
    assert json.loads(result.stdout)["exit_code"] == 2
    assert list(elsewhere.iterdir()) == [] and not (out / "results.jsonl").exists()


def test_a_traces_link_that_stays_inside_out_is_used(tmp_path):
    out = tmp_path / "out"
    (out / "kept").mkdir(parents=True)
    (out / "traces").symlink_to("kept")
    result = invoke("batch", OK, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    assert len(list((out / "kept").glob("*.jsonl"))) == 1


def own_project(path: Path) -> Path:
    """A task with its agents.toml in ``path``: runs record in ``path``/.asyncfc (the project's)."""
    (path / "agents.toml").write_text("")
    (path / "ok.toml").write_text(
        'prompt = "Echo hello."\n[agent]\nmodel = "sim"\nmode = "sync"\ntools = ["echo"]\n'
        '[tools.echo]\ndescription = "Echo."\ncommand = ["echo", "{text}"]\n[tools.echo.params]\ntext = { type = "string" }\n'
        '[sim]\ndecode_tps = 2000\nttft = 0\n[[sim.steps]]\nid = "e"\ntool = "echo"\nargs = { text = "hello" }\n'
        '[sim.final]\nanswer = "The echo said hello."\n')
    return path / "ok.toml"


def test_the_default_batch_and_runs_dirs_never_lead_out_of_the_current_directory(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    os.chdir(project)
    OK = own_project(project)
    Path(".asyncfc").symlink_to(elsewhere)
    batch = invoke("batch", OK, "-q")
    assert batch.exit_code == 2 and ".asyncfc is a symbolic link to" in one_line(batch.stderr)
    assert "outside the current directory" in one_line(batch.stderr)
    run = invoke("run", OK, "-q")
    assert run.exit_code == 2
    assert "cannot write the trace" in one_line(run.stderr) and ".asyncfc is a symbolic link" in one_line(run.stderr)
    assert list(elsewhere.iterdir()) == []
    # One level down too, and a link inside the directory is fine.
    Path(".asyncfc").unlink()
    Path(".asyncfc").mkdir()
    Path(".asyncfc/runs").symlink_to(elsewhere)
    assert invoke("run", OK, "-q").exit_code == 2 and list(elsewhere.iterdir()) == []
    Path(".asyncfc/runs").unlink()
    Path("mine").mkdir()
    Path(".asyncfc/runs").symlink_to(project / "mine")
    assert invoke("run", OK, "-q").exit_code == 0
    assert len(list(Path("mine").glob("*.jsonl"))) == 1


def test_run_trace_and_exports_replace_a_planted_link(tmp_path):
    trace, chrome, svg = tmp_path / "t.jsonl", tmp_path / "chrome.json", tmp_path / "pic.svg"
    targets = [victim(tmp_path, n) for n in ("t.txt", "c.txt", "s.txt")]
    for link, target in zip((trace, chrome, svg), targets):
        link.symlink_to(target)
    assert invoke("run", OK, "--trace", trace, "-q").exit_code == 0
    assert invoke("trace", "show", trace, "--export", "chrome", "-o", chrome).exit_code == 0
    assert invoke("trace", "show", trace, "--svg", svg).exit_code == 0
    assert untouched(*targets)
    assert read_trace(trace).summary is not None
    assert "traceEvents" in json.loads(chrome.read_text())
    assert svg.read_text().startswith("<svg")
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_a_fifo_or_a_directory_at_the_trace_path_is_exit_2(tmp_path):
    os.mkfifo(tmp_path / "fifo.jsonl")
    done = cli_process("run", OK, "--trace", tmp_path / "fifo.jsonl", "-q", cwd=tmp_path)
    assert done.returncode == 2 and "is a FIFO, not a regular file" in one_line(done.stderr)
    (tmp_path / "dir.jsonl").mkdir()
    result = invoke("run", OK, "--trace", tmp_path / "dir.jsonl", "-q")
    assert result.exit_code == 2 and "cannot write the trace" in one_line(result.stderr)


def test_a_fifo_or_a_device_link_in_the_runs_dir_is_passed_over(tmp_path):
    done = invoke("run", own_project(tmp_path), "-q")
    assert done.exit_code == 0, done.stderr
    runs = tmp_path / ".asyncfc" / "runs"
    (real,) = runs.glob("*.jsonl")
    os.mkfifo(runs / "zzz-fifo.jsonl")  # newer than the real trace: `latest` would try it first
    (runs / "zzz-zero.jsonl").symlink_to("/dev/zero")
    for args in (("trace", "latest", "--json"), ("trace", "list", "--json")):
        done = cli_process(*args, cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stderr
        assert real.stem in done.stdout and "zzz" not in done.stdout


# --- item 5: asyncfc init -------------------------------------------------------------------


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.mark.parametrize("planted, needle", [
    ({"tasks": "ELSEWHERE"}, "tasks is a symbolic link to {elsewhere}, outside"),
    ({"tools": "/nonexistent/asyncfc"}, "tools is a symbolic link to /nonexistent/asyncfc, which does not exist"),
    ({"tools": "FILE"}, "tools exists and is not a directory"),
    ({"tasks": "ELSEWHERE", "tools/hello.py": None}, "tasks is a symbolic link"),
], ids=["tasks out", "dangling tools", "tools a file", "two problems"])
def test_init_refuses_links_out_and_writes_nothing(tmp_path, planted, needle):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    for name, target in planted.items():
        path = project / name
        if target is None:  # an existing file
            path.parent.mkdir(exist_ok=True)
            path.write_text("# mine\n")
        elif target == "FILE":
            path.write_text("not a directory\n")
        else:
            path.symlink_to(elsewhere if target == "ELSEWHERE" else target)
    before = files_under(project)
    result = invoke("init", project)
    assert result.exit_code == 2
    message = one_line(result.stderr)
    assert needle.format(elsewhere=elsewhere) in message and "nothing written" in message and "fix:" in message
    if "tools/hello.py" in planted:
        assert "tools/hello.py already exists" in message  # every problem is named, not only the first
    assert files_under(project) == before and list(elsewhere.iterdir()) == []


def test_init_follows_a_link_that_stays_inside_the_directory(tmp_path):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "tools").symlink_to("src")
    result = invoke("init", project)
    assert result.exit_code == 0, result.output
    assert (project / "src" / "hello.py").is_file() and (project / "tasks" / "hello.toml").is_file()


def test_init_removes_what_it_wrote_when_a_later_write_fails(tmp_path, monkeypatch):
    from asyncfc_cli.commands import init as init_cmd

    calls = []

    def failing(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(path))
        return real(path, data)

    real = init_cmd.write_new
    monkeypatch.setattr(init_cmd, "write_new", failing)
    result = invoke("init", tmp_path / "new" / "project")
    assert result.exit_code == 2 and len(calls) == 3
    message = one_line(result.stderr)
    assert "No space left on device" in message and "nothing written" in message
    assert list(tmp_path.iterdir()) == []  # the files, tools/, tasks/, project/ and new/ are gone


# --- item 6: the latency store --------------------------------------------------------------


LATENCY_TASK = DATA / "latency_holds.toml"


def run_with_store(tmp_path: Path, process: bool = True) -> str:
    """``asyncfc run`` of a task with two tools in ``tmp_path``; its stderr. ``process``:
    a real process (for what could hang), else in this one."""
    (tmp_path / "agents.toml").touch()  # the project, whose .asyncfc holds the store
    args = ("run", LATENCY_TASK, "--json", "--trace", tmp_path / "t.jsonl", "--agents", tmp_path / "agents.toml")
    if process:
        done = cli_process(*args, cwd=tmp_path, timeout=120)
        code, stdout, stderr = done.returncode, done.stdout, done.stderr
    else:
        result = invoke(*args)
        code, stdout, stderr = result.exit_code, result.stdout, result.stderr
    assert code == 0, stderr
    assert json.loads(stdout)["answer"] == "napped 0.1 and 0.3"
    return stderr


def saved(tmp_path: Path) -> dict:
    store = tmp_path / ".asyncfc" / "latency.json"
    assert store.is_file() and not store.is_symlink()
    return json.loads(store.read_text())


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "huge", "not json", "deep", "a list", "bad values"])
def test_a_hostile_latency_store_is_ignored_with_one_warning(tmp_path, kind):
    store = tmp_path / ".asyncfc" / "latency.json"
    store.parent.mkdir()
    if kind == "fifo":
        os.mkfifo(store)  # reading it blocked the run before its first request
    elif kind == "dev-zero":
        store.symlink_to("/dev/zero")  # read until MemoryError
    elif kind == "huge":
        store.write_text(json.dumps({"x#1": [0.1] * 2_000_000}))
    elif kind == "not json":
        store.write_bytes(b"\xff\x00 not json")
    elif kind == "deep":
        store.write_text("[" * 200_000 + "]" * 200_000)
    elif kind == "a list":
        store.write_text("[1, 2, 3]")
    else:
        store.write_text(json.dumps({"quick_nap#00000000": ["fast", -1, None, True], "x#1": {"a": 1}}))
    stderr = run_with_store(tmp_path, process=kind in ("fifo", "dev-zero"))
    warnings = [line for line in stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, stderr
    assert "tool durations of earlier runs ignored" in warnings[0] and "latency.json" in warnings[0]
    # The store is written again, as a regular file, with this run's durations.
    assert {k.split("#")[0] for k in saved(tmp_path)} >= {"quick_nap", "slow_nap"}


def test_a_lock_held_elsewhere_delays_the_save_at_most_a_moment(tmp_path, monkeypatch):
    import fcntl

    from asyncfc_cli import latency

    monkeypatch.setattr(latency, "LOCK_WAIT", 1.0)  # 10 s by default
    store = tmp_path / ".asyncfc" / "latency.json"
    store.parent.mkdir()
    with open(store.with_name("latency.json.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process that never lets go
        stderr = run_with_store(tmp_path, process=False)
    assert "is locked by another process" in stderr and "not saved" in stderr
    assert not store.exists()


SAVER = """
import sys
from pathlib import Path
from asyncfc_cli.latency import LatencyBook
store, p, saves = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
book = LatencyBook(store=store)
for j in range(saves):
    book.observe(f"own-{p}", p * 1000 + j)   # one tool per process: its newest WINDOW are kept
    book.observe(f"once-{p}-{j}", j + 0.5)   # a tool saved once: every one is kept
    book.observe("shared", p * 1000 + j)     # one tool for all
    book.save()
"""


def test_concurrent_saves_from_10_processes_lose_nothing(tmp_path):
    from asyncfc_cli.latency import WINDOW

    store = tmp_path / ".asyncfc" / "latency.json"
    processes, saves = 10, 30
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    procs = [subprocess.Popen([sys.executable, "-c", SAVER, str(store), str(p), str(saves)], env=env,
                              stderr=subprocess.PIPE, text=True) for p in range(processes)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
        assert proc.stderr.read() == ""  # no "locked" warning: every save got its turn
    data = json.loads(store.read_text())
    # 300 tools saved once each: all 300 are there (the store keeps up to MAX_TOOLS tools).
    assert sum(k.startswith("once-") for k in data) == processes * saves
    assert all(data[f"once-{p}-{j}"] == [j + 0.5] for p in range(processes) for j in range(saves))
    # A tool saved 30 times keeps its newest WINDOW durations, in order.
    for p in range(processes):
        assert data[f"own-{p}"] == [p * 1000 + j for j in range(saves - WINDOW, saves)]
    # The tool every process saved: the last WINDOW saves, each process's own in order.
    shared = data["shared"]
    assert len(shared) == WINDOW
    for p in range(processes):
        mine = [v for v in shared if v // 1000 == p]
        assert mine == sorted(mine) and all(v % 1000 >= saves - WINDOW for v in mine)


# --- item 6: --resume reads hostile lines ------------------------------------------------------


def first_batch(out: Path) -> dict:
    result = invoke("batch", OK, UNMET, "--out", out, "--json", "-q")
    assert result.exit_code == 3, result.output
    return {Path(r["task"]).name: r for r in json.loads(result.stdout)["runs"]}


HOSTILE_LINES = {
    "an array": ("[1]", "a JSON array, not a report object"),
    "a key that is a list": ('{"key": ["x"]}', "'key' is a JSON array"),
    "deep nesting": ("[" * 100_000 + "]" * 100_000, "JSON nested too deeply"),
    "wall as text": ('OK:wall="fast"', "'wall' is a JSON string"),
    "mode null": ("OK:mode=null", "'mode' is a JSON null"),
    "wall NaN": ("OK:wall=NaN", "'wall' is nan"),
    "a bool as a count": ("OK:requests=true", "'requests' is a JSON boolean"),
    "a negative number": ("OK:tokens_in=-5", "'tokens_in' is -5"),
    "an unknown status": ('OK:status="great"', "'status' is not one of"),
    "params not texts": ('OK:params={"a": [1]}', "'params' is not an object of texts"),
    "failures not texts": ("OK:failures=[1]", "'failures' is not a list of texts"),
    "a 5000-digit number": ("OK:wall=" + "9" * 5000, "not JSON"),
    "not UTF-8": ("\udcff\udcfe", "not JSON"),
    "a line cut short": ("OK:cut", "not JSON"),
}


@pytest.mark.parametrize("name", HOSTILE_LINES)
def test_resume_skips_lines_that_are_not_reports_and_writes_every_output(tmp_path, name):
    out, junit = tmp_path / "out", tmp_path / "junit.xml"
    runs = first_batch(out)
    results = out / "results.jsonl"
    line, reason = HOSTILE_LINES[name]
    replaced = line.startswith("OK:")
    if replaced:  # the passed run's own line, one field made hostile
        ok_line = next(raw for raw in results.read_text().splitlines() if json.loads(raw)["status"] == "passed")
        if line == "OK:cut":
            line = ok_line[: len(ok_line) // 2]  # and no newline after it: a kill mid-write
        else:
            field, value = line[3:].split("=", 1)
            line = ok_line.replace(f'"{field}": {json.dumps(runs["ok.toml"][field])}', f'"{field}": {value}', 1)
            assert line != ok_line
        # Only the hostile version of the passed run's line is left.
        kept = [raw for raw in results.read_text().splitlines() if raw != ok_line]
        end = "" if name == "a line cut short" else "\n"
        results.write_bytes(("\n".join([*kept, line]) + end).encode("utf-8", "surrogateescape"))
    else:
        with open(results, "ab") as f:
            f.write(line.encode("utf-8", "surrogateescape") + b"\n")
    before = results.read_bytes()
    number = before.rstrip(b"\n").count(b"\n") + 1  # the hostile line is the last

    again = invoke("batch", OK, UNMET, "--out", out, "--json", "--junit", junit, "--resume")
    assert again.exit_code == 3, again.output
    assert f"results.jsonl: line {number} skipped ({reason}" in one_line(again.stderr)
    doc = json.loads(again.stdout)
    assert doc["counts"]["runs"] == 2 and doc["counts"]["passed"] == 1 and doc["counts"]["unmet"] == 1
    assert JUnitXml.fromfile(str(junit)).tests == 2
    # Nothing is lost: the old lines are still there, each run again has a line after them
    # (both runs when the passed run's line was the hostile one, else only the unmet run).
    after = results.read_bytes()
    assert after.startswith(before)
    new_lines = after[len(before):].lstrip(b"\n").splitlines()
    assert sorted(Path(json.loads(raw)["task"]).name for raw in new_lines) == (
        ["ok.toml", "unmet.toml"] if replaced else ["unmet.toml"])


def test_resume_still_resumes_around_a_bad_line(tmp_path):
    out = tmp_path / "out"
    first_batch(out)
    with open(out / "results.jsonl", "a") as f:
        f.write('{"key": ["x"]}\n[1]\n')
    again = invoke("batch", OK, UNMET, "--out", out, "--json", "--resume")
    doc = json.loads(again.stdout)
    assert doc["counts"]["resumed"] == 1  # ok.toml passed before and is not run again
    assert one_line(again.stderr).count("skipped (") == 2


@pytest.mark.parametrize("kind", ["symlink", "fifo", "dev-zero", "directory"])
def test_resume_refuses_a_results_file_that_is_not_a_regular_file(tmp_path, kind):
    out = tmp_path / "out"
    out.mkdir()
    results = out / "results.jsonl"
    target = victim(tmp_path)
    if kind == "symlink":
        results.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(results)
    elif kind == "dev-zero":
        results.symlink_to("/dev/zero")
    else:
        results.mkdir()
    done = cli_process("batch", OK, "--out", out, "--resume", cwd=tmp_path)
    assert done.returncode == 2
    message = one_line(done.stderr)
    assert "--out: cannot use" in message and "results.jsonl" in message and "fix:" in message
    assert "Traceback" not in done.stderr and untouched(target)


def test_the_resume_filter_looks_each_run_up_once(tmp_path):
    """Linear, not quadratic: one read of each planned run's key, whatever the sizes
    (a set of the plan's keys was built once per passed run: 0.7 s at 2,000 runs)."""
    from asyncfc_cli.batch_output import ResultsLog

    class Counted:
        reads = 0

        def __init__(self, key: str) -> None:
            self._key = key

        @property
        def key(self) -> str:
            Counted.reads += 1
            return self._key

    out = tmp_path / "out"
    out.mkdir()
    base = {"label": "l", "task": "t.toml", "params": {}, "mode": "sync", "model": "sim", "repeat": 1}
    (out / "results.jsonl").write_text("".join(
        json.dumps({**base, "key": f"k{i}", "status": "passed" if i % 2 else "failed"}) + "\n" for i in range(2000)))
    log = ResultsLog(out, resume=True)
    planned = [Counted(f"k{i}") for i in range(0, 4000, 3)]
    done = log.resumable(planned)
    log.close()
    assert Counted.reads == len(planned)
    assert set(done) == {f"k{i}" for i in range(0, 2000, 3) if i % 2}


def test_the_strict_reader_checks_every_field_of_a_report():
    from dataclasses import fields

    from asyncfc_cli.batch import RunReport
    from asyncfc_cli.batch_output import _REPORT_FIELDS, report_from_line

    assert set(_REPORT_FIELDS) == {f.name for f in fields(RunReport)}
    report = RunReport(key="k", label="l", task="t", params={"a": "b"}, mode="async", model="sim", repeat=1,
                       status="passed", wall=1.5, failures=["x"], started=0.0, ended=1.5)
    assert report_from_line(json.dumps(report.as_dict())) == report
