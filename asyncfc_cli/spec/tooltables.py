"""``[tools.NAME]`` tables validated into their typed configs, once, when a file is read.

Every kind's table (python, command, mcp) is checked by its own pydantic
model (:data:`asyncfc_cli.tools.ToolConfig`), and each of its problems is a
:class:`SpecError` at the key inside the table (``tools.git.mcp.argz``), with
the keys valid *there* and a fix: the fix a check wrote after ``Fix:``, or
the field's type and description. The typed configs are what the agents file
and the task hold (:class:`~asyncfc_cli.spec.schema.AgentsFile`,
:class:`~asyncfc_cli.spec.schema.TaskFile`), and what a run builds its tool
sources from (:func:`~asyncfc_cli.spec.resolve.tool_source`).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from asyncfc_cli.spec.errors import SpecError, validate_as
from asyncfc_cli.spec.load import interpolate

_TABLE_FIX = ('write one of: python = "module:function"; command = ["program", "arg"] with description = "..."; '
              'mcp = { command = "server", args = ["..."] } or mcp = { url = "http://..." }')


def tool_config(name: Any, raw: Any, file: Path | None) -> Any:
    """One ``[tools.NAME]`` table (``${VAR}`` already replaced where set) as its typed config."""
    from asyncfc_cli import tools as tools_mod
    from asyncfc_cli.spec.resolve import check_tool_definitions
    from asyncfc_cli.spec.schema import RESERVED_TOOL_NAMES

    key = f"tools.{name}"
    try:
        tools_mod.check_tool_name(name)
    except tools_mod.ToolLoadError:
        raise SpecError(file, key, "the tool name is not valid",
                        "use 1-64 letters, digits, '_' or '-' (what chat-completions APIs accept as a "
                        "function name)") from None
    if name in RESERVED_TOOL_NAMES:  # said first: whatever the table holds, the name cannot be used
        check_tool_definitions({name: raw}, file, {}, None)
    if not isinstance(raw, dict):
        raise SpecError(file, key, f"must be a table (got {raw!r:.60})", f"write [tools.{name}], then {_TABLE_FIX}")
    kinds = tools_mod.kind_keys(raw)
    if not kinds:
        got = ", ".join(sorted(map(str, raw))) or "none"
        typo = [f"did you mean {close[0]} instead of {word}? " for word in map(str, raw)
                if (close := difflib.get_close_matches(word, list(tools_mod.KINDS), n=1, cutoff=0.75))]
        raise SpecError(file, key, f"the table says no tool kind (its keys: {got})",
                        (typo[0] if typo else "") + _TABLE_FIX)
    if len(kinds) > 1:
        raise SpecError(file, key, f"the table sets {' and '.join(kinds)}: a tool is of one kind",
                        "split it into one [tools.NAME] table per kind")
    config = tools_mod.KINDS[kinds[0]].config
    try:
        return validate_as(config, raw, file)
    except SpecError as exc:
        # A ${VAR} left unset is what made a value wrong: say that, not the symptom.
        interpolate(raw, file, key)
        # At the table, naming the key inside it first: "tools.git: mcp.argz: unknown key".
        raise SpecError(file, key, f"{exc.key}: {exc.message}" if exc.key else exc.message, exc.fix) from None


def tool_configs(raw_tools: Any, file: Path | None) -> Any:
    """Every table of a ``[tools]`` section as its typed config (anything but a
    table of tables is returned as it is, for the file's schema to refuse)."""
    if not isinstance(raw_tools, dict):
        return raw_tools
    return {name: tool_config(name, raw, file) for name, raw in raw_tools.items()}


def with_tool_configs(lenient: dict[str, Any], file: Path | None) -> dict[str, Any]:
    """A file's data (leniently interpolated) with its ``[tools]`` validated, ready
    for :class:`AgentsFile` or :class:`TaskFile`, which keep the typed configs."""
    if "tools" not in lenient:
        return lenient
    return {**lenient, "tools": tool_configs(lenient["tools"], file)}


_MCP_EXAMPLE = '--mcp "mcp-server-git --repository ."'


def mcp_line_source(line: Any, index: int, taken: set[str]) -> Any:
    """``--mcp "program arg ..."``: an MCP server given on the command line, as a source
    of its tools for this run, built as an ``mcp = { command = [...] }`` table would be.

    The line is split as a POSIX shell splits words (quotes, backslashes; no
    expansion, no pipes). Leading ``NAME=value`` words are the server's
    environment, as they are for a command in a shell; a lone
    ``http(s)://...`` word is a streamable HTTP server. The server runs in the
    current directory, so relative paths mean what they mean in the shell.
    ``taken``: source names in use (the source's own name shows in traces).
    """
    import re
    import shlex

    from asyncfc_cli import tools as tools_mod
    from asyncfc_cli.spec.errors import tool_spec_error
    from asyncfc_cli.spec.resolve import check_text
    from asyncfc_cli.tools.mcp import McpToolConfig

    key = "--mcp" if index == 0 else f"--mcp #{index + 1}"
    if not isinstance(line, str) or not line.strip():
        raise SpecError(None, key, "the server's command line is empty", f"give the command that starts the server: {_MCP_EXAMPLE}")
    check_text(line, None, key, "the server's command line")
    try:
        words = shlex.split(line, comments=False, posix=True)
    except ValueError as exc:  # the line is not quoted here: it may hold a credential
        raise SpecError(None, key, f"the command line cannot be split into words: {str(exc).lower()}",
                        "close the quote (inside the flag's value, quote with the other kind: "
                        "--mcp \"server --dir 'my dir'\")") from None
    env: dict[str, str] = {}
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    if not words:
        raise SpecError(None, key, "the command line sets variables but names no command",
                        f"put the server's command after them: --mcp \"TOKEN=... mcp-server-x\"")
    if len(words) == 1 and not env and re.match(r"^https?://", words[0]):
        server: dict[str, Any] = {"url": words[0]}
        program = re.sub(r"^https?://([^/:@]*@)?", "", words[0]).split("/")[0].split(":")[0]
    else:
        server = {"command": words, "env": env}
        program = words[0].rstrip("/").rsplit("/", 1)[-1]
    base = re.sub(r"[^A-Za-z0-9_-]", "_", program)[:40] or "mcp"
    name = base
    for n in range(2, len(taken) + 3):
        if name not in taken:
            break
        name = f"{base}-{n}"
    try:
        config = McpToolConfig.model_validate({"mcp": server})
        source = tools_mod.build_source(name, config, Path.cwd())
    except tools_mod.ToolLoadError as exc:  # e.g. the program is not on PATH
        found = tool_spec_error(exc, name, None)
        raise SpecError(None, key, found.message, found.fix) from None
    except ValueError as exc:  # pydantic's, from the server's checks (e.g. a bad url)
        message, _, fix = str(exc).splitlines()[-1].strip().removeprefix("Value error, ").partition(". Fix: ")
        raise SpecError(None, key, message, fix or f"write it as {_MCP_EXAMPLE}") from None
    source.from_command_line()
    return source
