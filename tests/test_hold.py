"""The async scheduler's decisions, driven directly under trio's MockClock.

``AsyncScheduler`` gets calls as the stream would hand them over
(``on_call_ready``) and is asked, as the agent loop asks it, what goes back
when the response ends (``after_response``) and whether an answer being
streamed should be cut (``wants_cut``). The tools are real in-process Python
tools (tests/proptools.py) that sleep on the mock clock, so every hold is
measured exactly: the hold policies (:mod:`asyncfc_cli.futures.hold`: ``never``, a
fixed number, and the latency policy with its one-TTFT budget per run), the checkpoint that
lets calls started at the very end of a stream run before the response is
answered, and the cut of an answer begun while an outcome is unseen.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import trio
import trio.testing

from asyncfc_cli.agent import AgentRun, agent_settings, run_agent
from asyncfc_cli.decoding import ToolCallReady
from asyncfc_cli.executor import CallRecord, Limits
from asyncfc_cli.futures.delivery import CUT_AFTER_CHARS
from asyncfc_cli.futures.hold import hold_policy
from asyncfc_cli.futures.scheduler import AsyncScheduler
from asyncfc_cli.latency import LatencyBook, RequestCost
from asyncfc_cli.tools import build_tool
from asyncfc_cli.trace import Trace

from scripted import ScriptedModel

HERE = Path(__file__).parent
TOOLS = {
    "work": build_tool("work", {"python": "proptools:work"}, HERE),
    # agents.toml says this one takes 10 s: longer than any hold could cover.
    "slow": build_tool("slow", {"python": "proptools:work", "expected_latency": 10}, HERE),
}


class Loop:
    """One run's scheduler, fed responses the way the agent loop feeds it."""

    def __init__(self, hold: str | float = "latency", ttft: float | None = 0.5) -> None:
        self.trace = Trace(clock=trio.current_time)
        book = LatencyBook.for_tools(TOOLS)
        self.scheduler = AsyncScheduler(TOOLS, Limits(TOOLS, 64), self.trace, book,
                                        hold_policy(hold, book, RequestCost(ttft)))
        self.run = uuid.uuid4().hex[:8]
        self.request = 0

    def call(self, tool: str, latency: float) -> None:
        """A call whose arguments just completed in the stream."""
        index = len(self.scheduler._response)
        args = {"run": self.run, "key": f"r{self.request}c{index}", "latency": latency}
        self.scheduler.on_call_ready(ToolCallReady(index, f"call_{self.request}_{index}", tool, json.dumps(args)),
                                     self.request)

    async def respond(self, *calls: tuple[str, float]) -> tuple[list[str], float]:
        """A response that ends with ``calls`` and no ``wait``: the tool messages that go
        back (a result, or a handle) and how long the next request was held."""
        self.request += 1
        for tool, latency in calls:
            self.call(tool, latency)
        start = trio.current_time()
        messages = await self.scheduler.after_response()
        return [kind(m["content"]) for m in messages], trio.current_time() - start

    def holds(self) -> list[dict]:
        return [e for e in self.trace.events if e["type"] == "hold"]


def kind(content: str) -> str:
    """``handle`` for a pending future's handle, ``result`` for a value, ``error`` for an error."""
    value = json.loads(content)
    if isinstance(value, dict) and set(value) == {"future"}:
        return "handle"
    return "error" if isinstance(value, dict) and "error" in value else "result"


# --- the hold policy -------------------------------------------------------------------------


async def test_hold_never_hands_back_handles_at_once(autojump_clock):
    # The same call the latency policy holds for (below), under `never`: no hold at all.
    loop = Loop(hold="never", ttft=0.5)
    async with loop.scheduler.running():
        back, held = await loop.respond(("work", 0.1))
    assert back == ["handle"] and held == 0 and loop.holds() == []


async def test_the_latency_policy_holds_for_a_call_it_knows_nothing_about(autojump_clock):
    loop = Loop(ttft=0.5)
    async with loop.scheduler.running():
        back, held = await loop.respond(("work", 0.1))
    assert back == ["result"] and abs(held - 0.1) < 1e-9
    [hold] = loop.holds()
    assert hold["futures"] == ["f1"] and hold["expected"] is None and hold["budget"] == 0.5


async def test_a_run_holds_one_time_to_first_token_in_all(autojump_clock):
    loop = Loop(ttft=0.5)
    async with loop.scheduler.running():
        # Nothing known of `work`: held for the whole budget, in vain.
        first, held1 = await loop.respond(("work", 5.0))
        # The budget is spent: the next calls get handles at once, however soon they end.
        second, held2 = await loop.respond(("work", 0.05))
        third, held3 = await loop.respond(("work", 0.0))
    assert first == ["handle"] and abs(held1 - 0.5) < 1e-9
    assert second == third == ["handle"] and held2 == held3 == 0
    assert [h["budget"] for h in loop.holds()] == [0.5]


