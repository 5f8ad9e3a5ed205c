"""The simulated model in each provider's wire format, through the CLI.

``--model sim:P`` serves the plan as Anthropic Messages, the Gemini API or
OpenAI Responses, reached through LiteLLM's own adapter for that provider
(``anthropic/...``, ``gemini/...``, ``openai/responses/...``) with the base
URL on 127.0.0.1. For each: the same answer as the OpenAI format in every
mode, tools starting before their response's stream ends, usage recorded,
rate limits and overloads retried, and a stream that fails in the middle
handled. No request leaves the machine: every proxy variable points at a
dead port, with only 127.0.0.1 exempt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import aclosing
from pathlib import Path

import pytest
from asyncfc_cli.trace import read_trace

from conftest import client_for, free_port, invoke, make_plan

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent
TASK = DATA / "protocols" / "task.toml"
PROTOCOLS = ["anthropic", "gemini", "responses"]
MODES = ["sync", "parallel", "async"]
ROUTES = {"openai": "openai/asyncfc-sim", "anthropic": "anthropic/asyncfc-sim",
          "gemini": "gemini/asyncfc-sim", "responses": "openai/responses/asyncfc-sim"}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Anything not addressed to 127.0.0.1 goes to a dead proxy and fails."""
    port = free_port()
    dead = f"http://127.0.0.1:{port}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return port


def run(tmp_path: Path, task: Path, *args: str, env: dict | None = None):
    trace = tmp_path / f"trace-{time.monotonic_ns()}.jsonl"
    result = invoke("run", str(task), "--json", "--trace", str(trace), *args,
                    env=env, catch_exceptions=False)
    report = json.loads(result.stdout) if result.stdout.strip() else None
    return result, report, read_trace(trace) if trace.exists() else None


