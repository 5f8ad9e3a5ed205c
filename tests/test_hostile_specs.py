"""Bad spec files, and ``validate`` agreeing with ``run`` (docs/reliability.md).

Each case is checked through both commands of the typer app: ``asyncfc
validate`` must refuse exactly what ``asyncfc run`` refuses, with the same
message (exit 2, file, key and fix), and nothing may run (no trace).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncfc_cli import futures, spec

from conftest import invoke

# A command tool: python tools would need a module of their own per test
# (one module name may not come from two files in a process).
AGENTS = """
[tools.echo]
description = "Print the text."
command = ["echo", "{text}"]
[tools.echo.params]
text = { type = "string", description = "anything" }

[agents.a]
model = "sim"
tools = ["echo"]
mode = "async"
"""

PLAN = """
[sim]
ttft = 0
decode_tps = 2000
[[sim.steps]]
id = "e"
tool = "echo"
args = { text = "hi" }
[sim.final]
answer = "{e}"
"""


def project(tmp_path: Path, task: str | bytes, agents: str = AGENTS) -> tuple[Path, Path]:
    (tmp_path / "agents.toml").write_text(agents)
    path = tmp_path / "task.toml"
    path.write_bytes(task if isinstance(task, bytes) else task.encode())
    return path, tmp_path / "agents.toml"


def refused_by_both(tmp_path: Path, task: Path, needle: str, *extra: str, same: bool = True) -> str:
    """validate and run both exit 2 naming ``needle`` and the task; run writes no trace."""
    checked = invoke("validate", task)
    assert checked.exit_code == 2, checked.output
    trace = tmp_path / "t.jsonl"
    ran = invoke("run", task, "--trace", trace, *extra)
    assert ran.exit_code == 2, ran.output
    assert not trace.exists()
    for result in (checked, ran):
        assert needle in result.stderr and "Traceback" not in result.output
    # One check: the same words from both commands.
    assert not same or checked.stderr.split("error: ", 1)[1] == ran.stderr.split("error: ", 1)[1]
    return ran.stderr


def test_the_example_project_is_valid_as_is(tmp_path):
    path, agents = project(tmp_path, 'agent = "a"\nprompt = "p"\n' + PLAN)
    assert invoke("validate", path, agents).exit_code == 0
    ran = invoke("run", path, "--trace", tmp_path / "ok.jsonl", "-q")
    assert ran.exit_code == 0 and "hi" in ran.stdout


@pytest.mark.parametrize("depth", [100, 50_000])
def test_deeply_nested_toml(tmp_path, depth):
    path, _ = project(tmp_path, 'agent = "a"\nprompt = "p"\nx = ' + "[" * depth + "]" * depth + "\n")
    stderr = refused_by_both(tmp_path, path, "nested more than 64 levels deep")
    assert "fix: flatten" in stderr


def test_a_spec_that_is_not_utf8(tmp_path):
    path, _ = project(tmp_path, 'agent = "a"\nprompt = "caf\xe9"\n'.encode("latin-1"))
    stderr = refused_by_both(tmp_path, path, "not UTF-8 text (line 2")
    assert "fix: save the file as UTF-8" in stderr


def test_a_binary_spec(tmp_path):
    path, _ = project(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    refused_by_both(tmp_path, path, "not UTF-8 text")


def test_an_empty_file(tmp_path):
    path, _ = project(tmp_path, "")
    # validate cannot tell a task from an agents file here, so its fix names both.
    refused_by_both(tmp_path, path, "the file is empty", same=False)
    empty_agents = tmp_path / "empty.toml"
    empty_agents.write_text("# nothing yet\n")
    checked = invoke("validate", empty_agents)
    assert checked.exit_code == 2 and "the file is empty" in checked.stderr


def test_an_unset_variable_in_a_section_the_run_uses(tmp_path, monkeypatch):
    monkeypatch.delenv("ASYNCFC_SURELY_UNSET", raising=False)
    agents = AGENTS.replace('command = ["echo"', 'command = ["${ASYNCFC_SURELY_UNSET}"')
    path, agents_path = project(tmp_path, 'agent = "a"\nprompt = "p"\n' + PLAN, agents)
    refused_by_both(tmp_path, path, "environment variable ASYNCFC_SURELY_UNSET is not set")
    # The agents file alone: its agent a uses that tool, so it cannot run.
    checked = invoke("validate", agents_path)
    assert checked.exit_code == 2 and "tools.echo" in checked.stderr and "ASYNCFC_SURELY_UNSET" in checked.stderr
    # In the task's own [sim] plan (used: the model is the simulated one).
    agents_path.write_text(AGENTS)
    path.write_text('agent = "a"\nprompt = "p"\n' + PLAN.replace('"hi"', '"${ASYNCFC_SURELY_UNSET}"'))
    refused_by_both(tmp_path, path, "sim.steps[0].args.text: environment variable ASYNCFC_SURELY_UNSET")


def test_a_sim_step_calling_a_tool_the_agent_lacks(tmp_path):
    path, _ = project(tmp_path, 'agent = "a"\nprompt = "p"\n' + PLAN.replace('tool = "echo"', 'tool = "ecoh"'))
    stderr = refused_by_both(tmp_path, path, "sim.steps[0].tool: step 'e' calls 'ecoh', which agent 'a' does not have")
    assert "use one of: echo, wait" in stderr
    # wait is a tool only in async mode.
    path.write_text('agent = "a"\nprompt = "p"\n' + PLAN.replace('tool = "echo"', 'tool = "wait"'))
    assert invoke("validate", path).exit_code == 0
    ran = invoke("run", path, "--mode", "sync", "--trace", tmp_path / "s.jsonl")
    assert ran.exit_code == 2 and "does not have (in sync mode)" in ran.stderr


def test_a_sim_step_may_call_an_unknown_tool_on_purpose(tmp_path):
    plan = PLAN.replace('tool = "echo"', 'tool = "ghost"').replace("[sim]\n", '[sim]\nunknown_tools = ["ghost"]\n', 1)
    path, _ = project(tmp_path, 'agent = "a"\nprompt = "p"\n' + plan)
    assert invoke("validate", path).exit_code == 0
    ran = invoke("run", path, "--trace", tmp_path / "ok.jsonl", "--json")
    assert ran.exit_code == 0, ran.output
    assert "unknown tool 'ghost'" in ran.stdout
    path.write_text('agent = "a"\nprompt = "p"\n' + plan.replace('["ghost"]', '"ghost"'))
    refused_by_both(tmp_path, path, "sim.unknown_tools: must be a list of tool names")


def test_expecting_a_tool_the_agent_does_not_have(tmp_path):
    path, _ = project(tmp_path, 'agent = "a"\nprompt = "p"\n[expect]\ntools_called = ["echo", "fetch"]\n' + PLAN)
    stderr = refused_by_both(tmp_path, path, "expect.tools_called[1]: agent 'a' has no tool 'fetch'")
    assert "fix: use one of the agent's tools: echo" in stderr


def test_a_task_tool_may_not_silently_replace_the_agents_file_tool(tmp_path):
    task = 'agent = "a"\nprompt = "p"\n[tools.echo]\ncommand = ["echo", "mine"]\n' + PLAN
    path, _ = project(tmp_path, task)
    stderr = refused_by_both(tmp_path, path, "tools.echo: tool 'echo' is also defined in")
    assert "give the task's tool another name" in stderr


@pytest.mark.parametrize("where", ["agents file", "task"])
def test_a_tool_named_wait_is_refused_in_every_mode(tmp_path, where):
    wait_tool = '[tools.wait]\ncommand = ["sleep", "1"]\n'
    if where == "agents file":
        path, agents = project(tmp_path, 'agent = "a"\nprompt = "p"\n' + PLAN, AGENTS + wait_tool)
        checked = invoke("validate", agents)
        assert checked.exit_code == 2 and "the tool name 'wait' is reserved" in checked.stderr
    else:
        path, _ = project(tmp_path, 'prompt = "p"\n[agent]\nmodel = "sim"\ntools = ["wait"]\nmode = "sync"\n'
                          + wait_tool + PLAN.replace('tool = "echo"', 'tool = "wait"'))
    refused_by_both(tmp_path, path, "tools.wait: the tool name 'wait' is reserved", "--mode", "sync")


def test_the_reserved_name_is_the_futures_protocols_wait_tool():
    assert spec.RESERVED_TOOL_NAMES == (futures.WAIT_TOOL,)


def test_validate_checks_every_agent_of_an_agents_file_as_a_run_would(tmp_path):
    agents = AGENTS + '\n[agents.b]\nmodel = "nomodel"\n'
    _, agents_path = project(tmp_path, 'agent = "a"\nprompt = "p"\n' + PLAN, agents)
    checked = invoke("validate", agents_path)
    assert checked.exit_code == 2 and "agents.b.model: 'nomodel' is neither" in checked.stderr


def test_a_spec_path_that_never_ends_is_refused(tmp_path):
    for args in (["validate", "/dev/zero"], ["run", "/dev/zero", "--trace", tmp_path / "t.jsonl"]):
        result = invoke(*args)
        assert result.exit_code == 2 and "larger than 10 MB: not a spec file" in result.stderr
