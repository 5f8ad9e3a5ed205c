"""What ``asyncfc bench`` prints and writes: Rich tables, the JSON document, SVG charts."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

from rich.table import Table

from asyncfc_cli.bench import svg

EFFICIENCY_TARGET = 0.95
OVERHEAD_TARGET_MS = 0.5


def machine() -> dict[str, Any]:
    """The machine and stack the figures come from."""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    versions = {}
    for name in ("trio", "litellm", "typer", "rich", "pydantic"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # a missing distribution is not worth failing a report over
            versions[name] = None
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "python": sys.version.split()[0], **versions, "git": _git()}


def _git() -> str | None:
    """The commit the figures were measured on (``+dirty`` when the tree had changes)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("+dirty" if dirty else "")) or None


def _f(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def _med(stat: dict[str, float] | None, fmt: str = ".2f") -> str:
    return "-" if not stat else format(stat["median"], fmt)


def workload_table(summaries: list[dict[str, Any]], title: str = "") -> Table:
    table = Table(title=title or None, header_style="bold", show_lines=False)
    for name, justify in (("workload", "left"), ("mode", "left"), ("correct", "right"),
                          ("wall s (p10-p90)", "right"), ("x sync", "right"), ("ideal x", "right"),
                          ("efficiency (min)", "right"), ("requests", "right"), ("tokens in/out", "right"),
                          ("overhead ms/call", "right"), ("overlap", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    for s in summaries:
        first = True
        for mode, m in s["modes"].items():
            wall = m["wall"]
            eff = m["efficiency"]
            eff_text = "-" if not eff else f"{eff['median']:.3f} ({eff['min']:.2f})"
            if eff and mode == "async" and eff["median"] < EFFICIENCY_TARGET:
                eff_text = f"[red]{eff_text}[/]"
            oh = m["overhead_ms"]
            oh_text = "-" if not oh else f"{oh['median']:.3f}"
            if oh and oh["median"] >= OVERHEAD_TARGET_MS:
                oh_text = f"[red]{oh_text}[/]"
            correct = f"{m['correct']}/{m['runs']}"
            if m["correct"] < m["runs"]:
                correct = f"[red]{correct}[/]"
            table.add_row(
                f"{s['workload']}\n[dim]{s['transport']}[/]" if first else "",
                mode, correct,
                "-" if not wall else f"{wall['median']:.2f} ({wall['p10']:.2f}-{wall['p90']:.2f})",
                _med(m["speedup"]), _med(m["ideal_speedup"]), eff_text,
                _med(m["requests"], ".0f"),
                "-" if not m["tokens_in"] else f"{m['tokens_in']['median']:.0f}/{m['tokens_out']['median']:.0f}",
                oh_text, _med(m["overlap"]),
            )
            first = False
        table.add_section()
    return table


def sweep_table(sweep: dict[str, Any], key: str = "speedup_vs_sync", title: str = "") -> Table:
    table = Table(title=title or None, header_style="bold")
    table.add_column("decode tok/s \\ tool s", justify="right")
    for lat in sweep["latencies"]:
        table.add_column(f"{lat:g}", justify="right")
    cells = {(c["decode_tps"], c["latency"]): c for c in sweep["cells"]}
    for rate in sweep["decode_rates"]:
        row = []
        for lat in sweep["latencies"]:
            v = cells[(rate, lat)][key]
            row.append(f"[green]{v:.2f}[/]" if v >= 1.0 else f"[red]{v:.2f}[/]")
        table.add_row(f"{rate:g}", *row)
    return table


def overhead_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="executor overhead per call, zero-latency tools, real clock (ms)", header_style="bold")
    for name in ("N", "mode", "executor", "executor, all N running", "loop, model excluded", "loop with sim",
                 "dispatch median", "dispatch p90"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(str(r["n"]), r["mode"], _f(r["executor_ms_per_call"], ".3f"),
                      _f(r["executor_gated_ms_per_call"], ".3f"), _f(r.get("loop_without_model_ms_per_call"), ".3f"),
                      _f(r["loop_ms_per_call"], ".3f"), _f(r["dispatch_ms_median"], ".3f"), _f(r["dispatch_ms_p90"], ".3f"))
    return table


def hold_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="hold policies: a model that ends messages without saying what it needs (MockClock)",
                  header_style="bold")
    for name in ("workload", "policy", "correct", "wall s median", "x sync", "efficiency (min)", "requests",
                 "tokens in", "holds (s)"):
        table.add_column(name, justify="right" if name != "workload" else "left")
    last = None
    for r in rows:
        if last is not None and r["workload"] != last:
            table.add_section()
        policy = r["policy"] if isinstance(r["policy"], str) else f"{r['policy']:g} s"
        table.add_row(r["workload"] if r["workload"] != last else "", policy,
                      f"{r['correct']}/{r['cases']}", f"{r['wall']:.2f}", f"{r['speedup_vs_sync']:.3f}",
                      f"{r['efficiency']:.3f} ({r['efficiency_min']:.2f})", f"{r['requests']:.1f}",
                      f"{r['tokens_in']:.0f}", f"{r['holds']} ({r['held_s']:.2f})")
        last = r["workload"]
    return table


def accuracy_table(rows: list[dict[str, Any]], model: str) -> Table:
    table = Table(title=f"BFCL accuracy on {model}", header_style="bold")
    for name in ("category", "mode", "entries", "correct", "accuracy", "wall s median", "x sync",
                 "requests", "tokens in/out"):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(r["category"], r["mode"], str(r["entries"]), str(r["correct"]), f"{r['accuracy']:.3f}",
                      _f(r["wall_median"]), _f(r.get("speedup_median")), _f(r["requests_median"], ".1f"),
                      f"{r['tokens_in_median']:.0f}/{r['tokens_out_median']:.0f}")
    return table


def protocol_table(rows: list[dict[str, Any]], model: str) -> Table | None:
    """How the model used futures in async mode, per category (asyncfc_cli/bench/protocol_use.py)."""
    mine = [r for r in rows if r.get("protocol")]
    if not mine:
        return None
    table = Table(title=f"futures protocol use on {model} (async mode)", header_style="bold")
    for name in ("category", "entries", "calls", "refs", "bad refs", "waits", "bad waits", "early answers",
                 "handles", "requests vs sync"):
        table.add_column(name, justify="right")
    for r in mine:
        p = r["protocol"]
        table.add_row(r["category"], str(r["entries"]), str(p["calls"]), str(p["refs"]), str(p["bad_refs"]),
                      str(p["waits"]), str(p["bad_waits"]), str(p["early_answers"]), str(p["handles"]),
                      "" if r.get("requests_vs_sync") is None else f"{r['requests_vs_sync']:+d}")
    return table


# --- charts -----------------------------------------------------------------------------


def sweep_svg(sweep: dict[str, Any], command: str) -> str:
    rates, lats = sweep["decode_rates"], sweep["latencies"]
    cells = {(c["decode_tps"], c["latency"]): c for c in sweep["cells"]}
    cell_w, cell_h = 58, 30
    grid_w = cell_w * len(lats)
    parts: list[str] = []
    rows = [f"{r:g}" for r in reversed(rates)]
    cols = [f"{lat:g}" for lat in lats]
    x0, y0 = 100, 80
    for k, (key, title) in enumerate((("speedup_vs_sync", "async speedup over sync"),
                                      ("speedup_vs_parallel", "async speedup over parallel"),
                                      ("efficiency", "async efficiency (ideal / async)"))):
        values = [[cells[(rate, lat)][key] for lat in lats] for rate in reversed(rates)]
        low, high = (0.5, 3.0) if key == "speedup_vs_sync" else (0.5, 1.5)
        if key == "efficiency":
            low, high = 0.6, 1.0
        parts += svg.heatmap(x0 + k * (grid_w + 110), y0, cell_w, cell_h, rows, cols, values, title,
                             "tool latency (s)", "decode rate (tokens/s)", low, high)
    shape = sweep["shape"]
    width = 100 + 3 * grid_w + 2 * 110 + 20
    height = y0 + cell_h * len(rates) + 126
    caption = [
        f"Plan: seeded DAG, width {shape['width']}, depth {shape['depth']}, fan-in {shape['fan_in']}, "
        f"read share {shape['read_share']}, think {shape['think']} tokens per step; constant tool latency.",
        f"Model: ttft {sweep['timing']['ttft']:g} s, prefill {sweep['timing']['prefill_tps']:g} tok/s. "
        f"Median over seeds {sweep['seeds']}; in-process simulated model under MockClock. Green: async wins.",
        f"Made by: {command}",
    ]
    return svg.document(width, height, parts, caption)


def overhead_svg(rows: list[dict[str, Any]], command: str) -> str:
    colours = {"sync": "#7f8c8d", "parallel": "#2980b9", "async": "#27ae60"}
    series = []
    for mode in ("sync", "parallel", "async"):
        pts = [(r["n"], r["executor_ms_per_call"]) for r in rows if r["mode"] == mode]
        if pts:
            series.append((f"executor, {mode}", colours[mode], pts))
    pts = [(r["n"], r["loop_without_model_ms_per_call"]) for r in rows
           if r["mode"] == "async" and r.get("loop_without_model_ms_per_call") is not None]
    if pts:
        series.append(("whole agent loop, simulator CPU excluded, async", "#8e44ad", pts))
    pts = [(r["n"], r["dispatch_ms_median"]) for r in rows if r["mode"] == "async" and r["dispatch_ms_median"]]
    if pts:
        series.append(("dispatch overhead per call (median), async", "#d35400", pts))
    y_max = max(1.0, max(y for _, _, p in series for _, y in p) * 1.1)
    y_max = min(y_max, 3.0)
    parts = svg.line_chart(90, 50, 640, 300, series, "Executor overhead per tool call vs concurrent futures",
                           "futures issued at once (N, log scale)", "ms per call", y_max,
                           hline=(OVERHEAD_TARGET_MS, "target 0.5 ms"))
    return svg.document(800, 450, parts, [
        "Zero-latency tools, real clock (time.perf_counter), median of repeats. "
        "Values above the axis are drawn at its top.",
        f"Made by: {command}",
    ])
