"""The simulated model behind a local HTTP endpoint, in one provider's wire format.

The server speaks one protocol per run (:mod:`asyncfc_cli.sim.protocols`):
OpenAI chat completions by default, or Anthropic Messages, the Gemini API or
OpenAI Responses. Each request is read into the conversation the engine
understands, answered by the engine, and the reply streamed back as the
provider would, on the timing :func:`~asyncfc_cli.sim.render.render` gives.
The plan's ``faults`` make chosen requests fail in the provider's own way.

Stdlib only, so starting it costs nothing next to importing litellm. It
speaks HTTP/1.1 with keep-alive, as real servers do, so a run's requests
reuse one connection (streams are sent chunked); stopping the server shuts
every open connection, so no handler thread waits on an idle client.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import engine
from .plan import SimFault, SimPlan
from .protocols import BadRequest, Encoder, Request, WireFormat, get_format
from .render import CallEnd, render

MODEL_ID = "sim"

_FAULT_MESSAGES = {
    "rate_limit": "Rate limit reached for requests (simulated). Please try again in 1s.",
    "overloaded": "Overloaded (simulated)",
    "server_error": "The server had an error while processing your request (simulated).",
    "auth": "invalid x-api-key (simulated)",
    "stream_error": "Overloaded (simulated, after the stream began)",
}


class _Stopped(Exception):
    pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sim: SimServer):
        self.sim = sim
        super().__init__(address, sim.handler)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive: a run's requests share a connection
    disable_nagle_algorithm = True  # else small chunks wait ~40 ms for an ACK
    timeout = 60  # a client that never sends its body must not pin a thread

    def log_message(self, format: str, *args: Any) -> None:
        # stdout/stderr belong to the CLI that embeds the server.
        pass

    def setup(self) -> None:
        super().setup()
        self.server.sim._opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sim._closed(self.connection)

    @property
    def wire(self) -> WireFormat:
        return self.server.sim.wire

    def do_GET(self) -> None:
        body = self.wire.get(self.path.split("?", 1)[0])
        if body is None:
            self._error("not_found", f"no route GET {self.path}")
        else:
            self._json(200, body)

    def do_POST(self) -> None:
        sim = self.server.sim
        if not self.wire.handles("POST", self.path):
            self._error("not_found", f"no route POST {self.path}: this simulated server speaks the "
                                     f"{sim.protocol} format")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            self._error("bad_request", f"request body is not valid JSON: {exc}")
            return
        try:
            request = self.wire.read(self.path, body)
        except BadRequest as exc:
            self._error("bad_request", str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a shape the reader did not foresee is still the client's
            self._error("bad_request", f"malformed {sim.protocol} request: {type(exc).__name__}: {exc}")
            return
        plan = sim.plan
        number = sim._record(request)
        fault = plan.fault(number)
        if fault is not None and fault.kind not in ("cut", "stream_error"):
            self._error(fault.kind, _FAULT_MESSAGES[fault.kind])
            return
        try:
            reply = engine.decide(plan, request.messages, request.tools)
            prompt = engine.prompt_tokens(request.messages, request.tools)
            prefill = sim._prefill(plan, request.messages, request.tools)
        except Exception as exc:  # noqa: BLE001 - report it to the client, not to stderr
            self._error("server_error", f"simulated model failed: {exc!r}")
            return
        try:
            self._answer(request, plan, reply, prompt, prefill, fault)
        except (BrokenPipeError, ConnectionResetError, _Stopped):
            # The client hung up or the server is stopping: nobody to answer.
            self.close_connection = True

    def _answer(self, request: Request, plan: SimPlan, reply: engine.Reply, prompt: int, prefill: int,
                fault: SimFault | None) -> None:
        sim = self.server.sim
        rng = engine.timing_rng(plan, engine.assistant_turns(request.messages))
        encoder = self.wire.encoder(request, f"sim{uuid.uuid4().hex[:12]}", int(time.time()))
        events = render(reply, plan, prompt, rng, prefill)
        if not request.stream:
            timed = list(events)
            sim._sleep(sum(delay for delay, _ in timed))
            if fault is not None:  # a stream fault, on a request that did not stream
                if fault.kind == "cut":
                    self.close_connection = True
                else:
                    self._error("server_error", _FAULT_MESSAGES["stream_error"])
                return
            for _, event in timed:
                encoder.collect(event)
            self._json(200, encoder.body())
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        calls_done = 0
        for delay, event in events:
            sim._sleep(delay)
            self._send(encoder.frames(event))
            calls_done += isinstance(event, CallEnd)
            if fault is not None and calls_done >= fault.after_calls:
                self._break(encoder, fault)
                return
        self.wfile.write(b"0\r\n\r\n")  # the last chunk: the connection stays open for the next request
        self.wfile.flush()

    def _break(self, encoder: Encoder, fault: SimFault) -> None:
        """Fail the stream in the middle: the provider's error event, or a cut connection."""
        if fault.kind == "stream_error":
            self._send(encoder.fault(_FAULT_MESSAGES["stream_error"]))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        self.close_connection = True  # a cut: the body ends without its last chunk

    def _send(self, frames: list[bytes]) -> None:
        if frames:
            data = b"".join(frames)
            self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
            self.wfile.flush()

    def _json(self, status: int, obj: dict[str, Any]) -> None:
        # ASCII: an error may quote a request's text, lone surrogates included.
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _error(self, kind: str, message: str) -> None:
        status, body = self.wire.error(kind, message)
        self._json(status, body)


