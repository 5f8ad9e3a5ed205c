"""The real-model server helper talks to its own server directly, whatever proxy
the process was told about earlier.

urllib's urlopen() builds one opener per process, with the proxy variables of
its first call; a test that had set a dead proxy then left every later health
check of llama-server in the same worker going to that proxy, and the whole
real-model module failed as "not healthy within 120s".
"""

from __future__ import annotations

import http.server
import sys
import threading
import urllib.request

import pytest

from conftest import REPO, free_port


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def health_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_proxy_set_earlier_in_the_process_does_not_reach_the_health_check(health_server, monkeypatch):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from real_model.llama_server import Server
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    dead = f"http://127.0.0.1:{free_port()}"
    # Leave no process-wide opener behind for the tests after this one.
    monkeypatch.setattr(urllib.request, "_opener", None)
    with monkeypatch.context() as scoped:
        scoped.setenv("HTTP_PROXY", dead)
        scoped.setenv("http_proxy", dead)
        scoped.setenv("NO_PROXY", "127.0.0.1")
        scoped.setenv("no_proxy", "127.0.0.1")
        # What another test in the same worker may do: the process-wide opener
        # is built now, remembering the dead proxy.
        with urllib.request.urlopen(f"http://127.0.0.1:{health_server}/health", timeout=10) as response:
            assert response.status == 200
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = Server(port=health_server, process=None, log=None)  # type: ignore[arg-type]
    assert server.get("/health", timeout=10) == {"status": "ok"}