_RUNS: dict[tuple[str, str], tuple] = {}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One run of the protocol task per (protocol, mode), shared by the tests below."""
    base = tmp_path_factory.mktemp("protocols")

    def get(protocol: str, mode: str):
        if (protocol, mode) not in _RUNS:
            _RUNS[protocol, mode] = run(base, TASK, "--model", f"sim:{protocol}", "--mode", mode)
        return _RUNS[protocol, mode]

    yield get
    _RUNS.clear()


# --- the same run in every format -------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_format_gives_the_openai_answer(runs, protocol, mode):
    result, report, trace = runs(protocol, mode)
    _, baseline, base_trace = runs("openai", mode)
    assert result.exit_code == 0, result.output
    assert report["answer"] == baseline["answer"]
    assert "ünïcödé ✓" in report["answer"] and report["expectations"]["met"]
    # The same calls, byte for byte the same arguments, in the same order.
    assert [(c["tool"], c["arguments"]) for c in report["tool_calls"]] == [
        (c["tool"], c["arguments"]) for c in baseline["tool_calls"]]
    assert all(c["status"] == "ok" for c in report["tool_calls"])
    # The header and --json name the format's LiteLLM route, not an alias.
    assert report["model"] == trace.header["model"] == f"sim:{protocol}"
    assert report["litellm_model"] == trace.header["litellm_model"] == ROUTES[protocol]
    assert report["provider"] == "asyncfc.sim"
    # Usage comes back in each provider's own usage fields and is recorded.
    ends = trace.of_type("model_end")
    assert ends and all(e["tokens_in"] > 0 and e["tokens_out"] > 0 for e in ends)
    assert report["usage"]["tokens_out"] == sum(e["tokens_out"] for e in ends)
    if mode != "async":
        # Completion tokens are the sim's own count, whatever the format.
        assert report["usage"]["tokens_out"] == baseline["usage"]["tokens_out"]
        assert report["usage"]["requests"] == baseline["usage"]["requests"]
    if protocol != "gemini" and mode != "async":
        # Anthropic and Responses carry the same tool schemas, so the same prompt.
        assert report["usage"]["tokens_in"] == baseline["usage"]["tokens_in"]
    assert not trace.of_type("retry")


@pytest.mark.parametrize("protocol", ["openai", *PROTOCOLS])
def test_async_tools_start_before_their_response_ends(runs, protocol):
    result, report, trace = runs(protocol, "async")
    assert result.exit_code == 0, result.output
    first_end = next(e for e in trace.of_type("model_end") if e["request"] == 1)
    ready = [e for e in trace.of_type("call_ready") if e["request"] == 1]
    begins = {e["call_id"]: e for e in trace.of_type("tool_begin")}
    assert len(ready) >= 2
    first = ready[0]
    # The first call's arguments were complete, and its tool running, while
    # the model was still decoding the rest of the response (b's thinking).
    assert first["t"] < first_end["t"] - 0.05, (first, first_end)
    assert begins[first["call_id"]]["t"] < first_end["t"] - 0.05
    assert trace.events.index(first) < trace.events.index(first_end)


# --- faults in each provider's own format ------------------------------------------------

FAULT_TASK = """
prompt = "Echo twice."
[agent]
model = "sim"
tools = ["echo"]
[tools.echo]
description = "Print the text."
command = ["echo", "{{text}}"]
[tools.echo.params]
text = {{ type = "string", description = "what to print" }}
[sim]
decode_tps = 400
ttft = 0.02
faults = [{faults}]
[[sim.steps]]
id = "a"
tool = "echo"
args = {{ text = "one" }}
[[sim.steps]]
id = "b"
think = 60
tool = "echo"
args = {{ text = "two" }}
[sim.final]
answer = "got {{a.stdout}} and {{b.stdout}}"
"""


def fault_task(tmp_path: Path, faults: str) -> Path:
    path = tmp_path / "faults.toml"
    path.write_text(FAULT_TASK.format(faults=faults))
    return path


ANSWER = 'got one\n and two\n'


@pytest.mark.parametrize("protocol", ["openai", *PROTOCOLS])
def test_rate_limits_overloads_and_server_errors_are_retried(tmp_path, protocol):
    task = fault_task(tmp_path, '{ request = 1, kind = "rate_limit" }, { request = 2, kind = "overloaded" }, '
                                '{ request = 3, kind = "server_error" }')
    result, report, trace = run(tmp_path, task, "--model", f"sim:{protocol}")
    assert result.exit_code == 0, result.output
    assert report["answer"] == ANSWER
    retries = trace.of_type("retry")
    assert [r["attempt"] for r in retries] == [1, 2, 3]
    assert "RateLimitError" in retries[0]["error"]
    overloaded = {"openai": "ServiceUnavailableError", "responses": "ServiceUnavailableError",
                  "anthropic": "Overloaded", "gemini": "UNAVAILABLE"}[protocol]
    assert overloaded in retries[1]["error"]
    assert "InternalServerError" in retries[2]["error"]
    assert all("simulated" in r["error"] for r in retries)  # the provider's message, as LiteLLM passed it on


def test_the_quickstart_gives_the_same_answer_in_every_format(tmp_path):
    """README: asyncfc run tasks/quickstart.toml --model sim:anthropic (and sim:gemini, sim:responses)."""
    expected = ('"Structured Concurrency" has 732 words and "Futures And Promises" has 293; their combined '
                "score is 215208.0. trio is a Python library for structured async concurrency.")
    for protocol in PROTOCOLS:
        result, report, trace = run(tmp_path, REPO / "tasks" / "quickstart.toml", "--model", f"sim:{protocol}")
        assert result.exit_code == 0, (protocol, result.output)
        assert report["answer"] == expected, protocol
        assert report["litellm_model"] == ROUTES[protocol]


@pytest.mark.parametrize("kind", ["cut", "stream_error"])
@pytest.mark.parametrize("protocol", ["openai", *PROTOCOLS])
def test_a_stream_that_fails_before_any_call_is_retried(tmp_path, protocol, kind):
    task = fault_task(tmp_path, f'{{ request = 1, kind = "{kind}" }}')
    result, report, trace = run(tmp_path, task, "--model", f"sim:{protocol}", "--mode", "async")
    assert result.exit_code == 0, result.output
    assert report["answer"] == ANSWER
    assert len(trace.of_type("retry")) == 1
    assert [c["tool"] for c in report["tool_calls"]] == ["echo", "echo"]  # nothing ran twice


@pytest.mark.parametrize("kind", ["cut", "stream_error"])
@pytest.mark.parametrize("protocol", ["openai", *PROTOCOLS])
def test_a_stream_that_fails_after_a_call_started_is_not_replayed(tmp_path, protocol, kind):
    # Call a is complete (and running, async mode) when the stream fails
    # during b's thinking: replaying the request would run a twice.
    task = fault_task(tmp_path, f'{{ request = 1, kind = "{kind}", after_calls = 1 }}')
    result, report, trace = run(tmp_path, task, "--model", f"sim:{protocol}", "--mode", "async")
    assert [c["arguments"] for c in report["tool_calls"]].count({"text": "one"}) == 1
    # (A cut connection is an incomplete chunked body, an error for every
    # format, Gemini's included, whose stream has no end marker of its own.)
    assert result.exit_code == 1, result.output
    assert report["status"] == "error" and report["error"].startswith("model error:")
    assert not trace.of_type("retry")
    model_end = trace.of_type("model_end")[-1]
    assert model_end["status"] == "error"


def test_a_rejected_key_is_a_credentials_error_in_every_format(tmp_path):
    for protocol in ["openai", *PROTOCOLS]:
        task = fault_task(tmp_path, '{ request = 1, kind = "auth" }')
        result, report, trace = run(tmp_path, task, "--model", f"sim:{protocol}")
        assert result.exit_code == 2, (protocol, result.output)
        assert not trace.of_type("retry"), protocol
        assert "fix" in report and "--model sim" in report["fix"]


# --- settings and commands ----------------------------------------------------------------


def test_the_plan_chooses_its_protocol_and_the_command_line_overrides_it(tmp_path):
    task = tmp_path / "t.toml"
    task.write_text('prompt = "p"\n[agent]\nmodel = "sim"\n[sim]\nprotocol = "gemini"\n[sim.final]\nanswer = "hi"\n')
    result, report, trace = run(tmp_path, task)
    assert result.exit_code == 0, result.output
    assert trace.header["litellm_model"] == "gemini/asyncfc-sim" and report["answer"] == "hi"
    result, report, trace = run(tmp_path, task, "--model", "sim:responses")
    assert trace.header["litellm_model"] == "openai/responses/asyncfc-sim" and report["answer"] == "hi"
    result = invoke("run", str(task), "--model", "sim:grpc", catch_exceptions=True)
    assert result.exit_code == 2 and "sim:anthropic" in result.output
    task.write_text('prompt = "p"\n[agent]\nmodel = "sim"\n[sim]\nprotocol = "grpc"\n[sim.final]\nanswer = "hi"\n')
    result = invoke("validate", str(task), catch_exceptions=True)
    assert result.exit_code == 2 and "sim.protocol" in result.output and "'anthropic'" in result.output


def test_a_models_entry_can_name_a_format(tmp_path):
    (tmp_path / "agents.toml").write_text(
        '[models.claude_sim]\nmodel = "sim:anthropic"\n[agents.a]\nmodel = "claude_sim"\n')
    task = tmp_path / "t.toml"
    task.write_text('agent = "a"\nprompt = "p"\n[sim.final]\nanswer = "via anthropic"\n')
    result, report, trace = run(tmp_path, task)
    assert result.exit_code == 0, result.output
    assert report["model"] == "sim:anthropic" and report["model_alias"] == "claude_sim"
    assert trace.header["litellm_model"] == "anthropic/asyncfc-sim"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sim_serve_speaks_the_format_to_a_litellm_client(runs, tmp_path, protocol):
    """``asyncfc sim serve --protocol P`` prints what a client needs; a [models]
    entry with that LiteLLM model string and base URL runs the plan."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "asyncfc_cli.cli", "sim", "serve", str(TASK), "--port", "0",
                             "--protocol", protocol], stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline()
        assert f"({protocol} format)" in line, line
        base_url = line.split(" at ", 1)[1].split(";", 1)[0]
        model = line.split("LiteLLM model string ", 1)[1].split(" ", 1)[0]
        assert model == ROUTES[protocol] and base_url.startswith("http://127.0.0.1:")
        (tmp_path / "tools").symlink_to(REPO / "tools")
        (tmp_path / "agents.toml").write_text(
            f'[models.served]\nmodel = "{model}"\napi_base = "{base_url}"\napi_key = "anything"\n'
            '[tools.fetch]\npython = "tools.slow:fetch"\n[tools.lookup]\npython = "tools.slow:lookup"\n'
            '[tools.compute]\npython = "tools.slow:compute"\n'
            '[agents.a]\nmodel = "served"\ntools = ["fetch", "lookup", "compute"]\n')
        task = tmp_path / "t.toml"
        task.write_text('agent = "a"\nprompt = "Compare the pages and look up trio."\n')
        result, report, trace = run(tmp_path, task)
        assert result.exit_code == 0, result.output
        assert report["answer"] == runs("openai", "async")[1]["answer"]
        assert report["model"] == model and report["model_alias"] == "served"
        assert report["provider"] == {"anthropic": "anthropic", "gemini": "gemini", "responses": "openai"}[protocol]
        assert trace.of_type("model_end")[0]["tokens_in"] > 0
    finally:
        proc.send_signal(2)
        proc.wait(10)


