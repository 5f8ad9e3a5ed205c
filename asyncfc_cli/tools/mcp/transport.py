"""How a session reaches its server: a stdio process (asyncfc's own reader) or streamable HTTP."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from asyncfc_cli.tools import processes

if TYPE_CHECKING:
    from asyncfc_cli.tools.mcp.session import Session
    from asyncfc_cli.tools.mcp.source import McpSource


def open_transport(source: "McpSource", session: "Session", errlog: Any, notice: Any) -> Any:
    """The SDK's transport for ``source``'s server (with the httpx client to enter first, for a url)."""
    from mcp import StdioServerParameters
    from mcp.client.stdio import get_default_environment, stdio_client

    server = source.cfg.mcp
    if server.command is not None:
        env = {**server.env, processes.TOKEN_VAR: processes.new_call_token()}
        # The session's, not the source's: two runs of one spec each sweep their own server.
        session.token = env[processes.TOKEN_VAR]
        if os.name == "posix":
            from asyncfc_cli.tools.mcp.stdio import stdio_transport

            return stdio_transport([source.program, *server.command[1:]], {**get_default_environment(), **env},
                                   source.cwd, errlog, source.cfg.max_output, notice)
        params = StdioServerParameters(command=source.program, args=server.command[1:], env=env, cwd=source.cwd)
        return stdio_client(params, errlog=errlog)
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    from asyncfc_cli.model_reach import keep_off_proxies

    keep_off_proxies(server.url)  # a server on this machine is never reached through a proxy
    http = httpx2.AsyncClient(headers=server.headers, timeout=httpx2.Timeout(30.0, read=None),
                              event_hooks={"response": [capped_http(source.cfg.max_output)]})
    return streamable_http_client(server.url, http_client=http, max_sse_event_size=source.cfg.max_output), http


def capped_http(limit: int) -> Any:
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
