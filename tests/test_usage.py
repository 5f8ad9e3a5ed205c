"""The command line's own surface (issue 21, items 7, 10 and the CLI-output part of 11):
usage errors read like every asyncfc error, --help speaks the user's words and
completes model and agent names, and what list commands print holds together."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import cli_env, invoke, run_cli

HERE = Path(__file__).parent
SYNC_TRACE = HERE / "data" / "traces" / "quickstart_sync.jsonl"
MCP_SERVER = HERE / "mcp_server.py"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A directory where `asyncfc init` ran, with one more model and agent."""
    path = tmp_path_factory.mktemp("usage")
    assert invoke("init", str(path)).exit_code == 0
    agents = path / "agents.toml"
    agents.write_text(agents.read_text() + '\n[models.fastsim]\nmodel = "sim"\n\n'
                      '[agents.helper]\nmodel = "fastsim"\ntools = []\n')
    return path


# --- item 7: usage errors ------------------------------------------------------------------------


USAGE_CASES = [
    # (args, environment, the error line's text, the fix line's text)
    (["run", "t.toml", "--mode", "bogus"], {}, "error: --mode: 'bogus' is not one of 'sync', 'parallel', 'async'",
     "fix: use one of: sync, parallel, async (asyncfc run --help"),
    (["run", "t.toml"], {"ASYNCFC_MODE": "bogus"},
     "error: ASYNCFC_MODE (the environment variable behind --mode): 'bogus' is not one of",
     "fix: set ASYNCFC_MODE to a valid value or unset it; use one of: sync, parallel, async"),
    (["run"], {}, "error: missing argument TASK|PROMPT", "fix: give the TASK|PROMPT argument (asyncfc run --help"),
    (["run", "t.toml", "--bogus"], {}, "error: no such option: --bogus", "fix: asyncfc run --help"),
    (["run", "t.toml", "--timeout", "abc"], {}, "error: --timeout: input should be a valid number",
     "fix: asyncfc run --help"),
    (["trace", "list", "--limit", "-1"], {}, "error: --limit: input should be greater than or equal to 0",
     "fix: asyncfc trace list --help"),
    (["nope"], {}, "error: no such command 'nope'", "fix: asyncfc --help"),
    (["--nope"], {}, "error: no such option: --nope", "fix: asyncfc --help"),
]


@pytest.mark.parametrize("args, env, error, fix", USAGE_CASES, ids=[" ".join(c[0]) + str(c[1]) for c in USAGE_CASES])
def test_usage_errors_read_like_every_asyncfc_error(args, env, error, fix):
    env = {"ASYNCFC_MODE": None, "ASYNCFC_MODEL": None, **env}
    done = invoke(*args, env=env, catch_exceptions=True)
    assert done.exit_code == 2, done.output
    lines = done.stderr.splitlines()
    assert lines[0].startswith(error) and lines[1].strip().startswith(fix), done.stderr
    assert "Usage:" not in done.stderr and "Value error" not in done.stderr and done.stdout == ""
    if "ASYNCFC_MODE" not in env or env["ASYNCFC_MODE"] is None:
        assert "ASYNCFC_MODE" not in done.stderr  # the variable is named only when the value came from it

    as_json = invoke(*args, "--json", env=env, catch_exceptions=True)
    report = json.loads(as_json.stdout)
    assert as_json.exit_code == 2
    assert set(report) == {"status", "exit_code", "error", "fix"}  # error_object's shape
    assert (report["status"], report["exit_code"]) == ("usage_error", 2)
    assert report["error"].startswith(error.removeprefix("error: ")) and report["fix"].startswith(fix.removeprefix("fix: "))


def test_a_usage_error_in_a_real_process_is_one_json_object(tmp_path):
    done = run_cli("run", "t.toml", "--mode", "bogus", "--json", cwd=tmp_path)
    assert done.code == 2
    assert json.loads(done.stdout)["status"] == "usage_error"
    assert done.stderr.startswith("error: --mode: 'bogus'") and "\n  fix: use one of" in done.stderr


