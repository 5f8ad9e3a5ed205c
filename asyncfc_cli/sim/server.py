"""The simulated model behind a local OpenAI-compatible HTTP endpoint.

Stdlib only, so starting it costs nothing next to importing litellm. Each
response is close-delimited HTTP/1.0: no connection outlives its request, so
stopping the server never waits on a client's idle keep-alive connection, and
a client's pooled connection can never be reused from a dead event loop.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import engine
from .plan import SimPlan

MODEL_ID = "sim"


class _Stopped(Exception):
    pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sim: SimServer):
        self.sim = sim
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    disable_nagle_algorithm = True  # else small chunks wait ~40 ms for an ACK
    timeout = 60  # a client that never sends its body must not pin a thread

    def log_message(self, format: str, *args: Any) -> None:
        # stdout/stderr belong to the CLI that embeds the server.
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._json(200, {
                "object": "list",
                "data": [{"id": MODEL_ID, "object": "model", "created": 0,
                          "owned_by": "asyncfc"}],
            })
        else:
            self._error(404, f"no route {self.path}", "not_found_error")

    def do_POST(self) -> None:
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no route {self.path}", "not_found_error")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            self._error(400, f"request body is not valid JSON: {exc}")
            return
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            self._error(400, "request body must be an object with a 'messages' list of objects")
            return
        sim = self.server.sim
        plan = sim.plan
        sim._record(messages)
        try:
            reply = engine.decide(plan, messages, body.get("tools"))
            prompt = engine.prompt_tokens(messages, body.get("tools"))
            prefill = sim._prefill(plan, messages, body.get("tools"))
        except Exception as exc:  # noqa: BLE001 - report it to the client, not to stderr
            self._error(500, f"simulated model failed: {exc!r}", "server_error")
            return
        try:
            self._complete(body, plan, reply, prompt, prefill)
        except (BrokenPipeError, ConnectionResetError, _Stopped):
            # The client hung up or the server is stopping: nobody to answer.
            self.close_connection = True

    def _complete(
        self, body: dict[str, Any], plan: SimPlan, reply: engine.Reply, prompt: int, prefill: int
    ) -> None:
        sim = self.server.sim
        rng = engine.timing_rng(plan, engine.assistant_turns(body["messages"]))
        ids = {
            "completion_id": f"chatcmpl-sim-{uuid.uuid4().hex[:12]}",
            "created": int(time.time()),
            "model": str(body.get("model") or MODEL_ID),
        }
        if not body.get("stream"):
            sim._sleep(engine.total_delay(reply, plan, prefill, rng))
            self._json(200, engine.completion_object(reply, prompt, **ids))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        for delay, choice in engine.render(reply, plan, prefill, rng):
            sim._sleep(delay)
            self._event(engine.chunk_object(choice, **ids))
        if (body.get("stream_options") or {}).get("include_usage"):
            self._event(engine.usage_chunk(reply, prompt, **ids))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _event(self, obj: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n")
        self.wfile.flush()

    def _json(self, status: int, obj: dict[str, Any]) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._json(status, {"error": {"message": message, "type": kind}})


class SimServer:
    """A running simulated model; use as a context manager.

    ``plan`` may be replaced between requests. ``requests`` and
    ``last_messages`` are there for tests.
    """

    def __init__(self, plan: SimPlan, host: str = "127.0.0.1", port: int = 0):
        self.plan = plan
        self.requests = 0
        self.last_messages: list[dict] | None = None
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
        return f"http://{self.host}:{self.port}/v1"

    def __enter__(self) -> SimServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="asyncfc-sim", daemon=True
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
        self._httpd.server_close()  # joins the handler threads

    def serve_forever(self) -> None:
        try:
            self._httpd.serve_forever()
        finally:
            self._stopping.set()
            self._httpd.server_close()

    def _record(self, messages: list[dict]) -> None:
        with self._lock:
            self.requests += 1
            self.last_messages = messages

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
) -> None:
    """Serve ``plan`` until interrupted; ``ready`` gets the base URL once bound.

    Prints nothing: the caller decides what, if anything, to show.
    """
    server = SimServer(plan, host, port)
    if ready is not None:
        ready(server.base_url)
    server.serve_forever()