def test_sim_serve_rejects_an_unknown_protocol():
    result = invoke("sim", "serve", str(TASK), "--protocol", "soap", "--port", "0", catch_exceptions=True)
    assert result.exit_code == 2 and "unknown protocol 'soap'" in result.output


# --- Anthropic's fine-grained tool streaming ------------------------------------------------

TOOLS = [{"type": "function", "function": {"name": "echo", "description": "t",
                                           "parameters": {"type": "object", "properties": {}}}}]


@pytest.mark.parametrize("eager", [True, False])
async def test_eager_input_streaming_sends_tool_arguments_as_they_are_decoded(litellm, eager):
    from asyncfc_cli.decoding import ToolCallReady
    from asyncfc_cli.runner import register_sim_models
    from asyncfc_cli.sim.server import SimServer

    register_sim_models(litellm)
    plan = make_plan(chunk_chars=3, steps=[{"id": "a", "tool": "echo", "args": {"text": "x" * 60}},
                                           {"id": "b", "think": 5, "tool": "echo", "args": {}}])
    with SimServer(plan, protocol="anthropic") as server:
        with client_for(server.base_url, model=server.litellm_model, eager_input_streaming=eager) as client:
            chunks = []
            # Count the argument fragments LiteLLM hands over for call a.
            raw = client._litellm.acompletion

            async def spy(**kwargs):
                response = await raw(**kwargs)

                async def gen():
                    async for chunk in response:
                        chunks.append(chunk)
                        yield chunk
                return gen()

            client._litellm = type("L", (), {"acompletion": staticmethod(spy)})()
            async with aclosing(client.stream([{"role": "user", "content": "go"}], TOOLS)) as stream:
                events = [e async for e in stream]
        assert server.last_request.eager_tools == (frozenset({"echo"}) if eager else frozenset())
    fragments = [tc for c in chunks for ch in c.choices for tc in (ch.delta.tool_calls or []) if tc.index == 0]
    calls = [e for e in events if isinstance(e, ToolCallReady)]
    assert [json.loads(c.arguments) for c in calls] == [{"text": "x" * 60}, {}]
    if eager:
        assert len(fragments) > 10  # header + one fragment per 3 characters
    else:
        assert len(fragments) == 2  # header + the whole input, held back by the server


