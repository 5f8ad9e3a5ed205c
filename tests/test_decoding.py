"""The one stream decoder (asyncfc_cli/decoding.py): recorded LiteLLM chunk
sequences for each provider, argument assembly that stays linear on huge
and hostile input, and a bridge that times out a stream of nothing.

The recordings in tests/data/chunks/ are what LiteLLM 1.110 emits for the
simulated model in each wire format (ids and timestamps dropped); a test
re-records them through the real HTTP path and fails if LiteLLM's output has
changed (``ASYNCFC_RECORD_CHUNKS=1`` writes them anew).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from contextlib import aclosing
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from asyncfc_cli import decoding
from asyncfc_cli.decoding import FirstToken, ObjectScanner, StreamDecoder, StreamDone, TextDelta, ToolCallReady
from asyncfc_cli.model import ModelError
from asyncfc_cli.sim import engine
from conftest import LocalServer, client_for, handler_threads, invoke, make_plan, wait_until

CHUNKS = Path(__file__).parent / "data" / "chunks"
PROTOCOLS = ["openai", "anthropic", "gemini", "responses"]
USER = [{"role": "user", "content": "go"}]
TOOLS = [{"type": "function", "function": {"name": name, "description": "test tool",
                                           "parameters": {"type": "object", "properties": {}}}}
         for name in ("echo", "fetch")]
TRICKY = 'say "hi" \\ back\\slash \\n no\nnewline\ttab é ß 日本 🎉 {{braces}} }}{{ \'single\''

# One response with calls (thinking, a call in 3-character fragments, more
# thinking, a call without arguments) and one with an answer.
CALLS_PLAN = dict(seed=5, chunk_chars=3, steps=[
    {"id": "a", "think": 3, "tool": "echo", "args": {"text": TRICKY, "n": [1, 2.5, None, True]}},
    {"id": "b", "think": 4, "tool": "fetch", "args": {}},
])
ANSWER_PLAN = dict(seed=5, final={"think": 3, "answer": "The answer: 42 — ünïcödé, \"quoted\"."})


def _normal(chunk) -> dict:
    """A LiteLLM chunk without what changes from run to run (ids, times, fingerprints)."""
    data = chunk.model_dump(exclude_none=True)
    out: dict = {"choices": []}
    for choice in data.get("choices") or []:
        delta = {k: v for k, v in (choice.get("delta") or {}).items()
                 if k in ("role", "content", "reasoning_content") and v not in (None, "")}
        calls = []
        for call in (choice.get("delta") or {}).get("tool_calls") or []:
            fn = {k: v for k, v in (call.get("function") or {}).items() if k in ("name", "arguments") and v is not None}
            calls.append({k: v for k, v in (("index", call.get("index")), ("id", call.get("id")),
                                            ("function", fn)) if v is not None})
        if calls:
            delta["tool_calls"] = calls
        item = {"index": choice.get("index", 0), "delta": delta}
        if choice.get("finish_reason"):
            item["finish_reason"] = choice["finish_reason"]
        out["choices"].append(item)
    usage = data.get("usage")
    if usage:
        out["usage"] = {"prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens")}
    return out


def record(litellm, protocol: str, plan_data: dict) -> list[dict]:
    """Every chunk LiteLLM hands over for one request to the sim in ``protocol``."""
    from asyncfc_cli.runner import register_sim_models
    from asyncfc_cli.sim.server import SimServer

    register_sim_models(litellm)
    plan = make_plan(**plan_data)

    # The tools as asyncfc sends them: Anthropic's with fine-grained streaming on.
    tools = [{**t, "eager_input_streaming": True} for t in TOOLS] if protocol == "anthropic" else TOOLS

    async def run(server):
        response = await litellm.acompletion(
            model=server.litellm_model, api_base=server.base_url, api_key="k", messages=USER, tools=tools,
            stream=True, stream_options={"include_usage": True}, num_retries=0)
        return [_normal(chunk) async for chunk in response]

    with SimServer(plan, protocol=protocol) as server:
        return asyncio.run(run(server))


def recording(protocol: str, kind: str) -> list[dict]:
    return json.loads((CHUNKS / f"{protocol}-{kind}.json").read_text())


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_recordings_are_what_litellm_emits_today(litellm, protocol):
    for kind, plan in (("calls", CALLS_PLAN), ("answer", ANSWER_PLAN)):
        live = record(litellm, protocol, plan)
        path = CHUNKS / f"{protocol}-{kind}.json"
        if os.environ.get("ASYNCFC_RECORD_CHUNKS"):
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(live, indent=1, ensure_ascii=False) + "\n")
        assert live == recording(protocol, kind), f"LiteLLM's {protocol} chunks changed; re-record"


def decode(chunks: list[dict]) -> list[tuple[int, object]]:
    """(chunk position, event) for every event the decoder emits."""
    decoder = StreamDecoder()
    out = [(i, e) for i, chunk in enumerate(chunks) for e in decoder.feed(chunk)]
    return out + [(len(chunks), e) for e in decoder.end()]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_recorded_calls_decode_exactly_and_each_is_ready_at_its_end(protocol):
    chunks = recording(protocol, "calls")
    expected = engine.decide(make_plan(**CALLS_PLAN), USER).calls
    events = decode(chunks)
    ready = [(i, e) for i, e in events if isinstance(e, ToolCallReady)]
    done = events[-1][1]
    assert isinstance(done, StreamDone) and done.finish_reason == "tool_calls"
    assert [(e.id, e.name, e.arguments) for _, e in ready] == [(c.id, c.name, c.arguments) for c in expected]
    assert json.loads(ready[0][1].arguments)["text"] == TRICKY.replace("{{", "{").replace("}}", "}")
    assert done.tool_calls == [e for _, e in ready] and done.content == ""
    assert done.prompt_tokens > 0 and done.completion_tokens == engine.completion_tokens(
        engine.decide(make_plan(**CALLS_PLAN), USER))
    assert sum(isinstance(e, FirstToken) for _, e in events) == 1
    # Call a is reported at the chunk that completes its arguments: before
    # anything of call b has arrived, whatever the format.
    b_first = next(i for i, c in enumerate(chunks) for ch in c["choices"]
                   for tc in ch["delta"].get("tool_calls", []) if tc.get("id") == expected[1].id)
    assert ready[0][0] < b_first
    a_fragments = [i for i, c in enumerate(chunks) for ch in c["choices"]
                   for tc in ch["delta"].get("tool_calls", []) if tc.get("index") == 0]
    assert ready[0][0] == a_fragments[-1]
    # How each format delivers a call, as LiteLLM passes it on.
    if protocol == "gemini":
        assert len(a_fragments) == 1  # whole, in one chunk
    else:
        # A header, then one fragment per 3 characters (Anthropic: with eager
        # input streaming, as asyncfc asks for; without it see test_protocols.py).
        assert len(a_fragments) > 10


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_recorded_answers_decode_exactly(protocol):
    events = [e for _, e in decode(recording(protocol, "answer"))]
    done = events[-1]
    assert done.content == ANSWER_PLAN["final"]["answer"] == "".join(e.text for e in events if isinstance(e, TextDelta))
    assert done.finish_reason == "stop" and done.tool_calls == []
    assert done.completion_tokens == engine.completion_tokens(engine.decide(make_plan(**ANSWER_PLAN), USER))
    assert isinstance(events[0], FirstToken)


def test_the_in_process_sim_and_the_http_path_decode_to_the_same_events(litellm):
    """The MockClock seam reads the same chunks through the same decoder."""
    import trio

    from asyncfc_cli.sim.inprocess import InProcessSim

    plan = make_plan(**CALLS_PLAN)

    async def collect(client):
        async with aclosing(client.stream(list(USER), TOOLS)) as stream:
            return [e async for e in stream if not isinstance(e, decoding.Decoding)]

    in_process = trio.run(collect, InProcessSim(plan))
    http = [e for _, e in decode(recording("openai", "calls"))]
    assert in_process == http


# --- linear assembly -------------------------------------------------------------------


def _counting_loads(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = decoding.json.loads

    def loads(text, *args, **kwargs):
        calls.append(len(text))
        return real(text, *args, **kwargs)

    monkeypatch.setattr(decoding.json, "loads", loads)
    return calls


def test_a_10_mb_argument_is_parsed_once(monkeypatch):
    parses = _counting_loads(monkeypatch)
    arguments = json.dumps({"blob": "x}" * (5 * 1024 * 1024), "end": {"k": [1, 2, {"z": "}"}]}})
    decoder = StreamDecoder()
    decoder.feed({"choices": [{"delta": {"tool_calls": [
        {"index": 0, "id": "c1", "function": {"name": "echo", "arguments": ""}}]}}]})
    ready = []
    for start in range(0, len(arguments), 64):
        piece = arguments[start:start + 64]
        ready += decoder.feed({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}}]})
    assert [c.arguments for c in ready] == [arguments]
    assert len(parses) == 1  # once, when the object closed; a fragment ending in "}" costs nothing


@pytest.mark.parametrize("hostile", ["{}" * 200_000, '{"a": "' + '\\"}' * 200_000, "[" + "{}," * 100_000 + "]"])
def test_hostile_argument_streams_cost_at_most_one_parse(monkeypatch, hostile):
    parses = _counting_loads(monkeypatch)
    asm = decoding.ToolCallAssembler()
    asm.feed([{"index": 0, "id": "c1", "function": {"name": "echo", "arguments": ""}}])
    for start in range(0, len(hostile), 2):
        asm.feed([{"index": 0, "function": {"arguments": hostile[start:start + 2]}}])
    asm.finish()
    assert len(parses) <= 1
    (call,) = asm.done
    # What the model wrote, kept as far as the call stayed open; malformed stays malformed.
    assert hostile.startswith(call.arguments)


TEXTS = ['{"a": "}", "b": "\\"}{", "c": [1, {"d": "\\\\"}], "e": "日本 🎉"}', "{}", ' \n {"x": {"y": {}}} ',
         '{"k": "\\\\\\"}"}']


@pytest.mark.parametrize("text", TEXTS)
def test_the_scanner_finds_the_end_of_an_object_however_it_is_split(text):
    rng = random.Random(text)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(text)), k=min(len(text) - 1, rng.randint(1, 8))))
        pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)])]
        scanner = ObjectScanner()
        closed_at = [i for i, piece in enumerate(pieces) if scanner.feed(piece)]
        last = max(i for i, piece in enumerate(pieces) if piece.strip())
        assert closed_at == [last], (pieces, closed_at)


def test_the_scanner_never_closes_what_is_not_an_object():
    for text in ['"just a string"', "42", "not json {}", '{"open": "never closed}']:
        scanner = ObjectScanner()
        assert not any(scanner.feed(c) for c in text)


# --- a stream of nothing ------------------------------------------------------------------


def test_only_chunks_that_move_the_response_on_count_as_progress():
    """What resets request_timeout: a repeated usage chunk, an empty fragment or a
    second finish reason from a hostile server is silence like an empty delta."""
    usage = {"prompt_tokens": 3, "completion_tokens": 1}
    steps = [
        ({"choices": [{"delta": {}}]}, False),
        ({"choices": [{"delta": {"content": ""}}]}, False),
        ({"choices": [], "usage": usage}, False),
        ({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ""}}]}}]}, False),
        ({"choices": [{"delta": {"reasoning_content": "hm"}}]}, True),
        ({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]}}]}, True),
        ({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]}, True),
        ({"choices": [{"delta": {"content": "x"}}]}, True),
        ({"choices": [{"delta": {}, "finish_reason": "stop"}]}, True),
        ({"choices": [{"delta": {}, "finish_reason": "stop"}]}, False),
        ({"choices": [], "usage": usage}, False),
    ]
    decoder = StreamDecoder()
    assert [(decoder.feed(chunk), decoder.progressed)[1] for chunk, _ in steps] == [p for _, p in steps]


class EndlessServer(LocalServer):
    """An OpenAI-compatible endpoint whose stream never ends: after ``prefix``
    chunks it sends ``filler`` (an empty delta, or an SSE comment) every 20 ms
    until the client hangs up."""

    def __init__(self, filler: bytes, prefix: list[dict] | None = None):
        outer = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                try:
                    for item in prefix or []:
                        self.wfile.write(b"data: " + json.dumps(item).encode() + b"\n\n")
                    while True:
                        self.wfile.write(filler)
                        self.wfile.flush()
                        time.sleep(0.02)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        super().__init__(Handler)


def _chunk(delta: dict) -> dict:
    return {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


EMPTY_DELTA = b"data: " + json.dumps(_chunk({})).encode() + b"\n\n"
COMMENT = b": keep-alive\n\n"


@pytest.mark.parametrize("filler", [EMPTY_DELTA, COMMENT], ids=["empty-deltas", "sse-comments"])
@pytest.mark.parametrize("after_text", [False, True], ids=["from-the-start", "after-some-text"])
async def test_a_stream_of_nothing_is_timed_out_as_silence(litellm, filler, after_text):
    prefix = [_chunk({"role": "assistant", "content": ""}), _chunk({"content": "Hel"})] if after_text else None
    with EndlessServer(filler, prefix) as server:
        with client_for(server.base_url, stream_timeout=0.6, retries=1, backoff=0.01) as client:
            started = time.monotonic()
            with pytest.raises(ModelError) as info:
                async with aclosing(client.stream(list(USER), [])) as stream:
                    async for _ in stream:
                        pass
            took = time.monotonic() - started
        assert "StreamStalled" in str(info.value) and "request_timeout" in str(info.value)
        assert server.requests == 2  # the first try and one retry
        assert took < 10  # bounded by request_timeout, not by the stream (which never ends)
        assert wait_until(lambda: not handler_threads(), 15)  # the connection was really closed


def test_a_stream_of_nothing_exits_1_through_the_cli(tmp_path):
    with EndlessServer(EMPTY_DELTA) as server:
        (tmp_path / "agents.toml").write_text(
            f'[models.m]\nmodel = "openai/endless"\napi_base = "{server.base_url}"\nrequest_timeout = 0.5\n'
            'retries = 1\n[agents.a]\nmodel = "m"\n')
        task = tmp_path / "t.toml"
        task.write_text('agent = "a"\nprompt = "p"\n')
        result = invoke("run", str(task), "--json", "--trace", str(tmp_path / "t.jsonl"),
                        catch_exceptions=False)
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["status"] == "error"
    assert "0.5s (request_timeout)" in report["error"]  # the URL and the setting that ended it
