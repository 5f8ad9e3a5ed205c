"""The futures protocol against a model that writes exactly what a test says
(tests/scripted.py), in process under MockClock: same-message forwards and
waits, references that cannot be honoured, duplicate ids, the finish rule's
cut, and the caps on what the model is shown."""

from __future__ import annotations

import json
from pathlib import Path

import trio
import trio.testing

from asyncfc_cli.agent import AgentRun, agent_settings, run_agent
from asyncfc_cli.tools import build_tool
from asyncfc_cli.trace import Trace

import proptools
from scripted import ScriptedModel, tool_contents

HERE = Path(__file__).parent
TOOLS = {name: build_tool(name, {"python": f"proptools:{name}", **extra}, HERE)
         for name, extra in (("work", {}), ("record", {"ordered": True}), ("fail", {}))}
RUN = "futures-tests"


def work(key: str, latency: float = 0.1, inputs: list | None = None, **extra) -> dict:
    return {"run": RUN, "key": key, "latency": latency, **({"inputs": inputs} if inputs is not None else {}), **extra}


def run(model: ScriptedModel, mode: str = "async", **options):
    out = {}

    async def main():
        trace = Trace(clock=trio.current_time)
        tools = options.pop("tools", TOOLS)
        run_fields = {k: options.pop(k) for k in ("latency", "hold") if k in options}
        agent = AgentRun(prompt="go", tools=tools, **run_fields, agent=agent_settings(
            mode=mode, max_turns=options.pop("max_turns", 12), timeout=600, max_concurrency=64, **options))
        out["result"] = await run_agent(agent, model, trace)
        out["events"] = trace.events

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return out["result"], out["events"]


def by_future(result):
    return {c.future: c for c in result.calls}


def test_a_future_is_forwarded_and_waited_on_in_the_message_that_makes_the_call():
    model = ScriptedModel([
        [("call", "work", work("a", 1.0)),
         ("call", "work", work("b", 0.5, ["$f1", "${f1.key}!"])),
         ("call", "wait", {})],
        [("text", "done")],
    ])
    result, events = run(model)
    assert result.status == "ok" and result.requests == 2  # no request per forwarding level
    calls = by_future(result)
    assert calls["f2"].arguments["inputs"] == [{"key": "a", "inputs": []}, "a!"]
    # f2 ran after f1, inside the executor, while the model went on.
    assert calls["f2"].start >= calls["f1"].end
    # wait() read both calls of its message; the values came back in one request.
    wait_reply = tool_contents(model.requests[1])[-1]
    assert set(wait_reply) == {"f1", "f2"}


def test_a_reference_to_a_later_call_of_the_same_message_waits_for_it_to_appear():
    model = ScriptedModel([
        [("call", "work", work("b", 0.1, ["$f2"])),  # f2 is the next call
         ("sleep", 0.5),
         ("call", "work", work("a", 0.2)),
         ("call", "wait", {"futures": ["f1"]})],
        [("text", "done")],
    ])
    result, _ = run(model)
    calls = by_future(result)
    assert calls["f1"].status == "ok" and calls["f1"].arguments["inputs"] == [{"key": "a", "inputs": []}]
    assert calls["f1"].start >= calls["f2"].end


def test_references_that_cannot_be_honoured_are_errors_the_model_sees():
    model = ScriptedModel([
        [("call", "work", work("self", 0.1, ["$f1"])),                 # f1: itself
         ("call", "work", work("x", 0.1, ["$f3"])),                    # f2 -> f3 ...
         ("call", "work", work("y", 0.1, ["$f2"])),                    # ... -> f2: a cycle
         ("call", "work", work("never", 0.1, ["$f99"])),               # f4: no f99 in this message
         ("call", "work", work("typo", 0.1, ["${f1:record}"])),        # f5: f1 is not a record call
         ("call", "work", work("guess", 0.1, ["id $f11"])),            # f6: bare inside text
         ("call", "work", work("zero", 0.1, ["$f0"])),                 # f7: not an id
         ("call", "wait", {})],
        [("text", "done")],
    ])
    result, events = run(model)
    assert result.status == "ok"
    errors = {f: c.error for f, c in by_future(result).items()}
    assert "refers to this call itself" in errors["f1"]
    assert "cyclic reference f3 -> f2 -> f3" in errors["f3"] and "dependency $f3" in errors["f2"]
    assert "no call f99 was made" in errors["f4"]
    assert "names a call of record, but f1 is a call of work" in errors["f5"]
    assert "ambiguous reference '$f11'" in errors["f6"]
    assert "unknown future $f0" in errors["f7"]
    # None of them ran a tool, and every one reached the model.
    ran = proptools.LOG.pop(RUN, [])
    assert not set(ran) & {"self", "x", "y", "never", "typo", "guess", "zero"}
    delivered = [f for e in events if e["type"] == "delivery" for f in e["futures"]]
    assert sorted(delivered) == sorted(errors)


