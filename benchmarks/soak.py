"""Soak: many tool calls through the real HTTP path, then check nothing was lost.

    LITELLM_LOCAL_MODEL_COST_MAP=True python benchmarks/soak.py --calls 1000 --runs 3

One run is an async-mode agent on the simulated model (served over HTTP,
reached through LiteLLM) issuing ``--calls`` tool calls across many turns:
groups of calls, each group waiting on a value from the previous one, with
seeded random latencies, failures and hanging calls that their timeout
cancels. After each run it checks, from the trace:

- every call has a tool_begin and a tool_end with a final status, and every
  future a future_created and a future_resolved;
- every future's outcome was delivered to the model exactly once;
- the answer was accepted (status ok);

and, across runs, that no thread or child process is left and that memory
(RSS) stays flat. tests/test_soak.py runs a small version of the same.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import tomli_w

HERE = Path(__file__).resolve().parent


def plan(calls: int, seed: int, group: int = 25) -> dict:
    rng = random.Random(seed)
    steps = []
    for i in range(calls):
        sid = f"s{i}"
        roll = rng.random()
        if roll < 0.05:
            tool, args = "fail", {"key": sid, "latency": round(rng.uniform(0, 0.1), 3)}
        elif roll < 0.08:
            tool, args = "hang", {"key": sid}
        else:
            tool, args = "work", {"key": sid, "latency": round(rng.expovariate(20), 3)}
        step = {"id": sid, "tool": tool, "args": args}
        if i % group == 0 and i:
            step["needs"] = [f"s{i - 1}"]  # a new turn: the model reads a value first
        steps.append(step)
    return {
        "decode_tps": 20000.0, "ttft": 0.005, "prefill_tps": 1e7, "seed": seed,
        "steps": steps, "final": {"answer": f"{calls} calls done", "needs": [f"s{calls - 1}"]},
    }


def write_task(directory: Path, calls: int, seed: int) -> Path:
    agents = {
        "tools": {
            "work": {"python": "soaktools:work"},
            "fail": {"python": "soaktools:fail"},
            "hang": {"python": "soaktools:hang", "timeout": 0.2},
        },
        "agents": {"soak": {"model": "sim", "tools": ["work", "fail", "hang"], "mode": "async",
                            "max_turns": calls + 10, "timeout": 600, "max_concurrency": 256}},
    }
    # Import paths resolve against the agents file's directory: keep it here.
    agents_path = directory / "agents.toml"
    agents_path.write_text(tomli_w.dumps(agents))
    (directory / "soaktools.py").write_text((HERE / "soaktools.py").read_text())
    task = {"agent": "soak", "prompt": "Run them all.", "sim": plan(calls, seed)}
    task_path = directory / "task.toml"
    task_path.write_text(tomli_w.dumps(task))
    return task_path


def check(trace_path: Path) -> dict:
    from asyncfc_cli.trace import read_trace

    data = read_trace(trace_path)  # typed events (asyncfc_cli/events.py)
    begins = Counter(e.call_id for e in data.of_type("tool_begin"))
    ends = {e.call_id: e.status for e in data.of_type("tool_end")}
    created = {e.future for e in data.of_type("future_created")}
    resolved = {e.future: e.status for e in data.of_type("future_resolved")}
    delivered = Counter(f for e in data.of_type("delivery") for f in e.futures)
    problems = [f"trace: {p}" for p in data.problems]
    if set(begins) != set(ends) or any(n != 1 for n in begins.values()):
        problems.append("tool_begin/tool_end do not pair up")
    if created != set(resolved):
        problems.append(f"{len(created - set(resolved))} futures never resolved")
    if any(status == "pending" for status in resolved.values()):
        problems.append("a future resolved as pending")
    if delivered != Counter({f: 1 for f in created}):
        twice = [f for f, n in delivered.items() if n > 1]
        never = sorted(created - set(delivered))
        problems.append(f"delivery not exactly once: twice {twice[:5]}, never {never[:5]}")
    if data.summary is None or data.summary.status != "ok":
        problems.append(f"run did not end ok: {data.summary}")
    return {
        "calls": len(ends),
        "statuses": dict(Counter(ends.values())),
        "requests": data.summary.requests if data.summary else None,
        "wall": data.summary.wall if data.summary else None,
        "problems": problems,
    }


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children() -> list[int]:
    me = str(os.getpid())
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except (OSError, ValueError):
            continue
        if fields.get("PPid", "").strip() == me:
            found.append(int(status.parent.name))
    return found


def soak(calls: int, runs: int, seed: int = 1) -> dict:
    from asyncfc_cli import runner, spec
    from asyncfc_cli.trace import TraceWriter

    results = []
    threads_before = set(threading.enumerate())
    rss = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for n in range(runs):
            task = write_task(directory, calls, seed + n)
            trace = directory / f"run{n}.jsonl"
            start = time.perf_counter()
            runner.execute(spec.resolve_run(task), TraceWriter(trace))
            outcome = check(trace)
            outcome["seconds"] = round(time.perf_counter() - start, 2)
            results.append(outcome)
            gc.collect()
            rss.append(rss_kib())
    return {
        "calls_per_run": calls,
        "runs": results,
        # Threads started during the soak and still alive (threads that were
        # already there may end meanwhile, so counts alone would mislead).
        # Trio's own idle workers ("Trio thread N", kept about 10 s for reuse
        # after a to_thread call) are a cache, not something a run left behind.
        "threads_left": sorted(t.name for t in set(threading.enumerate()) - threads_before
                               if not t.name.startswith("Trio thread")),
        "children_after": children(),
        "rss_kib_after_each_run": rss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    report = soak(args.calls, args.runs, args.seed)
    print(json.dumps(report, indent=2))
    failed = any(r["problems"] for r in report["runs"]) or report["children_after"] or report["threads_left"]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