def test_json_after_double_dash_is_an_argument_not_the_flag():
    done = invoke("run", "--bogus", "--", "--json", catch_exceptions=True)
    assert done.exit_code == 2 and done.stdout == "" and "no such option: --bogus" in done.stderr


# --- item 10: --help and completion ---------------------------------------------------------------


def _command_paths() -> list[list[str]]:
    import typer

    from asyncfc_cli.cli import app

    paths = []

    def walk(command, path):
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            if not sub.hidden:
                walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def test_help_has_no_python_types_and_names_arguments_in_capitals():
    paths = _command_paths()
    assert len(paths) > 15
    for path in paths:
        done = invoke(*path, "--help")
        assert done.exit_code == 0, (path, done.output)
        text = done.output
        assert not re.search(r"list\[|<\w+ range>|<Path>|<bool>", text), (path, text)
        usage = next(line for line in text.splitlines() if line.startswith("Usage:"))
        assert "{" not in usage and not re.search(r"\[?[a-z_]+\]?\.\.\.$|\[[a-z_]+\]$", usage), usage
    assert "Usage: asyncfc batch [OPTIONS] TASKS..." in invoke("batch", "--help").output
    assert "Usage: asyncfc trace compare [OPTIONS] A B" in invoke("trace", "compare", "--help").output


def test_help_shows_the_choices_of_batch_mode_and_sim_protocol():
    from asyncfc_cli.modes import NAMES
    from asyncfc_cli.sim.plan import PROTOCOLS

    assert f"--mode <{'|'.join(NAMES)}>[,...]" in invoke("batch", "--help").output
    assert f"--protocol <{'|'.join(PROTOCOLS)}>" in invoke("sim", "serve", "--help").output
    assert "--set <key=value>" in invoke("run", "--help").output


def test_run_is_the_first_command_listed():
    text = invoke("--help").output
    commands = text[text.index("Commands:"):].splitlines()[1:]
    assert commands[0].split()[0] == "run"


