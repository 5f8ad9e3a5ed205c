"""Accuracy on any model: BFCL single-turn entries run per mode, judged by the AST checker.

The same entries, tools (seeded latency, deterministic results) and prompt
in each mode; only the execution mode differs, so a difference in accuracy is
the mode's doing. The calls judged are every call the model made in the run
(``wait`` excluded), with the arguments it wrote; see
:mod:`asyncfc_cli.bench.checker` for the rules.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from asyncfc_cli.bench import data as bfcl_data
from asyncfc_cli.bench.latency import Latency
from asyncfc_cli.bench.runner import Transport, run_case
from asyncfc_cli.bench.workloads import Timing, bfcl_cases


def run_accuracy(entries: list[bfcl_data.Entry], transport: Transport, modes: tuple[str, ...], latency: Latency,
                 seed: int = 0, timeout: float = 300.0, max_turns: int = 8, timing: Timing = Timing(),
                 progress: Callable[[str], None] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per category and mode summary rows, per entry and mode detail rows).

    ``timing`` only matters to the simulated model (``--model sim``), which follows
    each entry's ground truth; a real model ignores the plans."""
    cases = bfcl_cases(entries, timing, latency, seed)
    details: list[dict[str, Any]] = []
    for entry, case in zip(entries, cases):
        walls: dict[str, float] = {}
        for mode in modes:
            record = run_case(case, mode, transport, timeout=timeout, max_turns=max_turns)
            if record.status == "ok":
                ok, reason = case.check(record, None)
            else:
                ok, reason = False, f"{record.status}: {record.error}"
            walls[mode] = record.wall
            details.append({
                "entry": entry.id, "category": entry.category, "mode": mode, "status": record.status,
                "correct": ok, "reason": reason or None, "wall": round(record.wall, 4), "requests": record.requests,
                "tokens_in": record.tokens_in, "tokens_out": record.tokens_out,
                "calls": [[c.tool, c.arguments if c.arguments is not None else c.raw_arguments] for c in record.calls],
                "speedup": None,
            })
            if progress:
                progress(f"{entry.id} {mode}: {'correct' if ok else 'WRONG'} in {record.wall:.2f}s"
                         + (f" ({reason})" if reason else ""))
        if "sync" in walls:
            for row in details[-len(modes):]:
                if row["wall"] > 0:
                    row["speedup"] = walls["sync"] / row["wall"]
    rows = []
    for category in dict.fromkeys(e.category for e in entries):
        for mode in modes:
            mine = [d for d in details if d["category"] == category and d["mode"] == mode]
            if not mine:
                continue
            speedups = [d["speedup"] for d in mine if d["speedup"]]
            rows.append({
                "category": category, "mode": mode, "entries": len(mine),
                "correct": sum(d["correct"] for d in mine),
                "accuracy": sum(d["correct"] for d in mine) / len(mine),
                "wall_median": statistics.median(d["wall"] for d in mine),
                "speedup_median": statistics.median(speedups) if speedups else None,
                "requests_median": statistics.median(d["requests"] for d in mine),
                "tokens_in_median": statistics.median(d["tokens_in"] for d in mine),
                "tokens_out_median": statistics.median(d["tokens_out"] for d in mine),
                "agree_with_sync": (sum(1 for d in mine if _verdict(details, d["entry"], "sync") == d["correct"])
                                    if "sync" in modes else None),
            })
    return rows, details


def _verdict(details: list[dict[str, Any]], entry: str, mode: str) -> bool | None:
    return next((d["correct"] for d in details if d["entry"] == entry and d["mode"] == mode), None)
