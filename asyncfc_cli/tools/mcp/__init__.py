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

MCP tasks (specification 2025-11-25) are followed by :mod:`.tasks`.

A server is untrusted (docs/reliability.md, "hostile MCP servers"): a stdio
server is read through :mod:`.stdio` (linear, each message capped at
``max_output`` bytes, a line it cannot parse answering its request with an
error); everything it says that reaches an output (its stderr, tool names,
errors, the SDK's log records) is redacted with every secret of the source
(header values, credential ``env`` values, the password and credential-like
query values of ``url``, credentials on the command line) and made
printable; the server's address is shown with those masked.

The parts: :mod:`.config` (the table), :mod:`.source` (the table as a source of
tools), :mod:`.session` (one server's session for one run), :mod:`.transport`
and :mod:`.stdio` (reaching the server), :mod:`.tasks`, :mod:`.results` (a
result as the model sees it), :mod:`.logs` (the SDK's log records, redacted)
and :mod:`.errors` (an exception as one line).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from asyncfc_cli.tools import processes
from asyncfc_cli.tools.core import RunContext, ToolKind
from asyncfc_cli.tools.mcp.config import (
    DEFAULT_MAX_OUTPUT,
    DEFAULT_STARTUP_TIMEOUT,
    McpServer,
    McpToolConfig,
    McpToolOverride,
)
from asyncfc_cli.tools.mcp.logs import route_sdk_logs
from asyncfc_cli.tools.mcp.results import result_value
from asyncfc_cli.tools.mcp.source import McpSource

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "DEFAULT_STARTUP_TIMEOUT",
    "KIND",
    "McpServer",
    "McpSource",
    "McpToolConfig",
    "McpToolOverride",
    "result_value",
    "route_sdk_logs",
]


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
