"""An ``[tools.NAME]`` table with ``mcp = {...}``: the server's tools, as this run's tools."""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from asyncfc_cli.output import printable
from asyncfc_cli.redaction import (
    Redactor,
    argv_secrets,
    credential_name,
    env_secrets,
    mask_argv,
    mask_url,
    url_secrets,
)
from asyncfc_cli.tools.command import check_executable
from asyncfc_cli.tools.core import NAME_RE, RunContext, Tool, ToolLoadError, ToolSource
from asyncfc_cli.tools.mcp.config import McpToolConfig, McpToolOverride
from asyncfc_cli.tools.mcp.errors import leaf_of
from asyncfc_cli.tools.mcp.session import Session


def _exposed_name(prefix: str, name: str) -> str:
    # Chat-completions function names allow [A-Za-z0-9_-]; MCP names may hold
    # dots and slashes.
    return prefix + re.sub(r"[^A-Za-z0-9_-]", "_", name)


class McpSource(ToolSource):
    kind = "mcp"

    def __init__(self, name: str, cfg: McpToolConfig, base_dir: Path) -> None:
        super().__init__(name)
        self.cfg = cfg
        self.base_dir = base_dir
        server = cfg.mcp
        if server.command is not None:
            self.cwd = str((base_dir / server.cwd).resolve()) if server.cwd else str(base_dir)
            if not os.path.isdir(self.cwd):
                raise ToolLoadError(
                    f"tool {name!r}: mcp.cwd {self.cwd!r} is not a directory. Fix: set it to an "
                    f"existing directory, relative to {base_dir}"
                )
            program = server.command[0]
            if "/" in program and not os.path.isabs(program):
                program = str(base_dir / program)
            self.program = program
            check_executable(name, program, server.command[0], {"PATH": os.environ.get("PATH", os.defpath),
                                                                **server.env}, base_dir)
        # For messages and traces: credentials masked (whatever their length), printable
        # (a spec file is untrusted too).
        self.where = printable(" ".join(mask_argv(server.command)) if server.command else mask_url(server.url or ""))

    def secrets(self) -> list[str]:
        """Header values, credential-like env values, what URLs hold, command-line credentials."""
        server = self.cfg.mcp
        found = list(server.headers.values())
        found += [v for k, v in server.env.items() if credential_name(k)]
        for value in [*server.env.values(), *server.headers.values()]:
            found += url_secrets(value)  # DATABASE_URL = "postgres://user:password@..."
        found += url_secrets(server.url)
        found += argv_secrets(server.command or [])
        return [s for s in found if s]

    def redactor(self, run: RunContext) -> Redactor:
        """The run's redactor (the one its outputs use), knowing this source's secrets;
        outside a run (``asyncfc tools``, ``validate``), one of the source and the environment."""
        redactor = getattr(run.trace, "redactor", None)
        if not isinstance(redactor, Redactor):
            redactor = Redactor(env_secrets())
        redactor.add(self.secrets())
        return redactor

    # -- the session --------------------------------------------------------------------

    @asynccontextmanager
    async def open(self, run: RunContext) -> AsyncIterator[list[Tool]]:
        session = Session(self, run)
        try:
            async with trio.open_nursery() as nursery:
                tools = await nursery.start(session.hold)
                try:
                    yield tools
                finally:
                    session.close()
        except BaseExceptionGroup as group:
            # The nursery wraps a start failure; the user should read the failure.
            failure = leaf_of(group, ToolLoadError)
            if failure is not None:
                raise failure from None
            raise

    async def check(self) -> str:
        run = RunContext(_NoTrace(Redactor([*env_secrets(), *self.secrets()])))
        async with self.open(run) as tools:
            return f"{len(tools)} tools from {self.where}"

    def build_tools(self, session: "Session", listed: list[Any]) -> list[Tool]:
        cfg = self.cfg
        names = [t.name for t in listed]
        wanted = set(cfg.include) if cfg.include is not None else None
        for key, asked in (("include", cfg.include or []), ("exclude", cfg.exclude), ("overrides", list(cfg.overrides))):
            unknown = [n for n in asked if n not in names]
            if unknown:
                raise self.load_error(
                    f"{key} names {', '.join(map(_shown, unknown))}, which the server does not have. "
                    f"Fix: use its tools: {', '.join(map(_shown, names[:50])) or '(none)'}"
                    + (f" (and {len(names) - 50} more)" if len(names) > 50 else "")
                )
        tools = []
        exposed_by: dict[str, str] = {}
        for listed_tool in listed:
            if (wanted is not None and listed_tool.name not in wanted) or listed_tool.name in cfg.exclude:
                continue
            exposed = _exposed_name(cfg.prefix, listed_tool.name)
            if not NAME_RE.match(exposed):
                raise self.load_error(
                    f"server tool {_shown(listed_tool.name)} would be called {_shown(exposed)}, longer "
                    "than the 64 characters a function name may have. Fix: a shorter prefix, or exclude "
                    f"it: exclude = [{_toml(listed_tool.name)}]"
                )
            other = exposed_by.get(exposed)
            if other is not None:
                # Only letters, digits, '_' and '-' are allowed in a function name, so both
                # would reach the model under one name; a prefix cannot tell them apart.
                same = other == listed_tool.name
                raise self.load_error(
                    (f"the server lists tool {_shown(other)} twice" if same else
                     f"server tools {_shown(other)} and {_shown(listed_tool.name)} would both be called "
                     f"{_shown(exposed)} (a function name holds only letters, digits, '_' and '-')")
                    + ". Fix: exclude " + ("it" if same else "one of them") + f": exclude = [{_toml(other)}]"
                    + ("" if same else f" or exclude = [{_toml(listed_tool.name)}]")
                    + " (or list the ones you want in include)"
                )
            exposed_by[exposed] = listed_tool.name
            override = cfg.overrides.get(listed_tool.name, McpToolOverride())
            schema = dict(listed_tool.input_schema or {})
            schema.pop("title", None)
            schema.setdefault("type", "object")
            schema.setdefault("properties", {})
            timeout = override.timeout or cfg.timeout or self.default_timeout
            tools.append(Tool(
                name=exposed,
                description=override.description or listed_tool.description or listed_tool.title or "",
                parameters=schema,
                kind="mcp",
                runner=session.runner(listed_tool, exposed),
                ordered=override.ordered if override.ordered is not None else cfg.ordered,
                timeout=timeout,
                max_concurrency=override.max_concurrency or cfg.max_concurrency,
                expected_latency=(override.expected_latency if override.expected_latency is not None
                                  else cfg.expected_latency),
                source=f"{self.where} :: {printable(listed_tool.name)}",
            ))
        return tools

    def from_command_line(self) -> None:
        """This server was given with ``--mcp``: errors name the flag, and a setting
        only a table has is changed by writing the server as one."""
        self.key, self.label, self.settings = "--mcp", f"--mcp server {self.where!r}", ""

    def fix_setting(self, what: str) -> str:
        if self.settings:
            return super().fix_setting(what)
        return f"add the server as a [tools.NAME] table (docs/mcp.md) and {what} there"

    def fix_server(self) -> str:
        """What to correct when the server does not start."""
        return f"correct [tools.{self.name}.mcp]" if self.settings else "correct the --mcp command line"

    # load_error (ToolSource's): ``text`` quotes the server's names through
    # :func:`_shown` (printable); it is redacted where it is raised (:meth:`Session.hold`).


def _shown(name: Any) -> str:
    """A name the server chose, quoted and printable (it may hold escape sequences)."""
    return f"'{printable(name)}'"


def _toml(name: str) -> str:
    return json.dumps(name, ensure_ascii=True)



class _NoTrace:
    def __init__(self, redactor: Redactor | None = None) -> None:
        self.sinks: list[Any] = []
        self.redactor = redactor or Redactor()

    def emit(self, event: Any) -> None:
        pass
