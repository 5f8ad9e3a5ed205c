"""Runs and learned tool durations belong to the project (issue 21, item 8): the
directory of the agents.toml in use, wherever `asyncfc run` was started, unless
ASYNCFC_RUNS_DIR says where runs go. Real `asyncfc` processes, as a user runs them."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import asyncfc_argv, cli_env, invoke, run_cli


def env(**extra: str) -> dict[str, str]:
    out = cli_env(**extra)
    if "ASYNCFC_RUNS_DIR" not in extra:
        out.pop("ASYNCFC_RUNS_DIR", None)
    return out


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    """A project made by `asyncfc init`, run four ways at once: a task and a prompt from a
    subdirectory, a prompt from outside with --agents, and one with ASYNCFC_RUNS_DIR."""
    base = tmp_path_factory.mktemp("runsdir")
    root, outside, elsewhere = base / "proj", base / "outside", base / "chosen-runs"
    assert invoke("init", str(root)).exit_code == 0
    sub = root / "sub" / "deeper"
    sub.mkdir(parents=True)
    outside.mkdir()
    runs = {
        "task_in_sub": (["run", "../../tasks/hello.toml", "--json"], sub, env()),
        "prompt_in_sub": (["run", "-a", "hello", "Say hi", "--json"], sub, env()),
        "prompt_outside": (["run", "-a", "hello", "--agents", str(root / "agents.toml"), "Say hi", "--json"],
                           outside, env()),
        "env_chosen": (["run", str(root / "tasks" / "hello.toml"), "--json"], outside,
                       env(ASYNCFC_RUNS_DIR=str(elsewhere))),
    }

    def start(args, cwd, environment):
        proc = subprocess.run(asyncfc_argv(*args), cwd=cwd, env=environment, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    with ThreadPoolExecutor(4) as pool:
        futures = {name: pool.submit(start, *spec) for name, spec in runs.items()}
        reports = {name: f.result() for name, f in futures.items()}
    return {"root": root, "sub": sub, "outside": outside, "elsewhere": elsewhere, "reports": reports}


def test_runs_started_anywhere_are_recorded_in_the_project(project):
    root, reports = project["root"], project["reports"]
    for name in ("task_in_sub", "prompt_in_sub", "prompt_outside"):
        trace = Path(reports[name]["trace"])
        assert trace.parent.resolve() == (root / ".asyncfc" / "runs").resolve(), (name, trace)
        assert trace.is_file()
    # nothing written where the commands were started
    assert not (project["sub"] / ".asyncfc").exists() and not (root / "sub" / ".asyncfc").exists()
    assert not (project["outside"] / ".asyncfc").exists()


def test_runs_dir_env_still_chooses_where_runs_go(project):
    trace = Path(project["reports"]["env_chosen"]["trace"])
    assert trace.parent == project["elsewhere"] and trace.is_file()


def test_trace_list_at_the_root_and_below_it_sees_every_run_of_the_project(project):
    root, reports = project["root"], project["reports"]
    wanted = {Path(reports[n]["trace"]).stem for n in ("task_in_sub", "prompt_in_sub", "prompt_outside")}
    for cwd in (root, project["sub"]):
        done = run_cli("trace", "list", "--json", cwd=cwd, env=env())
        assert done.code == 0, done.stderr
        listed = {json.loads(line)["run_id"] for line in done.stdout.splitlines()}
        assert listed == wanted, cwd
        # `asyncfc trace latest` there opens a run of this project
        shown = run_cli("trace", "latest", "--json", cwd=cwd, env=env())
        assert shown.code == 0 and json.loads(shown.stdout)["run_id"] in wanted


def test_learned_tool_durations_are_one_store_per_project(project):
    store = project["root"] / ".asyncfc" / "latency.json"
    learned = json.loads(store.read_text())
    # the task run from the subdirectory learned here, not where it was started
    assert {key.split("#")[0] for key in learned} >= {"count_words", "greet"}
    assert sum(len(v) for k, v in learned.items() if k.startswith("greet#")) == 1
    # ASYNCFC_RUNS_DIR moves the store with the runs
    moved = json.loads((project["elsewhere"] / "latency.json").read_text())
    assert {key.split("#")[0] for key in moved} >= {"count_words", "greet"}


def test_a_link_in_the_projects_state_directory_is_refused(tmp_path):
    """.asyncfc is asyncfc's own wherever the run starts: a link planted there that leads out
    of the project is not followed."""
    root = tmp_path / "proj"
    assert invoke("init", str(root)).exit_code == 0
    away = tmp_path / "away"
    away.mkdir()
    (root / ".asyncfc").symlink_to(away)
    sub = root / "sub"
    sub.mkdir()
    done = run_cli("run", "-a", "hello", "Say hi", "--json", cwd=sub, env=env())
    assert done.code == 2, done.stderr
    assert "outside" in json.loads(done.stdout)["error"]
    assert list(away.iterdir()) == []