def test_eager_input_streaming_is_on_for_anthropic_unless_turned_off(tmp_path, monkeypatch):
    from asyncfc_cli import runner, spec

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    (tmp_path / "agents.toml").write_text(
        '[models.claude]\nmodel = "anthropic/claude-sonnet-4-5"\n'
        '[models.claude_buffered]\nmodel = "anthropic/claude-sonnet-4-5"\neager_input_streaming = false\n'
        '[models.gpt]\nmodel = "openai/gpt-4o-mini"\n'
        '[models.sim_claude]\nmodel = "sim:anthropic"\n'
        '[models.sim_buffered]\nmodel = "sim:anthropic"\neager_input_streaming = false\n'
        '[agents.a]\nmodel = "claude"\n')
    task = tmp_path / "t.toml"
    task.write_text('agent = "a"\nprompt = "p"\n[sim.final]\nanswer = "x"\n')
    seen = {}
    for name in ("claude", "claude_buffered", "gpt", "sim_claude", "sim_buffered"):
        # The configuration asyncfc run builds from the spec (no request is made).
        with runner.model_endpoint(spec.resolve_run(task, model_override=name)) as config:
            seen[name] = config.eager_input_streaming
    assert seen == {"claude": True, "claude_buffered": False, "gpt": False, "sim_claude": True,
                    "sim_buffered": False}


