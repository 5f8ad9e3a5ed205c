"""How long ``asyncfc batch`` takes to plan a matrix before its first run starts.

    LITELLM_LOCAL_MODEL_COST_MAP=True python benchmarks/plan_bench.py [--rows 2000] [--repeat 3]

Plans benchmarks/batch/lookup.toml (the project's agents.toml, its quickstart
agent and tools) against a matrix of ``--rows`` distinct ``topic`` rows with
:func:`asyncfc_cli.batch.plan_batch`, in this process after the imports (what
the command does between reading its arguments and starting the first run,
without LiteLLM's import, which overlaps it), and prints the best of
``--repeat`` tries and the time per row. benchmarks/RESULTS.md keeps the
figures before and after planning resolved each task file once.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from asyncfc_cli.batch import plan_batch

TASK = Path(__file__).resolve().parent / "batch" / "lookup.toml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = [{"topic": f"topic {i}"} for i in range(args.rows)]
    best = float("inf")
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.repeat):
            start = time.perf_counter()
            planned = plan_batch([TASK], rows, [None], Path(out))
            best = min(best, time.perf_counter() - start)
    assert len(planned) == args.rows
    print(f"plan_batch: 1 task x {args.rows} rows: {best:.3f} s (best of {args.repeat}), "
          f"{best / args.rows * 1000:.2f} ms per row")


if __name__ == "__main__":
    main()
