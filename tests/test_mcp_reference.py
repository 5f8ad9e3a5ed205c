"""Third-party MCP servers through ``asyncfc run``: the reference servers
``mcp-server-git`` and ``mcp-server-time`` (pip packages of the `test` extra,
written by others with the SDK's high-level server API), over stdio, in every
mode, on a ``[sim]`` plan that calls their tools. Each result is checked
against what git and zoneinfo say directly, so a value asyncfc mangled on its
way (structured content, text, a reference into a result) shows up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from asyncfc_cli.trace import read_trace

from conftest import invoke

pytest.importorskip("mcp_server_git", reason="pip install -e '.[test]' brings mcp-server-git")
pytest.importorskip("mcp_server_time", reason="pip install -e '.[test]' brings mcp-server-time")

PY = sys.executable
MODES = ["sync", "parallel", "async"]
SIM = "[sim]\ndecode_tps = 5000\nttft = 0\n"


def run(path: Path, mode: str):
    trace = path.parent / f"trace-{mode}.jsonl"
    result = invoke("run", str(path), "--json", "--mode", mode, "--trace", str(trace),
                    catch_exceptions=False)
    assert result.stdout.strip(), result.output
    return result, json.loads(result.stdout), trace


def write_task(tmp_path: Path, body: str) -> Path:
    (tmp_path / "agents.toml").write_text("")
    path = tmp_path / "task.toml"
    path.write_text(textwrap.dedent(body))
    return path


def check_trace(trace: Path, report: dict) -> None:
    """Every call the plan made ran once, and the trace renders."""
    data = read_trace(trace)
    begun = [e["call_id"] for e in data.of_type("tool_begin")]
    assert sorted(begun) == sorted(c["id"] for c in report["tool_calls"])
    assert len(begun) == len(set(begun))
    shown = invoke("trace", str(trace), catch_exceptions=True)
    assert shown.exit_code == 0, shown.output


# --- mcp-server-git ------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(repo.parent / "home"),
           "GIT_AUTHOR_NAME": "Ada Lovelace", "GIT_AUTHOR_EMAIL": "ada@example.org",
           "GIT_COMMITTER_NAME": "Ada Lovelace", "GIT_COMMITTER_EMAIL": "ada@example.org",
           "GIT_AUTHOR_DATE": "2026-03-01T12:00:00+00:00", "GIT_COMMITTER_DATE": "2026-03-01T12:00:00+00:00"}
    done = subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture
def repo(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    (tmp_path / "home").mkdir()
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("first\n")
    git(path, "add", "README.md")
    git(path, "commit", "-q", "-m", "Add the README")
    (path / "README.md").write_text("first\nsecond\n")
    (path / "notes.txt").write_text("untracked\n")
    git(path, "commit", "-q", "-a", "-m", "Extend the README")
    (path / "README.md").write_text("first\nsecond\nthird\n")  # a change not staged
    return path


@pytest.mark.parametrize("mode", MODES)
def test_mcp_server_git_status_and_log_match_git(tmp_path, repo, mode):
    server = json.dumps([PY, "-m", "mcp_server_git", "--repository", str(repo)])
    path = write_task(tmp_path, f"""
        prompt = "What is the state of the repository at {repo}?"
        [agent]
        model = "sim"
        tools = ["git"]
        [tools.git]
        mcp = {{ command = {server}, env = {{ HOME = {json.dumps(str(tmp_path / "home"))} }} }}
        include = ["git_status", "git_log"]
        timeout = 60
        startup_timeout = 60
        {SIM}
        [[sim.steps]]
        id = "status"
        tool = "git_status"
        args = {{ repo_path = {json.dumps(str(repo))} }}
        [[sim.steps]]
        id = "log"
        tool = "git_log"
        args = {{ repo_path = {json.dumps(str(repo))}, max_count = 5 }}
        [sim.final]
        answer = "{{status}}\\n=====\\n{{log}}"
        """)
    result, report, trace = run(path, mode)
    assert result.exit_code == 0, result.output
    assert report["status"] == "ok"
    assert {c["tool"]: c["status"] for c in report["tool_calls"]} == {"git_status": "ok", "git_log": "ok"}
    status, log = report["answer"].split("\n=====\n")
    # The server's text result is what `git status` prints, unchanged on its way.
    assert status == "Repository status:\n" + git(repo, "status").rstrip("\n")
    assert "Changes not staged for commit" in status and "README.md" in status
    commits = [line.split("\0") for line in git(repo, "log", "--format=%H%x00%an%x00%s").splitlines()]
    assert len(commits) == 2
    shown = re.findall(r"Commit: ([0-9a-f]{40})\nAuthor: (.*)\nDate: .*\nMessage: (.*)\n", log)
    assert [list(c) for c in shown] == commits
    check_trace(trace, report)
    (source,) = read_trace(trace).of_type("tool_source")
    assert source["kind"] == "mcp" and sorted(source["tools"]) == ["git_log", "git_status"]


def test_mcp_server_git_refuses_a_path_outside_its_repository(tmp_path, repo):
    """The server's own confinement reaches the model as an error result, and the run goes on."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    server = json.dumps([PY, "-m", "mcp_server_git", "--repository", str(repo)])
    path = write_task(tmp_path, f"""
        prompt = "Status of {outside}?"
        [agent]
        model = "sim"
        tools = ["git"]
        [tools.git]
        mcp = {{ command = {server} }}
        include = ["git_status"]
        startup_timeout = 60
        {SIM}
        [[sim.steps]]
        id = "status"
        tool = "git_status"
        args = {{ repo_path = {json.dumps(str(outside))} }}
        [sim.final]
        answer = "{{status}}"
        """)
    result, report, trace = run(path, "async")
    assert result.exit_code == 0, result.output
    (call,) = report["tool_calls"]
    assert call["status"] == "error" and "outside the allowed repository" in call["error"]
    check_trace(trace, report)


