"""A proxy in the environment never stands between asyncfc and this machine.

With HTTP_PROXY/HTTPS_PROXY/ALL_PROXY set (company networks, CI runners),
LiteLLM's HTTP clients and the MCP SDK's sent every request through the
proxy unless NO_PROXY named the host, so the embedded simulated model, a
replayed cassette, a local llama.cpp server and an MCP server on 127.0.0.1
all failed as "connection refused". The proxy here is a port where nothing
listens: any request that goes through it fails.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from asyncfc_cli.model_reach import keep_off_proxies

from conftest import cli_env, free_port, run_cli, wait_until

HERE = Path(__file__).parent
DATA = HERE / "data"


def proxied_env() -> dict[str, str]:
    dead = f"http://127.0.0.1:{free_port()}"
    env = cli_env()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env[name] = dead
    for name in ("NO_PROXY", "no_proxy"):
        env.pop(name, None)
    return env


@pytest.mark.parametrize("model", ["sim", "sim:anthropic", "sim:gemini", "sim:responses"])
def test_the_simulated_model_is_reached_with_a_proxy_set(tmp_path, model):
    done = run_cli("run", DATA / "ok.toml", "--model", model, "--json", "--trace", tmp_path / "t.jsonl",
                   cwd=tmp_path, env=proxied_env())
    report = json.loads(done.stdout)
    assert done.code == 0 and report["answer"] == "The echo said hello.", (report, done.stderr)


def test_a_cassette_replays_with_a_proxy_set(tmp_path):
    cassette = tmp_path / "c.jsonl"
    recorded = run_cli("run", DATA / "ok.toml", "--record", cassette, "--json", cwd=tmp_path)
    assert recorded.code == 0, recorded.stderr
    done = run_cli("run", DATA / "ok.toml", "--replay", cassette, "--replay-speed", "instant", "--json",
                   cwd=tmp_path, env=proxied_env())
    assert done.code == 0 and json.loads(done.stdout)["replayed"] is True, done.stdout + done.stderr


def test_an_mcp_server_on_this_machine_is_reached_with_a_proxy_set(tmp_path):
    port = free_port()
    server = subprocess.Popen([sys.executable, str(HERE / "mcp_server.py"), "--http", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=cli_env())

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        assert wait_until(listening, 30)
        (tmp_path / "agents.toml").write_text("")
        task = tmp_path / "task.toml"
        task.write_text(textwrap.dedent(f"""
            prompt = "add"
            [agent]
            model = "sim"
            tools = ["web"]
            [tools.web]
            mcp = {{ url = "http://127.0.0.1:{port}/mcp" }}
            include = ["add"]
            [sim]
            decode_tps = 2000
            ttft = 0
            [[sim.steps]]
            id = "sum"
            tool = "add"
            args = {{ a = 20, b = 22 }}
            [sim.final]
            answer = "sum={{sum.result}}"
        """))
        done = run_cli("run", task, "--json", cwd=tmp_path, env=proxied_env())
        assert done.code == 0 and json.loads(done.stdout)["answer"] == "sum=42", done.stdout + done.stderr
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.parametrize("url, added", [
    ("http://127.0.0.1:8080/v1", "127.0.0.1"),
    ("http://127.3.4.5:1/v1", "127.3.4.5"),
    ("http://localhost:11434", "localhost"),
    ("http://[::1]:8000/v1", "::1"),
    ("https://api.openai.com/v1", None),  # a proxy may well be the way there
    ("http://10.0.0.5:8000/v1", None),
    (None, None),
    ("http://[not-an-address/v1", None),  # unparseable: left to the request's own error
])
def test_only_loopback_hosts_are_kept_off_proxies(url, added):
    environ = {"no_proxy": "internal.example"}
    keep_off_proxies(url, environ)
    keep_off_proxies(url, environ)  # idempotent
    expected = "internal.example" + (f",{added}" if added else "")
    assert environ["no_proxy"] == expected
    assert environ.get("NO_PROXY") == (added if added else None)


def test_a_no_proxy_of_star_is_left_alone():
    environ = {"NO_PROXY": "*", "no_proxy": "*"}
    keep_off_proxies("http://127.0.0.1:1/v1", environ)
    assert environ == {"NO_PROXY": "*", "no_proxy": "*"}