def test_no_request_left_the_machine(tmp_path, no_network):
    """The guard itself: a hosted model, with a key, cannot get past the dead proxy."""
    (tmp_path / "agents.toml").write_text(
        '[models.claude]\nmodel = "anthropic/claude-sonnet-4-5"\nretries = 0\n[agents.a]\nmodel = "claude"\n')
    task = tmp_path / "t.toml"
    task.write_text('agent = "a"\nprompt = "p"\n')
    result, report, _ = run(tmp_path, task, env={"ANTHROPIC_API_KEY": "sk-ant-test"})
    assert result.exit_code == 1, result.output
    # It tried api.anthropic.com through the proxy, which is not there.
    assert report["error"] == ("model error: cannot reach the model server at https://api.anthropic.com/v1/messages: "
                               f"connection refused by 127.0.0.1:{no_network}, a proxy")
    assert "HTTPS_PROXY" in report["fix"]


# --- the wire, raw -----------------------------------------------------------------------

REQUESTS = {
    "openai": ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "go"}]}),
    "anthropic": ("/v1/messages", {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "go"}]}),
    "gemini": ("/v1beta/models/m:generateContent", {"contents": [{"role": "user", "parts": [{"text": "go"}]}]}),
    "responses": ("/v1/responses", {"model": "m", "input": "go"}),
}


def post(server, path: str, body) -> tuple[int, dict]:
    import http.client

    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = json.loads(response.read() or b"null")
    conn.close()
    return response.status, data


