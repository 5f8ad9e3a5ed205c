"""Measurements for ``asyncfc batch`` (issue 13, item 4; benchmarks/RESULTS.md).

    LITELLM_LOCAL_MODEL_COST_MAP=True python benchmarks/batch_bench.py loop    [--runs 100]
    LITELLM_LOCAL_MODEL_COST_MAP=True python benchmarks/batch_bench.py scaling [--max-runs 1,2,4,8,16,32]
    LITELLM_LOCAL_MODEL_COST_MAP=True python benchmarks/batch_bench.py ray     [--runs 100]

- ``loop``: the same short simulated task (benchmarks/batch/lookup.toml) run
  ``--runs`` times by a shell loop of ``asyncfc run`` (one process each, as a CI
  script does today) and by one ``asyncfc batch --repeat N`` (default
  ``--max-runs 8``); wall time of the whole job, and runs per second.
- ``scaling``: ``asyncfc batch tasks/quickstart.toml --repeat R --max-runs M``
  for growing M (R = max(8, 4 M)), runs per second of the batch itself (from
  the first run's start to the last run's end, in its ``--json``) and of the
  whole command (with its start: LiteLLM's import).
- ``ray``: the short task ``--runs`` times with ``--max-runs 8``, in process
  and with ``--ray local``: the whole command, Ray's start (until the driver
  reports the instance up), the first wave of runs (each Ray worker starts and
  imports LiteLLM), and the per-run cost after it (a run's time from
  submission to its report, minus its own wall time).

Every command is a subprocess of the installed ``asyncfc`` (this interpreter's
``-m asyncfc_cli``), ``CI=1`` (plain progress), outputs in a temporary
directory. Each figure is printed with the command that produced it, and all
of them are written to benchmarks/results/batch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHORT = HERE / "batch" / "lookup.toml"
QUICKSTART = REPO / "tasks" / "quickstart.toml"
ASYNCFC = [sys.executable, "-m", "asyncfc_cli"]
ENV = {**os.environ, "CI": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def shown(argv: list[str]) -> str:
    """The command as a user types it (``asyncfc`` for this interpreter's module)."""
    parts = ["asyncfc", *argv[len(ASYNCFC):]] if argv[: len(ASYNCFC)] == ASYNCFC else argv
    return " ".join(shlex.quote(str(p).replace(str(REPO) + "/", "")) for p in parts)


def timed(argv: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=ENV, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, done


def batch_json(done: subprocess.CompletedProcess) -> dict:
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise SystemExit(f"batch failed ({done.returncode}): {done.stderr[-2000:]}") from None


def loop(runs: int, work: Path) -> dict:
    one = [*ASYNCFC, "run", SHORT, "-q", "--json"]
    start = time.perf_counter()
    failures = 0
    for i in range(runs):
        _, done = timed([*one, "--trace", work / f"loop-{i}.jsonl"], work)
        failures += done.returncode != 0
    loop_wall = time.perf_counter() - start
    command = [*ASYNCFC, "batch", SHORT, "--repeat", runs, "--out", work / "batch", "--json"]
    batch_wall, done = timed(command, work)
    doc = batch_json(done)
    result = {
        "runs": runs,
        "loop": {"command": f"for i in $(seq {runs}); do {shown(one)} --trace loop-$i.jsonl; done",
                 "wall": round(loop_wall, 2), "runs_per_s": round(runs / loop_wall, 3), "failed": failures},
        "batch": {"command": shown(command), "wall": round(batch_wall, 2), "batch_wall": doc["wall"],
                  "runs_per_s": round(runs / batch_wall, 3), "passed": doc["counts"]["passed"]},
    }
    result["speedup"] = round(loop_wall / batch_wall, 2)
    return result


def scaling(levels: list[int], work: Path) -> dict:
    rows = []
    for m in levels:
        repeat = max(8, 4 * m)
        command = [*ASYNCFC, "batch", QUICKSTART, "--repeat", repeat, "--max-runs", m, "--max-per-model", 1000,
                   "--out", work / f"scale-{m}", "--json"]
        wall, done = timed(command, work)
        doc = batch_json(done)
        run_walls = [r["wall"] for r in doc["runs"] if r["run_status"] == "ok"]
        # From the first run's start to the last one's end: the batch itself, without
        # the command's start (imports) and end.
        span = max(r["ended"] for r in doc["runs"]) - min(r["started"] for r in doc["runs"])
        rows.append({"max_runs": m, "runs": repeat, "passed": doc["counts"]["passed"], "command": shown(command),
                     "wall": round(wall, 2), "runs_span": round(span, 2),
                     "runs_per_s": round(repeat / span, 3), "runs_per_s_command": round(repeat / wall, 3),
                     "run_wall_median": round(statistics.median(run_walls), 3) if run_walls else None})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"task": shown([QUICKSTART]), "rows": rows}


def ray(runs: int, work: Path) -> dict:
    out = {}
    for name, extra in (("local", []), ("ray", ["--ray", "local"])):
        command = [*ASYNCFC, "batch", SHORT, "--repeat", runs, "--max-runs", 8, "--out", work / f"ray-{name}",
                   *extra]
        start = time.perf_counter()
        proc = subprocess.Popen([str(a) for a in command], cwd=work, env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        ready = None
        for line in proc.stderr:
            if ready is None and ("Ray started" in line or "[1/" in line):
                ready = time.perf_counter() - start  # Ray up (or, in process, the first run done)
        proc.wait()
        wall = time.perf_counter() - start
        results = [json.loads(line) for line in (work / f"ray-{name}" / "results.jsonl").read_text().splitlines()]
        first = min(r["started"] for r in results)
        last = max(r["ended"] for r in results)
        # The first wave (one run per slot) pays each Ray worker's start and LiteLLM import;
        # after it, a run's time from submission to its report beyond its own wall is the
        # per-run cost of the machinery.
        by_start = sorted(results, key=lambda r: r["started"])
        wave, rest = by_start[:8], by_start[8:]
        out[name] = {"command": shown(command), "wall": round(wall, 2), "exit": proc.returncode,
                     "passed": sum(r["status"] == "passed" for r in results),
                     "runs_span": round(last - first, 2),
                     "run_wall_median": round(statistics.median(r["wall"] for r in results), 3),
                     "first_wave_span_median": round(statistics.median(r["ended"] - r["started"] for r in wave), 3),
                     "overhead_per_run_after_first_wave": round(
                         statistics.median(r["ended"] - r["started"] - r["wall"] for r in rest), 3) if rest else None,
                     "ray_ready": round(ready, 2) if name == "ray" and ready is not None else None}
        print(json.dumps(out[name]), file=sys.stderr, flush=True)
    out["runs"] = runs
    out["added_per_run_total"] = round((out["ray"]["wall"] - out["local"]["wall"]) / runs, 3)
    out["added_per_run_runs"] = round((out["ray"]["runs_span"] - out["local"]["runs_span"]) / runs, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("loop", "scaling", "ray"))
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--max-runs", default="1,2,4,8,16,32")
    parser.add_argument("--write", type=Path, default=HERE / "results" / "batch.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="asyncfc-batch-bench-") as tmp:
        work = Path(tmp)
        if args.what == "loop":
            result = loop(args.runs, work)
        elif args.what == "scaling":
            result = scaling([int(x) for x in args.max_runs.split(",")], work)
        else:
            result = ray(args.runs, work)
    result["measured"] = {"at": time.strftime("%Y-%m-%d %H:%M"), "load": os.getloadavg(), "cores": os.cpu_count(),
                          "python": sys.version.split()[0]}
    print(json.dumps(result, indent=1))
    doc = json.loads(args.write.read_text()) if args.write.exists() else {}
    doc[args.what] = result
    args.write.parent.mkdir(parents=True, exist_ok=True)
    args.write.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
