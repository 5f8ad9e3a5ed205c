"""The LiteLLM bridge, from trio, over LiteLLM's real HTTP streaming path:
streamed tool-call assembly, per-call readiness, cancellation, threads,
retries and secrets."""

from __future__ import annotations

import errno
import json
import socket
import threading
import time
from contextlib import aclosing
from types import SimpleNamespace

import pytest
import trio

from asyncfc_cli.model import (
    AsyncioThread,
    FirstToken,
    LiteLLMClient,
    ModelConfig,
    ModelError,
    StreamDone,
    TextDelta,
    ToolCallAssembler,
    ToolCallReady,
)
from asyncfc_cli.sim import engine
from asyncfc_cli.sim.server import SimServer
from conftest import (
    Reply,
    ScriptedServer,
    chunk,
    client_for,
    free_port,
    handler_threads,
    make_plan,
    text_stream,
    wait_until,
)

USER = [{"role": "user", "content": "go"}]
TOOLS = [
    {"type": "function", "function": {"name": name, "description": "test tool",
                                      "parameters": {"type": "object", "properties": {}}}}
    for name in ("echo", "fetch")
]
# Quotes, backslashes, escapes a fragment can split, newlines, tabs, non-ASCII
# of every UTF-8 width; {{ }} are the plan's literal braces.
TRICKY = 'say "hi" \\ back\\slash \\n not-a-newline\nnewline\ttab é ß 日本 🎉 {{braces}} \\u00e9 \'single\''
LITERAL = TRICKY.replace("{{", "{").replace("}}", "}")


async def collect(client: LiteLLMClient, messages=USER, tools=TOOLS) -> list[tuple[float, object]]:
    """Every event of one request with the trio time it arrived."""
    events = []
    async with aclosing(client.stream(list(messages), tools)) as stream:
        async for event in stream:
            events.append((trio.current_time(), event))
    return events


# --- assembly over the wire ----------------------------------------------------------------


@pytest.mark.parametrize("chunk_chars", [1, 3])
async def test_streamed_tool_calls_are_assembled_exactly(litellm, chunk_chars):
    plan = make_plan(chunk_chars=chunk_chars, steps=[
        {"id": "a", "think": 3, "tool": "echo", "args": {"text": TRICKY, "n": 1.5}},
        {"id": "b", "think": 4, "tool": "fetch",
         "args": {"list": ["é", "日本", None, True, "\\\"", "\n"], "nested": {"k": "}}{{"}}},
        {"id": "c", "think": 2, "tool": "echo", "args": {}},
    ])
    expected = engine.decide(plan, USER).calls
    with SimServer(plan) as server, client_for(server.base_url) as client:
        events = [e for _, e in await collect(client)]

    ready = [e for e in events if isinstance(e, ToolCallReady)]
    done = events[-1]
    assert isinstance(done, StreamDone) and done.finish_reason == "tool_calls"
    assert isinstance(events[0], FirstToken) and sum(isinstance(e, FirstToken) for e in events) == 1
    # Each call exactly once, byte for byte what the model wrote, in order.
    assert [(c.index, c.id, c.name, c.arguments) for c in ready] == [
        (i, c.id, c.name, c.arguments) for i, c in enumerate(expected)]
    assert done.tool_calls == ready
    assert json.loads(ready[0].arguments) == {"text": LITERAL, "n": 1.5}
    assert json.loads(ready[1].arguments)["nested"] == {"k": "}{"}
    assert ready[2].arguments == "{}"
    # The thinking between calls is reasoning, not answer text.
    assert done.content == "" and not any(isinstance(e, TextDelta) for e in events)
    reply = engine.decide(plan, USER)
    assert done.prompt_tokens == engine.prompt_tokens(USER, TOOLS)
    assert done.completion_tokens == engine.completion_tokens(reply)


async def test_answer_text_streams_as_deltas(litellm):
    plan = make_plan(final={"think": 5, "answer": "The answer is 42, \"quoted\" — ünïcödé."})
    with SimServer(plan) as server, client_for(server.base_url) as client:
        events = [e for _, e in await collect(client)]
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    done = events[-1]
    assert len(deltas) > 3
    assert "".join(deltas) == done.content == "The answer is 42, \"quoted\" — ünïcödé."
    assert done.finish_reason == "stop" and done.tool_calls == []


