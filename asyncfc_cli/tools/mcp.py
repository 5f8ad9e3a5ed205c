"""The ``mcp`` tool kind: every tool of an MCP server, through the official SDK.

::

    [tools.fs]
    mcp = { command = ["python", "server.py"], env = { TOKEN = "${TOKEN}" }, cwd = "." }
    # or: mcp = { url = "http://127.0.0.1:8000/mcp", headers = { Authorization = "Bearer ${TOKEN}" } }
    include = ["read", "list"]      # or exclude = [...]
    prefix = "fs_"
    timeout = 30
    [tools.fs.overrides.read]
    timeout = 5

The session runs on the run's own trio loop through anyio's trio backend
(the SDK is written on anyio). That keeps a call's cancellation a trio
cancellation: a timeout or Ctrl-C cancels the ``tools/call`` (the SDK sends
``notifications/cancelled``), and closing the session is part of leaving the
run. Hosting the SDK on an asyncio thread, as LiteLLM is, would put a
thread hop and a second cancellation path in every call, for no gain:
tests/test_mcp.py proves the trio path (calls, cancellation, start-up and
mid-run failures, closing on every way out, over stdio and HTTP).

The session lives exactly as long as the run: a task of the source's own
nursery holds it (so the SDK's cancel scopes nest inside that task), started
when the run opens its tools and told to close when the run leaves them.

MCP tasks (specification 2025-11-25): when the server declares task-augmented
``tools/call`` and a tool allows it, the call asks for a task and the future
follows it with ``tasks/get`` until it is terminal, then reads
``tasks/result``; cancelling the call sends ``tasks/cancel``; each state is a
``tool_progress`` event in the trace. SDK 2.3 has the task types but no client
for them, so this goes through ``ClientSession.send_request``; see
docs/reliability.md for what is and is not covered.

A server is untrusted (docs/reliability.md, "hostile MCP servers"): a stdio
server is read through :mod:`.mcp_stdio` (linear, each message capped at
``max_output`` bytes, a line it cannot parse answering its request with an
error); everything it says that reaches an output (its stderr, tool names,
errors, the SDK's log records) is redacted with every secret of the source
(header values, credential ``env`` values, the password and credential-like
query values of ``url``, credentials on the command line) and made
printable; the server's address is shown with those masked.
"""

from __future__ import annotations

import base64
import contextvars
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import trio
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

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
from asyncfc_cli.tools import processes
from asyncfc_cli.tools.command import check_executable
from asyncfc_cli.tools.core import (
    CURRENT_CALL,
    NAME_RE,
    RunContext,
    Tool,
    ToolConfigBase,
    ToolError,
    ToolKind,
    ToolLoadError,
    ToolSource,
    format_validation_error,
)

DEFAULT_STARTUP_TIMEOUT = 30.0
# Bytes of one message from the server: far more than a model is shown of a
# result (max_result_chars), far less than what would hold the loop or memory.
DEFAULT_MAX_OUTPUT = 4 * 1024 * 1024
_STDERR_TAIL = 1500
_STDERR_WINDOW = 64 * 1024  # what is read of the end of a server's stderr, whatever its size
_NOTICES = 3  # lines a server wrote to stdout that were not JSON-RPC, kept for a start failure


class McpServer(BaseModel):
    """How to reach the server: ``command`` (stdio) or ``url`` (streamable HTTP)."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] | None = Field(None, min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_transport(self) -> "McpServer":
        if (self.command is None) == (self.url is None):
            raise ValueError(
                'give exactly one of command = ["server", "..."] (stdio) or url = "http://..." '
                "(streamable HTTP)"
            )
        if self.command is not None and self.headers:
            raise ValueError("headers are for url servers; a command server gets env")
        if self.url is not None and (self.env or self.cwd):
            raise ValueError("env and cwd are for command servers; a url server gets headers")
        if self.url is not None and not re.match(r"^https?://", self.url):
            raise ValueError(f"url {self.url!r} must start with http:// or https://")
        return self


class McpToolOverride(BaseModel):
    """Per server tool: what differs from the table's settings."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    timeout: PositiveFloat | None = None
    ordered: bool | None = None
    max_concurrency: PositiveInt | None = None
    expected_latency: NonNegativeFloat | None = None


