"""Serving a cassette: the simulated model's HTTP server, answering with recorded bytes.

The server is the simulated model's (:class:`asyncfc_cli.sim.server.SimServer`:
HTTP/1.1 keep-alive, chunked streams, Nagle off, every connection shut when
it stops), bound to 127.0.0.1 and speaking the recorded wire format, so
LiteLLM reaches it through the adapter of the provider that was recorded
and decodes the replayed stream exactly as it decoded the live one. Only the
handler differs: instead of the engine, the next recorded exchange answers,
each chunk sent when its recorded time (scaled by the replay speed) has come.

Which exchange answers is chosen by the client side before the request
leaves (:class:`asyncfc_cli.cassette.session.Replaying`), so the server never
guesses: it serves ``pending``, or says that nothing was expected.
"""

from __future__ import annotations

import threading
import time

from asyncfc_cli.cassette.format import Exchange
from asyncfc_cli.sim.server import SimServer, _Handler, _Stopped


class _ReplayHandler(_Handler):
    def do_GET(self) -> None:
        self._error("not_found", f"no route GET {self.path}: this server replays a cassette")

    def do_POST(self) -> None:
        server: ReplayServer = self.server.sim  # type: ignore[assignment]
        try:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)  # the request was matched on the client side
        except (ValueError, OSError):
            self.close_connection = True
            return
        exchange = server.take()
        if exchange is None:
            self._error("server_error", "the cassette replay expected no request now")
            return
        try:
            self._replay(server, exchange)
        except (BrokenPipeError, ConnectionResetError, _Stopped):
            self.close_connection = True

    def _replay(self, server: ReplayServer, exchange: Exchange) -> None:
        start = time.monotonic()

        def wait_for(t: float) -> None:
            server._sleep(start + t * server.scale - time.monotonic())

        if exchange.status is None:  # the recorded attempt got no response: neither does this one
            wait_for(exchange.t_end)
            self.close_connection = True
            return
        wait_for(exchange.t_response)
        body = exchange.chunks
        if exchange.status != 200 or "event-stream" not in exchange.content_type:
            # A whole body (an error, a JSON answer): sent at its last chunk's time.
            data = "".join(c.data for c in body).encode()
            wait_for(body[-1].t if body else exchange.t_end)
            self.send_response(exchange.status)
            self.send_header("Content-Type", exchange.content_type or "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
            if exchange.outcome != "complete":
                self.close_connection = True
            return
        self.send_response(exchange.status)
        self.send_header("Content-Type", exchange.content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in body:
            wait_for(chunk.t)
            self._send([chunk.data.encode()])
        wait_for(exchange.t_end)
        if exchange.outcome == "complete":
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        else:
            self.close_connection = True  # the recorded body broke off: so does this one


class ReplayServer(SimServer):
    """The simulated model's server, replaying a cassette in its recorded wire format.

    ``scale`` multiplies every recorded time (1: as recorded, 0: at once).
    """

    handler = _ReplayHandler

    def __init__(self, protocol: str, scale: float, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(None, host, port, protocol)  # type: ignore[arg-type]  (no plan: the cassette answers)
        self.scale = scale
        self._pending: Exchange | None = None
        self._pending_lock = threading.Lock()

    def expect(self, exchange: Exchange) -> None:
        """The next request is answered by ``exchange``."""
        with self._pending_lock:
            self._pending = exchange

    def take(self) -> Exchange | None:
        with self._pending_lock:
            exchange, self._pending = self._pending, None
        if exchange is not None:
            with self._lock:
                self.requests += 1
        return exchange