@pytest.mark.parametrize("thinks, early", [
    # Call a is complete when b begins; c's 200 think tokens at 400 tok/s
    # keep the stream going for another ~0.5 s after that.
    ({"a": 0, "b": 0, "c": 200}, ["a", "b"]),
    # The only thing after call a is b's thinking (0.5 s) and b itself: a's
    # arguments are complete long before b's header arrives, and a tool
    # started then overlaps the thinking (the point of async mode).
    ({"a": 0, "b": 200}, ["a"]),
], ids=["before_the_stream_ends", "when_its_arguments_end_not_after_the_next_think"])
async def test_a_call_is_ready_as_soon_as_its_arguments_end(litellm, thinks, early):
    plan = make_plan(decode_tps=400.0, steps=[
        {"id": step, "tool": "echo", "args": {"x": x}, **({"think": think} if think else {})}
        for x, (step, think) in enumerate(thinks.items(), 1)])
    with SimServer(plan) as server, client_for(server.base_url) as client:
        events = await collect(client)
    ready = {e.id.split("_")[1]: t for t, e in events if isinstance(e, ToolCallReady)}
    done_at = events[-1][0]
    assert isinstance(events[-1][1], StreamDone)
    for step in early:  # complete well before the end of the stream
        assert ready[step] < done_at - 0.3, (step, ready, done_at)
    assert all(ready[step] <= done_at for step in thinks)  # and every call before its end


# A server that omits tool_calls[].index reaches us through LiteLLM with index 0
# on every call; each new id must still start a new call.
async def test_calls_from_a_server_that_omits_the_index_are_all_kept(litellm):
    def call(call_id, name, arguments):
        return chunk({"tool_calls": [{"id": call_id, "type": "function",
                                      "function": {"name": name, "arguments": arguments}}]})

    stream = [chunk({"role": "assistant", "content": ""}),
              call("call_a", "echo", '{"x": 1}'), call("call_b", "fetch", '{"y": 2}'),
              chunk({}, "tool_calls")]
    with ScriptedServer([Reply(chunks=stream)]) as server, client_for(server.base_url) as client:
        events = [e for _, e in await collect(client)]
    done = events[-1]
    assert [(c.id, c.name, c.arguments) for c in done.tool_calls] == [
        ("call_a", "echo", '{"x": 1}'), ("call_b", "fetch", '{"y": 2}')]


# --- the assembler on hand-built fragments -------------------------------------------------


def frag(index=None, id=None, name=None, arguments=None, as_object=False):
    fn = {k: v for k, v in (("name", name), ("arguments", arguments)) if v is not None}
    data = {k: v for k, v in (("index", index), ("id", id)) if v is not None}
    data["function"] = fn
    if as_object:  # LiteLLM hands over attribute objects, not dicts
        return SimpleNamespace(index=index, id=id, function=SimpleNamespace(name=name, arguments=arguments))
    return data


@pytest.mark.parametrize("as_object", [False, True])
def test_assembler_id_and_name_only_on_the_first_fragment(as_object):
    asm = ToolCallAssembler()
    pieces = ['{"te', 'xt": "a \\', '"b\\', '" ', '\\u00e9"}']
    assert asm.feed([frag(0, "call_1", "echo", "", as_object=as_object)]) == []
    ready = []
    for piece in pieces:
        ready += asm.feed([frag(0, arguments=piece, as_object=as_object)])
    ready += asm.finish()
    assert ready == [ToolCallReady(0, "call_1", "echo", "".join(pieces))]
    assert json.loads(ready[0].arguments) == {"text": 'a "b" é'}
    assert asm.done == ready
    assert asm.finish() == []  # nothing reported twice


