"""``asyncfc batch``: many runs in one process through the real runner.

Most tests call the typer app in process (LiteLLM is imported once for the
session); the model is the simulated one over HTTP through LiteLLM, or a
scripted OpenAI-style endpoint on 127.0.0.1 where a test must watch the
requests from the server's side (per-model limits). Ctrl-C is a real
signal to a real ``asyncfc`` process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped
from rich.console import Console

from asyncfc_cli.trace import read_trace
from conftest import DATA, REPO, Reply, ScriptedServer, invoke, text_stream, wait_until

OK, UNMET, MAX_TURNS = DATA / "ok.toml", DATA / "unmet.toml", DATA / "max_turns.toml"
REMOTE, HOSTILE, NAP = DATA / "batch_remote.toml", DATA / "batch_hostile.toml", DATA / "batch_nap.toml"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    # Runs remember tool durations in ./.asyncfc/latency.json: not in the repository.
    monkeypatch.chdir(tmp_path)


def batch(*args, env: dict[str, str] | None = None):
    result = invoke("batch", *map(str, args), env=env, catch_exceptions=False)
    return result


def json_of(result) -> dict:
    return json.loads(result.stdout)


# --- exit codes, JSON, JUnit ---------------------------------------------------------------


def test_mixed_batch_reports_every_run_in_json_junit_and_results(tmp_path):
    out, junit = tmp_path / "out", tmp_path / "reports" / "junit.xml"
    result = batch(OK, UNMET, MAX_TURNS, "--mode", "sync,async", "--out", out, "--junit", junit, "--json")
    assert result.exit_code == 1, result.output  # a failed run wins over an unmet expectation
    doc = json_of(result)
    assert doc["status"] == "failed" and doc["exit_code"] == 1
    # max_turns.toml needs four turns in sync mode, where its agent allows two; async forwards
    # the values by reference and needs fewer.
    assert doc["counts"] == {"runs": 6, "passed": 3, "failed": 1, "unmet": 2, "interrupted": 0, "skipped": 0,
                             "resumed": 0}
    by = {(Path(r["task"]).name, r["mode"]): r for r in doc["runs"]}
    assert set(by) == {(t, m) for t in ("ok.toml", "unmet.toml", "max_turns.toml") for m in ("sync", "async")}
    assert by["ok.toml", "async"]["answer"] == "The echo said hello."
    assert by["unmet.toml", "sync"]["failures"] == ["answer does not contain 'banana'"]
    assert by["max_turns.toml", "sync"]["run_status"] == "max_turns"
    # One trace per run, each closed with its summary, under --out.
    for run in doc["runs"]:
        data = read_trace(Path(run["trace"]))
        assert Path(run["trace"]).parent == out / "traces"
        assert data.summary is not None and not data.problems
        assert data.header.mode == run["mode"]
    # The summary: async vs sync for the task that passed in both modes.
    ok_async = next(row for row in doc["summary"] if row["task"].endswith("ok.toml") and row["mode"] == "async")
    assert ok_async["passed"] == 1 and ok_async["speedup_vs_sync"] > 0
    # results.jsonl: one line per run.
    lines = (out / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["key"] for line in lines) == sorted(r["key"] for r in doc["runs"])

    # The JUnit report, read by a JUnit reader.
    xml = JUnitXml.fromfile(str(junit))
    assert xml.tests == 6 and xml.failures == 2 and xml.errors == 1 and xml.skipped == 0
    cases = {case.name: case for suite in xml for case in suite}
    assert set(cases) == {r["label"] for r in doc["runs"]}
    unmet = cases["unmet sync"]
    assert isinstance(unmet.result[0], Failure) and "banana" in unmet.result[0].message
    assert unmet.result[0].type == "expectation"
    assert unmet._elem.get("assertions") == "1"  # the expectations the task checks
    failed = cases["max_turns sync"]
    assert isinstance(failed.result[0], Error) and failed.result[0].type == "max_turns"
    assert "max_turns" in failed.result[0].message
    passed = cases["ok async"]
    assert passed.is_passed and passed.time > 0 and passed._elem.get("assertions") == "2"
    assert "The echo said hello." in passed.system_out


@pytest.mark.parametrize("tasks, code", [([OK], 0), ([OK, UNMET], 3)])
def test_exit_code_all_passed_or_unmet(tmp_path, tasks, code):
    result = batch(*tasks, "--out", tmp_path / "out", "-q")
    assert result.exit_code == code, result.output
    # Without --json the summary table is on stdout, progress on stderr.
    assert "asyncfc batch" in result.stdout and "ok.toml" in result.stdout


def test_a_spec_error_is_exit_2_before_anything_runs(tmp_path):
    out = tmp_path / "out"
    result = batch(OK, DATA / "bad_spec.toml", "--out", out, "--json")
    assert result.exit_code == 2
    doc = json_of(result)
    assert doc["status"] == "spec_error" and "max_turns" in doc["key"] and doc["fix"]
    assert not out.exists()  # nothing ran, nothing was written


@pytest.mark.parametrize("args, message", [
    (["--mode", "fast"], "'fast' is not a mode"),
    (["--resume"], "--resume needs the --out directory"),
    (["--matrix", "MISSING.jsonl"], "cannot read the matrix"),
])
def test_usage_errors_say_what_to_fix(tmp_path, args, message):
    args = [str(tmp_path / a) if a.endswith(".jsonl") else a for a in args]
    result = batch(OK, *args)
    assert result.exit_code == 2 and message in result.stderr, result.output


# --- matrix, repeat --------------------------------------------------------------------------


def test_matrix_rows_times_modes_times_repeats(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"word": "alpha"}\n\n{"word": 7}\n')
    result = batch(OK, "--matrix", rows, "--mode", "sync,async", "--repeat", "2", "--out", tmp_path / "o", "--json")
    assert result.exit_code == 0, result.output
    runs = json_of(result)["runs"]
    assert len(runs) == 2 * 2 * 2
    assert sorted({(r["params"]["word"], r["mode"], r["repeat"]) for r in runs}) == sorted(
        (w, m, k) for w in ("alpha", "7") for m in ("sync", "async") for k in (1, 2))
    assert len({r["key"] for r in runs}) == 8 and len({r["trace"] for r in runs}) == 8
    assert "ok word=alpha sync #1" in {r["label"] for r in runs}


def test_csv_matrix_and_a_column_the_prompt_lacks(tmp_path):
    good = tmp_path / "rows.csv"
    good.write_text('word\n"a, b"\nc\n')
    result = batch(OK, "--matrix", good, "--out", tmp_path / "o", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(r["params"]["word"] for r in json_of(result)["runs"]) == ["a, b", "c"]
    bad = tmp_path / "bad.csv"
    bad.write_text("word,colour\nx,red\n")
    result = batch(OK, "--matrix", bad, "--out", tmp_path / "o2")
    assert result.exit_code == 2
    assert f"{bad}: row 1" in result.stderr and "{colour}" in result.stderr, result.stderr
    dup = tmp_path / "dup.csv"
    dup.write_text("word\nx\ny\nx\n")
    result = batch(OK, "--matrix", dup, "--out", tmp_path / "o3")
    assert result.exit_code == 2 and f"{dup}: row 3" in result.stderr and "as row 1" in result.stderr
    assert "--repeat" in result.stderr and not (tmp_path / "o3").exists()


# --- --resume --------------------------------------------------------------------------------


def test_resume_skips_what_passed_and_runs_the_rest(tmp_path):
    out = tmp_path / "out"
    first = batch(OK, UNMET, "--out", out, "--json")
    assert first.exit_code == 3
    runs = {Path(r["task"]).name: r for r in json_of(first)["runs"]}
    ok_trace, unmet_trace = Path(runs["ok.toml"]["trace"]), Path(runs["unmet.toml"]["trace"])
    ok_stamp, unmet_stamp = ok_trace.stat().st_mtime_ns, unmet_trace.stat().st_mtime_ns
    time.sleep(0.05)

    second = batch(OK, UNMET, "--out", out, "--json", "--resume")
    assert second.exit_code == 3
    doc = json_of(second)
    again = {Path(r["task"]).name: r for r in doc["runs"]}
    assert again["ok.toml"]["resumed"] is True and again["ok.toml"]["status"] == "passed"
    assert again["unmet.toml"]["resumed"] is False and again["unmet.toml"]["status"] == "unmet"
    assert doc["counts"]["resumed"] == 1 and doc["status"] == "unmet" and doc["exit_code"] == 3
    assert ok_trace.stat().st_mtime_ns == ok_stamp  # not run again
    assert unmet_trace.stat().st_mtime_ns != unmet_stamp  # run again, same trace file
    # results.jsonl kept the first invocation's lines and added the re-run.
    keys = [json.loads(line)["key"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert keys.count(runs["unmet.toml"]["key"]) == 2 and keys.count(runs["ok.toml"]["key"]) == 1

    # Without --resume the same --out starts over.
    third = batch(OK, "--out", out, "--json")
    assert json_of(third)["counts"]["resumed"] == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 1


# --- per-model limits --------------------------------------------------------------------------


class Endpoint:
    """A scripted endpoint that holds each answer a while and records, per request,
    when it arrived and how many were in flight.

    ``overlap``: a request is not answered before that many were in flight at once
    (or 300 s passed), so a test of a limit sees the limit reached however slowly the
    machine starts the runs, not only if they happen to start within ``hold``.
    ``first_until``: the first request is held until this is true (or 300 s passed).
    """

    def __init__(self, hold: float, first: Reply | None = None, overlap: int = 1,
                 first_until: Callable[[], bool] | None = None) -> None:
        self.hold, self.first, self.overlap, self.first_until = hold, first, overlap, first_until
        self.lock = threading.Condition()
        self.in_flight = self.peak = 0
        self.arrivals: list[float] = []
        self.server = ScriptedServer([self.answer])

    def answer(self, request: dict) -> Reply:
        with self.lock:
            self.arrivals.append(time.monotonic())
            number = len(self.arrivals)
            if number == 1 and self.first is not None:
                return self.first
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.lock.notify_all()
            self.lock.wait_for(lambda: self.peak >= self.overlap, timeout=300)
        if number == 1 and self.first_until is not None:
            wait_until(self.first_until, 300)
        time.sleep(self.hold)
        with self.lock:
            self.in_flight -= 1
        return Reply(chunks=text_stream("done"))

    def env(self) -> dict[str, str]:
        return {"ASYNCFC_TEST_API_BASE": self.server.base_url, "ASYNCFC_TEST_API_KEY": "test-key"}


def test_max_per_model_bounds_requests_in_flight_across_runs(tmp_path):
    endpoint = Endpoint(hold=0.3, overlap=2)
    with endpoint.server:
        result = batch(REMOTE, "--repeat", "6", "--max-runs", "6", "--max-per-model", "2", "--out", tmp_path / "o",
                       "--json", env=endpoint.env())
    assert result.exit_code == 0, result.output
    assert len(endpoint.arrivals) == 6
    assert endpoint.peak == 2  # never more than the limit, and the limit was reached
    doc = json_of(result)
    assert doc["limits"]["openai/limited @ " + endpoint.server.base_url]["peak_requests"] == 2
    # The runs that queued say so in their traces.
    waits = [ev for r in doc["runs"] for ev in read_trace(Path(r["trace"])).of_type("limit_wait")]
    assert waits and all(ev.reason == "concurrency" and ev.seconds > 0 for ev in waits)


def test_a_429_pauses_every_run_of_that_model(tmp_path):
    endpoint = Endpoint(hold=0.05, first=Reply.error(429, "Rate limit reached (scripted)"))
    with endpoint.server:
        result = batch(REMOTE, "--repeat", "3", "--max-per-model", "1", "--out", tmp_path / "o", "--json",
                       env=endpoint.env())
    assert result.exit_code == 0, result.output  # the limited run retried and passed
    arrivals = endpoint.arrivals
    assert len(arrivals) == 4  # three runs, one retry
    # After the 429 nobody asked for a second (the shared cooldown is 1 s from the 429's
    # answer; the runs' own backoff is 0.5 s). A lower bound: a loaded machine only
    # makes the gap longer.
    assert arrivals[1] - arrivals[0] >= 0.9, arrivals
    doc = json_of(result)
    assert doc["limits"]["openai/limited @ " + endpoint.server.base_url]["rate_limits"] == 1
    reasons = {ev.reason for r in doc["runs"] for ev in read_trace(Path(r["trace"])).of_type("limit_wait")}
    assert "rate_limit" in reasons


# --- hostile output, progress ----------------------------------------------------------------


def test_junit_holds_a_hostile_answer(tmp_path):
    junit = tmp_path / "j.xml"
    result = batch(HOSTILE, "--out", tmp_path / "o", "--junit", junit, "-q")
    assert result.exit_code == 3, result.output
    case = next(case for suite in JUnitXml.fromfile(str(junit)) for case in suite)
    assert isinstance(case.result[0], Failure)
    assert "\\x00" in case.system_out and "\\x1b[31mred" in case.system_out
    assert "]]> <tag> & \"q\" \ud7ff end\ntrace: " in case.system_out


def test_plain_progress_lines_when_not_a_terminal(tmp_path):
    result = batch(OK, UNMET, "--out", tmp_path / "o")
    assert result.exit_code == 3
    err = result.stderr
    assert "asyncfc batch: 2 runs, up to 8 at once" in err
    assert "[1/2]" in err and "[2/2]" in err and "expectation not met" in err
    assert "\x1b[" not in err  # no cursor or colour codes in a pipe
    assert "batch: 2 runs · 1 passed · 1 unmet" in err


def test_progress_bar_through_the_cli_on_a_real_terminal(tmp_path):
    from test_output import run_on_a_terminal

    code, screen = run_on_a_terminal(["batch", str(OK), str(UNMET), "--out", str(tmp_path / "o")],
                                     dict(os.environ), timeout=240)
    assert code == 3, screen
    assert "Traceback" not in screen
    assert "ETA" in screen and "2/2" in screen and "done 2" in screen  # the Rich bar, last frame
    assert "unmet.toml" in screen and "expectation not met" in screen  # printed above the bar
    assert "ok sync" not in screen  # a passed run only moves the bar (in a pipe it gets a line)


def test_progress_bar_on_a_terminal():
    from asyncfc_cli.batch import RunReport
    from asyncfc_cli.batch_output import BatchProgress

    console = Console(file=__import__("io").StringIO(), force_terminal=True, force_interactive=True, width=100)
    with BatchProgress(console, total=2, live=True) as progress:
        progress.started(None)
        progress.started(None)
        progress.finished(RunReport("k1", "a sync", "a.toml", {}, "sync", "sim", 1, "passed", wall=1.0))
        progress.finished(RunReport("k2", "b sync", "b.toml", {}, "sync", "sim", 1, "failed", error="boom"))
    shown = console.file.getvalue()
    assert "2/2" in shown and "failed 1" in shown and "ETA" in shown and "boom" in shown


# --- Ctrl-C -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, signum", [("sync", signal.SIGINT), ("parallel", signal.SIGINT),
                                          ("async", signal.SIGINT), ("async", signal.SIGTERM)],
                         ids=["sync", "parallel", "async", "async-sigterm"])
def test_ctrl_c_cancels_every_run_and_closes_every_trace(tmp_path, mode, signum):
    """In every mode: async and parallel runs stop inside nurseries, whose Cancelled comes
    out wrapped in exception groups; a run stopped so is reported interrupted all the same."""
    out, junit = tmp_path / "out", tmp_path / "j.xml"
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", CI="true")
    env.pop("FORCE_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "asyncfc_cli", "batch", str(NAP), "--repeat", "3", "--mode", mode,
                             "--max-runs", "2", "--out", str(out), "--junit", str(junit), "--json"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def napping() -> bool:
            traces = list((out / "traces").glob("*.jsonl"))
            return len(traces) == 2 and all('"tool_begin"' in p.read_text() for p in traces)

        assert wait_until(napping, 300), proc.stderr.read() if proc.poll() is not None else "no tool started"
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    doc = json.loads(stdout)
    assert doc["status"] == "interrupted" and doc["counts"]["interrupted"] == 2 and doc["counts"]["skipped"] == 1
    assert {r["mode"] for r in doc["runs"]} == {mode}
    for path in (out / "traces").glob("*.jsonl"):
        data = read_trace(path)
        assert data.summary is not None and data.summary.status == "interrupted" and not data.problems
        assert [ev.status for ev in data.of_type("tool_end")] == ["cancelled"]
    recorded = [json.loads(line)["status"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert recorded == ["interrupted", "interrupted"]
    xml = JUnitXml.fromfile(str(junit))
    assert xml.tests == 3 and xml.skipped == 3
    messages = sorted(case.result[0].message for suite in xml for case in suite)
    assert all(isinstance(case.result[0], Skipped) for suite in xml for case in suite)
    assert messages == ["interrupted", "interrupted", "not started: the batch was interrupted"], messages


def test_an_interruption_is_recognised_however_deep_the_groups_hold_it():
    import trio

    from asyncfc_cli.batch import is_interruption

    def cancelled() -> trio.Cancelled:
        return trio.Cancelled._create()  # what a cancel scope raises into a task

    deep: BaseException = cancelled()
    for _ in range(5000):  # past the recursion limit: the walk must not recurse
        deep = BaseExceptionGroup("nursery", [deep])
    assert is_interruption(deep)
    mixed = BaseExceptionGroup("nursery", [ValueError("a tool's bug"), ExceptionGroup("inner", [OSError()]),
                                           BaseExceptionGroup("inner", [KeyboardInterrupt()])])
    assert is_interruption(mixed)
    assert not is_interruption(ExceptionGroup("nursery", [ValueError("x"), ExceptionGroup("inner", [OSError()])]))
    assert not is_interruption(SystemExit(3))


# --- asyncfc bench bfcl --model, through the same machinery -------------------------------------


def _bfcl_dir() -> Path | None:
    from asyncfc_cli.bench.data import DataNotFound, find_bfcl_dir

    try:
        return find_bfcl_dir()
    except DataNotFound:
        return None


@pytest.mark.skipif(_bfcl_dir() is None, reason="BFCL data not found (set ASYNCFC_BFCL_DIR)")
def test_bench_bfcl_model_runs_entries_concurrently_under_the_limits():
    result = invoke("bench", "bfcl", "--model", "sim", "--category", "parallel", "--limit", "3",
                    "--mode", "sync,async", "--decode-tps", "2000", "--ttft", "0",
                    "--max-runs", "6", "--max-per-model", "1", "--json", "-q",
                    catch_exceptions=False)
    assert result.exit_code == 0, result.output
    accuracy = json.loads(result.stdout)["accuracy"]
    assert [(r["mode"], r["correct"], r["entries"]) for r in accuracy["rows"]] == [("sync", 3, 3), ("async", 3, 3)]
    assert accuracy["max_runs"] == 6
    assert accuracy["limits"]["sim"]["peak_requests"] == 1  # six runs, one request in flight at a time


# --- the other options, and the README's CI example ------------------------------------------------


def test_agents_timeout_and_model_apply_to_every_run(tmp_path):
    # 8 s: the 30 s nap times out; ok.toml has time to pass even on a loaded machine.
    result = batch(NAP, OK, "--agents", DATA / "batch_agents.toml", "--timeout", "8", "--model", "sim:anthropic",
                   "--out", tmp_path / "o", "--json")
    assert result.exit_code == 1, result.output
    runs = {Path(r["task"]).name: r for r in json_of(result)["runs"]}
    assert runs["batch_nap.toml"]["run_status"] == "timeout" and runs["batch_nap.toml"]["status"] == "failed"
    assert runs["ok.toml"]["status"] == "passed"
    for run in runs.values():
        assert run["model"] == "sim:anthropic"
        assert read_trace(Path(run["trace"])).header.litellm_model == "anthropic/asyncfc-sim"


def test_the_readme_ci_example(tmp_path):
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Running many tasks (CI)"):]
    line = next(l.strip() for l in section.splitlines() if l.strip().startswith("- asyncfc batch"))
    argv = line.removeprefix("- ").split()
    for name in ("tasks", "tools", "examples", "agents.toml"):
        (tmp_path / name).symlink_to(REPO / name)
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", CI="true")
    env.pop("FORCE_COLOR", None)
    done = subprocess.run([sys.executable, "-m", "asyncfc_cli", *argv[1:]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    junit = tmp_path / argv[argv.index("--junit") + 1]
    xml = JUnitXml.fromfile(str(junit))
    assert xml.tests == 4 and xml.failures == 0 and xml.errors == 0
    assert {case.name for suite in xml for case in suite} == {
        "quickstart sync", "quickstart async", "futures_demo sync", "futures_demo async"}
    assert len(list((tmp_path / argv[argv.index("--out") + 1] / "traces").glob("*.jsonl"))) == 4


def test_resume_knows_a_task_however_its_path_is_written(tmp_path):
    (tmp_path / "data").symlink_to(DATA)
    out = tmp_path / "out"
    assert batch("data/ok.toml", "--out", out, "-q").exit_code == 0
    again = batch("./data/ok.toml", "--out", out, "--resume", "--json")
    assert json_of(again)["counts"]["resumed"] == 1


def test_a_batch_that_could_not_start_leaves_no_results_file(tmp_path):
    # What `batch --ray` does when Ray cannot be reached after the log was opened
    # (tests/test_batch_ray.py covers the addresses refused before that).
    from asyncfc_cli.batch_output import ResultsLog

    fresh = ResultsLog(tmp_path / "new", resume=False)
    assert (tmp_path / "new" / "results.jsonl").exists()
    fresh.discard()
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept" / "traces").mkdir(parents=True)
    (tmp_path / "kept" / "results.jsonl").write_text("")
    ResultsLog(tmp_path / "kept", resume=False).discard()
    assert not (tmp_path / "kept" / "results.jsonl").exists() and (tmp_path / "kept" / "traces").is_dir()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.jsonl").write_text('{"not": "a report"}\n')
    ResultsLog(tmp_path / "old", resume=True).discard()
    assert (tmp_path / "old" / "results.jsonl").read_text() == '{"not": "a report"}\n'


FAILING_TOOL_TASK = '''
agent = "worker"
prompt = "Name a yellow fruit."

[expect]
contains = ["banana"]

[sim]
decode_tps = 2000
ttft = 0

[[sim.steps]]
id = "look"
tool = "boom"
args = { message = "denied for ${BATCH_SERVICE_TOKEN} \\u001b]0;pwned\\u0007 then \\u001b[2J %s" }

[sim.final]
answer = "no fruit: {look.error}"
''' % ("x" * 5000)


def test_an_unmet_run_shows_the_tool_errors_behind_it_redacted_printable_and_cut(tmp_path):
    secret = "tok-9f8e7d6c5b4a39281706"
    task = tmp_path / "fruit.toml"
    task.write_text(FAILING_TOOL_TASK)
    env = {"BATCH_SERVICE_TOKEN": secret}
    junit = tmp_path / "junit.xml"
    shown = batch(task, "--agents", DATA / "agents.toml", "--mode", "sync,async", "--out", tmp_path / "o1",
                  env=env)
    assert shown.exit_code == 3, shown.output
    doc_run = batch(task, "--agents", DATA / "agents.toml", "--mode", "sync,async", "--out", tmp_path / "o2",
                    "--json", "--junit", junit, env=env)
    assert doc_run.exit_code == 3, doc_run.output
    runs = json_of(doc_run)["runs"]
    assert [r["status"] for r in runs] == ["unmet", "unmet"]
    for run in runs:
        assert run["failures"] == ["answer does not contain 'banana'"]
        (error,) = run["tool_errors"]
        assert error.startswith("boom: ") and "denied for *** \\x1b]0;pwned\\x07" in error
        assert len(error) <= 300 + 40 and error.endswith("…")  # cut, with the escapes made visible
    xml = junit.read_text()
    assert xml.count("tool error: boom: RuntimeError: denied for ***") == 2
    results = (tmp_path / "o2" / "results.jsonl").read_text()
    for text in (shown.stdout + shown.stderr, doc_run.stdout + doc_run.stderr, xml, results):
        assert secret not in text
        assert "\x1b" not in text and "\x07" not in text
    assert shown.stderr.count("tool error: boom: RuntimeError: denied for ***") == 2, shown.stderr
    # The line read back by --resume keeps them.
    from asyncfc_cli.batch_output import report_from_line

    assert report_from_line(results.splitlines()[0]).tool_errors == [runs[0]["tool_errors"][0]]


def test_tool_errors_are_redacted_whole_then_cut_and_counted_past_five():
    from types import SimpleNamespace

    from asyncfc_cli.batch import MAX_TOOL_ERRORS, TOOL_ERROR_CHARS, tool_errors
    from asyncfc_cli.redaction import Redactor

    secret = "s3cr3t-" + "k" * 40
    # The secret straddles the cut: cut first, its first part would show.
    calls = [SimpleNamespace(tool="t", status="error", error="y" * (TOOL_ERROR_CHARS - 10) + secret)]
    calls += [SimpleNamespace(tool=f"t{i}", status=s, error=None) for i, s in enumerate(["timeout", "ok"] * 6)]
    lines = tool_errors(calls, Redactor([secret]))
    assert "s3cr3t" not in "".join(lines)
    assert len(lines) == MAX_TOOL_ERRORS + 1 and lines[1] == "t0: timeout"
    assert lines[-1].startswith("... and 2 more failed calls")


def test_planning_resolves_each_task_once_per_mode_however_many_rows(tmp_path, monkeypatch):
    # Resolving (reading the files, building the agent's tools) cost ~8 ms a row and
    # was done for every row; a row now only fills the prompt and the [sim] plan.
    from collections import Counter

    from asyncfc_cli import batch as engine
    from asyncfc_cli.spec import resolve

    prepared, read = Counter(), Counter()
    real_prepare, real_read = resolve.prepare_task, resolve.read_toml

    def counting_prepare(task, *args, **kwargs):
        prepared[(Path(task).name, kwargs.get("mode_override"))] += 1
        return real_prepare(task, *args, **kwargs)

    def counting_read(path, *args, **kwargs):
        read[Path(path).name] += 1
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(resolve, "prepare_task", counting_prepare)
    monkeypatch.setattr(resolve, "read_toml", counting_read)
    task = Path(__file__).resolve().parent.parent / "benchmarks" / "batch" / "lookup.toml"
    rows = [{"topic": f"topic {i}"} for i in range(300)]
    planned = engine.plan_batch([task], rows, ["sync", "async"], tmp_path / "o", repeat=2)
    assert len(planned) == 300 * 2 * 2
    assert prepared == Counter({("lookup.toml", "sync"): 1, ("lookup.toml", "async"): 1})
    assert read == Counter({"lookup.toml": 2, "agents.toml": 2})
    # Every row still gets its own prompt and key, as resolving it alone gives.
    alone = resolve.resolve_run(task, mode_override="async", overrides=rows[123])
    run = next(r for r in planned if r.params == rows[123] and r.mode == "async" and r.repeat == 1)
    assert run.spec.prompt == alone.prompt == "What is topic 123?" and run.spec.digest == alone.digest
    assert len({r.key for r in planned}) == len(planned)


def test_a_duplicate_row_is_found_whatever_the_order_of_its_keys(tmp_path):
    from asyncfc_cli import batch as engine
    from asyncfc_cli.spec import SpecError

    task = Path(__file__).resolve().parent.parent / "benchmarks" / "batch" / "lookup.toml"
    rows = [{"topic": str(i), "lang": "en"} for i in range(5000)] + [{"lang": "en", "topic": "7"}]
    with pytest.raises(SpecError) as caught:
        engine.plan_batch([task], rows, [None], tmp_path / "o", matrix=tmp_path / "m.jsonl")
    assert caught.value.key == "row 5001" and "the same parameters as row 8" in caught.value.message
