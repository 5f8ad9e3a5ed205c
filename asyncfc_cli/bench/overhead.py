"""Executor overhead per tool call, from 1 to 1,000 concurrent futures, on the real clock.

Two measurements, both with zero-latency tools so nothing but the runner's
own work is timed (``time.perf_counter``, no MockClock):

**executor**  the executor alone, as the agent loop drives it: N calls handed
              to the mode's scheduler (``on_call_ready``, then ``after_response``),
              every call resolved and its tool message built. With ``gate``
              every tool blocks until all N are running, so N futures really are
              outstanding at once. Reported: wall time per call.
**loop**      the whole agent loop (``run_agent``) on a simulated model that
              decodes instantly (:class:`InstantSim`: the sim's decisions, no
              sleeps): one response with N calls, then the answer. Reported: wall
              time per call with and without the simulator's own CPU, and the
              per-call dispatch overhead of :class:`~asyncfc_cli.bench.runner.Probe`.

"Flat" means the per-call figure at N = 1,000 is about the one at N = 10.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from collections.abc import AsyncIterator
from typing import Any

import trio

from asyncfc_cli.decoding import ModelEvent, StreamDecoder, ToolCallReady
from asyncfc_cli import modes as registry
from asyncfc_cli.agent import AgentRun, agent_settings
from asyncfc_cli.executor import Limits
from asyncfc_cli.latency import RequestCost
from asyncfc_cli.sim import engine
from asyncfc_cli.sim.inprocess import chat_encoder
from asyncfc_cli.sim.plan import SimPlan
from asyncfc_cli.sim.render import render
from asyncfc_cli.tools import Tool
from asyncfc_cli.trace import Trace

DEFAULT_SIZES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def zero_tool(gate: trio.Event | None = None, entered: list[int] | None = None,
              all_in: trio.Event | None = None, n: int = 0) -> Tool:
    async def runner(args: dict[str, Any]) -> Any:
        if gate is not None:
            entered.append(1)
            if len(entered) == n:
                all_in.set()
            await gate.wait()
        return {"i": args.get("i")}

    return Tool(name="zero", description="Return at once.", kind="python", runner=runner,
                parameters={"type": "object", "properties": {"i": {"type": "integer"}}})


def executor_once(n: int, mode: str, gate: bool = False) -> float:
    """Seconds per call for N zero-latency calls through the executor alone."""
    out: dict[str, float] = {}

    async def main() -> None:
        gate_event, all_in, entered = (trio.Event(), trio.Event(), []) if gate else (None, None, None)
        tools = {"zero": zero_tool(gate_event, entered, all_in, n)}
        limits = Limits(tools, max(n, 1))
        trace = Trace(clock=trio.current_time)
        calls = [ToolCallReady(i, f"call_{i}", "zero", json.dumps({"i": i})) for i in range(n)]
        run = AgentRun(prompt="", tools=tools, agent=agent_settings(mode=mode, max_turns=1, timeout=None,
                                                              max_concurrency=max(n, 1)))
        scheduler = registry.get(mode).scheduler(run, limits, trace, RequestCost())
        t0 = time.perf_counter()
        async with scheduler.running():
            for call in calls:
                scheduler.on_call_ready(call, 1)
            if mode == "async":
                if gate:
                    await all_in.wait()
                    gate_event.set()
                for record in scheduler.records:
                    await record.resolved.wait()
                messages = await scheduler.after_response()
            elif gate and mode == "parallel":
                async with trio.open_nursery() as nursery:
                    got: list[Any] = []

                    async def respond() -> None:
                        got.extend(await scheduler.after_response())

                    nursery.start_soon(respond)
                    await all_in.wait()
                    gate_event.set()
                messages = got
            else:
                messages = await scheduler.after_response()
        out["per_call"] = (time.perf_counter() - t0) / n
        assert len(messages) == n and all(r.status == "ok" for r in scheduler.records)

    trio.run(main)
    return out["per_call"]


class InstantSim:
    """The simulated model's decisions with no decode time: a checkpoint per chunk instead
    of a sleep. ``model_seconds`` adds up the CPU it spends itself (deciding, rendering,
    assembling), so the loop's own cost can be told apart from the simulator's."""

    def __init__(self, plan: SimPlan) -> None:
        self.plan = plan
        self.model_seconds = 0.0

    async def stream(self, messages: list[dict], tools: list[dict]) -> AsyncIterator[ModelEvent]:
        t0 = time.perf_counter()
        messages = copy.deepcopy(messages)
        reply = engine.decide(self.plan, messages, tools)
        prompt = engine.prompt_tokens(messages, tools)
        encoder = chat_encoder(messages, tools)
        decoder = StreamDecoder()
        chunks: list[list[ModelEvent]] = []
        for _delay, event in render(reply, self.plan, prompt, engine.timing_rng(self.plan, 0)):
            chunks.append([e for chunk in encoder.chunks(event) for e in decoder.feed(chunk)])
        chunks.append(decoder.end())
        self.model_seconds += time.perf_counter() - t0
        for events in chunks:
            await trio.lowlevel.checkpoint()
            for event in events:
                yield event


def loop_once(n: int, mode: str) -> tuple[float, float, list[float]]:
    """Of one agent run with N calls: (wall seconds per call, the same without the
    simulator's own CPU, per-call dispatch overheads)."""
    from asyncfc_cli.bench.runner import run_case
    from asyncfc_cli.bench.workloads import Case, Setup

    steps = [{"id": f"z{i}", "tool": "zero", "args": {"i": i}} for i in range(n)]
    plan = SimPlan.model_validate({"decode_tps": 1e6, "ttft": 0.0, "steps": steps,
                                   "final": {"answer": "done", "needs": [s["id"] for s in steps]}})
    case = Case(id=f"zero-{n}", workload="overhead", plan=plan, prompt="go", latency={s["id"]: 0.0 for s in steps},
                setup=lambda: Setup({"zero": zero_tool()}), max_concurrency=max(n, 1))

    model = InstantSim(plan)

    class Instant:
        name, clock = "in-process, instant model, real clock", "real"

        def client(self, case: Case) -> InstantSim:
            return model

        def run_trio(self, main: Any) -> None:
            trio.run(main)

    record = run_case(case, mode, Instant(), timeout=600)
    assert record.status == "ok", record.error
    return record.wall / n, (record.wall - model.model_seconds) / n, record.overhead


def _quantile(values: list[float], q: float) -> float:
    from asyncfc_cli.bench.runner import _quantile as quantile

    return quantile(values, q)


def concurrency_sweep(sizes: tuple[int, ...] = DEFAULT_SIZES, repeat: int = 5,
                      modes: tuple[str, ...] = registry.NAMES,
                      progress: Any = None) -> list[dict[str, Any]]:
    """Per N and mode: executor-only per-call cost (median of ``repeat``), with and
    without the gate, and the whole loop's per-call wall and dispatch overhead."""
    rows = []
    for n in sizes:
        for mode in modes:
            plain = [executor_once(n, mode) for _ in range(repeat)]
            gated = [executor_once(n, mode, gate=True) for _ in range(repeat)] if mode != "sync" else []
            loops = [loop_once(n, mode) for _ in range(max(1, repeat // 2))]
            dispatch = [o for _, _, over in loops for o in over]
            row = {
                "n": n, "mode": mode,
                "executor_ms_per_call": round(statistics.median(plain) * 1000, 5),
                "executor_gated_ms_per_call": round(statistics.median(gated) * 1000, 5) if gated else None,
                "loop_ms_per_call": round(statistics.median(w for w, _, _ in loops) * 1000, 5),
                "loop_without_model_ms_per_call": round(statistics.median(w for _, w, _ in loops) * 1000, 5),
                "dispatch_ms_median": round(statistics.median(dispatch) * 1000, 5) if dispatch else None,
                "dispatch_ms_p90": round(_quantile(sorted(dispatch), 0.9) * 1000, 5) if dispatch else None,
            }
            rows.append(row)
            if progress:
                progress(f"overhead: N={n} {mode}: executor {row['executor_ms_per_call']:.4f} ms/call, "
                         f"loop {row['loop_without_model_ms_per_call']:.4f} ms/call without the model")
    return rows
