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
