"""``asyncfc batch``'s exit code when its runs end differently, through the CLI.

The order (README, "Exit codes"; ``asyncfc batch --help``) is 130, then 2,
then 1, then 3: a run that exits 2 (a refused key, a tool server that would
not start) is something to fix before any other result means anything, so it
decides the batch's code whatever else failed. Every combination is pinned
in tests/test_units.py; here one batch meets it as a user would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import DATA, invoke

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # runs remember tool durations in ./.asyncfc


def test_a_run_that_exits_2_makes_the_batch_exit_2_among_failed_and_unmet_runs(tmp_path):
    broken = tmp_path / "broken" / "task.toml"
    broken.parent.mkdir()
    (broken.parent / "agents.toml").write_text("")
    server = [sys.executable, str(HERE / "mcp_server.py"), "--mode", "exit"]
    broken.write_text(f'prompt = "p"\n[agent]\nmodel = "sim"\ntools = ["srv"]\n'
                      f'[tools.srv]\nmcp = {{ command = {json.dumps(server)} }}\n'
                      '[sim]\n[sim.final]\nanswer = "x"\n')
    tasks = [DATA / "ok.toml", DATA / "unmet.toml", DATA / "max_turns.toml", broken]
    result = invoke("batch", *map(str, tasks), "--out", str(tmp_path / "out"), "--json",
                    catch_exceptions=False)
    assert result.exit_code == 2, result.output
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 2
    codes = {Path(r["task"]).parent.name if r["task"].endswith("task.toml") else Path(r["task"]).name:
             r["exit_code"] for r in doc["runs"]}
    # Every other run ran to its own end: the exit 2 is one run's, not a refusal to start.
    assert codes == {"ok.toml": 0, "unmet.toml": 3, "max_turns.toml": 1, "broken": 2}
    broken_run = next(r for r in doc["runs"] if r["exit_code"] == 2)
    assert "failed to start" in broken_run["error"]

    # Without the run that exits 2, a failed run decides; without that, an unmet expectation.
    for tasks, code in ((tasks[:3], 1), (tasks[:2], 3), (tasks[:1], 0)):
        again = invoke("batch", *map(str, tasks), "--out", str(tmp_path / f"out{code}"), "-q",
                       catch_exceptions=False)
        assert again.exit_code == code, again.output


KEYLESS_ENV = {name: None for name in ("OPENAI_API_KEY", "ASYNCFC_MODEL", "ASYNCFC_API_BASE", "ASYNCFC_API_KEY")}


def test_a_run_whose_key_is_missing_is_reported_not_started_and_the_others_run(tmp_path):
    """``asyncfc batch tasks/*.toml`` without OPENAI_API_KEY used to stop every
    run with exit 2 and ``"file": null``. Now the runs that cannot start (one
    whose key LiteLLM would read, one decided before LiteLLM is imported) are
    named with their reason and fix in JSON, JUnit and text; the others run;
    the batch exits 2, before the unmet run's 3 (README: batch exit codes)."""
    import xml.etree.ElementTree as ET

    keyed = []
    for name, model in (("prefixed", "openai/gpt-4o-mini"), ("bare", "gpt-4o-mini")):
        task = tmp_path / name / "task.toml"
        task.parent.mkdir()
        (task.parent / "agents.toml").write_text("")
        task.write_text(f'prompt = "p"\n[agent]\nmodel = "{model}"\n')
        keyed.append(task)
    tasks = [DATA / "ok.toml", keyed[0], DATA / "unmet.toml", keyed[1]]
    junit = tmp_path / "junit.xml"
    result = invoke("batch", *map(str, tasks), "--out", str(tmp_path / "out"), "--json", "--junit", str(junit),
                    env=KEYLESS_ENV, catch_exceptions=False)
    assert result.exit_code == 2, result.output
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 2 and doc["counts"]["passed"] == 1 and doc["counts"]["unmet"] == 1
    runs = {r["task"]: r for r in doc["runs"]}
    assert runs[str(DATA / "ok.toml")]["status"] == "passed"
    assert runs[str(DATA / "unmet.toml")]["exit_code"] == 3
    for task in keyed:
        run = runs[str(task)]
        assert (run["status"], run["run_status"], run["exit_code"], run["trace"]) == ("failed", "not_started", 2, None)
        assert "not started" in run["error"] and "OPENAI_API_KEY is not set" in run["error"]
        assert "export OPENAI_API_KEY" in run["fix"]
    cases = {case.get("file"): case for case in ET.parse(junit).iter("testcase")}
    for task in keyed:
        error = cases[str(task)].find("error")
        assert error is not None and error.get("type") == "not_started" and "OPENAI_API_KEY" in error.text

    text = invoke("batch", *map(str, tasks), "--out", str(tmp_path / "out2"), env=KEYLESS_ENV,
                  catch_exceptions=False)
    assert text.exit_code == 2
    assert text.output.count("not started: model:") == 2 and "fix: export OPENAI_API_KEY" in text.output
    assert "batch: 4 runs · 1 passed · 2 failed · 1 unmet" in text.output
