"""What cutting a premature answer saves (the finish rule, asyncfc_cli/futures/delivery.py).

    python benchmarks/finish_cut.py

A simulated model (MockClock, in process; decode 50 tokens/s, ttft 0.25 s)
calls a 2 s tool and starts its answer before the result is back
(``misbehave = ["early_answer"]``), an answer of 30, 150 and 600 words. The
same run twice: with the cut (the stream is closed once the answer has 160
characters and no call) and without it (the answer is decoded whole, held,
and decoded again after the delivery). Prints the wall times and the saving.
"""

from __future__ import annotations

import trio
import trio.testing

from asyncfc_cli.futures import delivery
from asyncfc_cli.agent import AgentRun, agent_settings, run_agent
from asyncfc_cli.sim.inprocess import InProcessSim
from asyncfc_cli.sim.plan import SimPlan
from asyncfc_cli.tools import build_tool
from asyncfc_cli.trace import Trace


def wall(words: int, cut: bool) -> float:
    plan = SimPlan.model_validate({
        "decode_tps": 50.0, "ttft": 0.25, "misbehave": ["early_answer"],
        "steps": [{"id": "a", "tool": "nap", "args": {"seconds": 2.0}}],
        "final": {"answer": "The nap took {a} seconds. " + "word " * words},
    })
    tools = {"nap": build_tool("nap", {"python": "testtools:nap"}, _tests_data())}
    out = {}

    async def main() -> None:
        run = AgentRun(prompt="go", tools=tools, agent=agent_settings(mode="async", max_turns=10, timeout=600,
                                                                max_concurrency=8))
        out["result"] = await run_agent(run, InProcessSim(plan), Trace(clock=trio.current_time))

    saved = delivery.CUT_AFTER_CHARS
    delivery.CUT_AFTER_CHARS = saved if cut else 10**9
    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        delivery.CUT_AFTER_CHARS = saved
    assert out["result"].status == "ok", out["result"].error
    return out["result"].wall


def _tests_data():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "tests" / "data"


def main() -> None:
    print("| answer | decoded twice (no cut) | cut | saved |")
    print("|---|---|---|---|")
    for words in (30, 150, 600):
        whole, cut = wall(words, cut=False), wall(words, cut=True)
        print(f"| {words} words (~{words * 5 // 4} tokens) | {whole:.2f} s | {cut:.2f} s | {whole - cut:.2f} s |")


if __name__ == "__main__":
    main()
