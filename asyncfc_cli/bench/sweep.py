"""Decode rate x tool latency: where does async stop paying?

One plan shape (a seeded DAG, :func:`~asyncfc_cli.bench.workloads.dag_cases`)
is run in every mode for every pair of decode rate and constant tool latency,
on the in-process simulated model under ``MockClock`` (exact model and tool
time, no wall time spent). Each cell reports the median over the seeds of
async's speedup over sync and over parallel, and its efficiency against the
ideal bound.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from asyncfc_cli.bench.latency import Latency
from asyncfc_cli.bench.runner import InProcess, run_workload
from asyncfc_cli.bench.workloads import Timing, dag_cases

DEFAULT_DECODE = (10.0, 25.0, 50.0, 100.0, 200.0, 400.0)
DEFAULT_LATENCY = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)


def decode_latency_sweep(
    timing: Timing,
    decode_rates: tuple[float, ...] = DEFAULT_DECODE,
    latencies: tuple[float, ...] = DEFAULT_LATENCY,
    shape: dict[str, Any] | None = None,
    seeds: list[int] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    shape = {"width": 3, "depth": 3, "fan_in": 2, "read_share": 0.3, "think": "uniform:0,30", **(shape or {})}
    seeds = seeds or [0, 1, 2]
    cells = []
    for rate in decode_rates:
        for lat in latencies:
            cases = dag_cases(replace(timing, decode_tps=rate), shape["width"], shape["depth"], shape["fan_in"],
                              Latency("const", lat), Latency.parse(shape["think"]), shape["read_share"], seeds)
            result = run_workload("sweep", cases, InProcess(mock=True))
            per_case = []
            for c in result.cases:
                walls = {m: r.wall for m, r in c.runs.items() if r.status == "ok"}
                if len(walls) == 3 and c.ideal is not None:
                    per_case.append((walls, c.ideal.total))
            cell = {
                "decode_tps": rate, "latency": lat,
                "sync": statistics.median(w["sync"] for w, _ in per_case),
                "parallel": statistics.median(w["parallel"] for w, _ in per_case),
                "async": statistics.median(w["async"] for w, _ in per_case),
                "ideal": statistics.median(i for _, i in per_case),
                "speedup_vs_sync": statistics.median(w["sync"] / w["async"] for w, _ in per_case),
                "speedup_vs_parallel": statistics.median(w["parallel"] / w["async"] for w, _ in per_case),
                "parallel_vs_sync": statistics.median(w["sync"] / w["parallel"] for w, _ in per_case),
                "ideal_speedup": statistics.median(w["sync"] / i for w, i in per_case),
                "efficiency": statistics.median(i / w["async"] for w, i in per_case),
                "correct": all(r.correct for c in result.cases for r in c.runs.values()),
            }
            cells.append({k: round(v, 4) if isinstance(v, float) else v for k, v in cell.items()})
            if progress:
                progress(f"sweep: {rate:g} tok/s x {lat:g} s: async {cell['speedup_vs_sync']:.2f}x sync, "
                         f"{cell['speedup_vs_parallel']:.2f}x parallel, efficiency {cell['efficiency']:.2f}")
    return {"shape": shape, "seeds": seeds, "timing": {"ttft": timing.ttft, "prefill_tps": timing.prefill_tps},
            "decode_rates": list(decode_rates), "latencies": list(latencies), "cells": cells}
