"""Experiments on the agent loop's choices, measured side by side.

**Hold** (``asyncfc bench hold``): when a response ends with calls still
running and the model did not say what it needs (no ``wait`` in it), async
mode may hand back pending handles at once or hold the next request until
the calls finish. A call that finishes within the hold goes back as its value,
so a model that needs it does not pay a ``wait`` request (time to first token,
prefill, a few tokens); a model with other work to do loses the hold. The
experiment runs a model that ends its messages without saying what it needs
(the futures instruction of the first release: ids come with handles, values
are read with a ``wait`` in a later message) under each policy:

``never``         handles at once (no hold);
``0.05``, ``1``   a fixed hold of that many seconds for every running call;
``latency``       the loop's policy (:class:`asyncfc_cli.futures.hold.LatencyHold`):
                  at most one request's cost, for calls expected to finish within it
                  or not known yet, from this run's durations only;
``learned``       the same, with durations remembered across the workload's
                  earlier runs (one :class:`~asyncfc_cli.latency.LatencyBook` for all,
                  as ``.asyncfc/latency.json`` does across runs of ``asyncfc run``);

and, for reference, ``inline``: the same plans with the current instruction,
where the model says what it needs with an inline ``wait`` and no hold applies.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from asyncfc_cli.bench.runner import InProcess, ideal_for, run_case
from asyncfc_cli.bench.workloads import Case
from asyncfc_cli.latency import LatencyBook

# The first release's instruction: what a model that ends its messages without
# saying what it needs was told (tests/test_async.py uses the same).
HANDLES_ONLY = ('Tool calls may return a handle {"future":"f1","status":"pending"}. Pass "$f1" as an '
                'argument to forward a result. Call wait(futures=["f1"]) when you must read a value.')

POLICIES: tuple[str | float, ...] = ("never", 0.05, 1.0, "latency", "learned", "inline")


def hold_experiment(workloads: list[tuple[str, list[Case]]], policies: tuple[str | float, ...] = POLICIES,
                    progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Per workload and policy: async's median time, speedup over sync, efficiency, requests."""
    transport = InProcess(mock=True)
    rows = []
    for name, cases in workloads:
        refs = [(case, run_case(case, "sync", transport)) for case in cases]
        refs = [(c, r) for c, r in refs if r.status == "ok"]
        ideals = {c.id: ideal_for(c, r) for c, r in refs}
        for policy in policies:
            book = LatencyBook() if policy == "learned" else None
            runs = []
            for case, sync in refs:
                options: dict[str, Any] = {}
                if policy != "inline":
                    options = {"futures_instruction": HANDLES_ONLY,
                               "hold": "latency" if policy == "learned" else policy}
                if book is not None:
                    options["latency"] = book  # built without tools: one history per tool name
                runs.append((case, sync, run_case(case, "async", transport, **options)))
            ok = [(c, s, a) for c, s, a in runs if a.status == "ok"]
            check = [(c.check or _same)(a, s)[0] for c, s, a in ok]
            holds = [e for _, _, a in ok for e in a.events if e["type"] == "hold"]
            row = {
                "workload": name, "policy": policy, "cases": len(ok), "correct": sum(check),
                "wall": statistics.median(a.wall for _, _, a in ok),
                "speedup_vs_sync": statistics.median(s.wall / a.wall for _, s, a in ok),
                "efficiency": statistics.median(ideals[c.id].total / a.wall for c, _, a in ok),
                "efficiency_min": min(ideals[c.id].total / a.wall for c, _, a in ok),
                "requests": statistics.median(a.requests for _, _, a in ok),
                "tokens_in": statistics.median(a.tokens_in for _, _, a in ok),
                "holds": len(holds),
                "held_s": round(sum(e["held"] for e in holds), 6),
            }
            rows.append(row)
            if progress:
                progress(f"hold {name} {policy}: {row['speedup_vs_sync']:.3f}x sync, "
                         f"efficiency {row['efficiency']:.3f}, {row['requests']:g} requests")
    return rows


def _same(record: Any, sync: Any) -> tuple[bool, str]:
    return record.answer == sync.answer, ""