class McpToolConfig(ToolConfigBase):
    mcp: McpServer
    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    prefix: str = ""
    overrides: dict[str, McpToolOverride] = Field(default_factory=dict)
    startup_timeout: PositiveFloat = DEFAULT_STARTUP_TIMEOUT
    # Bytes one message from the server may have; a longer answer ends its call with an error.
    max_output: PositiveInt = DEFAULT_MAX_OUTPUT
    # "auto": an MCP task when the server and the tool allow one; "never": plain calls.
    tasks: Literal["auto", "never"] = "auto"

    @model_validator(mode="after")
    def _check(self) -> "McpToolConfig":
        if self.include is not None and self.exclude:
            raise ValueError("set include or exclude, not both")
        if self.prefix and not re.match(r"^[A-Za-z0-9_-]{1,40}$", self.prefix):
            raise ValueError(f"prefix {self.prefix!r} may hold only letters, digits, '_' and '-'")
        if self.description is not None:
            raise ValueError(
                "description is per server tool: set it under [tools.NAME.overrides.TOOL]"
            )
        return self


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
        session = _Session(self, run)
        try:
            async with trio.open_nursery() as nursery:
                tools = await nursery.start(session.hold)
                try:
                    yield tools
                finally:
                    session.close()
        except BaseExceptionGroup as group:
            # The nursery wraps a start failure; the user should read the failure.
            failure = _leaf(group, ToolLoadError)
            if failure is not None:
                raise failure from None
            raise

    async def check(self) -> str:
        run = RunContext(_NoTrace(Redactor([*env_secrets(), *self.secrets()])))
        async with self.open(run) as tools:
            return f"{len(tools)} tools from {self.where}"

    def _transport(self, session: "_Session", errlog: Any, notice: Any) -> Any:
        from mcp import StdioServerParameters
        from mcp.client.stdio import get_default_environment, stdio_client

        server = self.cfg.mcp
        if server.command is not None:
            env = {**server.env, processes.TOKEN_VAR: processes.new_call_token()}
            # The session's, not the source's: two runs of one spec each sweep their own server.
            session.token = env[processes.TOKEN_VAR]
            if os.name == "posix":
                from asyncfc_cli.tools.mcp_stdio import stdio_transport

                return stdio_transport([self.program, *server.command[1:]], {**get_default_environment(), **env},
                                       self.cwd, errlog, self.cfg.max_output, notice)
            params = StdioServerParameters(command=self.program, args=server.command[1:], env=env, cwd=self.cwd)
            return stdio_client(params, errlog=errlog)
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(headers=server.headers, timeout=httpx2.Timeout(30.0, read=None),
                                  event_hooks={"response": [_capped_http(self.cfg.max_output)]})
        return streamable_http_client(server.url, http_client=http, max_sse_event_size=self.cfg.max_output), http

    def build_tools(self, session: "_Session", listed: list[Any]) -> list[Tool]:
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

    def load_error(self, text: str) -> ToolLoadError:
        """A start failure of this source. ``text`` quotes the server's names through
        :func:`_shown` (printable); it is redacted where it is raised (:meth:`_Session.hold`)."""
        error = ToolLoadError(f"tool {self.name!r}: {text}")
        error.source = self.name  # type: ignore[attr-defined]  (read by spec.tool_spec_error)
        return error


def _shown(name: Any) -> str:
    """A name the server chose, quoted and printable (it may hold escape sequences)."""
    return f"'{printable(name)}'"


def _toml(name: str) -> str:
    return json.dumps(name, ensure_ascii=True)


def _capped_http(limit: int) -> Any:
    """An httpx response hook that makes a JSON body stop at ``limit`` bytes.

    The SDK reads a JSON answer whole; past the limit the body raises a
    ``StreamError``, which the SDK turns into an error for that request
    (an event stream is capped per event by the SDK's ``max_sse_event_size``).
    A hook, not a transport: it holds for proxied connections too.
    """
    import httpx2

    class TooLong(httpx2.StreamError):
        pass

    class Capped(httpx2.AsyncByteStream):
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __aiter__(self) -> AsyncIterator[bytes]:
            size = 0
            async for chunk in self.inner:
                size += len(chunk)
                if size > limit:
                    raise TooLong(f"the MCP server's answer is more than max_output ({limit:,} bytes); "
                                  "the rest was not read")
                yield chunk

        async def aclose(self) -> None:
            await self.inner.aclose()

    async def cap(response: Any) -> None:
        if "json" in response.headers.get("content-type", "").lower():
            response.stream = Capped(response.stream)

    return cap