def test_errors_come_in_each_providers_format():
    from asyncfc_cli.sim.server import SimServer

    faults = [{"request": 1, "kind": "rate_limit"}, {"request": 2, "kind": "overloaded"},
              {"request": 3, "kind": "server_error"}, {"request": 4, "kind": "auth"}]
    expected = {
        "openai": [(429, "rate_limit_exceeded"), (503, "engine_overloaded"), (500, None), (401, "invalid_api_key")],
        "responses": [(429, "rate_limit_exceeded"), (503, "engine_overloaded"), (500, None), (401, "invalid_api_key")],
        "anthropic": [(429, "rate_limit_error"), (529, "overloaded_error"), (500, "api_error"),
                      (401, "authentication_error")],
        "gemini": [(429, "RESOURCE_EXHAUSTED"), (503, "UNAVAILABLE"), (500, "INTERNAL"), (400, "INVALID_ARGUMENT")],
    }
    for protocol, (path, body) in REQUESTS.items():
        plan = make_plan(faults=faults)
        with SimServer(plan, protocol=protocol) as server:
            got = []
            for _ in faults:
                status, data = post(server, path, body)
                error = data["error"]
                kind = {"anthropic": lambda: (data["type"] == "error") and error["type"],
                        "gemini": lambda: error["code"] == status and error["status"]}.get(
                    protocol, lambda: error["code"])()
                assert error["message"]
                got.append((status, kind))
            assert got == expected[protocol], protocol
            # The fifth request has no fault: a whole (non-streaming) answer in the format's shape.
            status, data = post(server, path, body)
            assert status == 200
            text = {"openai": lambda: data["choices"][0]["message"]["content"],
                    "anthropic": lambda: data["content"][-1]["text"],
                    "gemini": lambda: data["candidates"][0]["content"]["parts"][-1]["text"],
                    "responses": lambda: data["output"][-1]["content"][0]["text"]}[protocol]()
            assert text == "done"
            # A route of another format is a 404 in this one's.
            other = REQUESTS["anthropic" if protocol != "anthropic" else "openai"][0]
            status, data = post(server, other, body)
            assert status == 404 and "error" in data


def _serve_first_calls(argv: list[str]) -> list[dict]:
    """Start ``asyncfc sim serve`` as a user does (from the repository's root),
    ask its Gemini endpoint for a first answer and return the function calls in it."""
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "asyncfc_cli", *argv, "--port", "0"], cwd=REPO,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "400"})
    try:
        line = proc.stderr.readline()
        assert " at http://127.0.0.1:" in line, line + proc.stderr.read() if proc.poll() is not None else line
        base_url = line.split(" at ", 1)[1].split(";", 1)[0]
        body = {"contents": [{"role": "user", "parts": [{"text": "Compare the pages."}]}]}
        request = urllib.request.Request(f"{base_url}/models/asyncfc-sim:generateContent",
                                         data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        # An opener of its own: urlopen() would keep this test's dead proxy in a
        # process-wide opener for every later test of the worker.
        with urllib.request.build_opener().open(request, timeout=60) as response:
            answer = json.loads(response.read())
        parts = answer["candidates"][0]["content"]["parts"]
        return [part["functionCall"] for part in parts if "functionCall" in part]
    finally:
        proc.send_signal(2)
        proc.wait(20)


def test_sim_serve_as_docs_show_it_fills_the_tasks_params_and_takes_set():
    """docs/providers.md's ``asyncfc sim serve tasks/quickstart.toml --protocol gemini``
    (only the port made free): the plan's {url_a} is the task's [params] value,
    and --set changes it as it does for run."""
    import shlex

    shown = [line.split("#", 1)[0].split() for line in (REPO / "docs" / "providers.md").read_text().splitlines()
             if line.startswith("asyncfc sim serve tasks/quickstart.toml")]
    assert shown, "docs/providers.md no longer shows sim serve on the quickstart"
    argv = shlex.split(" ".join(shown[0]))[1:]
    calls = _serve_first_calls(argv)
    assert calls and calls[0]["name"] == "fetch"
    assert calls[0]["args"]["url"] == "https://example.org/structured-concurrency"
    calls = _serve_first_calls([*argv, "--set", "url_a=https://example.org/other"])
    assert calls[0]["args"]["url"] == "https://example.org/other"


def test_sim_serve_refuses_a_set_for_a_parameter_the_task_lacks():
    result = invoke("sim", "serve", str(REPO / "tasks" / "quickstart.toml"), "--set", "urla=x", "--port", "0",
                    catch_exceptions=True)
    assert result.exit_code == 2 and "no parameter {urla}" in result.output and "url_a" in result.output
