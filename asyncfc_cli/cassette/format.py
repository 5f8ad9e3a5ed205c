"""The cassette file: strict JSONL, written as the run goes, read with care.

One line per record, in this order::

    {"type": "cassette", "version": 1, "asyncfc": ..., "model": ..., "provider": ..., "wire": ..., "mode": ...}
    {"type": "request", "n": 1, "digest": ..., "model": ..., "tools": ..., "params": ..., "messages": [...]}
    {"type": "response", "n": 1, "t": 0.21, "status": 200, "content_type": "text/event-stream"}
    {"type": "chunk", "n": 1, "t": 0.25, "data": "data: {...}\\n\\n"}
    ...
    {"type": "end", "n": 1, "t": 1.9, "outcome": "complete"}

A request of an async run also says which outcomes it carried, and how
(``"futures": {"result": [...], "waits": [[...]], "message": [...]}``,
:class:`asyncfc_cli.futures.hold.Deliveries`): that depended on the tools'
timing, and a replay makes the same deliveries whatever the timing now.

``n`` counts HTTP attempts (a retried request is recorded twice, its
failure too), ``t`` is seconds since that attempt was sent. ``data`` is the
body exactly as the provider's wire format delivered it, one line per read
from the socket (split if longer than :data:`MAX_DATA_CHARS`). ``outcome``
is ``complete``, ``cut`` (the body broke off, or the client closed it
early) or ``failed`` (no response at all: nothing but the ``end`` line).

A cassette comes from a file anyone may have edited: it is read whole up
to :data:`MAX_FILE_BYTES`, split at ``\\n`` in linear time, each line at
most :data:`MAX_LINE_BYTES`, strict JSON, every field checked; anything
else is a :class:`CassetteError` naming the line, never a traceback.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncfc_cli import safefiles
from asyncfc_cli.events import loads, to_line
from asyncfc_cli.output import first_surrogate, printable

VERSION = 1
_FUTURE_ID = re.compile(r"f[1-9][0-9]{0,8}")
MAX_FILE_BYTES = 256_000_000
MAX_LINE_BYTES = 4_000_000
MAX_DATA_CHARS = 65_536  # a longer read is split over several chunk lines
MAX_SECONDS = 3600.0  # no recorded pause is longer: a hostile t must not hang a replay
MAX_MESSAGES = 100_000
OUTCOMES = ("complete", "cut", "failed")
WIRES = ("openai", "anthropic", "gemini", "responses")
MODES = ("sync", "parallel", "async")


class CassetteError(Exception):
    """A cassette that cannot be used (unreadable, damaged, from elsewhere): exit 2."""

    def __init__(self, message: str, fix: str = "re-record it: asyncfc run TASK --record FILE") -> None:
        self.message, self.fix = message, fix
        super().__init__(f"{message}\n  fix: {fix}")


@dataclass
class Chunk:
    t: float
    data: str


@dataclass
class Exchange:
    """One recorded HTTP attempt: what was sent (as digests) and what came back."""

    n: int
    request: dict[str, Any]
    status: int | None = None  # None: the attempt got no response (outcome failed)
    content_type: str = "text/event-stream"
    t_response: float = 0.0
    chunks: list[Chunk] = field(default_factory=list)
    outcome: str | None = None
    t_end: float = 0.0


@dataclass
class Cassette:
    path: Path
    header: dict[str, Any]
    exchanges: list[Exchange]


# --- writing ------------------------------------------------------------------------------


class CassetteWriter:
    """Appends records as they happen, each line flushed: a run that dies leaves
    every finished exchange readable. Every record passes the run's redactor
    first (the one every output goes through). Called from the trio thread
    (requests) and the asyncio thread (responses), hence the lock.

    A write that fails (a full disk) ends the cassette there and is kept in
    ``failed``: the run goes on, and its verdict says the cassette is cut short
    (exit 1, as for a trace; :func:`asyncfc_cli.cassette.write_failure`)."""

    def __init__(self, path: Path, redactor: Any) -> None:
        self.path = Path(path)
        self.redactor = redactor
        self._lock = threading.Lock()
        self.failed: OSError | None = None
        self._file: Any = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A fresh file renamed into place, as traces are: a planted link is replaced, never written through.
            self._file = safefiles.create(self.path)
        except OSError as exc:
            self.failed = exc

    def write(self, record: dict[str, Any]) -> None:
        line = to_line(self.redactor.value(record)) + "\n"
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(line)
                self._file.flush()
            except OSError as exc:
                self.failed = exc
                self._drop()

    def _drop(self) -> None:
        """Close the file after a failed write; what it could not take is lost, not retried."""
        file, self._file = self._file, None
        try:
            file.close()
        except OSError:
            pass  # the same failure, flushing the same bytes again

    def close(self) -> None:
        with self._lock:
            if self._file is None:
                return
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as exc:
                self.failed = self.failed or exc


# --- reading ------------------------------------------------------------------------------


def read_cassette(path: Path) -> Cassette:
    """The cassette at ``path``, checked line by line; :class:`CassetteError` if it cannot be replayed."""
    path = Path(path)
    try:
        raw = safefiles.read_regular(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        raise CassetteError(f"{path}: no such cassette", "check the path, or record one with --record") from None
    except OSError as exc:
        raise CassetteError(f"{path}: cannot read the cassette: {exc.strerror or exc}",
                            "pass a readable cassette file") from None
    return parse_cassette(raw, path)


def parse_cassette(raw: bytes, path: Path) -> Cassette:
    reader = _Reader(path)
    start = 0
    number = 0
    size = len(raw)
    while start < size:
        end = raw.find(b"\n", start)
        cut = end < 0
        if cut:
            end = size
        number += 1
        if end - start > MAX_LINE_BYTES:
            reader.fail(number, f"the line is longer than {MAX_LINE_BYTES:,} bytes")
        line = raw[start:end]
        start = end + 1
        if not line.strip():
            reader.fail(number, "an empty line")
        reader.line(number, line, cut)
    return reader.finish()


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.header: dict[str, Any] | None = None
        self.exchanges: list[Exchange] = []
        self.current: Exchange | None = None

    def fail(self, number: int, message: str) -> None:
        raise CassetteError(f"{self.path}: line {number}: {message}")

    def line(self, number: int, line: bytes, cut: bool) -> None:
        try:
            value = loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            self.fail(number, f"not UTF-8 text (byte {exc.start + 1})")
        except RecursionError:
            self.fail(number, "JSON nested too deeply")
        except ValueError as exc:
            if cut:
                self.fail(number, "the last line is cut off (the recording was interrupted, or the file truncated)")
            self.fail(number, f"not JSON ({printable(str(exc).splitlines()[0] if str(exc) else 'invalid')[:120]})")
        if not isinstance(value, dict):
            self.fail(number, f"a JSON {type(value).__name__}, not an object")
        kind = value.get("type")
        if self.header is None:
            if kind != "cassette":
                self.fail(number, "not an asyncfc cassette (the first line is not its header)")
            self.header = self._header(number, value)
            return
        if kind == "request":
            self._close_current(number)
            n = self._int(number, value, "n")
            if n != len(self.exchanges) + 1:
                self.fail(number, f"request {n} follows request {len(self.exchanges)}")
            self.current = Exchange(n, self._request(number, value))
            self.exchanges.append(self.current)
            return
        if kind not in ("response", "chunk", "end"):
            self.fail(number, f"unknown record type {printable(str(kind))[:40]!r}")
        ex = self.current
        if ex is None or self._int(number, value, "n") != ex.n:
            self.fail(number, f"a {kind} record outside its request")
        t = self._seconds(number, value)
        if kind == "response":
            if ex.status is not None or ex.chunks:
                self.fail(number, "a second response for one request")
            status = self._int(number, value, "status")
            if not 100 <= status <= 599:
                self.fail(number, f"status {status} is not an HTTP status")
            ex.status, ex.t_response = status, t
            ex.content_type = self._text(number, value, "content_type", 200)
        elif kind == "chunk":
            if ex.status is None:
                self.fail(number, "a chunk before the response")
            data = self._text(number, value, "data", MAX_DATA_CHARS)
            ex.chunks.append(Chunk(t, data))
        else:
            outcome = value.get("outcome")
            if outcome not in OUTCOMES:
                self.fail(number, f"outcome must be one of {', '.join(OUTCOMES)}")
            if outcome != "failed" and ex.status is None:
                self.fail(number, f"an {outcome} request without a response")
            ex.outcome, ex.t_end = outcome, t
            self.current = None

    def _close_current(self, number: int) -> None:
        if self.current is not None:
            self.fail(number, f"request {self.current.n} has no end record")

    def finish(self) -> Cassette:
        if self.header is None:
            raise CassetteError(f"{self.path}: an empty file, not a cassette")
        if self.current is not None:
            raise CassetteError(f"{self.path}: truncated: request {self.current.n} has no end record "
                                "(the recording was interrupted?)")
        return Cassette(self.path, self.header, self.exchanges)

    def _header(self, number: int, value: dict[str, Any]) -> dict[str, Any]:
        version = value.get("version")
        if version != VERSION:
            shown = printable(str(version))[:20]
            raise CassetteError(f"{self.path}: cassette version {shown}; this asyncfc reads version {VERSION}",
                                "re-record it with this asyncfc: asyncfc run TASK --record FILE")
        header = {"version": version}
        for key in ("model", "asyncfc", "provider", "litellm_model", "task"):
            header[key] = self._text(number, value, key, 1000, required=key == "model")
        header["wire"] = value.get("wire")
        if header["wire"] not in WIRES:
            self.fail(number, f"wire must be one of {', '.join(WIRES)}")
        header["mode"] = value.get("mode")
        if header["mode"] not in MODES:
            self.fail(number, f"mode must be one of {', '.join(MODES)}")
        return header

    def _request(self, number: int, value: dict[str, Any]) -> dict[str, Any]:
        request = {key: self._text(number, value, key, 200) for key in ("digest", "model", "tools", "params")}
        messages = value.get("messages")
        if not isinstance(messages, list) or len(messages) > MAX_MESSAGES:
            self.fail(number, "messages must be a list")
        shown = []
        for message in messages:
            if not isinstance(message, dict):
                self.fail(number, "a message summary is not an object")
            shown.append({key: self._text(number, message, key, 2000) for key in ("role", "digest", "preview")})
        request["messages"] = shown
        if "futures" in value:
            request["futures"] = self._futures(number, value["futures"])
        return request

    def _futures(self, number: int, value: Any) -> dict[str, Any]:
        """What an async request carried, by way (futures.hold.Deliveries): future ids only."""
        if not isinstance(value, dict) or not set(value) <= {"result", "waits", "message"}:
            self.fail(number, "futures must be an object with result, waits and message")

        def ids(items: Any) -> list[str]:
            if not isinstance(items, list) or len(items) > MAX_MESSAGES or not all(
                    isinstance(i, str) and _FUTURE_ID.fullmatch(i) for i in items):
                self.fail(number, "futures holds something that is not a list of future ids (f1, f2, ...)")
            return items

        waits = value.get("waits", [])
        if not isinstance(waits, list) or len(waits) > MAX_MESSAGES:
            self.fail(number, "futures.waits must be a list of lists of future ids")
        return {"result": ids(value.get("result", [])), "waits": [ids(w) for w in waits],
                "message": ids(value.get("message", []))}

    def _int(self, number: int, value: dict[str, Any], key: str) -> int:
        item = value.get(key)
        if not isinstance(item, int) or isinstance(item, bool) or not 0 <= item < 10**9:
            self.fail(number, f"{key} must be a whole number")
        return item

    def _seconds(self, number: int, value: dict[str, Any]) -> float:
        t = value.get("t")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 <= t <= MAX_SECONDS:
            self.fail(number, f"t must be seconds between 0 and {MAX_SECONDS:g}")
        return float(t)

    def _text(self, number: int, value: dict[str, Any], key: str, limit: int, required: bool = True) -> str:
        item = value.get(key)
        if item is None and not required:
            return ""
        if not isinstance(item, str):
            self.fail(number, f"{key} must be text")
        if len(item) > limit:
            self.fail(number, f"{key} is longer than {limit:,} characters")
        found = first_surrogate(item)
        if found is not None:
            self.fail(number, f"{key} holds {found}")
        return item