async def test_what_one_hold_leaves_of_the_budget_is_what_the_next_may_use(autojump_clock):
    loop = Loop(ttft=0.5)
    async with loop.scheduler.running():
        first, held1 = await loop.respond(("work", 0.2))   # held 0.2 s, the value came back
        # `work` took 0.2 s, which fits in the 0.3 s left: held, but this call takes 2 s.
        second, held2 = await loop.respond(("work", 2.0))
        third, held3 = await loop.respond(("work", 0.0))   # nothing left
    assert first == ["result"] and abs(held1 - 0.2) < 1e-9
    assert second == ["handle"] and abs(held2 - 0.3) < 1e-9
    assert third == ["handle"] and held3 == 0
    budgets = [h["budget"] for h in loop.holds()]
    assert len(budgets) == 2 and budgets[0] == 0.5 and abs(budgets[1] - 0.3) < 1e-6
    assert abs(held1 + held2 - 0.5) < 1e-9  # one time to first token in all


async def test_a_call_known_to_take_longer_than_the_budget_is_not_held_for(autojump_clock):
    loop = Loop(ttft=0.5)
    async with loop.scheduler.running():
        # `slow` is expected to take 10 s; `work` is unknown: the hold is for `work` only.
        back, held = await loop.respond(("slow", 0.1), ("work", 0.05))
        alone, held_alone = await loop.respond(("slow", 0.1))
    assert back == ["handle", "result"] and abs(held - 0.05) < 1e-9
    assert loop.holds()[0]["futures"] == ["f2"]
    assert alone == ["handle"] and held_alone == 0 and len(loop.holds()) == 1


async def test_nothing_is_held_before_a_time_to_first_token_is_known(autojump_clock):
    loop = Loop(ttft=None)
    async with loop.scheduler.running():
        back, held = await loop.respond(("work", 0.1))
    assert back == ["handle"] and held == 0 and loop.holds() == []


async def test_a_fixed_hold_waits_up_to_that_long_every_time(autojump_clock):
    # The benchmarks' fixed policy: no budget per run, no estimate, every running call.
    loop = Loop(hold=0.25, ttft=0.5)
    async with loop.scheduler.running():
        results = [await loop.respond(("slow", 1.0)) for _ in range(3)]
        quick = await loop.respond(("slow", 0.1))
    assert all(back == ["handle"] and abs(held - 0.25) < 1e-9 for back, held in results)
    assert quick[0] == ["result"] and abs(quick[1] - 0.1) < 1e-9
    assert [h["budget"] for h in loop.holds()] == [0.25] * 4


# --- the checkpoint before a response is answered --------------------------------------------


async def test_calls_started_at_the_very_end_of_a_stream_run_before_the_response_is_answered():
    # A call of an unknown tool fails in the first step of its task. Issued as the
    # stream's last event, it can only be done when the tool messages are built if
    # the scheduler yields to the calls first (trio then runs the new tasks before
    # or after the loop's, at random): over 40 responses some must come back as
    # their own error, not as a handle. Without that checkpoint none ever does.
    loop = Loop(hold="never")
    kinds = []
    async with loop.scheduler.running():
        for _ in range(40):
            back, held = await loop.respond(("no_such_tool", 0.0))
            kinds += back
    assert "error" in kinds, kinds
    assert set(kinds) <= {"error", "handle"}


# --- cutting an answer begun while an outcome is unseen --------------------------------------


def record(done: bool, delivered: str | None) -> CallRecord:
    r = CallRecord("c", "work", "{}", 1, status="ok" if done else "running", delivered=delivered)
    if done:
        r.resolved.set()
    return r


async def test_an_answer_is_cut_while_any_outcome_is_undelivered_even_a_finished_one():
    loop = Loop()
    s = loop.scheduler
    long = CUT_AFTER_CHARS
    s.records[:] = [record(True, "result")]
    assert not s.wants_cut(long, 0)  # everything seen: the answer may go on
    s.records[:] = [record(True, "result"), record(True, None)]
    assert s.wants_cut(long, 0)  # finished while the model decoded, not seen yet
    s.records[:] = [record(False, None)]
    assert s.wants_cut(long, 0)  # still running
    assert not s.wants_cut(long - 1, 0)  # too short to tell an answer from a preamble
    assert not s.wants_cut(long, 1)  # a message with a call is not an answer
    s.records[:] = []
    assert not s.wants_cut(10 * long, 0)


def test_an_answer_begun_after_a_result_arrived_unseen_is_cut_in_a_run():
    # f1 ends during the model's long thought; the answer that follows is cut, though
    # nothing is running any more: the model has not seen f1's outcome.
    long_answer = "The answer, at length: " + "word " * 200
    model = ScriptedModel([
        [("call", "work", {"run": "cut", "key": "quick", "latency": 1.0})],
        [("sleep", 3.0), ("text", long_answer)],
        [("text", "final with quick")],
    ])
    out = {}

    async def main():
        trace = Trace(clock=trio.current_time)
        agent = AgentRun(prompt="go", tools=TOOLS, hold="never", agent=agent_settings(
            mode="async", max_turns=6, timeout=600, max_concurrency=8))
        out["result"] = await run_agent(agent, model, trace)
        out["events"] = trace.events

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    result, events = out["result"], out["events"]
    assert result.status == "ok" and result.answer == "final with quick"
    cut = [e for e in events if e["type"] == "model_end" and e["status"] == "cut"]
    assert len(cut) == 1 and cut[0]["chars"] < 300 and model.closed_early == 1
    assert [e["cut"] for e in events if e["type"] == "finish_held"] == [True]
