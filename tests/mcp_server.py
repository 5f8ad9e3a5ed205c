"""A small MCP server for tests/test_mcp.py, written with the SDK's own server API.

usage: python mcp_server.py [--http PORT] [--mode MODE] [--require-header VALUE]

Modes: "normal"; "exit" (dies before answering anything); "hang-list"
(answers the handshake, never the tool list). Over HTTP, --require-header
makes every request without ``Authorization: VALUE`` a 401.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError


def build(mode: str) -> MCPServer:
    if mode == "hang-list":
        class HangingList(MCPServer):
            async def _handle_list_tools(self, ctx, params):  # type: ignore[override]
                await anyio.sleep(3600)

        server: MCPServer = HangingList("asyncfc-test-hang")
    else:
        server = MCPServer("asyncfc-test")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def echo(text: str) -> str:
        """Return the text unchanged."""
        return text

    @server.tool()
    async def slow(seconds: float, marker: str = "") -> str:
        """Sleep, then answer; writes MARKER.started, and MARKER.cancelled if cancelled."""
        if marker:
            Path(marker + ".started").write_text(str(os.getpid()))
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            if marker:
                Path(marker + ".cancelled").write_text("yes")
            raise
        return f"slept {seconds}"

    @server.tool()
    def fail(reason: str = "it broke") -> str:
        """Always reports an error (isError)."""
        raise ToolError(f"refused: {reason}")

    @server.tool()
    def protocol_error() -> str:
        """Answers with a JSON-RPC error instead of a result."""
        from mcp.shared.exceptions import MCPError

        raise MCPError(-32602, "invalid params, on purpose")

    @server.tool()
    def crash() -> str:
        """The server process dies mid-call."""
        os._exit(3)

    @server.tool()
    def env(name: str) -> str:
        """The value of an environment variable of the server."""
        return os.environ.get(name, "(unset)")

    @server.tool()
    def pid() -> int:
        """The server's process id."""
        return os.getpid()

    @server.tool(name="files.read")
    def files_read(path: str) -> str:
        """A tool whose MCP name holds a dot."""
        return f"read {path}"

    return server


class RequireHeader:
    """ASGI middleware: 401 unless the Authorization header is exactly ``value``."""

    def __init__(self, app, value: str) -> None:
        self.app, self.value = app, value.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != self.value:
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        await self.app(scope, receive, send)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int)
    parser.add_argument("--mode", default="normal")
    parser.add_argument("--require-header")
    args = parser.parse_args()
    if args.mode == "exit":
        print("mcp_server: refusing to start (mode exit)", file=sys.stderr)
        sys.exit(7)
    server = build(args.mode)
    if args.http is None:
        server.run()
        return
    import uvicorn

    app = server.streamable_http_app(host="127.0.0.1")
    if args.require_header:
        app = RequireHeader(app, args.require_header)
    uvicorn.run(app, host="127.0.0.1", port=args.http, log_level="warning")


if __name__ == "__main__":
    main()