class SimServer:
    """A running simulated model; use as a context manager.

    ``protocol`` defaults to the plan's. ``plan`` may be replaced between
    requests. ``requests``, ``last_messages`` (the conversation as the
    engine read it) and ``last_request`` are there for tests.
    """

    # What answers a request; a cassette's replay (asyncfc_cli.cassette.replay) has its own.
    handler: type[BaseHTTPRequestHandler] = _Handler

    def __init__(self, plan: SimPlan, host: str = "127.0.0.1", port: int = 0, protocol: str | None = None):
        self.plan = plan
        self.protocol = protocol or plan.protocol
        self.wire = get_format(self.protocol)
        self.requests = 0
        self.connections = 0  # TCP connections accepted (for tests and benchmarks/bridge.py)
        self._open: set[Any] = set()
        self.last_messages: list[dict] | None = None
        self.last_request: Request | None = None
        self._lock = threading.Lock()
        self._cache: tuple[SimPlan, engine.PrefixCache] | None = None
        self._stopping = threading.Event()
        self._httpd = _HTTPServer((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return self._httpd.server_address[0]

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """The base URL a client of this protocol is given (LiteLLM's ``api_base``)."""
        return self.wire.api_base(f"http://{self.host}:{self.port}")

    @property
    def litellm_model(self) -> str:
        """The LiteLLM model string that reaches this server through its provider's adapter."""
        return self.wire.litellm_model

    def __enter__(self) -> SimServer:
        # A short poll interval: stopping the server waits for the loop to look
        # (0.5 s by default), and a batch stops one server per run.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="asyncfc-sim", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        # Wake streams that are sleeping out a delay, so joining is quick.
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        # Idle keep-alive connections: their handlers wait for a next request.
        with self._lock:
            open_now = list(self._open)
        for connection in open_now:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()

    def serve_forever(self) -> None:
        try:
            self._httpd.serve_forever()
        finally:
            self._stopping.set()
            self._httpd.server_close()

    def _record(self, request: Request) -> int:
        with self._lock:
            self.requests += 1
            self.last_messages = request.messages
            self.last_request = request
            return self.requests

    def _opened(self, connection: Any) -> None:
        with self._lock:
            self.connections += 1
            self._open.add(connection)

    def _closed(self, connection: Any) -> None:
        with self._lock:
            self._open.discard(connection)

    def _prefill(self, plan: SimPlan, messages: list[dict], tools: list[dict] | None) -> int:
        # One prompt cache per plan: a new plan (the bench's next case) is a new run.
        with self._lock:
            if self._cache is None or self._cache[0] is not plan:
                self._cache = (plan, engine.PrefixCache())
            return engine.prefill_tokens(plan, self._cache[1], messages, tools)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self._stopping.wait(seconds):
            raise _Stopped
        if self._stopping.is_set():
            raise _Stopped


def serve(
    plan: SimPlan,
    host: str = "127.0.0.1",
    port: int = 0,
    ready: Callable[[str], None] | None = None,
    protocol: str | None = None,
) -> None:
    """Serve ``plan`` until interrupted; ``ready`` gets the base URL once bound.

    Prints nothing: the caller decides what, if anything, to show.
    """
    server = SimServer(plan, host, port, protocol)
    if ready is not None:
        ready(server.base_url)
    server.serve_forever()
