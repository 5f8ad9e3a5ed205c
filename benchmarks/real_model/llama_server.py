"""Start and stop the prepared ``llama-server`` (see prepare.py) for tests and benchmarks.

    with llama_server(manifest) as server:
        server.base_url      # http://127.0.0.1:PORT/v1, the api_base for openai/<name>
        server.slots()       # what each slot is doing (is a request still being decoded?)

The server listens on a free port of 127.0.0.1 only, with the tool-capable
Qwen2.5 chat template (``--jinja --chat-template-file``), a small context,
two threads and one slot, and a cap on tokens per request (``-n``) for
requests that set none: a 135M model can otherwise decode until the context
is full. Its log goes to a file; the process is stopped (and killed if it
must be) when the block ends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The server is on this machine, so no proxy may stand between: urlopen() builds
# its opener once per process with the proxy variables of that moment, and a
# test that set a dead proxy earlier in the same worker would otherwise route
# every later health check into it.
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))

MODEL_NAME = "smollm2-135m"  # what the server calls the model (--alias): openai/smollm2-135m


@dataclass
class Server:
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def get(self, path: str, timeout: float = 10.0) -> Any:
        with _LOCAL.open(self.root + path, timeout=timeout) as response:
            return json.loads(response.read())

    def slots(self) -> list[dict[str, Any]]:
        return self.get("/slots")

    def busy(self) -> bool:
        """A request is being processed (prompt or decoding) in some slot."""
        return any(slot.get("is_processing") for slot in self.slots())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def argv(manifest: dict[str, Any], port: int, ctx: int = 4096, threads: int = 2, parallel: int = 1,
         n_predict: int = 256, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        manifest["server"], "-m", manifest["model"], "--alias", MODEL_NAME,
        "--host", "127.0.0.1", "--port", str(port),
        "--jinja", "--chat-template-file", manifest["template"],
        "-c", str(ctx), "-t", str(threads), "-tb", str(threads), "-np", str(parallel),
        "-n", str(n_predict), "--no-webui", *extra,
    ]


@contextmanager
def llama_server(manifest: dict[str, Any], log: Path, startup_timeout: float = 120.0, **options: Any) -> Iterator[Server]:
    """A running llama-server; stopped when the block ends, whatever happens in it."""
    port = free_port()
    with open(log, "wb") as out:
        # Its own session: a Ctrl-C meant for a test (or for asyncfc under test)
        # does not reach it, and stopping it stops nothing else.
        process = subprocess.Popen(argv(manifest, port, **options), stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
    server = Server(port, process, log)
    try:
        _wait_healthy(server, startup_timeout)
        yield server
    finally:
        stop(process)


def _die_with_parent() -> None:
    # If whatever started the server is killed outright (kill -9, a test run
    # stopped), the kernel stops the server too instead of leaving it serving.
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: stop() at the end is all there is


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"llama-server exited with {server.process.returncode}:\n{_tail(server.log)}")
        try:
            if server.get("/health", timeout=2).get("status") == "ok":
                return
        except (urllib.error.URLError, OSError, ValueError):
            pass  # not listening yet, or 503 while the model loads
        if time.monotonic() > deadline:
            raise RuntimeError(f"llama-server was not healthy within {timeout:g}s:\n{_tail(server.log)}")
        time.sleep(0.1)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def load_manifest() -> dict[str, Any] | None:
    """The prepared server and model (prepare.py's manifest), or None when not prepared."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_asyncfc_prepare", Path(__file__).with_name("prepare.py"))
    assert spec is not None and spec.loader is not None
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    return prepare.read_manifest(prepare.cache_root())


if __name__ == "__main__":
    # Serve until Ctrl-C, for trying the model by hand:
    #   python benchmarks/real_model/llama_server.py [--threads N]
    import argparse

    parser = argparse.ArgumentParser(description="Serve the prepared model on 127.0.0.1 until Ctrl-C.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=4096)
    options = parser.parse_args()
    found = load_manifest()
    if found is None:
        raise SystemExit("not prepared: python benchmarks/real_model/prepare.py")
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / "asyncfc-llama-server.log"

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM, and SIGINT even where the shell started this in the background
    # with SIGINT ignored, stop the server too instead of orphaning it.
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    with llama_server(found, log_path, threads=options.threads, ctx=options.ctx) as running:
        print(f"llama-server at {running.base_url} (model openai/{MODEL_NAME}); log {log_path}; Ctrl-C stops")
        try:
            running.process.wait()
        except KeyboardInterrupt:
            pass
