"""Print RESULTS.md's tables, in Markdown, from results/results.json.

    python benchmarks/tables.py [benchmarks/results/results.json]

So the figures in RESULTS.md are copied from what ``asyncfc bench all`` wrote,
never typed by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def med(stat: dict | None, fmt: str = ".2f") -> str:
    return "-" if not stat else format(stat["median"], fmt)


def main(path: Path) -> None:
    doc = json.loads(path.read_text())
    print(f"<!-- {doc['command']} on {doc['machine']} -->\n")
    print(row("workload", "mode", "correct", "wall s (p10-p90)", "x sync", "ideal x", "efficiency (min)",
              "requests", "tokens in/out", "overhead ms/call (last in response)", "overlap"))
    print(row(*["---"] * 11))
    for w in doc["workloads"]:
        first = True
        for mode, m in w["modes"].items():
            wall, eff = m["wall"], m["efficiency"]
            bold = "**" if mode == "async" else ""
            last = m.get("overhead_last_in_response_ms")
            print(row(
                w["workload"] if first else "", f"{bold}{mode}{bold}",
                f"**{m['correct']}/{m['runs']}**" if m["correct"] < m["runs"] else f"{m['correct']}/{m['runs']}",
                f"{wall['median']:.2f} ({wall['p10']:.2f}-{wall['p90']:.2f})",
                f"{bold}{med(m['speedup'])}{bold}", med(m["ideal_speedup"]),
                f"{bold}{eff['median']:.3f}{bold} ({eff['min']:.2f})",
                med(m["requests"], ".0f"), f"{m['tokens_in']['median']:.0f}/{m['tokens_out']['median']:.0f}",
                f"{med(m['overhead_ms'], '.3f')} ({med(last, '.3f')})", med(m["overlap"]),
            ))
            first = False
    print("\nextra over sync (async):\n")
    print(row("workload", "extra requests", "extra tokens in", "extra tokens out"))
    print(row(*["---"] * 4))
    for w in doc["workloads"]:
        ex = w["modes"]["async"]["extra_vs_sync"]
        print(row(w["workload"], f"{ex['requests']['median']:+g}", f"{ex['tokens_in']['median']:+,.0f}",
                  f"{ex['tokens_out']['median']:+,.0f}"))
    for w in doc["workloads"]:
        if w.get("price_vs_parallel"):
            print("\nno-gain, async - parallel:\n")
            print(row("case", "seconds", "requests", "tokens in", "tokens out"))
            print(row(*["---"] * 5))
            for p in w["price_vs_parallel"]:
                print(row(p["case"], f"{p['extra_seconds']:+.3f}", f"{p['extra_requests']:+d}",
                          f"{p['extra_tokens_in']:+,d}", f"{p['extra_tokens_out']:+d}"))
    if "sweep" in doc:
        sweep = doc["sweep"]
        cells = {(c["decode_tps"], c["latency"]): c for c in sweep["cells"]}
        for key in ("speedup_vs_sync", "speedup_vs_parallel", "efficiency"):
            print(f"\nsweep, {key}:\n")
            print(row("decode tok/s \\ tool s", *(f"{x:g}" for x in sweep["latencies"])))
            print(row(*["---"] * (len(sweep["latencies"]) + 1)))
            for rate in sweep["decode_rates"]:
                print(row(f"{rate:g}", *(f"{cells[(rate, x)][key]:.2f}" for x in sweep["latencies"])))
    if "overhead" in doc:
        print("\noverhead (ms per call):\n")
        print(row("N", "mode", "executor", "all N running", "loop, simulator excluded", "loop with simulator",
                  "dispatch median", "dispatch p90"))
        print(row(*["---"] * 8))
        for r in doc["overhead"]:
            print(row(r["n"], r["mode"], *(f"{r[k]:.3f}" if r.get(k) is not None else "-" for k in (
                "executor_ms_per_call", "executor_gated_ms_per_call", "loop_without_model_ms_per_call",
                "loop_ms_per_call", "dispatch_ms_median", "dispatch_ms_p90"))))
    if "hold" in doc:
        print("\nhold policies (x sync / efficiency / requests):\n")
        policies = doc["hold"]["policies"]
        print(row("workload", *(str(p) for p in policies)))
        print(row(*["---"] * (len(policies) + 1)))
        by = {}
        for r in doc["hold"]["rows"]:
            by.setdefault(r["workload"], {})[str(r["policy"])] = r
        for name, rs in by.items():
            print(row(name, *(f"{rs[str(p)]['speedup_vs_sync']:.3f} / {rs[str(p)]['efficiency']:.3f} / "
                              f"{rs[str(p)]['requests']:g}" for p in policies)))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results" / "results.json")