def test_assembler_higher_index_completes_lower_ones():
    asm = ToolCallAssembler()
    assert asm.feed([frag(0, "c0", "echo", '{"x": '), frag(0, arguments="1")]) == []
    ready = asm.feed([frag(1, "c1", "fetch", '{"url": "u"')])
    assert ready == [ToolCallReady(0, "c0", "echo", '{"x": 1')]  # malformed stays as written
    ready = asm.feed([frag(1, arguments="}"), frag(2, "c2", "echo", "{}")])
    ready += asm.finish()
    assert [(c.index, c.id, c.arguments) for c in asm.done] == [
        (0, "c0", '{"x": 1'), (1, "c1", '{"url": "u"}'), (2, "c2", "{}")]
    assert ready == asm.done[1:]


def test_assembler_with_content_between_fragments():
    # Chunks without tool-call fragments (role, usage, empty content) keep a
    # call open; answer text after a call means the call is over.
    asm = ToolCallAssembler()
    assert asm.feed([frag(0, "c0", "echo", '{"text": "')]) == []
    assert asm.feed([]) == [] and asm.feed([], "") == []
    assert asm.feed([frag(0, arguments='hi", "n": 1')]) == []
    ready = asm.feed([], "Now the answer: ")
    assert ready == [ToolCallReady(0, "c0", "echo", '{"text": "hi", "n": 1')]
    assert asm.finish() == [] and asm.done == ready


def test_assembler_without_index_continues_the_open_call():
    asm = ToolCallAssembler()
    asm.feed([frag(None, "only", "echo", "")])
    asm.feed([frag(None, arguments='{"a":')])
    asm.feed([frag(None, arguments=" 1}")])
    asm.finish()
    assert [(c.index, c.id, c.name, c.arguments) for c in asm.done] == [(0, "only", "echo", '{"a": 1}')]


def test_assembler_gives_a_call_without_id_a_stable_one():
    asm = ToolCallAssembler()
    asm.feed([frag(0, None, "echo", "{}"), frag(1, None, "fetch", "{}")])
    asm.finish()
    ids = [c.id for c in asm.done]
    assert all(ids) and len(set(ids)) == 2


# --- cancellation and threads ----------------------------------------------------------------


async def test_cancelling_mid_stream_returns_promptly_and_hangs_up(litellm):
    # 10 tokens/s and a long answer: the server would stream for ~25 s.
    plan = make_plan(decode_tps=10.0, final={"answer": "word " * 200})
    baseline = threading.active_count()
    with SimServer(plan) as server:
        with client_for(server.base_url) as client:
            deltas = 0
            with trio.CancelScope() as scope:
                async with aclosing(client.stream(list(USER), [])) as stream:
                    async for event in stream:
                        if isinstance(event, TextDelta):
                            deltas += 1
                            if deltas == 3:
                                cancelled_at = time.monotonic()
                                scope.cancel()
            left_at = time.monotonic()
            assert scope.cancelled_caught and deltas == 3
            assert left_at - cancelled_at < 5  # promptly: not the ~20 s the stream had left (wide: a loaded machine)
            # The server's handler noticed the closed connection and stopped
            # streaming (it writes every 0.1 s), long before the answer's end.
            assert wait_until(lambda: not handler_threads(), 10), handler_threads()
            assert server.requests == 1  # cancelled, not retried
    assert wait_until(lambda: threading.active_count() <= baseline, 10), threading.enumerate()


async def test_no_thread_outlives_the_asyncio_thread(litellm):
    plan = make_plan(final={"answer": "fine"})
    with SimServer(plan) as server:
        baseline = threading.active_count()
        for _ in range(2):
            with AsyncioThread() as loop_thread:
                assert threading.active_count() == baseline + 1
                client = LiteLLMClient(ModelConfig(model="openai/sim", api_base=server.base_url,
                                                   api_key="k", retries=0), loop_thread)
                events = await collect(client, tools=[])
                assert events[-1][1].content == "fine"
            assert loop_thread._thread is not None and not loop_thread._thread.is_alive()
            assert wait_until(lambda: threading.active_count() == baseline, 10), threading.enumerate()


