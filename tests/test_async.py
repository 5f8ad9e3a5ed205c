"""Async mode against sync mode, in process, with trio's MockClock.

The simulated model runs in the test's own trio loop (``InProcessSim``), so
a plan with seconds of decoding and tool latency finishes in milliseconds of
real time, and trace timestamps are exact.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncfc_cli.agent import AgentRun, agent_settings, run_agent
from asyncfc_cli.latency import LatencyBook
from asyncfc_cli.sim.inprocess import InProcessSim
from asyncfc_cli.sim.plan import SimPlan
from asyncfc_cli.tools import build_tool
from asyncfc_cli.trace import Trace

import proptools

HERE = Path(__file__).parent


def make_tools(timeout: float | None = None) -> dict:
    tools = {}
    for name in ("work", "record", "fail"):
        raw = {"python": f"proptools:{name}", "ordered": name == "record"}
        if timeout is not None:
            raw["timeout"] = timeout
        tools[name] = build_tool(name, raw, HERE)
    return tools


TOOLS = make_tools()


# An instruction that says less than ours: ids come only with handles, and a
# future is used only in a later message (the protocol of the first release).
HANDLES_ONLY = ('Tool calls may return a handle {"future":"f1","status":"pending"}. Pass "$f1" as an '
                'argument to forward a result. Call wait(futures=["f1"]) when you must read a value.')


def run_plan(plan: SimPlan, mode: str, tools: dict | None = None, timeout: float | None = 600,
             instruction: str | None = None, hold: str | float = "latency"):
    """Run a plan on the in-process sim under MockClock; returns (result, trace events)."""
    out = {}

    async def main():
        trace = Trace(clock=trio.current_time)
        run = AgentRun(prompt="go", tools=tools or TOOLS, hold=hold, agent=agent_settings(
            mode=mode, max_turns=60, timeout=timeout, max_concurrency=64, futures_instruction=instruction))
        out["result"] = await run_agent(run, InProcessSim(plan), trace)
        out["events"] = trace.events

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return out["result"], out["events"]


# --- random plans -------------------------------------------------------------------


@st.composite
def plans(draw):
    """A random DAG of calls: forwarded values, values the model must read,
    ordered side effects and failures, with random latencies and decode speeds."""
    run = uuid.uuid4().hex[:8]
    n = draw(st.integers(1, 7))
    steps, failing = [], set()
    for i in range(n):
        sid = f"s{i + 1}"
        earlier = [s["id"] for s in steps]
        picked = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
        inputs, needs = [], []
        for ref in picked:
            kind = draw(st.sampled_from(["forward", "part", "read"]))
            if ref in failing:
                kind = "read"  # a failed value is read by the model, then passed on as data
            if kind == "part":
                inputs.append(f"{{{ref}.key}}")
            else:
                inputs.append(f"{{{ref}}}")
            if kind == "read":
                needs.append(ref)
        tool = draw(st.sampled_from(["work", "work", "work", "record", "fail"]))
        if tool == "fail":
            failing.add(sid)
        latency = draw(st.sampled_from([0.0, 0.05, 0.3, 1.0, 2.5]))
        # Keys that read like references: they must reach the tools as written.
        # (Plan templates double their braces: " ${{f2}}" is the text " ${f2}".)
        key = sid + draw(st.sampled_from(["", " $f1", " ${{f2}}", "\\", " $${{f1.key}}", " \\$f1", " {{x}}"]))
        steps.append({
            "id": sid, "tool": tool, "think": draw(st.integers(0, 30)), "needs": needs,
            "args": {"run": run, "key": key, "latency": latency, "inputs": inputs},
        })
    answer = " | ".join(f"{s['id']}={{{s['id']}}}" for s in steps)
    plan = SimPlan.model_validate({
        "decode_tps": draw(st.sampled_from([20.0, 80.0, 400.0])),
        "ttft": draw(st.sampled_from([0.0, 0.2, 0.5])),
        "prefill_tps": 5000.0,
        "seed": draw(st.integers(0, 1000)),
        "steps": steps,
        "final": {"think": draw(st.integers(0, 20)), "answer": answer},
    })
    # Our instruction (same-message futures, inline waits) or one that says less.
    return plan, run, draw(st.sampled_from([None, HANDLES_ONLY]))


def executed(result) -> Counter:
    """The calls that ran, with the arguments they ran with."""
    return Counter((c.tool, json.dumps(c.arguments, sort_keys=True)) for c in result.calls)


def spans(events, kind):
    begins = {e["call_id"]: e for e in events if e["type"] == f"{kind}_begin"}
    ends = {e["call_id"]: e for e in events if e["type"] == f"{kind}_end"}
    return {k: (begins[k]["t"], ends[k]["t"], begins[k], ends[k]) for k in begins if k in ends}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_async_runs_what_sync_runs_and_keeps_every_rule(drawn):
    plan, run, instruction = drawn
    sync_result, _ = run_plan(plan, "sync")
    sync_log = list(proptools.LOG.pop(run, []))
    result, events = run_plan(plan, "async", instruction=instruction)
    async_log = proptools.LOG.pop(run, [])

    assert sync_result.status == "ok" and result.status == "ok", (result.error, sync_result.error)
    # Same answer, same calls with the same resolved arguments.
    assert result.answer == sync_result.answer
    assert executed(result) == executed(sync_result)
    assert sorted(async_log) == sorted(sync_log)

    tool_spans = spans(events, "tool")
    futures = {e["future"]: e for e in events if e["type"] == "future_created"}
    by_future = {e["future"]: e["call_id"] for e in futures.values()}
    # Every dependency: the dependent starts only after its inputs finished.
    for future in futures.values():
        start = tool_spans[future["call_id"]][0]
        for dep in future["deps"]:
            assert start >= tool_spans[by_future[dep]][1]
    # Ordered tools: issue order kept, each starts after the previous ended.
    ordered = [f["call_id"] for f in futures.values() if f["tool"] == "record"]
    for before, after in zip(ordered, ordered[1:]):
        assert tool_spans[after][0] >= tool_spans[before][1]
    keys_in_issue_order = [c.arguments["key"] for c in result.calls if c.tool == "record"]
    assert [k for k in async_log if k in keys_in_issue_order] == keys_in_issue_order
    # Every outcome reached the model exactly once.
    delivered = Counter(f for e in events if e["type"] == "delivery" for f in e["futures"])
    assert delivered == Counter({f: 1 for f in futures})
    # Nothing outstanding when the answer was accepted.
    summary = events[-1]
    assert summary["type"] == "summary"
    resolved_before_end = {e["future"] for e in events if e["type"] == "future_resolved"}
    assert resolved_before_end == set(futures)


def test_async_overlaps_and_wins_on_independent_calls():
    run = uuid.uuid4().hex[:8]
    steps = [{"id": f"s{i}", "tool": "work", "think": 20,
              "args": {"run": run, "key": f"s{i}", "latency": 1.0}} for i in range(4)]
    plan = SimPlan.model_validate({"decode_tps": 40.0, "ttft": 0.3, "steps": steps,
                                   "final": {"answer": "{s0.key} {s3.key}"}})
    sync_result, _ = run_plan(plan, "sync")
    result, events = run_plan(plan, "async")
    assert result.answer == sync_result.answer == "s0 s3"
    assert result.wall < sync_result.wall - 2.0  # four 1 s tools overlap with decoding
    tool_spans = spans(events, "tool")
    first_model_end = next(e["t"] for e in events if e["type"] == "model_end")
    starts = sorted(s[0] for s in tool_spans.values())
    assert starts[0] < first_model_end  # started mid-stream


def _plan(steps, answer, **extra):
    return SimPlan.model_validate({"decode_tps": 100.0, "ttft": 0.1, "steps": steps,
                                   "final": {"answer": answer}, **extra})


def test_early_answer_is_held_until_results_are_delivered():
    run = uuid.uuid4().hex[:8]
    steps = [{"id": "a", "tool": "work", "args": {"run": run, "key": "a", "latency": 3.0}}]
    plan = _plan(steps, "a is {a.key}", misbehave=["early_answer"])
    result, events = run_plan(plan, "async")
    assert result.status == "ok"
    assert result.answer == "a is a"
    held = [e for e in events if e["type"] == "finish_held"]
    assert held and held[0]["outstanding"] == ["f1"]
    # The premature answer is in the conversation, followed by the delivery and a confirmation turn.
    early = [m for m in result.messages if m["role"] == "assistant" and not m.get("tool_calls")]
    assert "<missing a.key>" in early[0]["content"]
    assert "Confirm your final answer" in result.messages[-2]["content"]


def test_unknown_future_reference_is_an_error_the_model_sees_and_fixes():
    run = uuid.uuid4().hex[:8]
    steps = [
        {"id": "a", "tool": "work", "args": {"run": run, "key": "a", "latency": 2.0}},
        {"id": "b", "tool": "work", "args": {"run": run, "key": "b", "latency": 0.1, "inputs": ["{a}"]}},
    ]
    result, events = run_plan(_plan(steps, "{b.inputs.0.key}", misbehave=["unknown_future"]), "async")
    assert result.status == "ok" and result.answer == "a"
    bad = [c for c in result.calls if c.status == "error"]
    assert len(bad) == 1 and "unknown future $f999" in bad[0].error
    assert proptools.LOG.pop(run) .count("b") == 1  # the bad call never ran; the fixed one did


def test_forwarding_a_failed_future_fails_the_dependent_without_running_it():
    run = uuid.uuid4().hex[:8]
    steps = [
        {"id": "a", "tool": "fail", "args": {"run": run, "key": "a", "latency": 0.5}},
        {"id": "b", "tool": "work", "args": {"run": run, "key": "b", "latency": 0.1, "inputs": ["{a}"]}},
    ]
    result, events = run_plan(_plan(steps, "b said {b}", misbehave=["forward_failed"]), "async")
    assert result.status == "ok"
    b = next(c for c in result.calls if c.tool == "work")
    assert b.status == "error" and "dependency $f1 (fail) failed: ValueError: a failed on purpose" in b.error
    assert proptools.LOG.pop(run) == ["a"]  # b never ran
    assert "dependency $f1" in result.answer  # and the model was told why


def test_malformed_arguments_are_reported_and_the_call_retried():
    run = uuid.uuid4().hex[:8]
    steps = [{"id": "a", "tool": "work", "args": {"run": run, "key": "a", "latency": 0.2}}]
    result, events = run_plan(_plan(steps, "{a.key}", misbehave=["malformed_json"]), "async")
    assert result.status == "ok" and result.answer == "a"
    assert "not valid JSON" in result.calls[0].error
    assert proptools.LOG.pop(run) == ["a"]


def test_tool_timeout_fails_the_future_and_its_dependents():
    run = uuid.uuid4().hex[:8]
    steps = [
        {"id": "a", "tool": "work", "args": {"run": run, "key": "a", "latency": 30.0}},
        {"id": "b", "tool": "work", "args": {"run": run, "key": "b", "latency": 0.1, "inputs": ["{a}"]}},
    ]
    result, events = run_plan(_plan(steps, "{b}"), "async", tools=make_tools(timeout=2.0))
    assert result.status == "ok"
    a, b = result.calls
    assert a.status == "timeout" and "timed out after 2s" in a.error
    assert b.status == "error" and "dependency $f1" in b.error
    assert 1.9 < a.duration < 2.5


def test_run_timeout_cancels_running_futures_and_records_them():
    run = uuid.uuid4().hex[:8]
    steps = [{"id": "a", "tool": "work", "args": {"run": run, "key": "a", "latency": 100.0}}]
    result, events = run_plan(_plan(steps, "{a}"), "async", timeout=5.0)
    assert result.status == "timeout"
    ends = [e for e in events if e["type"] == "tool_end"]
    assert [e["status"] for e in ends] == ["cancelled"]
    assert [e["status"] for e in events if e["type"] == "future_resolved"] == ["cancelled"]
    assert events[-1]["type"] == "summary" and events[-1]["status"] == "timeout"


def test_wait_with_timeout_returns_what_is_ready_and_names_the_rest():
    from asyncfc_cli.executor import Limits
    from asyncfc_cli.futures.scheduler import AsyncScheduler
    from asyncfc_cli.model import ToolCallReady

    run = uuid.uuid4().hex[:8]

    async def respond(sched, *calls):
        for call in calls:
            sched.on_call_ready(call, 1)
        return [json.loads(m["content"]) for m in await sched.after_response()]

    async def main():
        trace = Trace(clock=trio.current_time)
        sched = AsyncScheduler(TOOLS, Limits(TOOLS, 8), trace, LatencyBook.for_tools(TOOLS))
        async with sched.running():
            work = [ToolCallReady(i, f"c_{key}", "work", json.dumps({"run": run, "key": key, "latency": latency}))
                    for i, (key, latency) in enumerate((("fast", 0.1), ("slow", 10.0)))]
            first = await respond(sched, *work, ToolCallReady(2, "w1", "wait",
                                                              '{"futures": ["f1", "$f2"], "timeout": 1}'))
            again = await respond(sched, ToolCallReady(0, "w2", "wait", '{"futures": ["f1", "f7"]}'))
            empty = await respond(sched, ToolCallReady(0, "w3", "wait", '{"futures": []}'))
            nan = await respond(sched, ToolCallReady(0, "w4", "wait", '{"futures": ["f2"], "timeout": NaN}'))
            negative = await respond(sched, ToolCallReady(0, "w5", "wait", '{"futures": ["f2"], "timeout": -1}'))
        return first, again, empty, nan, negative

    first, again, empty, nan, negative = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    # The calls' own messages are handles (the wait delivered f1), the wait's is the values.
    assert first[:2] == [{"future": "f1"}, {"future": "f2"}]
    assert first[2] == {"f1": {"key": "fast", "inputs": []}, "pending": ["f2"]}
    assert again[0]["f1"] == {"note": "already delivered (wait)"}  # never twice
    assert "unknown future" in again[0]["f7"]["error"]
    assert "needs futures" in empty[0]["error"]
    assert "not valid JSON" in nan[0]["error"] and "NaN" in nan[0]["error"]
    assert "finite, non-negative" in negative[0]["error"]


def test_the_futures_instruction_is_async_only_and_can_be_replaced(tmp_path):
    from asyncfc_cli import futures, spec
    from asyncfc_cli.agent import initial_messages

    def system(mode, instruction=None):
        run = AgentRun(prompt="p", tools={}, agent=agent_settings(
            instructions="Be brief.", mode=mode, max_turns=1, timeout=None, max_concurrency=1,
            futures_instruction=instruction))
        return initial_messages(run)[0]["content"]

    assert system("sync") == system("parallel") == "Be brief."
    assert system("async") == "Be brief.\n\n" + futures.INSTRUCTION
    assert system("async", "Use $fN.") == "Be brief.\n\nUse $fN."
    assert system("async", "") == "Be brief."
    # And from agents.toml through to the run.
    (tmp_path / "agents.toml").write_text(
        '[agents.a]\nmodel = "sim"\nfutures_instruction = "Handles are futures."\n')
    (tmp_path / "task.toml").write_text(
        'agent = "a"\nprompt = "p"\n[sim]\n[sim.final]\nanswer = "x"\n')
    from asyncfc_cli.runner import agent_run
    assert agent_run(spec.resolve_run(tmp_path / "task.toml")).futures_instruction == "Handles are futures."


def test_the_hold_waits_a_round_trip_at_most_and_only_for_calls_that_may_finish_within_it():
    run = uuid.uuid4().hex[:8]
    tools = {**TOOLS, "slow": build_tool("slow", {"python": "proptools:work", "expected_latency": 10}, HERE)}
    steps = [
        {"id": "a", "tool": "work", "args": {"run": run, "key": "a", "latency": 0.1}},
        {"id": "b", "tool": "slow", "needs": ["a"], "args": {"run": run, "key": "b", "latency": 0.2}},
        {"id": "c", "tool": "work", "needs": ["b"], "args": {"run": run, "key": "c", "latency": 2.0}},
    ]
    plan = SimPlan.model_validate({"decode_tps": 1000.0, "ttft": 0.5, "steps": steps,
                                   "final": {"answer": "{a.key}{b.key}{c.key}"}})
    # A model that ends its message without saying what it needs (no inline wait).
    result, events = run_plan(plan, "async", tools=tools, instruction=HANDLES_ONLY)
    assert result.answer == "abc"
    via = {f: e["via"] for e in events if e["type"] == "delivery" for f in e["futures"]}
    holds = {tuple(e["futures"]): e for e in events if e["type"] == "hold"}
    # f1: nothing known of `work` yet, and a round trip (~0.5 s) costs more than waiting
    # to see: held, and it finished within the hold, so its value went back directly.
    assert via["f1"] == "result" and holds[("f1",)]["expected"] is None
    assert holds[("f1",)]["held"] < holds[("f1",)]["budget"]
    # f2: `slow` is expected to take 10 s (agents.toml): holding cannot save the round
    # trip, so its handle went back at once.
    assert via["f2"] != "result" and not any("f2" in futures for futures in holds)
    # f3: `work` took 0.1 s before, so it was held, but this call took 2 s: the hold
    # stopped at the budget (one round trip) and a handle went back.
    assert via["f3"] != "result" and holds[("f3",)]["held"] == holds[("f3",)]["budget"]


@st.composite
def reading_plans(draw):
    """Plans whose calls only read earlier results (``needs``), never forward them: the
    model's messages are then the same whether a value came back held or by a wait."""
    run = uuid.uuid4().hex[:8]
    steps = []
    for i in range(draw(st.integers(1, 7))):
        earlier = [s["id"] for s in steps]
        steps.append({
            "id": f"s{i + 1}", "tool": draw(st.sampled_from(["work", "work", "record"])),
            "think": draw(st.integers(0, 30)),
            "needs": draw(st.lists(st.sampled_from(earlier), unique=True, max_size=2)) if earlier else [],
            "args": {"run": run, "key": f"s{i + 1}", "latency": draw(st.sampled_from([0.0, 0.05, 0.3, 1.0, 2.5]))},
        })
    return SimPlan.model_validate({
        "decode_tps": draw(st.sampled_from([20.0, 80.0, 400.0])), "ttft": draw(st.sampled_from([0.0, 0.2, 0.5])),
        "seed": draw(st.integers(0, 1000)), "steps": steps,
        "final": {"think": draw(st.integers(0, 20)), "answer": " | ".join(f"{{{s['id']}.key}}" for s in steps)},
    })


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reading_plans())
def test_the_hold_never_costs_more_than_one_time_to_first_token(plan):
    # A model that ends its messages without saying what it needs: the case holds are for.
    never, _ = run_plan(plan, "async", instruction=HANDLES_ONLY, hold="never")
    held, events = run_plan(plan, "async", instruction=HANDLES_ONLY, hold="latency")
    assert held.status == never.status == "ok" and held.answer == never.answer
    ttfts = [e["ttft"] for e in events if e["type"] == "model_end" and e.get("ttft") is not None]
    assert held.wall <= never.wall + max(ttfts) + 1e-6
    # Each hold stops at its budget, and no budget is more than a time to first token.
    for hold in (e for e in events if e["type"] == "hold"):
        assert hold["held"] <= hold["budget"] + 1e-9 and hold["budget"] <= max(ttfts) + 1e-9
