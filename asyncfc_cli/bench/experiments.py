"""What-if experiments on the agent loop, measured without changing it.

**Hold** (``asyncfc bench hold``): in async mode, when a response ends, wait up
to ``grace`` seconds for the calls it issued to finish before the next request
is built. A call that finishes within the grace goes back as its value instead
of a pending handle, so a model that needs it does not pay a ``wait`` round
trip (a whole request: time to first token, prefill, a few tokens). The cost:
up to ``grace`` of decode that could have overlapped the tools, when the model
had independent work to do. The experiment wraps the model client (it delays
the end of the stream), so the executor and the loop run unmodified; a real
implementation would live in the loop, where it could also learn the grace
from measured tool latencies and time to first token.
"""

from __future__ import annotations

import statistics
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import trio

from asyncfc_cli.bench.runner import InProcess, Probe, ideal_for, run_case
from asyncfc_cli.bench.workloads import Case
from asyncfc_cli.futures import WAIT_TOOL
from asyncfc_cli.model import ModelEvent, StreamDone, ToolCallReady


WAIT_TOKENS = 10  # about what a wait(futures=[...]) call costs to decode


class HoldClient:
    """Delays the end of a response until its calls finish, at most ``grace`` seconds.

    ``grace=None`` is the adaptive policy: hold only when every pending call of the
    response is expected (mean of that tool's earlier durations in the run, else of
    all tools) to finish within what a ``wait`` round trip costs (the run's last time
    to first token plus ``WAIT_TOKENS`` tokens), and then for at most that long.
    """

    def __init__(self, inner: Any, probe: Probe, grace: float | None) -> None:
        self.inner, self.probe, self.grace = inner, probe, grace

    async def stream(self, messages: list[dict], tools: list[dict]) -> AsyncIterator[ModelEvent]:
        issued: list[str] = []
        async with aclosing(self.inner.stream(messages, tools)) as events:
            async for event in events:
                if isinstance(event, ToolCallReady) and event.name != WAIT_TOOL:
                    issued.append(event.id)
                elif isinstance(event, StreamDone) and issued:
                    limit = self.grace if self.grace is not None else self.adaptive(issued)
                    if limit > 0:
                        with trio.move_on_after(limit):
                            await self.probe.ended(issued)
                yield event

    def adaptive(self, issued: list[str]) -> float:
        probe = self.probe
        pending = [c for c in issued if not probe.is_done(c)]
        if not pending or not probe.ttfts or not probe.token_times:
            return 0.0
        round_trip = probe.ttfts[-1] + WAIT_TOKENS * statistics.median(probe.token_times)
        everything = [d for ds in probe.latencies.values() for d in ds]
        now = trio.current_time()
        for call_id in pending:
            tool, began = probe.began.get(call_id, ("", now))
            seen = probe.latencies.get(tool) or everything
            if not seen:
                return 0.0
            if statistics.mean(seen) - (now - began) > round_trip:
                return 0.0
        return round_trip


def holding(grace: float | None) -> Callable[[Any, Probe], Any]:
    return lambda client, probe: HoldClient(client, probe, grace)


def hold_experiment(workloads: list[tuple[str, list[Case]]], graces: tuple[float | None, ...],
                    progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Per workload and grace: async's median time, speedup over sync, efficiency, requests."""
    transport = InProcess(mock=True)
    rows = []
    for name, cases in workloads:
        refs = [(case, run_case(case, "sync", transport)) for case in cases]
        refs = [(c, r) for c, r in refs if r.status == "ok"]
        ideals = {c.id: ideal_for(c, r) for c, r in refs}
        for grace in graces:
            runs = [(c, r, run_case(c, "async", transport, wrap_client=holding(grace) if grace != 0 else None))
                    for c, r in refs]
            ok = [(c, s, a) for c, s, a in runs if a.status == "ok"]
            check = [(c.check or _same)(a, s)[0] for c, s, a in ok]
            row = {
                "workload": name, "grace": "adaptive" if grace is None else grace, "cases": len(ok),
                "correct": sum(check),
                "wall": statistics.median(a.wall for _, _, a in ok),
                "speedup_vs_sync": statistics.median(s.wall / a.wall for _, s, a in ok),
                "efficiency": statistics.median(ideals[c.id].total / a.wall for c, _, a in ok),
                "efficiency_min": min(ideals[c.id].total / a.wall for c, _, a in ok),
                "requests": statistics.median(a.requests for _, _, a in ok),
                "tokens_in": statistics.median(a.tokens_in for _, _, a in ok),
            }
            rows.append(row)
            if progress:
                progress(f"hold {name} grace {row['grace']}: {row['speedup_vs_sync']:.3f}x sync, "
                         f"efficiency {row['efficiency']:.3f}")
    return rows


def _same(record: Any, sync: Any) -> tuple[bool, str]:
    return record.answer == sync.answer, ""
