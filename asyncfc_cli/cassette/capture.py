"""Recording a model's response as its wire format delivered it, at the HTTP level.

Every provider LiteLLM speaks goes through an ``httpx.AsyncClient`` (its own
handlers and the OpenAI SDK both do; the aiohttp transport sits below it),
so ``AsyncClient.send`` is the one place where each provider's raw response
body passes, before any adapter has parsed it. :func:`install` wraps that
method once per process; the wrapper does nothing unless the request is
sent from a task whose context holds a :class:`Tap` (:data:`CURRENT`, set
by the model bridge inside the asyncio task of one request). The state is
the request's: two runs of one process (a batch) record into their own
cassettes, and a run that does not record is not touched.

Nothing of the request is recorded here (its headers and URL carry the
key); the body that comes back passes the run's redactor with the rest of
the record (:class:`asyncfc_cli.cassette.format.CassetteWriter`).
"""

from __future__ import annotations

import codecs
import contextvars
import time
from typing import Any

import httpx

from asyncfc_cli.cassette.format import MAX_DATA_CHARS
from asyncfc_cli.cassette.scrub import scrub

CURRENT: contextvars.ContextVar[Tap | None] = contextvars.ContextVar("asyncfc_cassette_tap", default=None)


class Tap:
    """Records one HTTP attempt into a cassette: the response's status, each read
    of its body with its time since the request was sent, and how it ended."""

    def __init__(self, n: int, write: Any, redactor: Any) -> None:
        self.n = n
        self._write = write
        self._redactor = redactor
        self._t0 = time.monotonic()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._reads: list[tuple[float, str]] = []  # the body, kept until it ends (see scrub)
        self.claimed = False  # only the attempt's own HTTP request is recorded
        self.ended = False

    def _t(self) -> float:
        return round(time.monotonic() - self._t0, 6)

    def sent(self) -> None:
        self.claimed = True
        self._t0 = time.monotonic()

    def response(self, status: int, content_type: str) -> None:
        self._write({"type": "response", "n": self.n, "t": self._t(), "status": status,
                     "content_type": content_type[:200]})

    def data(self, raw: bytes, final: bool = False) -> None:
        text = self._decoder.decode(raw, final)
        if text:
            self._reads.append((self._t(), text))

    def end(self, outcome: str) -> None:
        """The attempt is over: its body is scrubbed of secrets as a whole and written."""
        if self.ended:
            return
        self.ended = True
        if outcome != "failed":
            self.data(b"", final=True)
        for t, text in scrub(self._reads, self._redactor):
            for start in range(0, len(text), MAX_DATA_CHARS):
                self._write({"type": "chunk", "n": self.n, "t": t, "data": text[start:start + MAX_DATA_CHARS]})
        self._reads = []
        self._write({"type": "end", "n": self.n, "t": self._t(), "outcome": outcome})


class _TappedStream(httpx.AsyncByteStream):
    """The response body as httpx reads it, each read also handed to the tap."""

    def __init__(self, inner: Any, tap: Tap) -> None:
        self._inner = inner
        self._tap = tap
        self._done = False

    async def __aiter__(self) -> Any:
        try:
            async for raw in self._inner:
                self._tap.data(raw)
                yield raw
        except BaseException:
            self._tap.end("cut")
            raise
        self._done = True
        self._tap.end("complete")

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._tap.end("complete" if self._done else "cut")


_installed: list[bool] = []


def install() -> None:
    """Wrap ``httpx.AsyncClient.send`` so a request sent under a :class:`Tap` is recorded (once per process)."""
    if _installed:
        return
    _installed.append(True)
    original = httpx.AsyncClient.send

    async def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        tap = CURRENT.get()
        if tap is None or tap.claimed:
            return await original(self, request, *args, **kwargs)
        tap.sent()
        # The body as sent over the wire, not compressed: it is replayed as it is.
        request.headers["accept-encoding"] = "identity"
        try:
            response = await original(self, request, *args, **kwargs)
        except BaseException:
            tap.end("failed")
            raise
        tap.response(response.status_code, response.headers.get("content-type", ""))
        if kwargs.get("stream"):
            response.stream = _TappedStream(response.stream, tap)
        else:  # already read
            tap.data(response.content)
            tap.end("complete")
        return response

    send.__doc__ = original.__doc__
    httpx.AsyncClient.send = send  # type: ignore[method-assign]
