"""The stdio transport of MCP servers: asyncfc's own reader in front of the SDK's session.

The SDK's ``stdio_client`` cannot be used with an untrusted server:

* its reader joins each chunk onto the line read so far, so a line of n bytes
  costs O(n²): a 40 MB answer held the event loop for seconds, 100 MB wedged
  the session;
* it reads any line whole into memory, however long;
* a line it cannot parse is logged with the line in the log record (a token
  the server prints reached stderr) and dropped, so the request it answered
  waits until its timeout, and a ``tools/list`` answer it cannot parse reads
  as a server that never started.

Here lines are split in time linear in their length, and a message is read up
to ``limit`` bytes (the tool's ``max_output``); past that the rest of its line
is skipped unread, at ``bytes.find`` speed in bounded memory, and the request
it answered ends at once with an error that says so. A line that is not a
valid JSON-RPC message answers its request with an error too, when the
request can be told (its ``id`` is read from the start or the end of the
line, or it is the only request outstanding); any other line is reported
through ``notice`` and dropped. The caller redacts and clips what ``notice``
gets: this module never logs or prints server text.

The messages are the SDK's own (``SessionMessage`` on anyio memory streams),
so its dispatcher and ``ClientSession`` run on top unchanged. Shutdown follows
the specification: close stdin, wait, then SIGTERM and SIGKILL the server's
process group.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import pydantic_core
import trio

from asyncfc_cli.tools.core import format_validation_error

# An error this transport made up for a request carries data {"asyncfc": TOO_LONG or INVALID}.
TOO_LONG, INVALID = "too_long", "invalid"
_CHUNK = 1 << 16
_EDGE = 4096  # bytes kept of each end of a skipped line, to find its id
_EXIT_WAIT = 2.0  # the specification's grace period after stdin closes; then SIGTERM, then SIGKILL

_STRING = r'"(?:[^"\\\n]|\\.)*"'
_SCALAR = _STRING + r"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null"
_OPEN = re.compile(r"\s*\{")
_MEMBER = re.compile(r"\s*(" + _STRING + r")\s*:\s*(" + _SCALAR + r")\s*,")
_KEY = re.compile(r"\s*(" + _STRING + r")\s*:")
# The end of a line whose last members are simple ones, ``"id"`` among them (the
# TypeScript SDK writes ``{"result": ..., "jsonrpc": "2.0", "id": 7}``).
_TAIL_ID = re.compile(r'"id"\s*:\s*(' + _SCALAR + r")\s*(?:,\s*" + _STRING + r"\s*:\s*(?:" + _SCALAR
                      + r")\s*)*\}\s*\Z")


def _string(token: str) -> str | None:
    try:
        value = json.loads(token)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _request_id(value: Any) -> int | str | None:
    return value if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)) else None


def identify(head: str, tail: str) -> tuple[str | None, int | str | None]:
    """(kind, id) of a JSON-RPC message from the start and the end of its text only.

    ``kind`` is "response" when its first member that is not a plain value is
    ``result`` or ``error``, "request" when it has a ``method``, else None.
    The id is the value of a leading ``"id"`` member, or of a trailing one
    (members after the last big value). Linear in ``len(head) + len(tail)``.
    """
    opened = _OPEN.match(head)
    if opened is None:
        return None, None
    members: dict[str, str] = {}
    pos = opened.end()
    while (member := _MEMBER.match(head, pos)) is not None:
        key = _string(member[1])
        if key is not None:
            members[key] = member[2]
        pos = member.end()
    big = _KEY.match(head, pos)
    big_key = _string(big[1]) if big is not None else None
    kind = ("request" if "method" in members or big_key in ("method", "params")
            else "response" if big_key in ("result", "error") else None)
    raw_id = members.get("id")
    if raw_id is None:
        end = len(tail)
        for _ in range(8):  # the last few "id"s: one of them may sit in a trailing value
            end = tail.rfind('"id"', 0, end)
            if end < 0:
                break
            found = _TAIL_ID.match(tail, end)
            before = tail[:end].rstrip()
            if found is not None and before.endswith((",", "{")):
                raw_id = found[1]
                break
    if raw_id is None:
        return kind, None
    try:
        return kind, _request_id(json.loads(raw_id))
    except ValueError:
        return kind, None


class StdioTransport:
    """One server process and the two streams the SDK's dispatcher reads and writes."""

    def __init__(self, limit: int, notice: Callable[[str], None]) -> None:
        from mcp.shared.message import SessionMessage

        self.limit = limit
        self.notice = notice
        self.lost: str | None = None  # why the transport closed the session itself
        self._outstanding: set[int | str] = set()  # ids of our requests not answered yet
        self._send_in, self.read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        self.write_stream, self._write_out = anyio.create_memory_object_stream[SessionMessage](0)
        self._delivering = True
        self.process: trio.Process | None = None

    async def exit_status(self, wait: float) -> int | None:
        """The server's exit status, waiting up to ``wait`` seconds for it to exit."""
        if self.process is None:
            return None
        with trio.move_on_after(wait, shield=True):
            await self.process.wait()
        return self.process.returncode

    # -- reading -------------------------------------------------------------------------

    async def read(self, stdout: trio.abc.ReceiveStream) -> None:
        """Split stdout into lines, each read up to ``limit`` bytes; deliver, answer or report each."""
        pieces: list[bytes] = []
        size = 0
        skipped: list[bytes] | None = None  # [head, tail] of a line past the limit
        try:
            while True:
                try:
                    chunk = await stdout.receive_some(_CHUNK)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                if not chunk:
                    break
                start = 0
                while True:
                    newline = chunk.find(b"\n", start)
                    end = len(chunk) if newline < 0 else newline
                    if end > start:
                        part = chunk[start:end]
                        size += len(part)
                        if skipped is not None:
                            skipped[1] = (skipped[1] + part)[-_EDGE:]
                        elif size <= self.limit:
                            pieces.append(part)
                        else:
                            first = b"".join(pieces) + part
                            skipped, pieces = [first[:_EDGE], first[-_EDGE:]], []
                    if newline < 0:
                        break
                    if skipped is not None:
                        await self._too_long(skipped[0], skipped[1], size)
                    elif pieces:
                        await self._line(b"".join(pieces))
                    pieces, size, skipped = [], 0, None
                    start = newline + 1
            if skipped is not None:
                await self._too_long(skipped[0], skipped[1], size)
            elif pieces:
                await self._line(b"".join(pieces))
        finally:
            self._send_in.close()  # EOF: the dispatcher fails what is still waiting

    async def _deliver(self, message: Any) -> None:
        from mcp.shared.message import SessionMessage

        if not self._delivering:
            return
        request_id = getattr(message, "id", None)
        if not hasattr(message, "method") and request_id is not None:
            self._outstanding.discard(request_id)
        try:
            await self._send_in.send(SessionMessage(message))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._delivering = False  # the session is gone; keep draining stdout so the server can exit

    async def _line(self, raw: bytes) -> None:
        from mcp.types import jsonrpc_message_adapter

        text = raw.decode("utf-8", "replace").strip()
        if not text:
            return
        try:
            message = jsonrpc_message_adapter.validate_json(text, by_name=False)
        except ValueError:
            pass
        else:
            await self._deliver(message)
            return
        try:
            # pydantic's parser, not json.loads: it refuses deep nesting with a ValueError
            # where json.loads would raise RecursionError.
            value = pydantic_core.from_json(text)
        except ValueError as exc:
            kind, request_id = identify(text[:_EDGE], text[-_EDGE:])
            deep = "recursion limit" in str(exc)
            why = f"nests too deeply to be read ({exc})" if deep else f"is not JSON ({exc})"
        else:
            if not isinstance(value, dict):
                kind, request_id = None, None
            else:
                kind = "request" if "method" in value else "response"
                request_id = _request_id(value.get("id"))
            why = f"is not a valid JSON-RPC message ({_why_invalid(value)})"
        if kind == "response":
            await self._answer(request_id, f"the MCP server's answer {why}", text, INVALID)
        else:
            self.notice(f"the server wrote a line to stdout that is not a JSON-RPC message it may send: {text}")

    async def _too_long(self, head: bytes, tail: bytes, size: int) -> None:
        kind, request_id = identify(head.decode("utf-8", "replace"), tail.decode("utf-8", "replace"))
        what = f"{size:,} bytes, more than max_output ({self.limit:,} bytes)"
        if kind == "request":
            self.notice(f"the server sent a request of {what}; it was skipped")
            return
        await self._answer(request_id, f"the MCP server's answer is {what}; it was skipped unread", "", TOO_LONG)

    async def _answer(self, request_id: int | str | None, message: str, line: str, kind: str) -> None:
        """End the request a bad line answered with an error, if it can be told which one."""
        from mcp.types import ErrorData, JSONRPCError

        if request_id is None and len(self._outstanding) == 1:
            request_id = next(iter(self._outstanding))
        if request_id is None:
            if not self._outstanding:
                self.notice(f"{message}, for no request waiting: {line}")
                return
            # It answers one of several requests, which cannot be told: end them all
            # now rather than let each wait for its timeout.
            self.lost = f"{message}, and it could not be told which request it answers"
            self._send_in.close()
            self._delivering = False
            return
        error = ErrorData(code=-32700, message=message, data={"asyncfc": kind})
        await self._deliver(JSONRPCError(jsonrpc="2.0", id=request_id, error=error))

    # -- writing -------------------------------------------------------------------------

    async def write(self, stdin: trio.abc.SendStream) -> None:
        """Send the session's messages, one line each; close stdin when the session stops sending."""
        try:
            async with self._write_out:
                async for item in self._write_out:
                    message = item.message
                    method = getattr(message, "method", None)
                    request_id = getattr(message, "id", None)
                    if method is not None and request_id is not None:
                        self._outstanding.add(request_id)
                    elif method == "notifications/cancelled":  # no answer will come for it
                        self._outstanding.discard((getattr(message, "params", None) or {}).get("requestId"))
                    data = message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await stdin.send_all(data.encode("utf-8", "backslashreplace"))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            # The server stopped reading: the session must see the connection end,
            # not wait on a request forever.
            self._send_in.close()
        finally:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await stdin.aclose()


