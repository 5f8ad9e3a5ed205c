"""Item 14 of issue 21: ``asyncfc run -c "next prompt"`` / ``--continue RUN_ID``.

A scripted endpoint records what each request carried: the continued run must
send the earlier conversation whole, in order, then the new prompt, with the
earlier run's agent, model and mode; an async run that ended with futures
outstanding goes on with their outcomes delivered (and numbers on from them).
A damaged or hostile trace given to --continue is exit 2 with a clear error.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from asyncfc_cli.trace import read_trace
from conftest import Reply, ScriptedServer, chunk, invoke, tool_call_stream

TOOLS = Path(__file__).parent / "data" / "testtools.py"
SECRET = "sk-test-continue-0123456789"


def project(tmp_path: Path, mode: str, max_turns: int = 6) -> Path:
    # A module name of its own: runs share this process, and a module is imported once.
    module = "ct_" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:10]
    (tmp_path / f"{module}.py").write_text(TOOLS.read_text())
    (tmp_path / "agents.toml").write_text(f"""
[models.endpoint]
model = "openai/scripted"
api_base = "${{ASYNCFC_TEST_API_BASE}}"
api_key = "${{ASYNCFC_TEST_API_KEY:-sk-none}}"
retries = 0

[tools.echo]
python = "{module}:echo"

[tools.sleep_for]
python = "{module}:sleep_for"

