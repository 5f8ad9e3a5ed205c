"""[tools.NAME] tables: validated once into typed configs, every problem of every kind
named by file, table, key inside it, and fix, through the CLI; the mcpServers form
(command + args + env) of an MCP server; docs/mcp.md's translation, run for real."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from asyncfc_cli import spec
from asyncfc_cli.tools import CommandToolConfig, PythonToolConfig
from asyncfc_cli.tools.mcp import McpToolConfig

from conftest import invoke

HERE = Path(__file__).parent
SERVER = HERE / "mcp_server.py"
PY = sys.executable
ENV = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
DOC = HERE.parent / "docs" / "mcp.md"


def agents_file(tmp_path: Path, table: str, tools: str = '["x"]') -> Path:
    path = tmp_path / "agents.toml"
    path.write_text(f'[agents.a]\nmodel = "sim"\ntools = {tools}\n\n[tools.x]\n{table}\n')
    return path


def spec_error(tmp_path: Path, table: str) -> dict:
    """The --json error of a run of an agent whose [tools.x] is ``table``."""
    path = agents_file(tmp_path, table)
    result = invoke("run", "-a", "a", "--agents", path, "--json", "hi", env=ENV)
    assert result.exit_code == 2, result.output
    assert "error:" in result.stderr and "\n  fix: " in result.stderr
    return json.loads(result.stdout)


# Every kind, a wrong value or an unknown key at every level of its table:
# (table, the key inside it the message names first, text the fix must hold).
BAD_TABLES = [
    # mcp: the server table and its forms
    ('mcp = { command = "mcp-server-git", argz = ["-r", "."] }', "mcp.argz", "did you mean args? valid keys in mcp: command, args"),
    ('mcp = { command = ["srv"], args = 3 }', "mcp.args", "a list of strings"),
    ('mcp = "mcp-server-git"', "mcp", 'expected a table: the server: { command = "mcp-server-git"'),
    ('mcp = { command = "srv", url = "http://a" }', "mcp", "mcp = { url ="),
    ('mcp = { url = "ftp://a" }', "mcp", "http://127.0.0.1:8000/mcp"),
    ('mcp = { url = "http://a", type = "sse" }', "mcp.type", "streamable HTTP"),
    ('mcp = { url = "http://a", env = { A = "b" } }', "mcp", "headers"),
    ('mcp = { command = "" }', "mcp", 'command = "mcp-server-git"'),
    ('mcp = { command = ["srv"], type = "http" }', "mcp", 'type = "stdio"'),
    # mcp: the table's own keys, and the per tool overrides
    ('mcp = { command = ["srv"] }\noverrides = { add = { timeot = 3 } }', "overrides.add.timeot",
     "did you mean timeout? valid keys in overrides.add: description, timeout"),
    ('mcp = { command = ["srv"] }\ntimeout = -1', "timeout", "a number: seconds a call may take"),
    ('mcp = { command = ["srv"] }\ninclude = ["a"]\nexclude = ["b"]', "", "keep one of them"),
    ('mcp = { command = ["srv"] }\nprefix = "g it"', "", 'prefix = "git_"'),
    ('mcp = { command = ["srv"] }\ndescription = "d"', "", "[tools.NAME.overrides.TOOL]"),
    ('mcp = { command = ["srv"] }\ntasks = "sometimes"', "tasks", "'auto', 'never'"),
    ('mcp = { command = ["srv"] }\nstartup_timeout = 0', "startup_timeout", "seconds the server may take"),
    # command
    ('command = ["ls"]\ndescriptio = "x"', "descriptio", "did you mean description?"),
    ('command = ["ls"]\ndescription = "x"\nok_codes = "0"', "ok_codes", "a list of integers"),
    ('command = ["ls", "{y}"]\ndescription = "x"\nparams = { y = { type = "strin" } }', "params.y.type",
     "'string', 'integer', 'number', 'boolean'"),
    ('command = ["ls", "{y}"]\ndescription = "x"\nparams = { y = { typ = "string" } }', "params.y.typ",
     "did you mean type?"),
    ('command = ["ls", "{y}"]\ndescription = "x"', "", "add [tools.NAME.params] y ="),
    ('command = ["ls"]\ndescription = " "', "description", "say what the tool does"),
    ('command = []\ndescription = "d"', "command", "the argv, run without a shell"),
    ('command = ["ls"]\ndescription = "d"\nmax_concurrency = 0', "max_concurrency", "calls of this tool running at once"),
    # python
    ('python = "a:b"\nasync_backend = "curio"', "async_backend", "'trio', 'asyncio'"),
    ('python = "not a path"', "python", '"package.module:function"'),
    ('python = "a:b"\nordered = [1]', "ordered", "true or false"),
    # no kind, two kinds
    ('pyton = "a:b"', "", "did you mean python instead of pyton?"),
    ('python = "a:b"\ncommand = ["ls"]', "", "one [tools.NAME] table per kind"),
]


@pytest.mark.parametrize("table,field,fix", BAD_TABLES, ids=[t[0][:40] for t in BAD_TABLES])
def test_every_bad_field_of_every_kind_names_file_table_field_and_fix(tmp_path, table, field, fix):
    found = spec_error(tmp_path, table)
    assert found["status"] == "spec_error" and found["exit_code"] == 2
    assert found["file"] == str(tmp_path / "agents.toml")
    assert found["key"] == "tools.x"
    where = f"{tmp_path / 'agents.toml'}: tools.x: "
    assert found["error"].startswith(where), found
    if field:
        assert found["error"][len(where):].startswith(f"{field}: "), found
    assert fix in found["fix"], found
    # Never a class name of the code, never the table's keys offered for a key inside mcp = {...}.
    assert not re.search(r"McpServer|ToolConfig|CommandParam", found["error"] + found["fix"])
    if field.startswith("mcp."):
        assert "startup_timeout" not in found["fix"]


def test_a_tool_no_run_uses_is_checked_when_the_file_is_read(tmp_path):
    path = tmp_path / "agents.toml"
    path.write_text('[agents.a]\nmodel = "sim"\n\n[tools.unused]\nmcp = { command = "srv", argz = [] }\n')
    result = invoke("run", "-a", "a", "--agents", path, "hi", env=ENV)
    assert result.exit_code == 2 and "tools.unused: mcp.argz: unknown key" in result.stderr


def test_an_unset_variable_is_named_rather_than_the_wrong_value_it_left(tmp_path):
    env = {k: v for k, v in ENV.items() if k != "ASYNCFC_NO_SUCH_SECONDS"}
    path = agents_file(tmp_path, 'mcp = { command = ["srv"] }\ntimeout = "${ASYNCFC_NO_SUCH_SECONDS}"')
    result = invoke("run", "-a", "a", "--agents", path, "hi", env=env)
    assert result.exit_code == 2 and "ASYNCFC_NO_SUCH_SECONDS" in result.stderr
    assert "valid number" not in result.stderr


def test_the_files_hold_typed_configs(tmp_path):
    path = tmp_path / "agents.toml"
    path.write_text(
        f'[tools.srv]\nmcp = {{ command = {json.dumps(PY)}, args = [{json.dumps(str(SERVER))}], env = {{ A = "1" }} }}\n'
        '[tools.py]\npython = "tools.textstats:word_count"\n'
        '[tools.cmd]\ncommand = ["ls"]\ndescription = "List."\n')
    loaded = spec.load_agents_file(path)
    assert isinstance(loaded.tools["srv"], McpToolConfig)
    assert isinstance(loaded.tools["py"], PythonToolConfig) and isinstance(loaded.tools["cmd"], CommandToolConfig)
    # command + args: one argv once validated, the same server as the list form.
    assert loaded.tools["srv"].mcp.command == [PY, str(SERVER)] and loaded.tools["srv"].mcp.args == []
    task = tmp_path / "task.toml"
    task.write_text('prompt = "p"\n[agent]\nmodel = "sim"\ntools = ["t"]\n[tools.t]\ncommand = ["ls"]\ndescription = "d"\n')
    assert isinstance(spec.load_task(task).tools["t"], CommandToolConfig)


@pytest.mark.parametrize("form", [
    f'{{ command = {json.dumps(PY)}, args = [{json.dumps(str(SERVER))}] }}',
    f'{{ command = [{json.dumps(PY)}, {json.dumps(str(SERVER))}] }}',
    f'{{ command = [{json.dumps(PY)}], args = [{json.dumps(str(SERVER))}], type = "stdio" }}',
])
def test_the_mcp_servers_form_and_the_argv_form_start_the_same_server(tmp_path, form):
    path = agents_file(tmp_path, f"mcp = {form}\ninclude = [\"add\", \"echo\"]")
    listed = invoke("tools", "a", "--agents", path, "--json", env=ENV)
    assert listed.exit_code == 0, listed.output
    assert [row["name"] for row in json.loads(listed.stdout)["tools"] if row["kind"] == "mcp"] == ["add", "echo"]
    # `asyncfc tools` with no agent builds the table through the run's own path (spec.tool_source).
    every = invoke("tools", "--agents", path, "--json", env=ENV)
    assert sorted(row["name"] for row in json.loads(every.stdout)["tools"]) == ["add", "echo"]


def test_tools_without_an_agent_reports_a_bad_table_as_run_and_validate_do(tmp_path):
    path = agents_file(tmp_path, 'command = ["ls"]\ndescription = "d"\nok_codes = "0"')
    outputs = [invoke(*args, env=ENV) for args in (("tools", "--agents", path), ("validate", path),
                                                   ("run", "-a", "a", "--agents", path, "hi"))]
    for result in outputs:
        assert result.exit_code == 2
        assert "tools.x: ok_codes: input should be a valid list" in result.stderr
        assert "fix: expected a list of integers" in result.stderr


# --- docs/mcp.md: an mcpServers entry and its table --------------------------------------------


def _doc_blocks() -> tuple[dict, str]:
    text = DOC.read_text()
    section = text.split("## From an `mcpServers` entry", 1)[1].split("\n## ", 1)[0]
    json_block = re.search(r"```json\n(.*?)```", section, re.S)[1]
    toml_block = re.search(r"```toml\n(.*?)```", section, re.S)[1]
    return json.loads(json_block), toml_block


def test_the_docs_mcp_servers_entry_and_its_table_say_the_same(tmp_path):
    import tomllib

    entries, table = _doc_blocks()
    (name, entry), = entries["mcpServers"].items()
    parsed = tomllib.loads(table)["tools"]
    assert list(parsed) == [name]
    assert parsed[name]["mcp"] == entry  # key for key, as the doc says


def test_the_docs_table_starts_its_server(tmp_path):
    """The doc's table, run as written: an executable named as the doc's command
    (a real MCP server, tests/mcp_server.py) on PATH."""
    entries, table = _doc_blocks()
    (name, entry), = entries["mcpServers"].items()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / entry["command"]
    # It ignores the doc's arguments; the env value reaches it (its env tool says so).
    program.write_text(f"#!/bin/sh\nexec {PY} {SERVER}\n")
    program.chmod(0o755)
    (tmp_path / "agents.toml").write_text(f'[agents.a]\nmodel = "sim"\ntools = ["{name}"]\n\n{table}')
    env = dict(ENV, PATH=f"{bin_dir}{os.pathsep}{ENV.get('PATH', '')}")
    listed = invoke("tools", "a", "--agents", tmp_path / "agents.toml", "--json", env=env)
    assert listed.exit_code == 0, listed.output
    assert {"add", "echo", "env"} <= {row["name"] for row in json.loads(listed.stdout)["tools"]}