def test_duplicate_call_ids_in_one_response_each_get_their_own_result():
    model = ScriptedModel([
        [("call", "work", work("one", 0.1), "dup"), ("call", "work", work("two", 0.1), "dup"),
         ("call", "wait", {})],
        [("text", "done")],
    ])
    result, _ = run(model)
    assert [c.status for c in result.calls] == ["ok", "ok"]
    replies = [m for m in model.requests[1] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in replies][:2] == ["dup", "dup"]
    values = json.loads(replies[2]["content"])
    assert values["f1"]["key"] == "one" and values["f2"]["key"] == "two"  # nothing lost


def test_an_answer_started_while_a_result_is_unseen_is_cut_short_and_asked_once_more():
    long_answer = "The answer, at length: " + "word " * 200
    model = ScriptedModel([
        [("call", "work", work("slow", 3.0))],   # no wait: the model goes on
        [("text", long_answer)],                 # ...and starts answering before f1 is back
        [("text", "final with slow")],
    ])
    result, events = run(model)
    assert result.status == "ok" and result.answer == "final with slow"
    cut = [e for e in events if e["type"] == "model_end" and e["status"] == "cut"]
    assert len(cut) == 1 and cut[0]["chars"] < 300  # stopped early, not decoded to the end
    assert model.closed_early == 1
    held = [e for e in events if e["type"] == "finish_held"]
    assert held and held[0]["cut"] is True
    # The model never saw its cut answer; it got the result and answered once.
    assert not any(m["role"] == "assistant" and long_answer[:40] in (m.get("content") or "")
                   for m in model.requests[-1])
    assert "slow" in model.requests[-1][-1]["content"]


def test_a_short_early_answer_is_held_and_confirmed():
    model = ScriptedModel([
        [("call", "work", work("slow", 3.0))],
        [("text", "early")],
        [("text", "confirmed")],
    ])
    result, events = run(model)
    assert result.answer == "confirmed"
    assert [e["cut"] for e in events if e["type"] == "finish_held"] == [False]
    assert "Confirm your final answer" in model.requests[-1][-1]["content"]


def test_waits_and_deliveries_show_no_more_than_max_result_chars():
    big = work("big", 0.1, ["x" * 5000])
    model = ScriptedModel([
        [("call", "work", big), ("call", "work", big), ("sleep", 1.0), ("call", "wait", {"futures": ["f1"]})],
        [("sleep", 1.0), ("text", "done")],  # f2 comes by delivery
    ])
    result, events = run(model, max_result_chars=300)
    assert result.status == "ok"
    texts = [m["content"] for r in model.requests for m in r if m["role"] in ("tool", "user")]
    assert all(len(t) < 700 for t in texts), [len(t) for t in texts]
    assert sum("more characters cut" in t for t in texts) >= 2
    # The dependent path still gets the whole value: only what the model sees is cut.
    assert len(json.dumps(by_future(result)["f1"].value)) > 5000


def test_references_inside_objects_inside_lists_are_substituted():
    model = ScriptedModel([
        [("call", "work", work("a", 0.1)),
         ("call", "work", work("b", 0.1, [{"deep": ["$f1.key", {"deeper": "${f1.key}+"}]}])),
         ("call", "wait", {})],
        [("text", "done")],
    ])
    result, _ = run(model)
    assert by_future(result)["f2"].arguments["inputs"] == [{"deep": ["a", {"deeper": "a+"}]}]


def test_escaped_text_reaches_the_tool_as_written():
    model = ScriptedModel([
        [("call", "work", work("a", 0.1)),
         ("call", "work", work("b", 0.1, ["\\${f1} costs $${f1.key} \\$f1"])),
         ("call", "wait", {})],
        [("text", "done")],
    ])
    result, _ = run(model)
    assert by_future(result)["f2"].arguments["inputs"] == ["${f1} costs $a $f1"]