def _why_invalid(value: Any) -> str:
    from pydantic import ValidationError

    from mcp.types import JSONRPCError, JSONRPCResponse

    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, not an object"
    model = JSONRPCError if "error" in value else JSONRPCResponse
    try:
        model.model_validate(value, by_name=False)
    except ValidationError as exc:
        return format_validation_error(exc)  # the session redacts, then cuts
    return "it fits no message type"


@asynccontextmanager
async def stdio_transport(argv: list[str], env: dict[str, str], cwd: str, errlog: Any, limit: int,
                          notice: Callable[[str], None]) -> AsyncIterator[StdioTransport]:
    """Start ``argv`` as an MCP server on stdio; yields the transport (its ``read_stream``
    and ``write_stream`` go to the SDK's dispatcher). The server is stopped on the way
    out, however the block ends."""
    process = await trio.lowlevel.open_process(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog, env=env, cwd=cwd,
        start_new_session=True,  # its own process group: one killpg stops what it started
    )
    transport = StdioTransport(limit, notice)
    transport.process = process
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.read, process.stdout)
            nursery.start_soon(transport.write, process.stdin)
            try:
                yield transport
            finally:
                with trio.CancelScope(shield=True):
                    await _stop(transport, process)
                nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:  # only if stopping it was itself interrupted
            _signal_group(process.pid, signal.SIGKILL)


async def _stop(transport: StdioTransport, process: trio.Process) -> None:
    """Close stdin, give the server the grace period, then SIGTERM and SIGKILL its group.

    The reader keeps draining stdout meanwhile: a server blocked writing cannot exit.
    """
    transport._delivering = False
    transport.read_stream.close()
    transport.write_stream.close()  # the writer closes stdin when it sees the end
    with trio.move_on_after(_EXIT_WAIT):
        await process.wait()
        return
    _signal_group(process.pid, signal.SIGTERM)
    with trio.move_on_after(_EXIT_WAIT):
        await process.wait()
        return
    _signal_group(process.pid, signal.SIGKILL)
    with trio.move_on_after(_EXIT_WAIT):
        await process.wait()


def _signal_group(pgid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
