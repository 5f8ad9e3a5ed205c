"""Tool registry: turn ``[tools.NAME]`` tables into tools, and open them for a run.

Each kind of table is one module that turns its config into a
:class:`~asyncfc_cli.tools.core.ToolSource` (see :mod:`.core`):

* :mod:`.python`: ``python = "module:function"``, an ordinary callable;
* :mod:`.command`: ``command = [...]``, an argv run without a shell;
* :mod:`.mcp`: ``mcp = { command = [...] }`` or ``mcp = { url = "..." }``,
  every tool of an MCP server.

Adding a kind is one module with a ``KIND`` (a :class:`ToolKind`) and its
name in ``_KIND_MODULES`` below.

``Tool.invoke`` never enforces ``timeout`` (the executor owns time through
trio cancel scopes) but always honours cancellation: async tools are
cancelled, sync tools are abandoned in their worker thread, commands are
killed with every process they started, MCP calls are cancelled on the
server, before ``invoke`` lets ``Cancelled`` out.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Mapping, Union

from pydantic import BaseModel, Discriminator, Tag, ValidationError

from asyncfc_cli.tools.command import CommandParam, CommandToolConfig, build_command_tool, parse_template
from asyncfc_cli.tools.core import (
    NAME_RE,
    RunContext,
    StaticSource,
    Tool,
    ToolError,
    ToolKind,
    ToolLoadError,
    ToolSource,
    format_validation_error,
    note_current_call,
)
from asyncfc_cli.tools.docstrings import parse_docstring
from asyncfc_cli.tools.python import PythonToolConfig, build_python_tool

__all__ = [
    "ToolError",
    "ToolLoadError",
    "PythonToolConfig",
    "CommandToolConfig",
    "CommandParam",
    "ToolConfig",
    "ToolKind",
    "ToolSource",
    "StaticSource",
    "RunContext",
    "KINDS",
    "parse_tool_config",
    "kind_keys",
    "KIND_MESSAGE",
    "check_tool_name",
    "Tool",
    "build_source",
    "build_tool",
    "build_tools",
    "build_python_tool",
    "build_command_tool",
    "open_tools",
    "parse_docstring",
    "parse_template",
]

_KIND_MODULES = ("python", "command", "mcp")

KINDS: dict[str, ToolKind] = {}
for _module in _KIND_MODULES:
    _kind: ToolKind = importlib.import_module(f"asyncfc_cli.tools.{_module}").KIND
    KINDS[_kind.key] = _kind

KIND_MESSAGE = (
    'a tool needs exactly one of python = "module:function", command = ["argv", "..."] '
    'or mcp = { command = ["server", "..."] } / mcp = { url = "http://..." }'
)


def kind_keys(raw: Any) -> list[str]:
    """The kind keys (python, command, mcp) a table sets: exactly one makes a tool."""
    if isinstance(raw, BaseModel):
        return [k.key for k in KINDS.values() if isinstance(raw, k.config)]
    if not isinstance(raw, Mapping):
        return []
    return [key for key in KINDS if key in raw]


def _discriminate(raw: Any) -> str | None:
    keys = kind_keys(raw)
    return keys[0] if len(keys) == 1 else None


ToolConfig = Annotated[
    Union[tuple(Annotated[k.config, Tag(k.key)] for k in KINDS.values())],  # type: ignore[misc]
    Discriminator(_discriminate, custom_error_type="tool_kind", custom_error_message=KIND_MESSAGE),
]
"""Pydantic type for one ``[tools.NAME]`` table, usable inside other models."""


def parse_tool_config(raw: Mapping[str, Any] | ToolConfig, name: str = "?") -> ToolConfig:
    """Validate one ``[tools.NAME]`` table into its typed config; raise ``ToolLoadError``
    on problems. A config already validated is returned as it is, not validated again."""
    if any(isinstance(raw, k.config) for k in KINDS.values()):
        return raw
    where = f"tool {name!r}"
    keys = kind_keys(raw)
    if not keys:
        got = sorted(raw) if isinstance(raw, Mapping) else type(raw).__name__
        raise ToolLoadError(f"{where}: {KIND_MESSAGE} (got keys: {got})")
    if len(keys) > 1:
        both = f"both {keys[0]} and {keys[1]}" if len(keys) == 2 else ", ".join(keys[:-1]) + f" and {keys[-1]}"
        raise ToolLoadError(f"{where}: sets {both}; {KIND_MESSAGE}. Split it into one tool per kind")
    kind = KINDS[keys[0]]
    try:
        return kind.config.model_validate(dict(raw))
    except ValidationError as exc:
        # The table's own keys only when a key of the table is unknown: an unknown key
        # deeper (inside mcp = {...}) has other valid keys. The spec's errors name those
        # (asyncfc_cli/spec/tooltables.py); this is the message for callers without a file.
        top = any(err["type"] == "extra_forbidden" and len(err["loc"]) == 1 for err in exc.errors())
        keys = f" (valid keys for a {kind.name} tool: {', '.join(sorted(kind.config.model_fields))})" if top else ""
        raise ToolLoadError(f"{where}: {format_validation_error(exc)}{keys}") from None


def check_tool_name(name: Any) -> None:
    """A tool's name is one chat-completions APIs accept; ``ToolLoadError`` if not."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ToolLoadError(
            f"tool name {name!r} is not valid: use 1-64 letters, digits, '_' or '-' "
            "(what chat-completions APIs accept as a function name)"
        )


