"""Path roots through the CLI: what a ``path = true`` value may name, and
what the program is actually given (docs/reliability.md, "Path roots").

Each test writes a task whose simulated model makes hostile calls, runs the
real ``asyncfc`` command, and checks both what the model was told and what
the program received or did.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import invoke

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def run_task(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> dict:
    task = tmp_path / "task.toml"
    task.write_text(text)
    if not (tmp_path / "agents.toml").exists():
        (tmp_path / "agents.toml").write_text("")  # keep agents discovery inside tmp_path
    trace = tmp_path / "trace.jsonl"
    result = invoke("run", str(task), "--json", "--trace", str(trace), "--mode", "sync",
                    env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def sim_steps(paths: list[str], tool: str) -> str:
    steps = "".join(
        f'[[sim.steps]]\nid = "s{i}"\ntool = "{tool}"\nargs = {{ path = {json.dumps(p)} }}\n\n'
        for i, p in enumerate(paths)
    )
    return f"[sim]\ndecode_tps = 5000\nttft = 0\n\n{steps}[sim.final]\nanswer = \"done\"\n"


# --- the shipped run_tests tool (agents.toml) ------------------------------------------------


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    """A copy of the example project, with a test file whose name starts with '-'."""
    project = tmp_path / "project"
    shutil.copytree(REPO / "examples" / "sample_project", project,
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    (project / "-test_odd.py").write_text("def test_odd():\n    assert True\n")
    return project


def test_run_tests_refuses_an_option_as_path_and_writes_nothing(tmp_path, code_dir):
    report_file = tmp_path / "x.xml"
    hostile = [
        f"--junitxml={report_file}",   # pytest writes the file, even after "--"
        "-p",                           # any option at all
        f"--rootdir={tmp_path}",
        "-",
    ]
    text = (f'agents_file = "{REPO / "agents.toml"}"\nagent = "inspector"\nprompt = "Run the tests."\n\n'
            + sim_steps(hostile + ["./-test_odd.py"], "run_tests"))
    report = run_task(tmp_path, text, env={"ASYNCFC_CODE_DIR": str(code_dir)})
    calls = report["tool_calls"]
    for call, value in zip(calls, hostile):
        assert call["status"] == "error", call
        assert "starts with '-'" in call["error"] and f"'./{value}'" in call["error"], call["error"]
    assert not report_file.exists()
    assert not list(tmp_path.rglob("*.xml"))
    # The way the message suggests works: ./-test_odd.py is a file, and pytest runs it.
    last = calls[-1]
    assert last["status"] == "ok", last
    tool_messages = [m["content"] for m in report["messages"] if m["role"] == "tool"]
    assert "1 passed" in tool_messages[-1]


# --- what the program receives ------------------------------------------------------------------

ARGV_TOOL = f"""
[tools.show]
description = "Print the argv it was given."
command = [{json.dumps(PY)}, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))", "--", "{{path}}"]
cwd = "root/work"
root = "root"
[tools.show.params]
path = {{ type = "string", description = "a path", path = true }}
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "work" / "inner").mkdir(parents=True)
    (root / "work" / "inner" / "ok.txt").write_text("fine\n")
    (root / "data.txt").write_text("data\n")
    (root / "work" / "link").symlink_to(root / "work" / "inner")
    (root / "work" / "-dash").write_text("dash\n")
    # A sibling whose name starts with the root's name: inside by string prefix only.
    (tmp_path / "rootkit").mkdir()
    (tmp_path / "rootkit" / "secret.txt").write_text("secret\n")
    (root / "work" / "to_rootkit").symlink_to(tmp_path / "rootkit")
    return tmp_path


def _program_args(report: dict) -> list:
    out = []
    for call, message in zip(report["tool_calls"], [m for m in report["messages"] if m["role"] == "tool"]):
        if call["status"] == "ok":
            out.append(json.loads(json.loads(message["content"])["stdout"])[-1])
        else:
            out.append(call["error"])
    return out


def test_the_program_gets_the_resolved_path_relative_to_its_cwd(tree, monkeypatch):
    paths = ["link/ok.txt", "inner/../link/ok.txt", f"{tree}/root/work/link", "../data.txt",
             "./-dash", ".", "inner/"]
    text = 'prompt = "p"\n[agent]\nmodel = "sim"\ntools = ["show"]\n' + ARGV_TOOL + sim_steps(paths, "show")
    report = run_task(tree, text)
    assert [c["status"] for c in report["tool_calls"]] == ["ok"] * len(paths)
    assert _program_args(report) == ["inner/ok.txt", "inner/ok.txt", "inner", "../data.txt",
                                     "./-dash", ".", "inner"]


@pytest.mark.parametrize("path", [
    "../../rootkit/secret.txt",         # beside the root, sharing its name as a prefix
    "to_rootkit/secret.txt",            # the same through a symlink
    "/proc/self/cwd/..",                # resolved in asyncfc: it cannot mean something else later
    "../..",
    "/etc/passwd",
])
def test_paths_outside_the_root_are_refused(tree, monkeypatch, path):
    monkeypatch.chdir(tree / "root")  # so /proc/self/cwd/.. is the root's parent
    text = 'prompt = "p"\n[agent]\nmodel = "sim"\ntools = ["show"]\n' + ARGV_TOOL + sim_steps([path], "show")
    report = run_task(tree, text)
    (call,) = report["tool_calls"]
    assert call["status"] == "error"
    assert "outside the allowed root" in call["error"] and f"{str(tree / 'root')!r}" in call["error"]


def test_proc_self_cwd_inside_the_root_names_what_asyncfc_resolved(tree, monkeypatch):
    # asyncfc runs from root/work/inner; the tool runs in root/work. The value
    # means asyncfc's directory, and the program is told so, not left to
    # resolve /proc/self/cwd in its own process.
    monkeypatch.chdir(tree / "root" / "work" / "inner")
    text = ('prompt = "p"\n[agent]\nmodel = "sim"\ntools = ["show"]\n' + ARGV_TOOL
            + sim_steps(["/proc/self/cwd/ok.txt"], "show"))
    report = run_task(tree, text)
    assert _program_args(report) == ["inner/ok.txt"]


def test_option_like_and_empty_paths_are_refused_without_a_root(tmp_path):
    tool = ARGV_TOOL.replace('root = "root"\n', "").replace('cwd = "root/work"\n', "")
    text = 'prompt = "p"\n[agent]\nmodel = "sim"\ntools = ["show"]\n' + tool + sim_steps(
        ["--help", "-", "", "./-ok", "plain"], "show")
    report = run_task(tmp_path, text)
    args = _program_args(report)
    assert "starts with '-'" in args[0] and "'./--help'" in args[0]
    assert "starts with '-'" in args[1]
    assert "the path is empty" in args[2]
    # Without a root nothing is resolved: the value goes through as written.
    assert args[3:] == ["./-ok", "plain"]
