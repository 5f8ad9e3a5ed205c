"""Accuracy on any model: BFCL single-turn entries run per mode, judged by the AST checker.

The same entries, tools (seeded latency, deterministic results) and prompt
in each mode; only the execution mode differs, so a difference in accuracy is
the mode's doing. The calls judged are every call the model made in the run
(``wait`` excluded), with the arguments it wrote; see
:mod:`asyncfc_cli.bench.checker` for the rules.
"""

from __future__ import annotations

import statistics
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from asyncfc_cli.bench import data as bfcl_data
from asyncfc_cli.bench.latency import Latency
from asyncfc_cli.bench.protocol_use import protocol_use, total
from asyncfc_cli.bench.runner import RunRecord, Transport, run_case, run_case_in
from asyncfc_cli.bench.workloads import Timing, bfcl_cases


def run_accuracy(entries: list[bfcl_data.Entry], transport: Transport, modes: tuple[str, ...], latency: Latency,
                 seed: int = 0, timeout: float = 300.0, max_turns: int = 8, timing: Timing = Timing(),
                 progress: Callable[[str], None] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(per category and mode summary rows, per entry and mode detail rows), one run at a time.

    ``timing`` only matters to the simulated model (``--model sim``), which follows
    each entry's ground truth; a real model ignores the plans."""
    cases = bfcl_cases(entries, timing, latency, seed)
    records: dict[tuple[str, str], RunRecord] = {}
    for entry, case in zip(entries, cases):
        for mode in modes:
            records[entry.id, mode] = record = run_case(case, mode, transport, timeout=timeout, max_turns=max_turns)
            if progress:
                progress(_progress_line(entry, case, mode, record))
    return accuracy_rows(entries, cases, modes, records)


def run_accuracy_batched(entries: list[bfcl_data.Entry], modes: tuple[str, ...], latency: Latency, model: str,
                         api_base: str | None = None, api_key: str | None = None, seed: int = 0,
                         timeout: float = 300.0, max_turns: int = 8, timing: Timing = Timing(), max_runs: int = 8,
                         max_per_model: int | None = 10, progress: Callable[[str], None] | None = None,
                         limits: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """:func:`run_accuracy` through ``asyncfc batch``'s machinery: every entry x mode a
    run of one trio run, at most ``max_runs`` at once, sharing the LiteLLM import and
    its asyncio thread, the model's requests under the per-model limits
    (``max_per_model`` in flight, a shared pause after a 429). ``model`` "sim": the
    simulated model over HTTP, one server per run. Ctrl-C raises KeyboardInterrupt
    once every run has stopped. ``limits``, if given, receives the limits' figures
    per model (:meth:`asyncfc_cli.limits.ModelLimits.stats`)."""
    from asyncfc_cli.batch import in_one_trio_run, run_concurrently

    cases = bfcl_cases(entries, timing, latency, seed)
    records: dict[tuple[str, str], RunRecord] = {}
    jobs = [(entry, case, mode) for entry, case in zip(entries, cases) for mode in modes]

    async def main(shared: Any) -> None:
        async def one(job: tuple[bfcl_data.Entry, Any, str]) -> None:
            entry, case, mode = job
            async with _client(shared, case, model, api_base, api_key, timeout) as client:
                record = await run_case_in(case, mode, client, timeout=timeout, max_turns=max_turns)
            records[entry.id, mode] = record
            if progress:
                progress(_progress_line(entry, case, mode, record))

        try:
            await run_concurrently(jobs, max_runs, one)
        finally:
            if limits is not None:
                limits.update(shared.limits.stats())

    if in_one_trio_run(main, max_per_model, sim=model == "sim"):
        raise KeyboardInterrupt
    return accuracy_rows(entries, cases, modes, records)


@asynccontextmanager
async def _client(shared: Any, case: Any, model: str, api_base: str | None, api_key: str | None,
                  timeout: float) -> AsyncIterator[Any]:
    """A LiteLLM client for one run, gated by the shared per-model limits."""
    import trio

    from asyncfc_cli.limits import model_key
    from asyncfc_cli.model import LiteLLMClient, ModelConfig

    gate = shared.limits.gate(model_key(model, api_base))
    if model != "sim":
        from asyncfc_cli.credentials import KEYLESS

        # A local server (--api-base) without a key gets the placeholder `asyncfc run` sends:
        # LiteLLM's OpenAI client will not send a request without one.
        key = api_key or (KEYLESS if api_base else None)
        config = ModelConfig(model=model, api_base=api_base or None, api_key=key, retries=3,
                             stream_timeout=timeout)
        yield LiteLLMClient(config, shared.loop_thread, gate=gate)
        return
    from asyncfc_cli.runner import sim_config
    from asyncfc_cli.sim.server import SimServer

    # One server per run: a plan's prompt cache and faults count that run's requests.
    server = SimServer(case.plan).__enter__()
    try:
        config = sim_config(server, retries=0, stream_timeout=timeout)
        yield LiteLLMClient(config, shared.loop_thread, gate=gate)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(server.close)


def _progress_line(entry: bfcl_data.Entry, case: Any, mode: str, record: RunRecord) -> str:
    ok, reason = _judge(case, record)
    return f"{entry.id} {mode}: {'correct' if ok else 'WRONG'} in {record.wall:.2f}s" + (f" ({reason})" if reason else "")


def _judge(case: Any, record: RunRecord) -> tuple[bool, str]:
    if record.status == "ok":
        return case.check(record, None)
    return False, f"{record.status}: {record.error}"


def accuracy_rows(entries: list[bfcl_data.Entry], cases: list[Any], modes: tuple[str, ...],
                  records: dict[tuple[str, str], RunRecord]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The summary and detail rows from every entry's run in every mode."""
    details: list[dict[str, Any]] = []
    for entry, case in zip(entries, cases):
        walls: dict[str, float] = {}
        mine = []
        for mode in modes:
            record = records.get((entry.id, mode))
            if record is None:
                continue
            ok, reason = _judge(case, record)
            walls[mode] = record.wall
            mine.append({
                "entry": entry.id, "category": entry.category, "mode": mode, "status": record.status,
                "correct": ok, "reason": reason or None, "wall": round(record.wall, 4), "requests": record.requests,
                "tokens_in": record.tokens_in, "tokens_out": record.tokens_out,
                "calls": [[c.tool, c.arguments if c.arguments is not None else c.raw_arguments] for c in record.calls],
                "speedup": None,
                # How the model used futures (async mode; what a real model does with the protocol).
                "protocol": protocol_use(record.events) if mode == "async" else None,
            })
        if "sync" in walls:
            for row in mine:
                if row["wall"] > 0:
                    row["speedup"] = walls["sync"] / row["wall"]
        details.extend(mine)
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
                "protocol": total(d["protocol"] for d in mine) if mode == "async" else None,
                # Requests beyond sync's on the same entries: what the mode (or the model's use of it) cost.
                "requests_vs_sync": (sum(d["requests"] - (_requests(details, d["entry"], "sync") or 0) for d in mine)
                                     if "sync" in modes else None),
            })
    return rows, details


def _requests(details: list[dict[str, Any]], entry: str, mode: str) -> int | None:
    return next((d["requests"] for d in details if d["entry"] == entry and d["mode"] == mode), None)


def _verdict(details: list[dict[str, Any]], entry: str, mode: str) -> bool | None:
    return next((d["correct"] for d in details if d["entry"] == entry and d["mode"] == mode), None)