# --- mcp-server-time -----------------------------------------------------------------------

AT = "09:30"


def expected_conversion(source: str, target: str) -> set[str]:
    """What zoneinfo says AT in ``source`` is in ``target``, today (and, when the
    run straddles midnight in ``source``, tomorrow too)."""
    out = set()
    for when in (datetime.now(ZoneInfo(source)), datetime.now(ZoneInfo(source)) + timedelta(minutes=5)):
        hour, minute = map(int, AT.split(":"))
        start = datetime(when.year, when.month, when.day, hour, minute, tzinfo=ZoneInfo(source))
        out.add(start.astimezone(ZoneInfo(target)).isoformat(timespec="seconds"))
    return out


def offset_hours(source: str, target: str, date: datetime) -> str:
    hours = ((date.astimezone(ZoneInfo(target)).utcoffset() - date.utcoffset()).total_seconds()) / 3600
    return f"{hours:+.1f}h" if hours.is_integer() else f"{hours:+.2f}".rstrip("0").rstrip(".") + "h"


@pytest.mark.parametrize("mode", MODES)
def test_mcp_server_time_current_and_converted_times_match_zoneinfo(tmp_path, mode):
    server = json.dumps([PY, "-m", "mcp_server_time", "--local-timezone", "UTC"])
    path = write_task(tmp_path, f"""
        prompt = "What time is it in Paris, and what is {AT} there in Tokyo?"
        [agent]
        model = "sim"
        tools = ["clock"]
        [tools.clock]
        mcp = {{ command = {server} }}
        timeout = 60
        startup_timeout = 60
        {SIM}
        [[sim.steps]]
        id = "now"
        tool = "get_current_time"
        args = {{ timezone = "Europe/Paris" }}
        [[sim.steps]]
        id = "conv"
        tool = "convert_time"
        # The source zone is read out of the first result: in async mode a
        # reference into its structured content ("${{f1.timezone}}").
        args = {{ source_timezone = "{{now.timezone}}", time = "{AT}", target_timezone = "Asia/Tokyo" }}
        [sim.final]
        answer = "{{now.timezone}}|{{now.datetime}}|{{now.day_of_week}}|{{conv.source.datetime}}|{{conv.target.datetime}}|{{conv.time_difference}}"
        """)
    before = datetime.now(ZoneInfo("Europe/Paris"))
    result, report, trace = run(path, mode)
    after = datetime.now(ZoneInfo("Europe/Paris"))
    assert result.exit_code == 0, result.output
    zone, now, weekday, source, target, difference = report["answer"].split("|")
    assert zone == "Europe/Paris"
    stamp = datetime.fromisoformat(now)
    # The server's clock is this machine's: the time it read lies within the run.
    assert before.replace(microsecond=0) <= stamp <= after
    assert stamp.utcoffset() == stamp.astimezone(ZoneInfo("Europe/Paris")).utcoffset()
    assert weekday == stamp.strftime("%A")
    assert target in expected_conversion("Europe/Paris", "Asia/Tokyo")
    source_dt = datetime.fromisoformat(source)
    assert source_dt.strftime("%H:%M") == AT
    assert datetime.fromisoformat(target) == source_dt
    assert difference == offset_hours("Europe/Paris", "Asia/Tokyo", source_dt)
    conv = next(c for c in report["tool_calls"] if c["tool"] == "convert_time")
    assert conv["status"] == "ok" and conv["arguments"]["source_timezone"] == "Europe/Paris"
    if mode == "async":
        # The zone travelled as a reference into the first result's structured content.
        created = {e["tool"]: e for e in read_trace(trace).of_type("future_created")}
        assert created["convert_time"]["deps"] == [created["get_current_time"]["future"]]
    check_trace(trace, report)


def test_mcp_server_time_rejects_an_unknown_zone_as_an_error_the_model_reads(tmp_path):
    server = json.dumps([PY, "-m", "mcp_server_time", "--local-timezone", "UTC"])
    path = write_task(tmp_path, f"""
        prompt = "Time on Mars?"
        [agent]
        model = "sim"
        tools = ["clock"]
        [tools.clock]
        mcp = {{ command = {server} }}
        startup_timeout = 60
        {SIM}
        [[sim.steps]]
        id = "now"
        tool = "get_current_time"
        args = {{ timezone = "Mars/Olympus_Mons" }}
        [sim.final]
        answer = "{{now}}"
        """)
    result, report, trace = run(path, "sync")
    assert result.exit_code == 0, result.output
    (call,) = report["tool_calls"]
    assert call["status"] == "error" and "Invalid timezone" in call["error"]
    check_trace(trace, report)
