"""The simulated model: plan validation, decisions, rendering, and the real
HTTP path through litellm's OpenAI-compatible streaming."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import random
import socket
import threading
import time

import pytest
from pydantic import ValidationError

from asyncfc_cli.sim import engine
from asyncfc_cli.sim.engine import Call, Text, count_tokens, decide
from asyncfc_cli.sim.protocols.openai import delta_of
from asyncfc_cli.sim.render import render
from asyncfc_cli.sim.plan import Ref, SimPlan, parse_template, template_refs
from asyncfc_cli.sim.server import SimServer
from conftest import wait_until

TRICKY = 'say "hi" \\ back\\slash\nnew line é 日本 \t tab {{braces}}'


def make_plan(**overrides) -> SimPlan:
    data = {
        "decode_tps": 1000.0,
        "ttft": 0.0,
        "steps": [
            {"id": "a", "think": 3, "tool": "fetch", "args": {"url": "x"}},
            {"id": "b", "tool": "fetch", "args": {"url": "y"}},
            {"id": "c", "think": 2, "tool": "sum",
             "args": {"n": "{a.n}", "items": "{a.items}", "label": "n={a.n} of {b}",
                      "whole": "{a}", "bad": "{a.nope.0}"}},
        ],
        "final": {"think": 2, "answer": "Total {c.total}, first {a.items.0}."},
    }
    data.update(overrides)
    return SimPlan.model_validate(data)


def assistant(reply: engine.Reply) -> dict:
    message = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
    return message


def tool_message(call_id: str, value) -> dict:
    content = value if isinstance(value, str) else json.dumps(value)
    return {"role": "tool", "tool_call_id": call_id, "content": content}


USER = [{"role": "system", "content": "You are a test."}, {"role": "user", "content": "go"}]


# --- plan ------------------------------------------------------------------


def test_plan_defaults_ids_by_position():
    plan = SimPlan.model_validate({
        "steps": [{"tool": "t"}, {"tool": "t", "args": {"x": "{s1}"}}],
        "final": {"answer": "{s2}"},
    })
    assert [s.id for s in plan.steps] == ["s1", "s2"]
    assert plan.steps[1].refs() == {"s1"}
    assert plan.decode_tps == 40.0 and plan.chunk_chars == 4


def test_plan_rejects_reference_to_later_step():
    with pytest.raises(ValidationError) as info:
        SimPlan.model_validate({
            "steps": [{"id": "a", "tool": "t", "args": {"x": "{b.key}"}},
                      {"id": "b", "tool": "t"}],
            "final": {"answer": "ok"},
        })
    message = str(info.value)
    assert "step 'a' references 'b'" in message
    assert "valid ids here: (none)" in message


def test_plan_rejects_unknown_need_and_names_valid_ids():
    with pytest.raises(ValidationError) as info:
        SimPlan.model_validate({
            "steps": [{"id": "a", "tool": "t"}, {"id": "b", "tool": "t", "needs": ["zz"]}],
            "final": {"answer": "ok"},
        })
    assert "step 'b' references 'zz'" in str(info.value)
    assert "valid ids here: a" in str(info.value)


def test_plan_rejects_duplicate_id_and_unknown_final_ref_and_extra_keys():
    with pytest.raises(ValidationError, match="duplicate id 'a'"):
        SimPlan.model_validate({
            "steps": [{"id": "a", "tool": "t"}, {"id": "a", "tool": "t"}],
            "final": {"answer": "ok"},
        })
    with pytest.raises(ValidationError, match="final references 'q'"):
        SimPlan.model_validate({"steps": [], "final": {"answer": "{q}"}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        SimPlan.model_validate({"final": {"answer": "ok"}, "speed": 3})
    with pytest.raises(ValidationError, match="lone"):
        SimPlan.model_validate({"final": {"answer": "a } b"}})


def test_template_parsing():
    assert template_refs("{a} and {b.k.0} {{not}} }}") == {"a", "b"}
    assert parse_template("x {a.k 1.0} {{y}}") == ["x ", Ref("a", ("k 1", "0")), " {y}"]
    with pytest.raises(ValueError, match="bad reference"):
        parse_template("{count words}")


# --- decide ----------------------------------------------------------------


def test_count_tokens():
    assert [count_tokens(t) for t in ["", "a", "abcd", "abcde"]] == [0, 1, 1, 2]


@pytest.mark.parametrize("tokens", [0, 1, 2, 3, 5, 9, 10, 11, 17, 40, 123])
def test_think_text_has_exact_token_count(tokens):
    for seed in range(20):
        text = engine.think_text(tokens, random.Random(seed))
        assert count_tokens(text) == tokens
        assert "  " not in text.strip() or tokens < 12


def test_first_turn_emits_ready_steps_in_order():
    plan = make_plan()
    reply = decide(plan, USER)
    assert reply.finish_reason == "tool_calls"
    kinds = [type(s).__name__ for s in reply.segments]
    assert kinds == ["Text", "Call", "Call"]  # c needs a's value, so it waits
    assert count_tokens(reply.segments[0].text) == 3
    a, b = reply.calls
    assert a.id.startswith("call_a_") and a.name == "fetch"
    assert json.loads(a.arguments) == {"url": "x"}
    assert b.id.startswith("call_b_")
    assert decide(plan, USER).segments == reply.segments  # deterministic


def test_dependent_step_gets_real_values_with_types():
    plan = make_plan()
    first = decide(plan, USER)
    a, b = first.calls
    messages = USER + [
        assistant(first),
        tool_message(a.id, {"n": 3, "items": [10, 20]}),
        tool_message(b.id, "plain text, not JSON"),
    ]
    reply = decide(plan, messages)
    assert reply.finish_reason == "tool_calls"
    (c,) = reply.calls
    assert c.id.startswith("call_c_")
    assert json.loads(c.arguments) == {
        "n": 3,
        "items": [10, 20],
        "label": "n=3 of plain text, not JSON",
        "whole": {"n": 3, "items": [10, 20]},
        "bad": "<missing a.nope.0>",
    }
    messages += [assistant(reply), tool_message(c.id, {"total": 30})]
    final = decide(plan, messages)
    assert final.finish_reason == "stop"
    assert final.tool_calls == []
    assert final.content.endswith("Total 30, first 10.")
    assert count_tokens(final.segments[0].text) == 2


def test_error_results_are_values():
    plan = SimPlan.model_validate({
        "steps": [{"id": "a", "tool": "t"}, {"id": "b", "tool": "t", "args": {"e": "{a.error}"}}],
        "final": {"answer": "{b}"},
    })
    first = decide(plan, USER)
    messages = USER + [assistant(first), tool_message(first.calls[0].id, {"error": "boom"})]
    assert json.loads(decide(plan, messages).calls[0].arguments) == {"e": "boom"}


def test_missing_result_is_reported_as_text():
    plan = make_plan()
    first = decide(plan, USER)
    a, b = first.calls
    messages = USER + [assistant(first), tool_message(b.id, "ok")]
    reply = decide(plan, messages)
    assert reply.finish_reason == "stop"
    assert not reply.tool_calls
    assert "a (" + a.id + ")" in reply.content


def test_foreign_tool_calls_are_ignored():
    plan = make_plan()
    messages = USER + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_zz_1", "type": "function", "function": {"name": "x", "arguments": "{}"}},
            {"id": "toolu_1", "type": "function", "function": {"name": "x", "arguments": "{}"}},
        ]},
        tool_message("call_zz_1", 1),
        tool_message("toolu_1", 2),
    ]
    assert [c.name for c in decide(plan, messages).calls] == ["fetch", "fetch"]


def test_needs_gate_a_step_without_being_referenced():
    plan = SimPlan.model_validate({
        "steps": [{"id": "w", "tool": "write"}, {"id": "r", "tool": "read", "needs": ["w"]}],
        "final": {"answer": "done", "needs": ["r"]},
    })
    first = decide(plan, USER)
    assert [c.name for c in first.calls] == ["write"]
    messages = USER + [assistant(first), tool_message(first.calls[0].id, "ok")]
    second = decide(plan, messages)
    assert [c.name for c in second.calls] == ["read"]
    messages += [assistant(second)]
    assert "r (" in decide(plan, messages).content
    messages += [tool_message(second.calls[0].id, "data")]
    assert decide(plan, messages).content == "done"


def test_token_accounting():
    tools = [{"type": "function", "function": {"name": "t", "parameters": {}}}]
    messages = [{"role": "user", "content": "abcdefgh"},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": "x", "function": {"name": "t", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "x", "content": [{"type": "text", "text": "abc"}]}]
    assert engine.prompt_tokens(messages, tools) == 2 + 1 + 1 + count_tokens(json.dumps(tools))
    reply = engine.Reply([Text("abcde"), Call("call_a_1", "name", '{"k": 1}')], "tool_calls")
    assert engine.completion_tokens(reply) == 2 + 1 + 2


# --- render ----------------------------------------------------------------


def reassemble(choices):
    """Rebuild content and calls from deltas, the way a streaming client does."""
    content, calls, order = [], {}, []
    for choice in choices:
        delta = choice["delta"]
        if delta.get("content"):
            content.append(delta["content"])
            if order[-1:] != ["text"]:
                order.append("text")
        for fragment in delta.get("tool_calls") or ():
            call = calls.setdefault(fragment["index"], {"arguments": "", "fragments": 0})
            if "id" in fragment:
                call.update(id=fragment["id"], name=fragment["function"]["name"],
                            first_args=fragment["function"]["arguments"])
            call["arguments"] += fragment["function"]["arguments"]
            call["fragments"] += 1
            if not order or order[-1] != fragment["index"]:
                order.append(fragment["index"])
    return "".join(content), calls, order


@pytest.mark.parametrize("chunk_chars", [1, 3, 4, 7])
def test_render_fragments_rebuild_exact_arguments(chunk_chars):
    plan = make_plan(chunk_chars=chunk_chars)
    reply = engine.Reply(
        [Text(engine.think_text(3, random.Random(1))),
         Call("call_a_1", "fetch", json.dumps({"s": TRICKY}, ensure_ascii=False)),
         Text("between\n"),
         Call("call_b_2", "sum", json.dumps({"s": TRICKY}))],
        "tool_calls",
    )
    items = list(render(reply, plan, 10, random.Random(0)))
    choices = [c for _, event in items if (c := delta_of(event)) is not None]  # as OpenAI chunks
    assert choices[0]["delta"] == {"role": "assistant", "content": ""}
    assert choices[-1] == {"delta": {}, "finish_reason": "tool_calls"}
    assert all(c["finish_reason"] is None for c in choices[:-1])
    content, calls, order = reassemble(choices)
    assert content == reply.content
    assert order == ["text", 0, "text", 1]
    for index, expected in enumerate(reply.calls):
        call = calls[index]
        assert call["id"] == expected.id and call["name"] == expected.name
        assert call["first_args"] == ""
        assert call["arguments"] == expected.arguments
        assert call["fragments"] == 1 + -(-len(expected.arguments) // chunk_chars)
    every_fragment = [f for c in choices for f in c["delta"].get("tool_calls") or ()]
    assert all("index" in f for f in every_fragment)
    if chunk_chars in (1, 3):
        # the point of small chunks: some fragment cuts an escape sequence
        assert any(f["function"]["arguments"].endswith("\\") for f in every_fragment)


def test_render_timing_follows_decode_rate_and_prefill():
    plan = make_plan(decode_tps=50.0, ttft=0.2, prefill_tps=1000.0)
    reply = engine.Reply([Text("x" * 40), Call("call_a_1", "t", '{"k": "' + "v" * 33 + '"}')],
                         "tool_calls")
    delays = [d for d, _ in render(reply, plan, 500, random.Random(0))]
    assert delays[0] == pytest.approx(0.2 + 0.5)
    decode_tokens = 10 + 1 + 11  # text pieces, call header, argument fragments
    assert sum(delays[1:]) == pytest.approx(decode_tokens / 50.0)
    jittery = make_plan(decode_tps=50.0, ttft=0.2, prefill_tps=1000.0, jitter=0.5)
    noisy = [d for d, _ in render(reply, jittery, 500, random.Random(3))]
    assert noisy != delays
    assert all(0.5 * d <= n <= 1.5 * d for d, n in zip(delays, noisy))
    assert sum(noisy) == pytest.approx(sum(delays), rel=0.25)


# --- HTTP server, raw --------------------------------------------------------


def post(server: SimServer, body, path="/v1/chat/completions"):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn.request("POST", path, data, {"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response, payload


def test_server_non_stream_and_errors():
    plan = make_plan()
    threads_before = threading.active_count()
    with SimServer(plan) as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        response, payload = post(server, {"model": "sim", "messages": USER})
        assert response.status == 200
        body = json.loads(payload)
        assert body["object"] == "chat.completion"
        choice = body["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["fetch", "fetch"]
        assert body["usage"]["total_tokens"] == (
            body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"])
        assert server.requests == 1 and server.last_messages == USER

        response, payload = post(server, b"{not json")
        assert response.status == 400
        error = json.loads(payload)["error"]
        assert "not valid JSON" in error["message"] and error["type"] == "invalid_request_error"
        response, payload = post(server, {"messages": "nope"})
        assert response.status == 400

        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        conn.request("GET", "/v1/models")
        models = json.loads(conn.getresponse().read())
        conn.close()
        assert [m["id"] for m in models["data"]] == ["sim"]

        server.plan = SimPlan.model_validate({"final": {"answer": "swapped"}})
        _, payload = post(server, {"model": "sim", "messages": USER}, path="/chat/completions")
        assert json.loads(payload)["choices"][0]["message"]["content"] == "swapped"
    assert threading.active_count() == threads_before


def test_server_survives_client_hangup_and_stops_fast():
    plan = make_plan(decode_tps=0.25)  # a slow stream, ~45 s to finish
    with SimServer(plan) as server:
        sock = socket.create_connection((server.host, server.port))
        body = json.dumps({"model": "sim", "messages": USER, "stream": True}).encode()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert b"text/event-stream" in sock.recv(4096)
        sock.close()
        server.plan = SimPlan.model_validate({"ttft": 0, "final": {"answer": "still here"}})
        _, payload = post(server, {"model": "sim", "messages": USER})
        assert json.loads(payload)["choices"][0]["message"]["content"] == "still here"
        # leave one stream running in the middle of its sleeps
        server.plan = plan

        def slow_post() -> None:
            # The server stops in the middle: the chunked body never ends.
            with pytest.raises((http.client.IncompleteRead, ConnectionError)):
                post(server, {"messages": USER, "stream": True})

        slow = threading.Thread(target=slow_post)
        slow.start()
        assert wait_until(lambda: server.requests == 3, 30)  # the server is streaming it
        started = time.monotonic()
    assert time.monotonic() - started < 10  # not the stream's ~45 s (wide: a loaded machine is slow)
    slow.join(30)
    assert not slow.is_alive()


# --- through litellm ---------------------------------------------------------


@pytest.fixture(scope="module")
def litellm():
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


TOOLS = [
    {"type": "function", "function": {
        "name": name, "description": "test tool",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": True}}}
    for name in ("fetch", "sum", "echo")
]


def stream_once(litellm, base_url, messages):
    async def run():
        response = await litellm.acompletion(
            model="openai/sim", api_base=base_url, api_key="sim",
            messages=messages, tools=TOOLS, stream=True,
            stream_options={"include_usage": True},
        )
        return [chunk async for chunk in response]

    return asyncio.run(run())


def reassemble_litellm(chunks):
    content, calls, finish, usage = [], {}, None, None
    order, thinking = [], []
    for chunk in chunks:
        if getattr(chunk, "usage", None) is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        delta = choice.delta
        if delta.content:
            content.append(delta.content)
            if order[-1:] != ["text"]:
                order.append("text")
        if getattr(delta, "reasoning_content", None):
            thinking.append(delta.reasoning_content)
            if order[-1:] != ["think"]:
                order.append("think")
        for fragment in delta.tool_calls or ():
            call = calls.setdefault(fragment.index, {"id": None, "name": None, "arguments": ""})
            if fragment.id:
                call["id"] = fragment.id
            if fragment.function.name:
                call["name"] = fragment.function.name
            call["arguments"] += fragment.function.arguments or ""
            if order[-1:] != [fragment.index]:
                order.append(fragment.index)
    return "".join(content), [calls[i] for i in sorted(calls)], finish, usage, order


@pytest.mark.parametrize("chunk_chars", [1, 3])
def test_litellm_stream_rebuilds_exact_calls(litellm, chunk_chars):
    plan = SimPlan.model_validate({
        "decode_tps": 2000.0, "ttft": 0.0, "chunk_chars": chunk_chars,
        "steps": [
            {"id": "a", "think": 3, "tool": "echo", "args": {"text": TRICKY, "n": 1.5}},
            {"id": "b", "think": 2, "tool": "echo", "args": {"list": ["é", "日本", None, True]}},
            {"id": "c", "think": 2, "tool": "echo", "args": {"from_a": "{a}"}},
        ],
        "final": {"think": 2, "answer": "got {c.from_a.text}"},
    })
    with SimServer(plan) as server:
        chunks = stream_once(litellm, server.base_url, USER)
        expected = decide(plan, USER)
        content, calls, finish, usage, order = reassemble_litellm(chunks)
        assert finish == "tool_calls"
        assert order == ["think", 0, "think", 1]  # thinking between the calls arrives in place
        assert (content or None) == expected.content
        assert [(c["id"], c["name"], c["arguments"]) for c in calls] == [
            (c.id, c.name, c.arguments) for c in expected.calls]
        literal = TRICKY.replace("{{", "{").replace("}}", "}")
        assert json.loads(calls[0]["arguments"]) == {"text": literal, "n": 1.5}
        assert usage.prompt_tokens == engine.prompt_tokens(USER, TOOLS)
        assert usage.completion_tokens == engine.completion_tokens(expected)

        built = litellm.stream_chunk_builder(chunks).choices[0].message
        assert (built.content or None) == expected.content
        assert built.reasoning_content == "".join(
            seg.text for seg in expected.segments if getattr(seg, "reasoning", False))
        assert [(c.id, c.function.name, c.function.arguments) for c in built.tool_calls] == [
            (c.id, c.name, c.arguments) for c in expected.calls]


def test_litellm_runs_a_whole_plan(litellm):
    plan = make_plan(decode_tps=2000.0, chunk_chars=3)
    results = {"a": {"n": 3, "items": ["é", "日本"]}, "b": 'quote " and \\', "c": {"total": 7}}
    messages = list(USER)
    seen_calls = []
    with SimServer(plan) as server:
        for _ in range(5):
            content, calls, finish, usage, _ = reassemble_litellm(
                stream_once(litellm, server.base_url, messages))
            assert usage is not None
            if finish == "stop":
                break
            messages.append({"role": "assistant", "content": content or None, "tool_calls": [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]})
            for call in calls:
                step = engine.step_of_call(call["id"], plan)
                seen_calls.append((step, json.loads(call["arguments"])))
                messages.append(tool_message(call["id"], results[step]))
        assert server.requests == 3
        # LiteLLM leaves out a null content; nothing else may differ.
        sent = [{k: v for k, v in m.items() if v is not None} for m in messages]
        assert server.last_messages == sent
    assert [s for s, _ in seen_calls] == ["a", "b", "c"]
    assert seen_calls[2][1] == {
        "n": 3, "items": ["é", "日本"], "label": 'n=3 of quote " and \\',
        "whole": results["a"], "bad": "<missing a.nope.0>",
    }
    assert content.endswith("Total 7, first é.")


def test_litellm_non_stream(litellm):
    plan = make_plan()

    async def run(base_url):
        return await litellm.acompletion(
            model="openai/sim", api_base=base_url, api_key="sim",
            messages=USER, tools=TOOLS)

    with SimServer(plan) as server:
        response = asyncio.run(run(server.base_url))
    message = response.choices[0].message
    expected = decide(plan, USER)
    assert response.choices[0].finish_reason == "tool_calls"
    assert message.content == expected.content
    assert [c.function.arguments for c in message.tool_calls] == [c.arguments for c in expected.calls]


def test_render_never_repeats_a_content_delta():
    plan = make_plan(decode_tps=100.0)
    reply = engine.Reply([Text("=" * 401 + "ab")], "stop")
    items = list(render(reply, plan, 0, random.Random(0)))[1:-1]
    pieces = [event.text for _, event in items]
    assert "".join(pieces) == reply.content
    assert all(a != b for a, b in zip(pieces, pieces[1:]))
    assert sum(d for d, _ in items) == pytest.approx(count_tokens(reply.content) / 100.0)


def test_litellm_streams_a_long_repetitive_answer(litellm):
    # litellm aborts after 100 identical content deltas in a row
    answer = "=" * 800
    plan = SimPlan.model_validate({"decode_tps": 100000.0, "ttft": 0.0,
                                   "final": {"answer": answer}})
    with SimServer(plan) as server:
        content, calls, finish, _, _ = reassemble_litellm(
            stream_once(litellm, server.base_url, USER))
    assert (content, calls, finish) == (answer, [], "stop")


def test_litellm_stream_timing_follows_the_plan(litellm):
    # Seconds of first token and of decoding, so that a loaded machine's delays
    # are small beside them and a stream buffered on the way would still show.
    plan = SimPlan.model_validate({
        "decode_tps": 20.0, "ttft": 0.3, "prefill_tps": 2000.0, "prefix_cache": False,
        "steps": [{"id": "a", "think": 20, "tool": "echo", "args": {"x": "y" * 70}}],
        "final": {"answer": "ok"},
    })
    messages = [{"role": "user", "content": "z" * 400}]
    prompt = engine.prompt_tokens(messages, TOOLS)
    delays = [d for d, _ in render(decide(plan, messages), plan, prompt, random.Random(0))]

    async def run(server):
        times = []
        for plan_now in (make_plan(decode_tps=1000.0), plan):  # the first request pays litellm's lazy setup
            server.plan = plan_now
            times = []
            started = time.monotonic()
            response = await litellm.acompletion(
                model="openai/sim", api_base=server.base_url, api_key="sim",
                messages=messages, tools=TOOLS, stream=True)
            async for _ in response:
                times.append(time.monotonic() - started)
        return times

    with SimServer(plan) as server:
        times = asyncio.run(run(server))
    first, decode = times[0], times[-1] - times[0]
    assert sum(delays[1:]) > 1.5  # the plan is as slow as meant
    # Never faster than the plan; later by at most a second (a buffered stream
    # would show its first token after the whole decode).
    assert delays[0] * 0.9 <= first <= delays[0] + 1.0
    assert sum(delays[1:]) * 0.9 <= decode <= sum(delays[1:]) + 1.0


def test_the_prompt_cache_charges_only_what_an_earlier_request_did_not_prefill():
    cache = engine.PrefixCache()
    first = [{"role": "system", "content": "s" * 400}, {"role": "user", "content": "u" * 40}]
    grown = [*first, {"role": "assistant", "content": "a" * 80}, {"role": "user", "content": "v" * 20}]
    changed = [{"role": "system", "content": "S" * 400}, *grown[1:]]
    whole = engine.prompt_tokens(grown, TOOLS)
    assert cache.prefill_tokens(first, TOOLS) == engine.prompt_tokens(first, TOOLS)  # a cold cache
    assert cache.prefill_tokens(grown, TOOLS) == 20 + 5  # only the two new messages
    assert cache.prefill_tokens(grown, TOOLS) == 0  # the same prompt again
    assert cache.prefill_tokens(changed, TOOLS) == whole - engine.count_tokens(json.dumps(TOOLS))  # from the change on
    assert cache.prefill_tokens(grown, None) == whole - engine.count_tokens(json.dumps(TOOLS))  # tools come first
    plan = SimPlan.model_validate({"final": {"answer": "x"}, "prefix_cache": False})
    assert engine.prefill_tokens(plan, engine.PrefixCache(), grown, TOOLS) == whole  # opted out