class _NoTrace:
    def __init__(self, redactor: Redactor | None = None) -> None:
        self.sinks: list[Any] = []
        self.redactor = redactor or Redactor()

    def emit(self, type: str, **fields: Any) -> None:
        pass


@dataclass
class _LogContext:
    """Whose session a log record of the SDK comes from (see :class:`_SdkLogs`)."""

    name: str
    redactor: Redactor
    trace: Any


# Set by the session's task (the SDK's tasks inherit it) and by each call's task:
# per task, never shared between runs.
_LOG_CONTEXT: contextvars.ContextVar[_LogContext | None] = contextvars.ContextVar("asyncfc_mcp_log", default=None)


class _SdkLogs(logging.Handler):
    """Every record of the MCP SDK's loggers, redacted and printable before it goes anywhere.

    The SDK logs what servers send (a body it could not parse, a handler's
    error): a record is rewritten here with the secrets of the session that
    logged it masked, on one line without a traceback. A session's record
    (warnings and up) goes into that run's trace, not onto stderr under the
    run's progress; any other goes on to the root logger's handlers, as
    before (the CLI: warnings on stderr), with the environment's secrets masked.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            context = _LOG_CONTEXT.get()
            redactor = context.redactor if context is not None else Redactor(env_secrets())
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f": {_describe(record.exc_info[1])}"
            text = printable(redactor.clip(_without_inputs(text), 500))
            if context is not None:
                # A session's problem: its calls already told the model; the trace keeps the detail.
                if record.levelno >= logging.WARNING:
                    context.trace.emit("tool_source_error", name=context.name, error=f"MCP SDK: {text}")
                return
            clean = logging.makeLogRecord({**record.__dict__, "msg": text, "args": None, "exc_info": None,
                                           "exc_text": None, "stack_info": None})
            root = logging.getLogger()
            if root.isEnabledFor(clean.levelno):
                root.handle(clean)
        except Exception:
            self.handleError(record)


def _route_sdk_logs() -> None:
    """Send the SDK's log records through :class:`_SdkLogs`. Idempotent; one handler per
    process (logging is configured per process), holding no run's state."""
    for name in ("mcp", "mcp_types"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, _SdkLogs) for h in logger.handlers):
            logger.addHandler(_SdkLogs())
        logger.propagate = False  # again each time: a library's logging setup may have reset it


def _leaf(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _leaf(inner, kind)
            if found is not None:
                return found
    return None


def _without_inputs(text: str) -> str:
    """``text`` without the values pydantic quotes in its errors (``input_value=...``).

    pydantic cuts a quoted value to about 50 characters: a credential a server
    echoed may be cut in part there, and a part is no longer found by the
    redactor. The field and the message say what was wrong without it.
    """
    pieces, pos = [], 0
    while (start := text.find("input_value=", pos)) >= 0:
        end = text.find("input_type=", start)
        if end < 0:
            break
        pieces.append(text[pos:start])
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces)


def _asyncfc_kind(exc: BaseException) -> str | None:
    """``too_long`` or ``invalid`` for an error the stdio transport made up, else None."""
    from mcp import MCPError

    leaf = _leaf(exc, MCPError)
    data = getattr(leaf, "data", None)
    kind = data.get("asyncfc") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else None


def _describe(exc: BaseException) -> str:
    """One line for an exception that may be a group of groups (anyio task groups)."""
    from pydantic import ValidationError

    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = next((e for e in exc.exceptions if not isinstance(e, trio.Cancelled)), exc.exceptions[0])
    if isinstance(exc, ValidationError):
        return f"its answer does not fit the MCP schema ({format_validation_error(exc)})"
    if _asyncfc_kind(exc) is not None:  # the transport's own words
        return str(getattr(exc, "message", exc))
    text = _without_inputs(str(exc)) or type(exc).__name__
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"


