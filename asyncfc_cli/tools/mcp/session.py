"""One MCP server's session for one run: start, list, call, and say why when it fails.

The session runs on the run's own trio loop through anyio's trio backend (the
SDK is written on anyio), held by a task of the source's own nursery, so the
SDK's cancel scopes nest inside that task; see the package's docstring.
"""

from __future__ import annotations

import math
import os
import tempfile
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import trio

from asyncfc_cli.events import ToolSourceError, ToolSourceOpened
from asyncfc_cli.output import printable
from asyncfc_cli.tools import processes
from asyncfc_cli.tools.core import RunContext, ToolError, ToolLoadError
from asyncfc_cli.tools.mcp.errors import asyncfc_kind, describe, leaf_of, without_inputs
from asyncfc_cli.tools.mcp.logs import LOG_CONTEXT, LogContext, route_sdk_logs
from asyncfc_cli.tools.mcp.results import result_value
from asyncfc_cli.tools.mcp.tasks import call_as_task
from asyncfc_cli.tools.mcp.transport import open_transport

if TYPE_CHECKING:
    from asyncfc_cli.tools.mcp.source import McpSource

_STDERR_TAIL = 1500
_STDERR_WINDOW = 64 * 1024  # what is read of the end of a server's stderr, whatever its size
_NOTICES = 3  # lines a server wrote to stdout that were not JSON-RPC, kept for a start failure


class Session:
    """One source's connection for one run, held by one task."""

    def __init__(self, source: "McpSource", run: RunContext) -> None:
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
        self.log_context = LogContext(source.name, self.redactor, run.trace)

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
        self.run.trace.emit(ToolSourceError(name=self.source.name, error=text))

    async def hold(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        source = self.source
        began = getattr(self.run.trace, "now", lambda: None)()  # the start is the run's, in its trace
        route_sdk_logs()
        LOG_CONTEXT.set(self.log_context)  # this task's context: the SDK's tasks below inherit it
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errlog:
            started = False
            # The start-up deadline covers connecting and listing; the session is
            # entered and left inside this scope, so the SDK's scopes nest in it.
            with trio.CancelScope(deadline=trio.current_time() + source.cfg.startup_timeout) as startup:
                try:
                    async with AsyncExitStack() as stack:
                        transport = open_transport(source, self, errlog, self.notice)
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
                        self.run.trace.emit(ToolSourceOpened(name=source.name, kind="mcp", server=source.where,
                                                             tools=[t.name for t in tools],
                                                             protocol=self.client.protocol_version,
                                                             began=began))
                        started = True
                        task_status.started(tools)
                        await self._closed.wait()
                except Exception as exc:
                    # Ours (a bad include, names that collide), maybe wrapped by the SDK's task groups.
                    own = leaf_of(exc, ToolLoadError)
                    if own is not None:
                        raise self._failed(str(own)) from None
                    if not started:
                        what = await self._why_not_started(exc)
                        raise self._failed(self._start_failure(what, errlog, asyncfc_kind(exc))) from None
                    # After the start: the session failed while closing or mid-run;
                    # the calls have already said so to the model.
                    self.run.trace.emit(ToolSourceError(name=source.name, error=self.clean(describe(exc))))
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
        error.source, error.key = self.source.name, self.source.key  # type: ignore[attr-defined]
        self.run.trace.emit(ToolSourceError(name=self.source.name, error=str(error)))
        return error

    async def _why_not_started(self, exc: BaseException) -> str:
        from mcp import MCPError

        leaf = leaf_of(exc, MCPError)
        if isinstance(leaf, MCPError) and leaf.code == -32000 and self.transport is not None:
            # "Connection closed": the server went away; its exit status says more.
            status = await self.transport.exit_status(1.0)
            if status is not None:
                return f"the server exited with status {status} before it answered {self.stage}"
            return f"the server closed its stdout before it answered {self.stage}"
        return describe(exc)

    def _start_failure(self, what: str, errlog: Any, kind: str | None = None) -> str:
        errlog.flush()
        size = errlog.seek(0, os.SEEK_END)
        errlog.seek(max(0, size - _STDERR_WINDOW))
        window = errlog.read()
        # Redacted before the cut; a secret cut by the window's own start is masked too.
        tail = self.redactor.text(window, cut_before=size > _STDERR_WINDOW)[-_STDERR_TAIL:].strip()
        what = printable(self.redactor.clip(what, 1000))  # before the cut: a secret is never cut in part
        if self.source.settings:
            text = f"{self.source.label}: MCP server {self.source.where!r} failed to start: {what}"
        else:  # the --mcp label quotes the server already
            text = f"{self.source.label} failed to start: {what}"
        if self.notices:
            text += f"; it wrote to stdout what is not JSON-RPC: {' | '.join(self.notices)}"
        if tail:
            # Line by line, each printable: the server's escape sequences are shown, never acted on.
            text += "; its stderr ends with:\n" + "\n".join("    " + printable(line) for line in tail.splitlines())
            text += "\n"
        else:
            text += ". "
        if kind == "too_long":
            return text + f"Fix: {self.source.fix_setting('raise max_output')} (bytes of one message)"
        return text + f"Fix: run the server by hand to see why, or {self.source.fix_server()}"

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
                raise ToolError(f"cannot call {exposed!r}: {self.lost}")
            from mcp import MCPError

            # The SDK may log while it handles this call: its records belong to this session.
            token = LOG_CONTEXT.set(self.log_context)
            try:
                if use_task and self.tasks_supported:
                    result = await call_as_task(self, listed_tool.name, exposed, arguments)
                else:
                    result = await self.client.call_tool(listed_tool.name, arguments)
            except MCPError as exc:
                lost = getattr(self.transport, "lost", None)
                if lost is not None:
                    self.lost = self.clean(f"the MCP server connection was closed: {lost}")
                    raise ToolError(self.lost) from None
                if asyncfc_kind(exc) == "too_long":
                    raise ToolError(self.redactor.text(
                        f"{exc.message}. Fix: ask for less (a narrower query, a page), or "
                        f"{self.source.fix_setting('raise max_output')}")) from None
                if asyncfc_kind(exc) is not None:
                    raise ToolError(self.clean(exc.message)) from None
                message = without_inputs(exc.message)
                if exc.code == -32000 or "closed" in message.lower():
                    self.lost = self.clean(f"the MCP server connection was lost ({message})")
                raise ToolError(self.redactor.text(f"MCP error {exc.code}: {message}")) from None
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self.lost = self.clean(f"the MCP server connection was lost ({describe(exc)})")
                raise ToolError(self.lost) from None
            except ToolError as exc:
                exc.message = self.redactor.text(exc.message)
                exc.args = (exc.message,)
                raise
            finally:
                LOG_CONTEXT.reset(token)
            try:
                return self.redactor.value(result_value(exposed, result))
            except ToolError as exc:
                raise ToolError(self.redactor.text(exc.message)) from None

        return run
