"""An example MCP server for tasks/mcp.toml: a small library catalogue.

Written with the official SDK's server API (the ``mcp`` package, a
dependency of asyncfc), run by asyncfc over stdio. The tools sleep to stand
in for a slow backend, so sync and async runs show the difference. Run it by
hand with ``python3 tools/mcp_server.py`` (it speaks JSON-RPC on stdin/stdout).
"""

from __future__ import annotations

import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("asyncfc-library")

_BOOKS = {
    "978-0-13-468599-1": {"title": "The Pragmatic Programmer", "year": 2019, "shelf": "B4"},
    "978-1-4493-5573-9": {"title": "Fluent Python", "year": 2015, "shelf": "C2"},
    "978-0-262-03384-8": {"title": "Introduction to Algorithms", "year": 2009, "shelf": "A1"},
    "978-1-59327-584-6": {"title": "The Linux Programming Interface", "year": 2010, "shelf": "D7"},
}
_COPIES = {"978-0-13-468599-1": 2, "978-1-4493-5573-9": 0, "978-0-262-03384-8": 5, "978-1-59327-584-6": 1}


@server.tool()
async def search(query: str) -> list[str]:
    """Find books whose title contains the words of the query; returns ISBNs."""
    await anyio.sleep(0.8)
    words = query.lower().split()
    return [isbn for isbn, book in _BOOKS.items() if all(w in book["title"].lower() for w in words)]


@server.tool()
async def book(isbn: str) -> dict:
    """Title, year and shelf of a book."""
    await anyio.sleep(0.6)
    if isbn not in _BOOKS:
        raise ValueError(f"no book with ISBN {isbn}")
    return {"isbn": isbn, **_BOOKS[isbn]}


@server.tool()
async def copies(isbn: str) -> int:
    """How many copies of a book are on the shelf now."""
    await anyio.sleep(0.5)
    return _COPIES.get(isbn, 0)


if __name__ == "__main__":
    server.run()