def test_cancelling_while_chunks_are_in_flight_does_not_crash_trio(litellm):
    """Chunks already handed to trio when the consumer leaves must be dropped.

    Regression: they were sent into the closed channel from a ``run_sync_soon``
    callback, whose BrokenResourceError aborted trio with TrioInternalError.

    Deterministic: the consumer blocks trio for 0.1 s after the first event
    (the asyncio thread keeps queueing chunks through ``run_sync_soon``), then
    leaves. Servers and the loop thread are outside ``trio.run`` so they are
    cleaned up even if the run crashes.
    """
    plan = make_plan(decode_tps=5000.0, chunk_chars=1, final={"think": 5000, "answer": "x"})

    async def main(client):
        with trio.CancelScope() as scope:
            async with aclosing(client.stream(list(USER), [])) as stream:
                async for _event in stream:
                    time.sleep(0.1)  # blocks trio, not the asyncio thread
                    scope.cancel()
        await trio.sleep(0.2)  # let queued hand-overs run

    with SimServer(plan) as server, client_for(server.base_url) as client:
        try:
            trio.run(main, client)
        except trio.TrioInternalError as exc:
            pytest.fail(f"trio crashed: {exc.__cause__!r}")


# --- retries ------------------------------------------------------------------------------


async def test_a_refused_connection_to_this_machine_fails_at_once_naming_the_url(litellm):
    # Nothing listens: retrying would only cost the backoff (docs/reliability.md).
    retries = []
    port = free_port()
    with client_for(f"http://127.0.0.1:{port}/v1", retries=2, backoff=5,
                    on_retry=lambda attempt, error: retries.append((attempt, error))) as client:
        with pytest.raises(ModelError) as info:
            await collect(client)
    assert retries == []
    assert str(info.value) == (f"cannot reach the model server at http://127.0.0.1:{port}/v1/chat/completions: "
                               "connection refused (nothing listens at that address)")
    assert info.value.fix is not None and info.value.fix.startswith("start the model server")


def _chain(*errors: BaseException) -> BaseException:
    """``errors[0]`` caused by ``errors[1]`` caused by ... (as LiteLLM wraps an HTTP client's error)."""
    for outer, inner in zip(errors, errors[1:]):
        outer.__cause__ = inner
    return errors[0]


def _connect_error(url: str, cause: BaseException) -> BaseException:
    import httpx

    return _chain(RuntimeError("litellm.InternalServerError: OpenAIException - Connection error."),
                  httpx.ConnectError("Cannot connect", request=httpx.Request("POST", url)), cause)


@pytest.mark.parametrize("cause, reason, permanent, words", [
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "unresolved", True,
     "the host name 'models.example.invalid' does not resolve (Name or service not known)"),
    (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), "unresolved", False,
     "does not resolve (Temporary failure in name resolution)"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"), "refused", False, "connection refused"),
    (TimeoutError(), "timeout", False, "did not answer within 7s (request_timeout)"),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "connect", False,
     "cannot connect (Connection reset by peer)"),
])
def test_why_a_remote_model_server_cannot_be_reached(cause, reason, permanent, words):
    # Read from the exception chain, without the network: a name that does not
    # exist is not retried, a refusal by another machine or a timeout is.
    from asyncfc_cli.model_reach import unreachable
    from asyncfc_cli.redaction import Redactor

    url = "https://models.example.invalid:8443/v1/chat/completions"
    config = ModelConfig(model="openai/x", api_base="https://models.example.invalid:8443/v1", stream_timeout=7,
                         alias="remote")
    failure = unreachable(_connect_error(url, cause), config)
    assert failure is not None and (failure.reason, failure.permanent) == (reason, permanent)
    message = failure.message(Redactor())
    assert url in message and words in message
    assert "[models.remote]" in failure.fix(config)


@pytest.mark.parametrize("host, local", [("127.0.0.1", True), ("127.3.2.1", True), ("localhost", True),
                                         ("[::1]", True), ("10.0.0.7", False), ("example.com", False)])
def test_only_a_refusal_on_this_machine_is_not_retried(host, local):
    from asyncfc_cli.model_reach import unreachable

    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed")
    failure = unreachable(_connect_error(f"http://{host}:8000/v1/chat/completions", refused),
                          ModelConfig(model="openai/x"))
    assert failure is not None and failure.reason == "refused" and failure.permanent is local