def build_source(name: str, raw_config: Mapping[str, Any] | ToolConfig, base_dir: Path) -> ToolSource:
    """The tool source for one ``[tools.NAME]`` table, raw or already validated
    (:func:`parse_tool_config`); ``base_dir`` is its file's directory."""
    check_tool_name(name)
    cfg = parse_tool_config(raw_config, name)
    kind = next(k for k in KINDS.values() if isinstance(cfg, k.config))
    return kind.build(name, cfg, Path(base_dir))


def build_tool(name: str, raw_config: Mapping[str, Any], base_dir: Path) -> Tool:
    """Build the one tool of a python or command table."""
    source = build_source(name, raw_config, base_dir)
    tools = source.static_tools()
    if len(tools) != 1:
        raise ToolLoadError(
            f"tool {name!r}: a {source.kind} table brings its tools when its run opens it, "
            "not one tool now. Fix: use build_source() and open_tools()"
        )
    return tools[0]


def build_tools(raw_tools: Mapping[str, Mapping[str, Any]], base_dir: Path) -> dict[str, Tool]:
    """Build every tool; report all broken tables at once, not just the first."""
    tools: dict[str, Tool] = {}
    problems: list[str] = []
    for name, raw in raw_tools.items():
        try:
            tools[name] = build_tool(name, raw, base_dir)
        except ToolLoadError as exc:
            problems.append(str(exc))
    if problems:
        raise ToolLoadError("\n".join(problems))
    return tools


@asynccontextmanager
async def open_tools(sources: Iterable[ToolSource] | Mapping[str, Tool], trace: Any, *,
                     reserved: Iterable[str]) -> AsyncIterator[dict[str, Tool]]:
    """Open every source for one run, inside its trio run; yields the run's tools by name.

    Each kind's run resources are opened first, then the sources in order;
    all of it is closed when the block ends, however it ends. A source that
    fails to open raises :class:`ToolLoadError` (the CLI exits 2), and so does
    a tool named like one in ``reserved``: the modes' own tools
    (:data:`asyncfc_cli.modes.RESERVED_TOOL_NAMES`, async mode's ``wait``),
    given by the caller because the registry of modes sits above the tools.
    """
    if isinstance(sources, Mapping):  # plain tools: nothing to open but their kinds' resources
        sources = [StaticSource(tool) for tool in sources.values()]
    sources = list(sources)
    reserved = frozenset(reserved)
    run = RunContext(trace)
    async with AsyncExitStack() as stack:
        trace.sinks.append(note_current_call)
        stack.callback(trace.sinks.remove, note_current_call)
        for key in dict.fromkeys(s.kind for s in sources):
            kind = KINDS.get(key)
            if kind is not None and kind.run_resources is not None:
                await stack.enter_async_context(kind.run_resources(run))
        tools: dict[str, Tool] = {}
        origin: dict[str, ToolSource] = {}
        for source in sources:
            for tool in await stack.enter_async_context(source.open(run)):
                if tool.name in tools or tool.name in reserved:
                    other = origin[tool.name] if tool.name in tools else None
                    raise source.load_error(
                        f"brings a tool named {tool.name!r}, which "
                        f"{other.label if other else 'asyncfc' + chr(39) + 's own tool'} already has. "
                        f"Fix: {_clash_fix(source, other, tool.name)}"
                    )
                tools[tool.name] = tool
                origin[tool.name] = source
        yield tools


def _clash_fix(source: ToolSource, other: ToolSource | None, name: str) -> str:
    # A table can rename its tools (prefix) or leave one out (exclude); a server
    # given on the command line cannot, so its fix is the table or the other side.
    tables = [s for s in (source, other) if s is not None and s.key.startswith("tools.") and s.kind == "mcp"]
    if tables:
        return f"set prefix, or exclude = [\"{name}\"], in {tables[0].settings}"
    fix = (f"add the server as a [tools.NAME] table with prefix = \"...\" (docs/mcp.md) and list that name in "
           "the agent's tools instead of --mcp")
    if other is not None and other.key.startswith("tools."):
        fix += f", or run an agent without {other.label}"
    return fix
