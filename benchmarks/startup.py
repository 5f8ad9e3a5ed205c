"""What a user waits for beyond the run: process wall time minus run wall time.

    LITELLM_LOCAL_MODEL_COST_MAP=True python benchmarks/startup.py [--repeat 7] [TASK]

Alternates, ``repeat`` times: ``asyncfc run TASK --json`` as a subprocess
(process wall measured here, run wall from its ``wall``), ``python -c "import
litellm"`` and ``python -c "pass"`` (LiteLLM's import time is the difference:
the part of the start that asyncfc cannot remove, only overlap). Prints the
medians and the target of issue 9: process - run <= import + 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def timed(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "CI": "1"}, check=False)
    return time.perf_counter() - start, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", nargs="?", default=str(HERE.parent / "tasks" / "quickstart.toml"))
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    asyncfc = str(Path(sys.executable).with_name("asyncfc"))
    rows = []
    for _ in range(args.repeat):
        process, stdout = timed([asyncfc, "run", args.task, "--json"])
        run = json.loads(stdout)["wall"]
        with_import, _ = timed([sys.executable, "-c", "import litellm"])
        bare, _ = timed([sys.executable, "-c", "pass"])
        rows.append({"process": process, "run": run, "overhead": process - run, "import": with_import - bare,
                     "python": bare})
    med = {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}
    med["beyond_import"] = round(med["overhead"] - med["import"], 3)
    med["target_met"] = med["beyond_import"] <= 0.3
    if args.json:
        print(json.dumps({"task": args.task, "repeat": args.repeat, "median": med, "runs": rows}))
        return
    print(f"{args.task}, median of {args.repeat}:")
    print(f"  process wall {med['process']:.3f} s, run wall {med['run']:.3f} s -> start and exit {med['overhead']:.3f} s")
    print(f"  LiteLLM import {med['import']:.3f} s (python -c 'import litellm' minus python -c 'pass')")
    print(f"  beyond the import: {med['beyond_import']:+.3f} s (target <= +0.3 s: "
          f"{'met' if med['target_met'] else 'missed'})")


if __name__ == "__main__":
    main()
