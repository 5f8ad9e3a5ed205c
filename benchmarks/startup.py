"""What a user waits for beyond the run: process wall time minus run wall time, cold and warm.

    LITELLM_LOCAL_MODEL_COST_MAP=True python benchmarks/startup.py [--repeat 5] [TASK]

Cold (``ASYNCFC_WARM=0``): alternates, ``repeat`` times, ``asyncfc run TASK
--json`` as a subprocess (process wall measured here, run wall from its
``wall``), ``python -c "import litellm"`` and ``python -c "pass"`` (LiteLLM's
import time is the difference: the part of a cold start that asyncfc cannot
remove, only overlap).

Warm: a worker of its own (a private XDG_RUNTIME_DIR), started with ``asyncfc
worker start``; then ``repeat`` runs of the same command, each checked to have
been served by the worker. Also the first command without a worker (it runs
cold and leaves a worker starting behind it, after it has exited).

Prints the medians and the targets: cold start and exit within LiteLLM's
import + 0.3 s (issue 9), warm start and exit under 0.5 s (issue 20).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr[-2000:]}")
    return elapsed, out.stdout


def served(asyncfc: str, env: dict[str, str]) -> int:
    out = subprocess.run([asyncfc, "worker", "status", "--json"], capture_output=True, text=True, env=env)
    return json.loads(out.stdout).get("served", -1)


def median(rows: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", nargs="?", default=str(HERE.parent / "tasks" / "quickstart.toml"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    asyncfc = str(Path(sys.executable).with_name("asyncfc"))
    base = {**os.environ, "CI": "1"}
    cold_env = {**base, "ASYNCFC_WARM": "0"}
    command = [asyncfc, "run", args.task, "--json"]

    load_before = os.getloadavg()[0]  # other work on the machine slows every figure alike
    cold = []
    for _ in range(args.repeat):
        process, stdout = timed(command, cold_env)
        run = json.loads(stdout)["wall"]
        with_import, _ = timed([sys.executable, "-c", "import litellm"], cold_env)
        bare, _ = timed([sys.executable, "-c", "pass"], cold_env)
        cold.append({"process": process, "run": run, "overhead": process - run, "import": with_import - bare,
                     "python": bare})

    with tempfile.TemporaryDirectory(prefix="asyncfc-startup-") as runtime:
        os.chmod(runtime, 0o700)
        warm_env = {**base, "ASYNCFC_WARM": "1", "XDG_RUNTIME_DIR": runtime, "ASYNCFC_WARM_IDLE": "900"}
        # The first command: no worker yet, so it runs cold (and a worker starts after it).
        process, stdout = timed(command, warm_env)
        first = {"process": process, "run": json.loads(stdout)["wall"]}
        first["overhead"] = first["process"] - first["run"]
        started = subprocess.run([asyncfc, "worker", "start", "--json", "--timeout", "600"], capture_output=True,
                                 text=True, env=warm_env)
        worker = json.loads(started.stdout)
        if not worker.get("serves_this_environment"):
            raise SystemExit(f"the worker did not start: {started.stdout} {started.stderr}")
        warm = []
        try:
            for _ in range(args.repeat):
                before = served(asyncfc, warm_env)
                process, stdout = timed(command, warm_env)
                if served(asyncfc, warm_env) != before + 1:
                    raise SystemExit("a run was not served by the worker")
                run = json.loads(stdout)["wall"]
                warm.append({"process": process, "run": run, "overhead": process - run})
        finally:
            subprocess.run([asyncfc, "worker", "stop"], capture_output=True, env=warm_env)

    med = {"cold": {k: median(cold, k) for k in cold[0]}, "warm": {k: median(warm, k) for k in warm[0]},
           "first": {k: round(v, 3) for k, v in first.items()}, "worker_import": worker["import_seconds"]}
    med["load"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # 1-minute load average, start and end
    med["cold"]["beyond_import"] = round(med["cold"]["overhead"] - med["cold"]["import"], 3)
    med["cold_target_met"] = med["cold"]["beyond_import"] <= 0.3
    med["warm_target_met"] = med["warm"]["overhead"] < 0.5
    if args.json:
        print(json.dumps({"task": args.task, "repeat": args.repeat, "median": med, "cold": cold, "warm": warm,
                          "command": " ".join(["asyncfc", "run", args.task, "--json"])}))
        return
    c, w, f = med["cold"], med["warm"], med["first"]
    print(f"asyncfc run {args.task} --json, median of {args.repeat} "
          f"(load average {med['load'][0]:g} at the start, {med['load'][1]:g} at the end on {os.cpu_count()} cores):")
    print(f"  cold: process wall {c['process']:.3f} s, run wall {c['run']:.3f} s -> start and exit {c['overhead']:.3f} s")
    print(f"        LiteLLM import {c['import']:.3f} s; beyond the import {c['beyond_import']:+.3f} s "
          f"(target <= +0.3 s: {'met' if med['cold_target_met'] else 'missed'})")
    print(f"  warm: process wall {w['process']:.3f} s, run wall {w['run']:.3f} s -> start and exit {w['overhead']:.3f} s "
          f"(target < 0.5 s: {'met' if med['warm_target_met'] else 'missed'})")
    print(f"  first command without a worker (runs cold): start and exit {f['overhead']:.3f} s; "
          f"the worker then imported in {med['worker_import']:.1f} s")


if __name__ == "__main__":
    main()
