"""``--mcp "command line"``: an MCP server's tools added to an agent for one run
(``asyncfc run``, with a prompt or a task) and listed by ``asyncfc tools``, through
the CLI against a real MCP server (tests/mcp_server.py, over stdio)."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest
from asyncfc_cli.trace import read_trace

from conftest import invoke

HERE = Path(__file__).parent
SERVER = HERE / "mcp_server.py"
PY = sys.executable
ENV = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
LINE = shlex.join([PY, str(SERVER)])
SERVER_TOOLS = {"add", "echo", "slow", "fail", "protocol_error", "crash", "env", "pid", "files_read"}


def project(tmp_path: Path, tools_toml: str = "", agent_tools: str = "[]") -> Path:
    (tmp_path / "agents.toml").write_text(f'[agents.a]\nmodel = "sim"\nmode = "sync"\ntools = {agent_tools}\n\n'
                                          + tools_toml)
    return tmp_path


def test_run_a_prompt_with_a_server_added(tmp_path, monkeypatch):
    monkeypatch.chdir(project(tmp_path))
    trace = tmp_path / "t.jsonl"
    result = invoke("run", "-a", "a", "--mcp", LINE, "--json", "--trace", trace, "hi", env=ENV)
    assert result.exit_code == 0, result.output
    data = read_trace(trace)
    (opened,) = data.of_type("tool_source")
    assert opened["kind"] == "mcp" and set(opened["tools"]) == SERVER_TOOLS
    assert data.header["tool_kinds"] == {opened["name"]: "mcp"}


def test_run_a_task_whose_plan_calls_the_added_servers_tools(tmp_path):
    project(tmp_path)
    task = tmp_path / "task.toml"
    task.write_text('agent = "a"\nprompt = "p"\n[sim]\nttft = 0\ndecode_tps = 5000\n'
                    '[[sim.steps]]\nid = "sum"\ntool = "add"\nargs = { a = 2, b = 3 }\n'
                    '[[sim.steps]]\nid = "said"\ntool = "env"\nargs = { name = "GREETING" }\n'
                    '[sim.final]\nanswer = "sum={sum} said={said}"\n')
    # A leading NAME=value word is the server's environment, as in a shell.
    result = invoke("run", task, "--mcp", f"GREETING=hello {LINE}", "--json", "--trace", tmp_path / "t.jsonl",
                    env=ENV)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {c["tool"]: c["status"] for c in report["tool_calls"]} == {"add": "ok", "env": "ok"}
    assert 'sum={"result": 5}' in report["answer"] and 'said={"result": "hello"}' in report["answer"]
    # Without --mcp the same task has no such tools: the server's tools came from the flag.
    plain = invoke("run", task, "--json", "--trace", tmp_path / "u.jsonl", env=ENV)
    assert plain.exit_code == 2 and "'add'" in json.loads(plain.stdout)["error"]


def test_a_credential_in_the_servers_environment_is_masked(tmp_path):
    project(tmp_path)
    secret = "sk-line-4f9c2a7b1e8d3f6a"
    task = tmp_path / "task.toml"
    task.write_text('agent = "a"\nprompt = "p"\n[sim]\nttft = 0\ndecode_tps = 5000\n'
                    '[[sim.steps]]\nid = "k"\ntool = "env"\nargs = { name = "API_TOKEN" }\n'
                    '[sim.final]\nanswer = "key={k}"\n')
    trace = tmp_path / "t.jsonl"
    result = invoke("run", task, "--mcp", f"API_TOKEN={secret} {LINE}", "--json", "--trace", trace, env=ENV)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tool_calls"][0]["status"] == "ok"
    assert secret not in result.stdout and secret not in result.stderr and secret not in trace.read_text()


def test_tools_lists_a_servers_tools_without_any_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no agents.toml here or above
    result = invoke("tools", "--mcp", LINE, "--json", env=ENV)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["tools"]
    assert {row["name"] for row in rows} == SERVER_TOOLS and {row["kind"] for row in rows} == {"mcp"}
    text = invoke("tools", "--mcp", LINE, env=ENV)
    assert text.exit_code == 0 and "the --mcp servers' tools" in text.stdout and "add  mcp" in text.stdout


def test_tools_of_an_agent_with_a_server_added(tmp_path):
    project(tmp_path, '[tools.words]\ncommand = ["echo", "a few words"]\ndescription = "Say a few words."\n',
            '["words"]')
    result = invoke("tools", "a", "--agents", tmp_path / "agents.toml", "--mcp", LINE, "--json", env=ENV)
    assert result.exit_code == 0, result.output
    assert {row["name"] for row in json.loads(result.stdout)["tools"]} == SERVER_TOOLS | {"words"}


def test_several_servers_and_a_clash_between_them(tmp_path, monkeypatch):
    monkeypatch.chdir(project(tmp_path))
    result = invoke("run", "-a", "a", "--mcp", LINE, "--mcp", LINE, "hi", env=ENV)
    assert result.exit_code == 2
    assert "error: --mcp server" in result.stderr and "brings a tool named 'add'" in result.stderr
    assert "\n  fix: add the server as a [tools.NAME] table with prefix" in result.stderr


@pytest.mark.parametrize("command", ["run", "tools"])
def test_a_clash_with_the_agents_own_tool_is_a_clear_error(tmp_path, command):
    project(tmp_path, '[tools.echo]\ncommand = ["echo", "{text}"]\ndescription = "Echo."\n'
                      'params = { text = { type = "string" } }\n', '["echo"]')
    args = ["-a", "a", "hi"] if command == "run" else ["a"]
    result = invoke(command, *args, "--agents", tmp_path / "agents.toml", "--mcp", LINE, "--json", env=ENV)
    assert result.exit_code == 2
    found = json.loads(result.stdout)
    assert found["key"] == "--mcp" and found["exit_code"] == 2
    assert "brings a tool named 'echo', which tool 'echo' already has" in found["error"]
    assert "run an agent without tool 'echo'" in found["fix"] and "prefix" in found["fix"]
    assert "error:" in result.stderr and "fix:" in result.stderr


def test_a_clash_with_an_mcp_table_names_the_tables_fix(tmp_path, monkeypatch):
    table = f'[tools.calc]\nmcp = {{ command = {json.dumps(PY)}, args = [{json.dumps(str(SERVER))}] }}\ninclude = ["add"]\n'
    monkeypatch.chdir(project(tmp_path, table, '["calc"]'))
    result = invoke("run", "-a", "a", "--mcp", LINE, "hi", env=ENV)
    assert result.exit_code == 2
    assert "which tool 'calc' already has" in result.stderr
    assert 'fix: set prefix, or exclude = ["add"], in [tools.calc]' in result.stderr


@pytest.mark.parametrize("line,message,fix", [
    ("", "--mcp: the server's command line is empty", 'fix: give the command that starts the server: --mcp "'),
    ("   ", "--mcp: the server's command line is empty", "fix: give the command"),
    (f"{LINE} 'unclosed", "--mcp: the command line cannot be split into words: no closing quotation",
     "fix: close the quote"),
    ("asyncfc-no-such-server --x", "--mcp: program 'asyncfc-no-such-server' is not found on PATH",
     "fix: install it, or give its absolute path"),
    ("./no/such/server", "does not exist", "fix: give a path to an executable file"),
    ("TOKEN=x", "--mcp: the command line sets variables but names no command", "fix: put the server's command"),
])
@pytest.mark.parametrize("command", ["run", "tools"])
def test_a_bad_line_is_exit_2_with_error_and_fix(tmp_path, monkeypatch, line, message, fix, command):
    monkeypatch.chdir(project(tmp_path))
    args = ["-a", "a", "hi"] if command == "run" else []
    result = invoke(command, *args, "--mcp", line, env=ENV)
    assert result.exit_code == 2, result.output
    assert "error: " in result.stderr and message in result.stderr and fix in result.stderr
    as_json = invoke(command, *args, "--mcp", line, "--json", env=ENV)
    found = json.loads(as_json.stdout)
    assert as_json.exit_code == 2 and found["key"] == "--mcp" and found["fix"]


def test_the_second_bad_line_is_named_as_the_second(tmp_path, monkeypatch):
    monkeypatch.chdir(project(tmp_path))
    result = invoke("run", "-a", "a", "--mcp", LINE, "--mcp", "", "hi", "--json", env=ENV)
    assert result.exit_code == 2 and json.loads(result.stdout)["key"] == "--mcp #2"


def test_a_server_that_fails_to_start_names_the_flag(tmp_path, monkeypatch):
    monkeypatch.chdir(project(tmp_path))
    result = invoke("run", "-a", "a", "--mcp", f"{LINE} --mode exit", "hi", env=ENV)
    assert result.exit_code == 2
    assert "--mcp server" in result.stderr and "failed to start" in result.stderr
    assert "fix: run the server by hand to see why, or correct the --mcp command line" in result.stderr


def test_help_documents_the_option():
    for command in ("run", "tools"):
        result = invoke(command, "--help", env=dict(ENV, COLUMNS="200"))
        assert "--mcp" in result.stdout and "mcp-server-git" in result.stdout


def test_the_reference_git_server_in_one_line(tmp_path, monkeypatch):
    """The line of the issue, with the reference mcp-server-git (the `test` extra) found on
    PATH and started in the current directory: its `--repository .` is the repository here."""
    import shutil
    import subprocess

    pytest.importorskip("mcp_server_git", reason="pip install -e '.[test]' brings mcp-server-git")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    project(repo)
    (repo / "task.toml").write_text(
        'agent = "a"\nprompt = "p"\n[sim]\nttft = 0\ndecode_tps = 5000\n'
        '[[sim.steps]]\nid = "st"\ntool = "git_status"\nargs = { repo_path = "." }\n'
        '[sim.final]\nanswer = "status: {st}"\n')
    monkeypatch.chdir(repo)
    env = dict(ENV, PATH=f"{Path(sys.executable).parent}{os.pathsep}{ENV.get('PATH', '')}")
    line = "mcp-server-git --repository ."
    listed = invoke("tools", "--mcp", line, "--json", env=env)
    assert listed.exit_code == 0, listed.output
    assert {"git_status", "git_log", "git_diff"} <= {row["name"] for row in json.loads(listed.stdout)["tools"]}
    result = invoke("run", "task.toml", "--mcp", line, "--json", "--trace", tmp_path / "t.jsonl", env=env)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tool_calls"][0]["status"] == "ok" and "On branch main" in report["answer"]