[agents.talker]
model = "endpoint"
tools = ["echo", "sleep_for"]
mode = "{mode}"
max_turns = {max_turns}
timeout = 120
""")
    return tmp_path


def answer(text: str) -> Reply:
    return Reply(chunks=[chunk({"role": "assistant", "content": text}), chunk({}, "stop")])


def without_nulls(message: dict) -> dict:
    """A message as it goes over the wire (LiteLLM leaves out a null content)."""
    return {k: v for k, v in message.items() if v is not None}


def run(root: Path, server: ScriptedServer, *args: str, monkeypatch=None):
    env = {"ASYNCFC_TEST_API_BASE": server.base_url, "ASYNCFC_RUNS_DIR": str(root / "runs"),
           "ASYNCFC_TEST_API_KEY": SECRET}
    return invoke("run", *args, env=env)


@pytest.fixture
def in_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("mode", ["sync", "parallel", "async"])
def test_c_continues_the_last_run_with_its_conversation_agent_model_and_mode(in_project, mode):
    root = project(in_project, mode)
    script = [Reply(chunks=tool_call_stream([("c1", "echo", '{"text": "blue"}')])), answer("The echo said blue."),
              answer("You asked about blue.")]
    with ScriptedServer(script) as server:
        first = run(root, server, "-a", "talker", "--json", "echo blue")
        second = run(root, server, "-c", "--json", "what did I ask?")
        sent = [r["body"]["messages"] for r in server.requests]
    assert first.exit_code == 0 and second.exit_code == 0, (first.stdout, second.stdout)
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert two["answer"] == "You asked about blue." and two["mode"] == mode and two["agent"] == "talker"
    # The third request carried the whole first conversation, then the new prompt.
    assert sent[2][:len(one["messages"])] == [without_nulls(m) for m in one["messages"]]
    assert sent[2][len(one["messages"]):] == [{"role": "user", "content": "what did I ask?"}]
    header = read_trace(Path(two["trace"])).header
    assert header.get("continues") == read_trace(Path(one["trace"])).header.run_id
    assert header.mode == mode and header.model == "openai/scripted"


def test_continue_names_a_run_and_a_chain_of_continuations_keeps_growing(in_project):
    root = project(in_project, "sync")
    with ScriptedServer([answer("one"), answer("two"), answer("three")]) as server:
        first = json.loads(run(root, server, "-a", "talker", "--json", "first").stdout)
        json.loads(run(root, server, "-c", "--json", "second").stdout)
        run_id = read_trace(Path(first["trace"])).header.run_id
        third = run(root, server, "--continue", run_id, "--json", "third again")
        sent = server.requests[2]["body"]["messages"]
    assert third.exit_code == 0
    # --continue RUN_ID goes on from that run, not from the latest one.
    assert [m["content"] for m in sent if m["role"] != "system"] == ["first", "one", "third again"]


def test_async_futures_outstanding_at_the_end_are_delivered_and_numbering_goes_on(in_project):
    root = project(in_project, "async", max_turns=1)
    # Run 1 (one turn): f1 sleeps past the end of the run, so its outcome is never seen.
    script = [Reply(chunks=tool_call_stream([("c1", "echo", '{"text": "kept"}'),
                                             ("c2", "sleep_for", '{"seconds": 30}')])),
              # Run 2: reads f1 by reference (a new call: f3), then answers.
              Reply(chunks=tool_call_stream([("c3", "echo", '{"text": "$f1"}')])),
              answer("done")]
    with ScriptedServer(script) as server:
        first = run(root, server, "-a", "talker", "--json", "--timeout", "3", "start")
        project(in_project, "async", max_turns=4)
        second = run(root, server, "-c", "--json", "go on")
        sent = [r["body"]["messages"] for r in server.requests]
    one, two = json.loads(first.stdout), json.loads(second.stdout)
    assert one["status"] in ("max_turns", "timeout"), one
    assert second.exit_code == 0, two
    carried = sent[1][len(one["messages"]):]
    deliveries = [m for m in carried if m["role"] == "user" and m["content"].startswith("Futures resolved: ")]
    delivered = {k: v for m in deliveries for k, v in json.loads(m["content"].split(": ", 1)[1].split("\n")[0]).items()}
    seen_before = {m["tool_call_id"]: m["content"] for m in one["messages"] if m["role"] == "tool"}
    # Every future of run 1 reaches the model exactly once: in a tool message or in the delivery.
    assert "f2" in delivered and "cancelled" in json.dumps(delivered["f2"])
    assert ("f1" in delivered) != ("kept" in seen_before.get("c1", ""))
    assert carried[-1] == {"role": "user", "content": "go on"}
    created = read_trace(Path(two["trace"])).of_type("future_created")
    assert [e.future for e in created] == ["f3"]  # numbering goes on after f1, f2
    # $f1 still reads run 1's value.
    assert any(m["role"] == "tool" and m["tool_call_id"] == "c3" and m["content"] == "kept" for m in sent[2])


def test_a_secret_in_the_conversation_is_never_written_to_the_trace(in_project):
    root = project(in_project, "sync")
    with ScriptedServer([answer(f"your key is {SECRET}"), answer("ok")]) as server:
        first = json.loads(run(root, server, "-a", "talker", "--json", f"remember {SECRET}").stdout)
        second = run(root, server, "-c", "--json", "again")
    for path in (root / "runs").glob("*.jsonl"):
        assert SECRET not in path.read_text()
    assert second.exit_code == 0 and SECRET not in second.stdout
    assert "***" in json.dumps(read_trace(Path(first["trace"])).of_type("conversation")[0]["messages"])


def hostile_traces(tmp_path: Path) -> dict[str, Path]:
    header = {"type": "header", "t": 0, "version": 1, "run_id": "r1", "agent": "talker", "model": "openai/scripted",
              "mode": "sync"}

    def trace(name: str, *lines) -> Path:
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
        return path

    def conv(**fields) -> dict:
        return {"type": "conversation", "t": 1, **fields}

    deep = "[" * 100_000 + "]" * 100_000
    return {
        "not a trace": trace("nottrace", "hello"),
        "no conversation": trace("noconv", header, {"type": "summary", "t": 1, "status": "ok"}),
        "messages not a list": trace("notlist", header, conv(messages="hi")),
        "empty messages": trace("empty", header, conv(messages=[])),
        "bad role": trace("role", header, conv(messages=[{"role": "root", "content": "x"}])),
        "content not text": trace("content", header, conv(messages=[{"role": "user", "content": {"a": 1}}])),
        "bad tool call": trace("call", header, conv(messages=[{"role": "assistant", "content": None,
                                                               "tool_calls": [{"id": 3}]}])),
        "tool without id": trace("toolid", header, conv(messages=[{"role": "tool", "content": "x"}])),
        "futures misnumbered": trace("futs", header, conv(messages=[{"role": "user", "content": "x"}],
                                                          futures=[{"future": "f7", "tool": "echo",
                                                                    "status": "ok"}])),
        "unseen bad": trace("unseen", header, conv(messages=[{"role": "user", "content": "x"}], unseen=[{"x": 1}])),
        "deeply nested": trace("deep", header, '{"type": "conversation", "t": 1, "messages": ' + deep + "}"),
        "no agent": trace("noagent", {**header, "agent": None}, conv(messages=[{"role": "user", "content": "x"}])),
        "unknown mode": trace("mode", {**header, "mode": "bogus\u001b[2J"}, conv(messages=[{"role": "user",
                                                                                         "content": "x"}])),
        "agent gone": trace("gone", {**header, "agent": "nobody"}, conv(messages=[{"role": "user", "content": "x"}])),
        "binary": tmp_path / "binary.jsonl",
    }


def test_a_damaged_or_hostile_trace_is_a_clear_error_exit_2(in_project):
    root = project(in_project, "sync")
    traces = hostile_traces(root)
    traces["binary"].write_bytes(b"\xff\xfe\x00garbage\n" * 10)
    with ScriptedServer([answer("never")]) as server:
        for name, path in traces.items():
            done = run(root, server, "--continue", str(path), "next")
            assert done.exit_code == 2, (name, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr and "error" in done.stderr, name
            assert "fix:" in done.stderr and "\x1b[2J" not in done.stderr, name
            as_json = run(root, server, "--continue", str(path), "--json", "next")
            assert as_json.exit_code == 2 and json.loads(as_json.stdout)["status"] == "spec_error", name
        nothing = run(root, server, "--continue", "20990101T000000-abcdef", "next")
        assert nothing.exit_code == 2 and "no run 20990101T000000-abcdef" in nothing.stderr
        assert not server.requests  # nothing ran
    empty = run(root, server, "-c", "next")
    assert empty.exit_code == 2 and "no earlier run" in empty.stderr