def complete(words: str, cwd: Path, shell: str = "bash") -> list[str]:
    """What the installed completion script gets back for ``words`` (the cursor at the end)."""
    argv = shlex.split(words) + ([""] if words.endswith(" ") else [])
    env = cli_env(_ASYNCFC_COMPLETE=f"complete_{shell}", COMP_WORDS=" ".join(argv), COMP_CWORD=str(len(argv) - 1),
                  _TYPER_COMPLETE_ARGS=words)
    done = subprocess.run([sys.executable, "-m", "asyncfc_cli.cli"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_completion_offers_the_projects_models_and_agents(project, tmp_path):
    assert complete("asyncfc run --model ", project) == ["sim", "openai", "fastsim"]
    assert complete("asyncfc run --model fa", project) == ["fastsim"]
    assert complete("asyncfc run -a ", project) == ["hello", "helper"]
    assert complete("asyncfc run --agent hel", project / "tasks") == ["hello", "helper"]  # found from a subdirectory
    assert complete(f"asyncfc run --agents {project / 'agents.toml'} -a he", tmp_path) == ["hello", "helper"]
    # no project: only the simulated model; a broken agents.toml offers nothing and fails nothing
    assert complete("asyncfc run --model ", tmp_path) == ["sim"]
    (tmp_path / "agents.toml").write_text("[models\n")
    assert complete("asyncfc run --model ", tmp_path) == ["sim"] and complete("asyncfc run -a ", tmp_path) == []


# --- item 11: what the commands print -------------------------------------------------------------


def test_a_prompt_from_stdin_loses_its_final_line_break(project):
    done = run_cli("run", "-a", "hello", "-", "--json", cwd=project, stdin="Say hi\n\n",
                   env=cli_env(ASYNCFC_RUNS_DIR=str(project / "runs")))
    report = json.loads(done.stdout)
    prompts = [m["content"] for m in report["messages"] if m["role"] == "user"]
    assert prompts[0] == "Say hi", report["messages"]


def test_an_mcp_tool_has_one_timeout_with_or_without_its_agent(tmp_path):
    server = f'{{ command = [{json.dumps(sys.executable)}, {json.dumps(str(MCP_SERVER))}] }}'
    (tmp_path / "agents.toml").write_text(
        f'[tools.srv]\nmcp = {server}\n\n[tools.timed]\nmcp = {server}\nprefix = "t_"\ntimeout = 7\n\n'
        '[agents.a]\nmodel = "sim"\ntools = ["srv", "timed"]\n\n'
        '[agents.strict]\nmodel = "sim"\ntools = ["srv"]\ntool_timeout = 3\n')
    every = json.loads(run_cli("tools", "--json", cwd=tmp_path).stdout)["tools"]
    of_a = json.loads(run_cli("tools", "a", "--json", cwd=tmp_path).stdout)["tools"]
    strict = json.loads(run_cli("tools", "strict", "--json", cwd=tmp_path).stdout)["tools"]
    assert len(every) >= 2
    assert {t["name"]: t["timeout"] for t in every} == {t["name"]: t["timeout"] for t in of_a if t["name"] != "wait"}
    assert {t["timeout"] for t in every} == {60.0, 7.0}
    assert {t["timeout"] for t in strict if t["name"] != "wait"} == {3.0}  # the agent's own tool_timeout
    text = run_cli("tools", cwd=tmp_path).stdout
    assert "timeout none" not in text and "timeout 60s" in text and "default tool_timeout" in text


def runs_like(tmp_path: Path, task: str, started_late_by: int = 6) -> Path:
    """A runs directory with one run: the header's started_at some seconds after its run id's time."""
    runs = tmp_path / "runs"
    runs.mkdir()
    lines = [line for line in SYNC_TRACE.read_text().splitlines() if line.strip()]
    header = json.loads(lines[0])
    header.update(run_id="20260105T101010-abc123", task=task, model="sim",
                  started_at=f"2026-01-05T10:10:{10 + started_late_by}+00:00")
    (runs / "20260105T101010-abc123.jsonl").write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    return runs


def test_trace_list_keeps_file_names_whole_at_80_columns(tmp_path):
    runs = runs_like(tmp_path, "/home/someone/projects/a-rather-long-project/tasks/quickstart.toml")
    table = invoke("trace", "list", "--dir", str(runs), env={"COLUMNS": "80"}).output
    assert all(len(line) <= 80 for line in table.splitlines()), table
    assert re.search(r"20260105T101010-abc123\s+quickstart\.toml\s+sim\s", table), table
    wide = invoke("trace", "list", "--dir", str(runs), env={"COLUMNS": "160"}).output
    assert "/home/someone/projects/a-rather-long-project/tasks/quickstart.toml" in wide  # room: the whole path


def test_trace_list_time_is_the_run_ids_clock(tmp_path):
    runs = runs_like(tmp_path, "tasks/quickstart.toml")
    table = invoke("trace", "list", "--dir", str(runs), env={"COLUMNS": "120"}).output
    local = datetime(2026, 1, 5, 10, 10, 10, tzinfo=timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert table.splitlines()[1].startswith(f"{local}  20260105T101010-abc123"), table
    # a run id not made by asyncfc: the header's time
    os.rename(runs / "20260105T101010-abc123.jsonl", runs / "mine.jsonl")
    lines = (runs / "mine.jsonl").read_text().splitlines()
    header = {**json.loads(lines[0]), "run_id": "mine"}
    (runs / "mine.jsonl").write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    late = datetime(2026, 1, 5, 10, 10, 16, tzinfo=timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert late in invoke("trace", "list", "--dir", str(runs), env={"COLUMNS": "120"}).output
