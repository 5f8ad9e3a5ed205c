"""MCP servers are untrusted: hostile servers (tests/mcp_hostile_server.py, real
processes over stdio and HTTP on 127.0.0.1) against ``asyncfc run``,
``validate`` and ``tools``, as a user meets them.

What each test proves is in docs/reliability.md ("hostile MCP servers").
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from asyncfc_cli.trace import read_trace

from conftest import free_port, invoke, wait_until

HERE = Path(__file__).parent
HOSTILE = HERE / "mcp_hostile_server.py"
PY = sys.executable
ESC = "\x1b"
TOKEN = "tok-7Qx2LmVn93Kd"  # the server's env credential (API_TOKEN)
BEARER = "Bearer hdr-Zt84WqPc6Yb1"  # an HTTP server's Authorization header


def stdio(*modes: str, env: dict | None = None) -> str:
    argv = [PY, str(HOSTILE), *[x for m in modes for x in ("--mode", m)]]
    table = f"command = {json.dumps(argv)}"
    if env:
        table += ", env = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in env.items()) + " }"
    return "{ " + table + " }"


def project(tmp_path: Path, tools_table: str, steps: list[tuple[str, str, dict]] = (), final: str = "done",
            mode: str = "sync") -> tuple[Path, Path]:
    """An agents.toml with agent ``a`` using tool table ``srv``, and a task for it with a [sim] plan."""
    agents = tmp_path / "agents.toml"
    agents.write_text(f'[agents.a]\nmodel = "sim"\ntools = ["srv"]\nmode = "{mode}"\n\n[tools.srv]\n'
                      + textwrap.dedent(tools_table) + "\n")
    plan = "[sim]\ndecode_tps = 5000\nttft = 0\n\n"
    for step_id, tool, args in steps:
        inline = "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in args.items()) + " }"
        plan += f'[[sim.steps]]\nid = "{step_id}"\ntool = "{tool}"\nargs = {inline}\n\n'
    plan += f"[sim.final]\nanswer = {json.dumps(final)}\n"
    task = tmp_path / "task.toml"
    task.write_text(f'agent = "a"\nprompt = "p"\n\n{plan}')
    return agents, task


def run_json(task: Path, *extra: str, env: dict | None = None):
    trace = task.parent / "trace.jsonl"
    result = invoke("run", str(task), "--json", "--trace", str(trace), *extra, env=env)
    report = json.loads(result.stdout) if result.stdout.strip() else None
    return result, report, trace


def every_output(tmp_path: Path, agents: Path, task: Path, env: dict | None = None) -> dict[str, tuple[int, str]]:
    """run (--json and plain), validate and tools (text and --json): exit code and all they wrote."""
    out = {}
    for name, args in {
        "run --json": ["run", str(task), "--json", "--trace", str(tmp_path / "t1.jsonl")],
        "run": ["run", str(task), "--trace", str(tmp_path / "t2.jsonl")],
        "validate": ["validate", str(agents)],
        "tools": ["tools", "a", "--agents", str(agents)],
        "tools --json": ["tools", "a", "--agents", str(agents), "--json"],
    }.items():
        result = invoke(*args, env=env)
        traces = "".join(p.read_text() for p in tmp_path.glob("t*.jsonl"))
        out[name] = (result.exit_code, result.stdout + result.stderr + traces)
    return out


@pytest.fixture
def hostile_http():
    """Start the hostile server over HTTP with the given modes; yields its port."""
    started: list[subprocess.Popen] = []

    def start(*modes: str) -> int:
        port = free_port()
        proc = subprocess.Popen([PY, str(HOSTILE), "--http", str(port), *[x for m in modes for x in ("--mode", m)]],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        assert wait_until(listening, 30), "the hostile HTTP server did not start"
        return port

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


# --- (a) escape sequences --------------------------------------------------------------------


def test_escape_sequences_in_a_servers_stderr_are_shown_not_acted_on(tmp_path):
    agents, task = project(tmp_path, f"mcp = {stdio('stderr-escapes')}")
    for name, (code, text) in every_output(tmp_path, agents, task).items():
        assert code == 2, name
        assert ESC not in text and "\x07" not in text, name  # no title, clear-screen or clipboard write
        assert "\\x1b]0;pwned-title\\x07" in text and "fatal: cannot start" in text, name
        assert "exited with status 1" in text and "Traceback" not in text, name


def test_tool_names_and_descriptions_with_escape_sequences(tmp_path):
    agents, task = project(tmp_path, f"mcp = {stdio('names-escapes')}", [("e", "echo", {"text": "hi"})],
                           final="{e}")
    listed = invoke("tools", "a", "--agents", str(agents))
    assert listed.exit_code == 0, listed.output
    assert ESC not in listed.output and "\x07" not in listed.output
    assert '"description": "Echo.\\u001b]0;pwned-title' in listed.output  # the schema, as JSON writes it
    # The name the model gets (only [A-Za-z0-9_-]) and the server's own, escaped.
    assert "bad__0_x_name  mcp" in listed.output and ":: bad\\x1b]0;x\\x07name" in listed.output
    as_json = invoke("tools", "a", "--agents", str(agents), "--json")
    assert ESC not in as_json.stdout  # JSON escapes it...
    rows = {r["name"]: r for r in json.loads(as_json.stdout)["tools"]}
    assert rows["echo"]["schema"]["function"]["description"].startswith("Echo.\x1b]0;")  # ...as the same text
    result, report, _ = run_json(task)
    assert result.exit_code == 0 and report["answer"] == "hi"
    # A message that lists the server's names shows them escaped.
    agents, _ = project(tmp_path, f'mcp = {stdio("names-escapes")}\ninclude = ["nope"]')
    bad = invoke("tools", "a", "--agents", str(agents))
    assert bad.exit_code == 2 and ESC not in bad.output
    assert "include names 'nope'" in bad.output and "bad\\x1b]0;x\\x07name" in bad.output


# --- (b) secrets -----------------------------------------------------------------------------


def test_a_url_password_and_credential_query_values_never_show(tmp_path, hostile_http):
    port = hostile_http()
    secrets = ["pw-Hq82nXv01", "acc-4kLm93Jd0s", "sig-Pz71aaQe", "apikey-88Rt2"]
    url = (f"http://mcpuser:{secrets[0]}@127.0.0.1:{port}/mcp?access_token={secrets[1]}&page=2"
           f"&sig={secrets[2]}&api_key={secrets[3]}")
    agents, task = project(tmp_path, f'mcp = {{ url = "{url}" }}', [("e", "echo", {"text": "x"})])
    for args in (["tools", "a", "--agents", str(agents)], ["tools", "a", "--agents", str(agents), "--json"],
                 ["validate", str(agents)]):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert not [s for s in secrets if s in result.output], args
        if args[0] == "tools":
            assert "mcpuser:***@127.0.0.1" in result.output and "access_token=***&page=2" in result.output
    result, report, trace = run_json(task)
    assert result.exit_code == 0, result.output
    assert not [s for s in secrets if s in result.output + trace.read_text()]
    # And when the server is not there: every start failure shows the URL masked.
    dead = url.replace(f":{port}/", f":{free_port()}/")
    agents, task = project(tmp_path, f'mcp = {{ url = "{dead}" }}\nstartup_timeout = 20')
    for name, (code, text) in every_output(tmp_path, agents, task).items():
        assert code == 2, name
        assert not [s for s in secrets if s in text], name
        assert "mcpuser:***@" in text, name


@pytest.mark.parametrize("transport", ["stdio env", "http header"])
def test_a_credential_a_server_quotes_in_its_start_error_never_shows(tmp_path, hostile_http, transport):
    if transport == "stdio env":
        secret, table = TOKEN, f"mcp = {stdio('echo-secret', env={'API_TOKEN': TOKEN})}"
    else:
        secret = BEARER
        table = f'mcp = {{ url = "http://127.0.0.1:{hostile_http("echo-secret")}/mcp", headers = {{ Authorization = "{BEARER}" }} }}'
    agents, task = project(tmp_path, table)
    for name, (code, text) in every_output(tmp_path, agents, task).items():
        assert code == 2, name
        assert secret not in text and secret[7:] not in text, name
        assert "unauthorized: *** is not a valid credential" in text, name


@pytest.mark.parametrize("mode", ["echo-secret-call", "invalid-echo-call"])
@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_credential_quoted_in_a_call_error_or_a_broken_answer_never_shows(tmp_path, hostile_http, mode, transport):
    if transport == "stdio":
        secret, table = TOKEN, f"mcp = {stdio(mode, env={'API_TOKEN': TOKEN})}"
    else:
        secret = BEARER
        table = f'mcp = {{ url = "http://127.0.0.1:{hostile_http(mode)}/mcp", headers = {{ Authorization = "{BEARER}" }} }}'
    agents, task = project(tmp_path, table, [("e", "echo", {"text": "x"}), ("f", "echo", {"text": "y"})],
                           final="{e.error} / {f.error}")
    result, report, trace = run_json(task)
    plain = invoke("run", str(task), "--trace", str(tmp_path / "plain.jsonl"))
    assert result.exit_code == 0 and plain.exit_code == 0, result.output
    assert all(c["status"] == "error" for c in report["tool_calls"])
    everything = result.output + plain.output + trace.read_text() + (tmp_path / "plain.jsonl").read_text()
    # Whole or in part (pydantic quotes a refused value cut to 50 characters).
    assert not [secret[i:i + 8] for i in range(len(secret) - 7) if secret[i:i + 8] in everything]
    if mode == "echo-secret-call":
        assert "refused: the credential *** has expired" in report["answer"]
    # The model was never sent it either: the tool messages of the conversation.
    assert secret not in json.dumps(report["messages"])
    if (transport, mode) == ("http", "invalid-echo-call"):
        # The SDK logged the body it could not parse: into the trace, redacted, not onto stderr.
        logged = [e["error"] for e in read_trace(trace).of_type("tool_source_error")]
        assert any(e.startswith("MCP SDK: Error parsing JSON response") for e in logged), logged
        assert "Error parsing" not in result.stderr


def test_a_token_a_stdio_server_prints_on_stdout_stays_out_of_every_output(tmp_path):
    agents, task = project(tmp_path, f"mcp = {stdio('stdout-noise', env={'API_TOKEN': TOKEN})}",
                           [("e", "echo", {"text": "after the noise"})], final="{e}")
    outputs = every_output(tmp_path, agents, task)
    for name, (code, text) in outputs.items():
        assert code == 0, (name, text)
        assert TOKEN not in text and "Traceback" not in text, name
    result, report, trace = run_json(task)
    assert report["answer"] == "after the noise"
    (noise,) = read_trace(trace).of_type("tool_source_error")
    assert noise["error"].endswith("not a JSON-RPC message it may send: debug: starting with token ***")


def test_the_sdks_log_records_are_redacted_one_line_and_printable(monkeypatch):
    # Outside a session (no run's redactor): the environment's secrets are masked.
    # (Inside one, the records go to its trace: the http case of the test above.)
    from asyncfc_cli.tools.mcp import route_sdk_logs

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    monkeypatch.setenv("SOME_SERVICE_TOKEN", TOKEN)
    route_sdk_logs()
    root, kept = logging.getLogger(), Keep()
    root.addHandler(kept)
    try:
        try:
            raise ValueError(f"bad line {TOKEN}")
        except ValueError:
            logging.getLogger("mcp.client.anything").exception("could not parse %s\x1b[2J", TOKEN)
    finally:
        root.removeHandler(kept)
    (record,) = [r for r in kept.records if r.name == "mcp.client.anything"]
    assert record.getMessage() == "could not parse ***\\x1b[2J: ValueError: bad line ***"
    assert record.exc_info is None and record.levelno == logging.ERROR


# --- (c) --json when a server does not start ----------------------------------------------------


def test_run_json_prints_its_object_when_a_server_does_not_start(tmp_path):
    agents, task = project(tmp_path, f"mcp = {stdio('stderr-escapes')}")
    result, report, trace = run_json(task)
    assert result.exit_code == 2
    assert report["exit_code"] == 2 and report["status"] == "spec_error" and report["key"] == "tools.srv"
    assert "failed to start" in report["error"] and "Fix: not this one" in report["error"]  # the server's
    assert report["fix"] == "run the server by hand to see why, or correct [tools.srv.mcp]"  # ours
    assert report["trace"] == str(trace)


# --- (d) huge answers --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_huge_answer_is_an_error_the_model_sees_and_the_session_goes_on(tmp_path, mode):
    steps = [("a", "huge", {"size": 40_000_000}),                  # the id first (as the Python SDK writes)
             ("b", "huge", {"size": 100_000_000, "id_last": True}),  # the id last (as the TypeScript SDK does)
             ("c", "echo", {"text": "still here"}),
             ("d", "huge", {"size": 1000})]
    if mode == "sync":  # one request waiting: an answer without an id is still told apart
        steps.insert(2, ("n", "huge", {"size": 30_000_000, "no_id": True}))
    agents, task = project(tmp_path, f"mcp = {stdio()}\ntimeout = 300", steps, mode=mode,
                           final="{c} {d}")
    result, report, _ = run_json(task)
    assert result.exit_code == 0, result.output
    calls = {c["id"]: c for c in report["tool_calls"]}
    by_step = dict(zip([s[0] for s in steps], report["tool_calls"]))
    assert len(calls) == len(steps)
    for step in ("a", "b", "n"):
        if step in by_step:
            call = by_step[step]
            assert call["status"] == "error", call  # an error, not a timeout: nothing waited for the cap
            assert "more than max_output (4,194,304 bytes); it was skipped unread" in call["error"]
            assert "raise max_output in [tools.srv]" in call["error"]
    assert by_step["c"]["status"] == "ok" and by_step["d"]["status"] == "ok"
    assert report["answer"] == "still here " + "y" * 1000


def test_an_answer_without_an_id_to_one_of_several_requests_ends_them_at_once(tmp_path):
    # Which request it answers cannot be told: both end now, not at their timeouts.
    agents, task = project(tmp_path, f"mcp = {stdio()}\ntimeout = 300",
                           [("n", "huge", {"size": 30_000_000, "no_id": True, "wait_next": True}),
                            ("e", "echo", {"text": "other", "wait_next": True})], mode="parallel", final="{n.error} | {e.error}")
    result, report, _ = run_json(task)
    assert result.exit_code == 0, result.output
    first, second = report["answer"].split(" | ")
    assert first == second
    assert first.startswith("the MCP server connection was closed: the MCP server's answer is 30,000,")
    assert first.endswith("it could not be told which request it answers")


def test_max_output_is_the_cap_and_an_http_server_has_it_too(tmp_path, hostile_http):
    for table in (f"mcp = {stdio()}", f'mcp = {{ url = "http://127.0.0.1:{hostile_http()}/mcp" }}'):
        agents, task = project(tmp_path, table + "\nmax_output = 3000",
                               [("big", "huge", {"size": 5000}), ("ok", "huge", {"size": 1000}),
                                ("after", "echo", {"text": "fine"})], final="{after}")
        result, report, _ = run_json(task)
        assert result.exit_code == 0, result.output
        big, ok, after = report["tool_calls"]
        assert big["status"] == "error" and "more than max_output (3,000 bytes)" in big["error"]
        assert ok["status"] == "ok" and after["status"] == "ok"


def test_a_garbled_answer_ends_its_call_at_once(tmp_path):
    agents, task = project(tmp_path, f"mcp = {stdio()}\ntimeout = 300",
                           [("g", "garbage", {}), ("e", "echo", {"text": "next"})], final="{g.error} | {e}")
    result, report, _ = run_json(task)
    assert result.exit_code == 0, result.output
    assert report["answer"].startswith("the MCP server's answer is not JSON (")
    assert report["answer"].endswith(" | next")


def test_an_answer_nested_100k_deep_ends_its_call_and_the_session_goes_on(tmp_path):
    agents, task = project(tmp_path, f"mcp = {stdio()}\ntimeout = 300",
                           [("d", "deep", {"depth": 100_000}), ("s", "deep", {"depth": 3}),
                            ("e", "echo", {"text": "next"})], final="{d.error} | {s} | {e}")
    result, report, _ = run_json(task)
    assert result.exit_code == 0, result.output
    deep, shallow, after = report["answer"].split(" | ")
    assert deep.startswith("the MCP server's answer nests too deeply to be read (recursion limit exceeded")
    assert json.loads(shallow) == {"v": [[[]]]} and after == "next"


# --- (e) a tools/list answer that cannot be used ---------------------------------------------------


@pytest.mark.parametrize("mode, says", [
    ("list-not-jsonrpc", "failed to start: the MCP server's answer is not a valid JSON-RPC message (result:"),
    ("list-not-json", "failed to start: the MCP server's answer is not JSON ("),
    ("list-invalid", "failed to start: its answer does not fit the MCP schema (tools.0."),
    ("list-huge", "failed to start: the MCP server's answer is 8,000,"),
])
def test_a_tools_list_answer_that_cannot_be_used_is_reported_as_that(tmp_path, mode, says):
    # A startup_timeout far beyond the test's: reported at once, never as a server that did not start in time.
    agents, task = project(tmp_path, f"mcp = {stdio(mode)}\nstartup_timeout = 600")
    for name, (code, text) in every_output(tmp_path, agents, task).items():
        assert code == 2, name
        assert says in text and "startup_timeout" not in text, (name, text)
    if mode == "list-huge":
        assert "raise max_output in [tools.srv]" in text


# --- (f) what a failed start leaves, and names that collide ----------------------------------------


def test_a_failed_start_leaves_a_trace_that_says_so(tmp_path):
    agents, task = project(tmp_path, f"mcp = {stdio('stderr-escapes')}")
    result, _, trace = run_json(task)
    assert result.exit_code == 2
    data = read_trace(trace)
    assert data.summary["status"] == "error" and "failed to start" in data.summary["error"]
    (failure,) = data.of_type("tool_source_error")
    assert failure["name"] == "srv" and "exited with status 1" in failure["error"]
    shown = invoke("trace", str(trace))
    assert shown.exit_code == 0, shown.output
    assert "killed" not in shown.output and "error" in shown.output


def test_a_start_failure_names_its_table(tmp_path):
    agents, task = project(tmp_path, f"mcp = {stdio('stderr-escapes')}")
    for name, (code, text) in every_output(tmp_path, agents, task).items():
        assert code == 2 and "tools.:" not in text, name
    listed = invoke("tools", "a", "--agents", str(agents), "--json")
    assert json.loads(listed.stdout)["key"] == "tools.srv"


def test_server_tools_whose_names_collide_get_a_fix_that_works(tmp_path):
    agents, task = project(tmp_path, f"mcp = {stdio('collide')}", [("x", "a_b", {})])
    result, report, _ = run_json(task)
    assert result.exit_code == 2
    assert "server tools 'a.b' and 'a_b' would both be called 'a_b'" in report["error"]
    assert report["fix"].startswith('exclude one of them: exclude = ["a.b"] or exclude = ["a_b"]')
    assert "prefix" not in report["error"] + report["fix"]  # a prefix cannot tell them apart
    agents, task = project(tmp_path, f'mcp = {stdio("collide")}\nexclude = ["a.b"]', [("x", "echo", {"text": "ok"})],
                           final="{x}")
    result, report, _ = run_json(task)
    assert result.exit_code == 0 and report["answer"] == "ok"
    listed = invoke("tools", "a", "--agents", str(agents), "--json")
    assert sorted(r["name"] for r in json.loads(listed.stdout)["tools"]) == ["a_b", "echo"]


# --- the transport's reading of lines it cannot parse --------------------------------------------


@pytest.mark.parametrize("head, tail, expected", [
    ('{"jsonrpc": "2.0", "id": 7, "result": {"x": "', "", ("response", 7)),
    ('{"result": {"content": [', '"isError": false}, "jsonrpc": "2.0", "id": "r-9"}', ("response", "r-9")),
    ('{"result": {"a": "', '"}, "id": 3, "jsonrpc": "2.0"}\n', ("response", 3)),
    # An "id" inside the result, not the message's: no id.
    ('{"result": {"a": [', '{"id": 5}]}}', ("response", None)),
    ('{"jsonrpc":"2.0","id":0,"method":"sampling/createMessage","params":{"x":"', "", ("request", 0)),
    ('{"method": "notifications/message", "params": {"data": "', '"}, "jsonrpc": "2.0"}', ("request", None)),
    ('{"jsonrpc": "2.0", "id": true, "result": {', "", ("response", None)),
    ("debug: not json", "", (None, None)),
])
def test_the_id_of_a_line_that_is_not_read_whole(head, tail, expected):
    from asyncfc_cli.tools.mcp.stdio import identify

    assert identify(head, tail) == expected