class _Session:
    """One source's connection for one run, held by one task."""

    def __init__(self, source: McpSource, run: RunContext) -> None:
        self.source, self.run = source, run
        self.client: Any = None
        self.lost: str | None = None  # why calls can no longer reach the server
        self._closed = trio.Event()
        self.tasks_supported = False
        self.redactor = source.redactor(run)
        self.transport: Any = None
        self.token: str | None = None  # a stdio server's process token
        self.stage = "connecting"  # what the start was doing, for its failure message
        self.notices: list[str] = []  # the first lines a server wrote that were not JSON-RPC
        self.log_context = _LogContext(source.name, self.redactor, run.trace)

    def close(self) -> None:
        self._closed.set()

    def clean(self, text: str, limit: int = 500) -> str:
        """Server text for an output: secrets masked (before the cut), on one printable line."""
        return printable(self.redactor.clip(text, limit))

    def notice(self, text: str) -> None:
        """A problem of the server that ended no call (a line that is not JSON-RPC): into the trace."""
        text = self.clean(text, 300)
        if len(self.notices) < _NOTICES:
            self.notices.append(text)
        self.run.trace.emit("tool_source_error", name=self.source.name, error=text)

    async def hold(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        source = self.source
        _route_sdk_logs()
        _LOG_CONTEXT.set(self.log_context)  # this task's context: the SDK's tasks below inherit it
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errlog:
            started = False
            # The start-up deadline covers connecting and listing; the session is
            # entered and left inside this scope, so the SDK's scopes nest in it.
            with trio.CancelScope(deadline=trio.current_time() + source.cfg.startup_timeout) as startup:
                try:
                    async with AsyncExitStack() as stack:
                        transport = source._transport(self, errlog, self.notice)
                        if isinstance(transport, tuple):
                            transport, http = transport
                            await stack.enter_async_context(http)
                        from mcp import ClientSession
                        from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher

                        streams = await stack.enter_async_context(transport)
                        if hasattr(streams, "read_stream"):  # asyncfc's own stdio transport
                            self.transport = streams
                            read, write = streams.read_stream, streams.write_stream
                        else:
                            read, write = streams
                        # Our own dispatcher: MCP tasks need requests the SDK has no method for.
                        self.dispatcher = JSONRPCDispatcher(read, write)
                        self.client = await stack.enter_async_context(ClientSession(dispatcher=self.dispatcher))
                        # The initialize handshake (2025-11-25 and older) every server speaks,
                        # and the revision that defines tasks.
                        self.stage = "initialize"
                        await self.client.initialize()
                        self.stage = "tools/list"
                        listed = await self._list_tools()
                        caps = self.client.server_capabilities
                        tasks = getattr(caps, "tasks", None)
                        self.tasks_supported = bool(
                            tasks and tasks.requests and tasks.requests.tools and tasks.requests.tools.call
                        )
                        tools = source.build_tools(self, listed)
                        startup.deadline = math.inf
                        self.run.trace.emit("tool_source", name=source.name, kind="mcp", server=source.where,
                                            tools=[t.name for t in tools],
                                            protocol=self.client.protocol_version)
                        started = True
                        task_status.started(tools)
                        await self._closed.wait()
                except Exception as exc:
                    # Ours (a bad include, names that collide), maybe wrapped by the SDK's task groups.
                    own = _leaf(exc, ToolLoadError)
                    if own is not None:
                        raise self._failed(str(own)) from None
                    if not started:
                        what = await self._why_not_started(exc)
                        raise self._failed(self._start_failure(what, errlog, _asyncfc_kind(exc))) from None
                    # After the start: the session failed while closing or mid-run;
                    # the calls have already said so to the model.
                    self.run.trace.emit("tool_source_error", name=source.name, error=self.clean(_describe(exc)))
                finally:
                    self.lost = self.lost or "the MCP session is closed"
                    if self.token:
                        processes.sweep(self.token)  # whatever the server left behind
            if startup.cancelled_caught and not started:
                raise self._failed(self._start_failure(
                    f"the server did not start and list its tools within {source.cfg.startup_timeout:g}s "
                    f"(startup_timeout), waiting for {self._waiting_for()}", errlog))

    def _waiting_for(self) -> str:
        return "it to connect" if self.stage == "connecting" else f"its answer to {self.stage}"

    def _failed(self, text: str) -> ToolLoadError:
        """The start failure as raised: redacted whole (it quotes the server), and in the trace."""
        error = ToolLoadError(self.redactor.text(text))
        error.source = self.source.name  # type: ignore[attr-defined]
        self.run.trace.emit("tool_source_error", name=self.source.name, error=str(error))
        return error

    async def _why_not_started(self, exc: BaseException) -> str:
        from mcp import MCPError

        leaf = _leaf(exc, MCPError)
        if isinstance(leaf, MCPError) and leaf.code == -32000 and self.transport is not None:
            # "Connection closed": the server went away; its exit status says more.
            status = await self.transport.exit_status(1.0)
            if status is not None:
                return f"the server exited with status {status} before it answered {self.stage}"
            return f"the server closed its stdout before it answered {self.stage}"
        return _describe(exc)

    def _start_failure(self, what: str, errlog: Any, kind: str | None = None) -> str:
        errlog.flush()
        size = errlog.seek(0, os.SEEK_END)
        errlog.seek(max(0, size - _STDERR_WINDOW))
        window = errlog.read()
        # Redacted before the cut; a secret cut by the window's own start is masked too.
        tail = self.redactor.text(window, cut_before=size > _STDERR_WINDOW)[-_STDERR_TAIL:].strip()
        what = printable(self.redactor.clip(what, 1000))  # before the cut: a secret is never cut in part
        text = f"tool {self.source.name!r}: MCP server {self.source.where!r} failed to start: {what}"
        if self.notices:
            text += f"; it wrote to stdout what is not JSON-RPC: {' | '.join(self.notices)}"
        if tail:
            # Line by line, each printable: the server's escape sequences are shown, never acted on.
            text += "; its stderr ends with:\n" + "\n".join("    " + printable(line) for line in tail.splitlines())
            text += "\n"
        else:
            text += ". "
        if kind == "too_long":
            return text + f"Fix: raise max_output in [tools.{self.source.name}] (bytes of one message)"
        return text + "Fix: run the server by hand to see why, or correct [tools." + self.source.name + ".mcp]"

    async def _list_tools(self) -> list[Any]:
        listed: list[Any] = []
        cursor = None
        for _ in range(1000):  # a server that pages forever is broken, not infinite
            from mcp.types import PaginatedRequestParams

            result = await self.client.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
            listed.extend(result.tools)
            cursor = result.next_cursor
            if not cursor:
                break
        return listed

    def runner(self, listed_tool: Any, exposed: str) -> Any:
        execution = getattr(listed_tool, "execution", None)
        support = getattr(execution, "task_support", None) if execution is not None else None
        use_task = self.source.cfg.tasks == "auto" and support in ("optional", "required")

        async def run(arguments: dict[str, Any]) -> Any:
            if self.lost is not None:
                raise ToolError(f"cannot call {exposed!r}: {self.lost}", kind="mcp")
            from mcp import MCPError

            # The SDK may log while it handles this call: its records belong to this session.
            token = _LOG_CONTEXT.set(self.log_context)
            try:
                if use_task and self.tasks_supported:
                    result = await self.call_as_task(listed_tool.name, exposed, arguments)
                else:
                    result = await self.client.call_tool(listed_tool.name, arguments)
            except MCPError as exc:
                lost = getattr(self.transport, "lost", None)
                if lost is not None:
                    self.lost = self.clean(f"the MCP server connection was closed: {lost}")
                    raise ToolError(self.lost, kind="mcp") from None
                if _asyncfc_kind(exc) == "too_long":
                    raise ToolError(self.redactor.text(
                        f"{exc.message}. Fix: ask for less (a narrower query, a page), or raise max_output in "
                        f"[tools.{self.source.name}]"), kind="mcp") from None
                if _asyncfc_kind(exc) is not None:
                    raise ToolError(self.clean(exc.message), kind="mcp") from None
                message = _without_inputs(exc.message)
                if exc.code == -32000 or "closed" in message.lower():
                    self.lost = self.clean(f"the MCP server connection was lost ({message})")
                raise ToolError(self.redactor.text(f"MCP error {exc.code}: {message}"), kind="mcp") from None
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self.lost = self.clean(f"the MCP server connection was lost ({_describe(exc)})")
                raise ToolError(self.lost, kind="mcp") from None
            except ToolError as exc:
                exc.message = self.redactor.text(exc.message)
                exc.args = (exc.message,)
                raise
            finally:
                _LOG_CONTEXT.reset(token)
            try:
                return self.redactor.value(result_value(exposed, result))
            except ToolError as exc:
                raise ToolError(self.redactor.text(exc.message), kind="mcp") from None

        return run

    async def call_as_task(self, name: str, exposed: str, arguments: dict[str, Any]) -> Any:
        """``tools/call`` as an MCP task (2025-11-25): create, follow, read, or cancel.

        The SDK validates a ``tools/call`` answer as a CallToolResult, which a
        task is not, so these requests go through the dispatcher as raw JSON-RPC.
        """
        from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
        from mcp.types import CallToolResult

        def opts() -> dict[str, Any]:
            return {"headers": {MCP_PROTOCOL_VERSION_HEADER: self.client.protocol_version}}

        send = self.dispatcher.send_raw_request
        call_id = CURRENT_CALL.get()
        raw = await send("tools/call", {"name": name, "arguments": arguments, "task": {}}, opts())
        if not isinstance(raw.get("task"), dict):  # the server answered at once
            return CallToolResult.model_validate(raw, by_name=False)
        task = raw["task"]
        task_id = str(task.get("taskId"))
        status: str | None = None

        def note(state: dict[str, Any]) -> None:
            nonlocal status
            if state.get("status") != status:
                status = str(state.get("status"))
                message = state.get("statusMessage")
                self.run.trace.emit("tool_progress", call_id=call_id, tool=exposed, mcp_task=task_id,
                                    status=status, **({"message": self.redactor.clip(str(message), 200)} if message else {}))

        note(task)
        try:
            while status not in _TERMINAL:
                if status == "input_required":
                    raise ToolError(f"the MCP task for {exposed!r} asks for input, which asyncfc cannot "
                                    "give; it was cancelled", kind="mcp")
                interval = task.get("pollInterval")
                await trio.sleep(min(max((interval or 250) / 1000, 0.05), 5.0))
                task = await send("tasks/get", {"taskId": task_id}, opts())
                note(task)
            if status == "cancelled":
                raise ToolError(f"the server cancelled the MCP task for {exposed!r}", kind="mcp")
            result = await send("tasks/result", {"taskId": task_id}, opts())
            return CallToolResult.model_validate(result, by_name=False)
        except BaseException:
            if status not in _TERMINAL:
                # Our future was cancelled (a timeout, the run ending) or gave up:
                # the server's task must stop too. Bounded, and shielded so it
                # runs while we are being cancelled.
                with trio.move_on_after(2, shield=True):
                    try:
                        await send("tasks/cancel", {"taskId": task_id}, opts())
                        note({"status": "cancelled"})
                    except Exception:
                        pass
            raise


_TERMINAL = frozenset({"completed", "failed", "cancelled"})


def result_value(exposed: str, result: Any) -> Any:
    """A ``CallToolResult`` as the JSON value the model sees (or a ToolError)."""
    parts = [_content(c) for c in (result.content or [])]
    if result.is_error:
        text = "\n".join(p if isinstance(p, str) else str(p) for p in parts) or "(no message)"
        raise ToolError(f"the MCP tool {exposed!r} reported an error: {text}", kind="mcp")
    if result.structured_content is not None:
        return result.structured_content
    if len(parts) == 1 and isinstance(parts[0], str):
        # Many servers send JSON as text: pass an object or array on as that
        # value, so "$f1.key" references reach into it like any tool's result.
        try:
            value = json.loads(parts[0])
        except ValueError:
            return parts[0]
        return value if isinstance(value, (dict, list)) else parts[0]
    if all(isinstance(p, str) for p in parts):
        return "\n".join(parts)
    return parts


def _content(block: Any) -> Any:
    kind = getattr(block, "type", None)
    if kind == "text":
        return block.text
    if kind in ("image", "audio"):
        # The model cannot use base64 in a tool message; say what it was.
        size = len(base64.b64decode(block.data, validate=False)) if getattr(block, "data", None) else 0
        return {"type": kind, "mime_type": getattr(block, "mime_type", None), "bytes": size}
    if kind == "resource":
        resource = block.resource
        text = getattr(resource, "text", None)
        return {"type": "resource", "uri": str(resource.uri), **({"text": text} if text is not None else {})}
    if kind == "resource_link":
        return {"type": "resource_link", "uri": str(block.uri), "name": getattr(block, "name", None)}
    return {"type": kind or "unknown"}


@asynccontextmanager
async def _run_resources(run: RunContext) -> AsyncIterator[None]:
    # A stdio server carries the run's token: the guard stops it after a kill -9.
    async with processes.guard():
        yield


KIND = ToolKind(
    name="mcp",
    key="mcp",
    config=McpToolConfig,
    build=McpSource,
    run_resources=_run_resources,
)