def test_a_proxy_that_refuses_is_named_as_the_proxy():
    import aiohttp

    from asyncfc_cli.model_reach import unreachable
    from asyncfc_cli.redaction import Redactor

    connector = aiohttp.ClientConnectorError(SimpleNamespace(host="127.0.0.1", port=3128, ssl=None),
                                             ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"))
    failure = unreachable(_connect_error("https://api.example.invalid/v1/chat/completions", connector),
                          ModelConfig(model="openai/x"))
    assert failure is not None and failure.reason == "proxy"
    assert "connection refused by 127.0.0.1:3128, a proxy" in failure.message(Redactor())
    assert "HTTPS_PROXY" in failure.fix(ModelConfig(model="openai/x"))


def test_an_error_that_is_not_about_reaching_the_server_is_left_alone():
    from asyncfc_cli.model_reach import unreachable

    assert unreachable(ValueError("bad request: unknown parameter"), ModelConfig(model="openai/x")) is None


def test_a_model_error_never_shows_an_object_repr():
    from asyncfc_cli.model import describe_error
    from asyncfc_cli.redaction import Redactor

    exc = RuntimeError("OllamaException - Cannot connect to host 127.0.0.1:9 ssl:<ssl.SSLContext object at "
                       "0x7f63581e0830> [Connect call failed ('127.0.0.1', 9)] via <foo.Bar object at 0xdeadbeef>")
    text = describe_error(exc, Redactor())
    assert text == ("RuntimeError: OllamaException - Cannot connect to host 127.0.0.1:9 "
                    "[Connect call failed ('127.0.0.1', 9)] via foo.Bar")


async def test_a_500_is_retried_and_the_retry_succeeds(litellm):
    retries = []
    with ScriptedServer([Reply.error(500, "overloaded"), Reply(chunks=text_stream("hello"))]) as server:
        with client_for(server.base_url, retries=2, backoff=0.01,
                        on_retry=lambda attempt, error: retries.append((attempt, error))) as client:
            events = [e for _, e in await collect(client)]
    assert len(server.requests) == 2
    assert [attempt for attempt, _ in retries] == [1]
    assert "overloaded" in retries[0][1]
    assert events[-1].content == "hello" and events[-1].finish_reason == "stop"


async def test_a_400_is_not_retried(litellm):
    retries = []
    with ScriptedServer([Reply.error(400, "bad request: unknown parameter"),
                         Reply(chunks=text_stream("never"))]) as server:
        with client_for(server.base_url, retries=3, backoff=0.01,
                        on_retry=lambda attempt, error: retries.append(attempt)) as client:
            with pytest.raises(ModelError) as info:
                await collect(client)
    assert len(server.requests) == 1 and retries == []
    assert "unknown parameter" in str(info.value)


# --- secrets ----------------------------------------------------------------------------------

SECRET = "sk-test-PLANTED-123"


async def test_the_api_key_stays_out_of_errors_and_reprs(litellm):
    config = ModelConfig(model="openai/x", api_base=f"http://127.0.0.1:{free_port()}/v1",
                         api_key=SECRET, retries=1, backoff=0.01)
    assert SECRET not in repr(config) and SECRET not in str(config)
    retries = []
    with AsyncioThread() as loop_thread:
        client = LiteLLMClient(config, loop_thread, on_retry=lambda a, e: retries.append(e))
        with pytest.raises(ModelError) as info:
            await collect(client)
    assert all(SECRET not in e for e in retries)
    assert SECRET not in str(info.value) and SECRET not in repr(info.value)
    assert SECRET not in (info.value.fix or "")


async def test_a_key_echoed_back_by_the_server_is_redacted(litellm):
    # A server (or proxy) that quotes the credentials it got in its error.
    def echo_auth(request):
        return Reply.error(401, f"invalid key: {request['headers'].get('authorization')}")

    with ScriptedServer([echo_auth]) as server:
        with client_for(server.base_url, api_key=SECRET) as client:
            with pytest.raises(ModelError) as info:
                await collect(client)
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {SECRET}"  # it was sent...
    assert SECRET not in str(info.value)  # ...and never shown
    assert "invalid key" in str(info.value)
