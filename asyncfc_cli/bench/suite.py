"""The benchmark commands' work: build the cases, run them, collect one report.

Each function adds to a :class:`Report`; ``asyncfc bench all`` calls them
all in one invocation (:func:`everything`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from asyncfc_cli.bench import report as rep
from asyncfc_cli.bench.latency import Latency
from asyncfc_cli.safefiles import write_atomically
from asyncfc_cli.bench.runner import (InProcess, Transport, WorkloadResult, case_rows, http_transport, run_case,
                                      run_workload, summarize)
from asyncfc_cli.bench.workloads import Case, Timing

err = Console(stderr=True, highlight=False, soft_wrap=True)


class Report:
    """Everything one invocation measured, printed and written at the end."""

    def __init__(self, command: str, as_json: bool = False, quiet: bool = False) -> None:
        self.command, self.as_json, self.quiet = command, as_json, quiet
        # Tables are wide; a pipe or file gets 180 columns rather than Rich's 80.
        stream = err if as_json else Console(highlight=False)
        self.out = stream if stream.is_terminal else Console(highlight=False, width=180, stderr=as_json)
        self.doc: dict[str, Any] = {"command": command, "machine": rep.machine(), "workloads": []}
        self.notes: list[str] = []

    def progress(self, message: str) -> None:
        if not self.quiet:
            err.print(f"[dim]{message}[/]", markup=True)

    def note(self, message: str) -> None:
        self.notes.append(message)

    def add(self, result: WorkloadResult, settings: dict[str, Any]) -> dict[str, Any]:
        summary = summarize(result)
        summary["settings"] = settings
        summary["rows"] = case_rows(result)
        self.doc["workloads"].append(summary)
        return summary

    def finish(self, write: Path | None = None) -> None:
        if self.doc["workloads"]:
            self.out.print(rep.workload_table(self.doc["workloads"], "sync vs parallel vs async"))
        if "sweep" in self.doc:
            for key, title in (("speedup_vs_sync", "async speedup over sync"),
                               ("speedup_vs_parallel", "async speedup over parallel"),
                               ("efficiency", "async efficiency (ideal / async)")):
                self.out.print(rep.sweep_table(self.doc["sweep"], key, f"{title} (rows: decode tok/s, columns: tool latency s)"))
        if "overhead" in self.doc:
            self.out.print(rep.overhead_table(self.doc["overhead"]))
        if "hold" in self.doc:
            self.out.print(rep.hold_table(self.doc["hold"]["rows"]))
        if "accuracy" in self.doc:
            self.out.print(rep.accuracy_table(self.doc["accuracy"]["rows"], self.doc["accuracy"]["model"]))
            protocol = rep.protocol_table(self.doc["accuracy"]["rows"], self.doc["accuracy"]["model"])
            if protocol is not None:
                self.out.print(protocol)
        for note in self.notes:
            self.out.print(f"note: {note}", markup=False)
        self.doc["notes"] = self.notes
        if write is not None:
            # The summary as readable JSON; one line per case and mode beside it, so
            # re-running shows as a readable diff.
            write.parent.mkdir(parents=True, exist_ok=True)
            summary = {**self.doc, "workloads": [{k: v for k, v in w.items() if k != "rows"}
                                                 for w in self.doc["workloads"]]}
            write_atomically(write, json.dumps(summary, indent=1, ensure_ascii=False, default=str) + "\n")
            cases = write.with_name(write.stem + "-cases.jsonl")
            write_atomically(cases, "".join(json.dumps({"workload": w["workload"], **row}, ensure_ascii=False) + "\n"
                                            for w in self.doc["workloads"] for row in w["rows"]))
            err.print(f"wrote {write} and {cases}", markup=False)
        if self.as_json:
            print(json.dumps(self.doc, indent=1, ensure_ascii=False, default=str))


@contextmanager
def transport_for(name: str, first: Case, report: Report) -> Iterator[Transport]:
    """mock / real (in process) or http (SimServer + LiteLLM, after one warm-up run:
    LiteLLM's first request in a process costs about half a second of setup)."""
    if name == "mock":
        yield InProcess(mock=True)
    elif name == "real":
        yield InProcess(mock=False)
    else:
        report.progress("importing litellm and starting the simulated model's HTTP server")
        with http_transport(first_plan=first.plan) as transport:
            run_case(first, "sync", transport)
            yield transport


def _run(report: Report, name: str, cases: list[Case], modes: tuple[str, ...], transport: str,
         settings: dict[str, Any], repeat: int = 1) -> None:
    if not cases:
        report.note(f"{name}: no cases")
        return
    with transport_for(transport, cases[0], report) as t:
        result = run_workload(name, cases, t, modes, repeat=repeat, progress=report.progress)
    report.add(result, settings)


def _timing_fields(timing: Timing) -> dict[str, Any]:
    return {"decode_tps": timing.decode_tps, "ttft": timing.ttft, "prefill_tps": timing.prefill_tps,
            "prefix_cache": timing.prefix_cache}


def bfcl_timing(report: Report, data_dir: Path, categories: tuple[str, ...], limit: int | None, offset: int,
                modes: tuple[str, ...], timing: Timing, latency: Latency, seeds: list[int], think: int,
                transport: str, label: str = "") -> None:
    from asyncfc_cli.bench import data
    from asyncfc_cli.bench.workloads import bfcl_cases

    for category in categories:
        entries = data.load_single(data_dir, category, limit, offset)
        cases = [c for s in seeds for c in bfcl_cases(entries, timing, latency, s, think)]
        _run(report, f"bfcl-{category}{label}", cases, modes, transport,
             {**_timing_fields(timing), "latency": str(latency), "entries": len(entries), "seeds": seeds,
              "think": think, "data": str(data_dir)})


def multiturn(report: Report, data_dir: Path, limit: int | None, modes: tuple[str, ...], timing: Timing,
              latency: Latency, seeds: list[int], transport: str) -> None:
    from asyncfc_cli.bench.workloads import multiturn_cases

    cases = [c for s in seeds for c in multiturn_cases(data_dir, timing, latency, s, limit)]
    _run(report, "bfcl-multi-turn", cases, modes, transport,
         {**_timing_fields(timing), "latency": str(latency), "sessions": len(cases) // max(1, len(seeds)),
          "seeds": seeds, "data": str(data_dir)})
    if "parallel" in modes:
        report.note("bfcl-multi-turn: parallel mode runs the calls of one message at once and ignores "
                    "`ordered`, so stateful sessions break there (its 'correct' column)")


def dag(report: Report, modes: tuple[str, ...], timing: Timing, width: int, depth: int, fan_in: int,
        read_share: float, latency: Latency, think: Latency, seeds: list[int], transport: str) -> None:
    from asyncfc_cli.bench.workloads import dag_cases

    cases = dag_cases(timing, width, depth, fan_in, latency, think, read_share, seeds)
    _run(report, f"dag w{width} d{depth} f{fan_in}", cases, modes, transport,
         {**_timing_fields(timing), "width": width, "depth": depth, "fan_in": fan_in, "read_share": read_share,
          "latency": str(latency), "think": str(think), "seeds": seeds})


def nogain(report: Report, modes: tuple[str, ...], timing: Timing, latencies: tuple[float, ...],
           transport: str) -> None:
    from asyncfc_cli.bench.workloads import nogain_cases

    cases = nogain_cases(timing, latencies)
    _run(report, "no-gain", cases, modes, transport, {**_timing_fields(timing), "latencies": list(latencies)})
    summary = report.doc["workloads"][-1]
    # The price per case, against parallel: the figure this workload exists to show.
    prices = []
    by_case: dict[str, dict[str, Any]] = {}
    for row in summary["rows"]:
        by_case.setdefault(row["case"], {})[row["mode"]] = row
    for case, runs in by_case.items():
        if "async" in runs and "parallel" in runs:
            a, p = runs["async"], runs["parallel"]
            prices.append({"case": case, "extra_seconds": round(a["wall"] - p["wall"], 4),
                           "extra_requests": a["requests"] - p["requests"],
                           "extra_tokens_in": a["tokens_in"] - p["tokens_in"],
                           "extra_tokens_out": a["tokens_out"] - p["tokens_out"]})
            report.note(f"no-gain {case}: async vs parallel {a['wall'] - p['wall']:+.3f} s, "
                        f"{a['requests'] - p['requests']:+d} requests, {a['tokens_in'] - p['tokens_in']:+d} tokens in, "
                        f"{a['tokens_out'] - p['tokens_out']:+d} out")
    summary["price_vs_parallel"] = prices


def inspect(report: Report, modes: tuple[str, ...], timing: Timing, repo: Path, repeat: int,
            transport: str) -> None:
    from asyncfc_cli.bench.workloads import inspect_cases

    cases = inspect_cases(timing, repo)
    _run(report, "code-inspection", cases, modes, transport,
         {**_timing_fields(timing), "repo": str(repo), "repeat": repeat}, repeat=repeat)


def sweep(report: Report, timing: Timing, rates: tuple[float, ...], latencies: tuple[float, ...],
          seeds: list[int], chart: Path | None) -> None:
    from asyncfc_cli.bench.sweep import decode_latency_sweep

    result = decode_latency_sweep(timing, rates, latencies, seeds=seeds, progress=report.progress)
    report.doc["sweep"] = result
    if chart is not None:
        chart.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(chart, rep.sweep_svg(result, report.command))
        err.print(f"wrote {chart}", markup=False)


def overhead(report: Report, sizes: tuple[int, ...], repeat: int, chart: Path | None) -> None:
    from asyncfc_cli.bench.overhead import concurrency_sweep

    rows = concurrency_sweep(sizes, repeat, progress=report.progress)
    report.doc["overhead"] = rows
    if chart is not None:
        chart.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(chart, rep.overhead_svg(rows, report.command))
        err.print(f"wrote {chart}", markup=False)


def accuracy(report: Report, data_dir: Path, categories: tuple[str, ...], limit: int | None, offset: int,
             modes: tuple[str, ...], latency: Latency, seed: int, model: str, api_base: str | None,
             api_key: str | None, timeout: float, timing: Timing = Timing(), max_runs: int = 8,
             max_per_model: int | None = 10) -> None:
    """Accuracy per mode on ``model``: every entry x mode a run, ``max_runs`` at once,
    through ``asyncfc batch``'s machinery (shared LiteLLM bridge, per-model limits)."""
    from asyncfc_cli.bench import data
    from asyncfc_cli.bench.accuracy import run_accuracy_batched

    entries = [e for c in categories for e in data.load_single(data_dir, c, limit, offset)]
    if not entries:
        report.note("no entries selected")
        return
    report.progress(f"accuracy on {model}: {len(entries)} entries x {', '.join(modes)}, up to {max_runs} runs "
                    f"at once, at most {max_per_model} requests in flight")
    limits: dict[str, Any] = {}
    rows, details = run_accuracy_batched(entries, modes, latency, model, api_base, api_key, seed, timeout,
                                         timing=timing, max_runs=max_runs, max_per_model=max_per_model,
                                         progress=report.progress, limits=limits)
    report.doc["accuracy"] = {"model": model, "api_base": api_base, "latency": str(latency), "rows": rows,
                              "entries": details, "max_runs": max_runs, "max_per_model": max_per_model,
                              "limits": limits}


def hold_workloads(data_dir: Path | None, timing: Timing, limit: int, seed: int) -> list[tuple[str, list[Case]]]:
    """The in-process workloads, small: what the hold experiment runs."""
    from asyncfc_cli.bench import data
    from asyncfc_cli.bench.workloads import bfcl_cases, dag_cases, multiturn_cases, nogain_cases

    out: list[tuple[str, list[Case]]] = []
    if data_dir is not None:
        for category in data.SINGLE_TURN:
            out.append((f"bfcl-{category}", bfcl_cases(data.load_single(data_dir, category, limit), timing,
                                                      Latency.parse("lognormal:0.5,0.6"), seed)))
        out.append(("bfcl-multi-turn", multiturn_cases(data_dir, timing, Latency.parse("lognormal:0.3,0.5"), seed)))
    out.append(("dag w3 d3 f2", dag_cases(timing, 3, 3, 2, Latency.parse("lognormal:0.8,0.5"),
                                          Latency.parse("uniform:0,30"), 0.3, list(range(seed, seed + 10)))))
    out.append(("no-gain", nogain_cases(timing)))
    return out


def hold(report: Report, data_dir: Path | None, timing: Timing, policies: tuple[str | float, ...], limit: int,
         seed: int) -> None:
    from asyncfc_cli.bench.experiments import hold_experiment

    rows = hold_experiment(hold_workloads(data_dir, timing, limit, seed), policies, progress=report.progress)
    report.doc["hold"] = {"policies": list(policies), "rows": rows, **_timing_fields(timing)}


def everything(report: Report, data_dir: Path | None, timing: Timing, seed: int, quick: bool, out: Path) -> None:
    """The whole suite in one invocation (``asyncfc bench all``)."""
    from asyncfc_cli.bench.data import SINGLE_TURN
    from asyncfc_cli.bench.workloads import FIXTURE_REPO

    modes = ("sync", "parallel", "async")
    seeds = [seed] if quick else [seed, seed + 1]
    bfcl_latency = Latency.parse("lognormal:0.5,0.6")
    if data_dir is not None:
        bfcl_timing(report, data_dir, SINGLE_TURN, 4 if quick else 50, 0, modes, timing, bfcl_latency, seeds, 0, "mock")
        bfcl_timing(report, data_dir, ("parallel_multiple",), 2 if quick else 8, 0, modes, timing, bfcl_latency,
                    [seed], 0, "http", label=" (http)")
        multiturn(report, data_dir, 4 if quick else None, modes, timing, Latency.parse("lognormal:0.3,0.5"),
                  seeds, "mock")
    dag(report, modes, timing, 3, 3, 2, 0.3, Latency.parse("lognormal:0.8,0.5"), Latency.parse("uniform:0,30"),
        list(range(seed, seed + (3 if quick else 10))), "mock")
    nogain(report, modes, timing, (0.05, 0.3, 1.0), "mock")
    inspect(report, modes, timing, FIXTURE_REPO, 1 if quick else 3, "http")
    hold(report, data_dir, timing, ("never", 0.05, 1.0, "latency", "learned", "inline"), 5 if quick else 20, seed)
    if quick:
        sweep(report, timing, (25.0, 100.0), (0.0, 0.5, 2.0), [0], out / "sweep.svg")
        overhead(report, (1, 10, 100, 1000), 2, out / "overhead.svg")
    else:
        sweep(report, timing, (10.0, 25.0, 50.0, 100.0, 200.0, 400.0), (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0),
              [0, 1, 2], out / "sweep.svg")
        overhead(report, (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), 5, out / "overhead.svg")
