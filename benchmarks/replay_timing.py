"""How faithfully a cassette replays a run's timing (docs/cassettes.md), per wire format.

    LITELLM_LOCAL_MODEL_COST_MAP=True python benchmarks/replay_timing.py [--repeat 3] [--mode parallel]

For each of sim, sim:anthropic, sim:gemini and sim:responses: records
``tasks/quickstart.toml`` once (``--record``), replays it ``--repeat`` times
at the default ``--replay-speed recorded`` and once at ``instant``, checks
that every replay gives the recorded answer and tool calls, and prints the
recorded run wall, the replays' walls and the median's deviation from it,
and for the instant replay its wall and its model time (the sum of its
requests' spans in the trace, model_begin to model_end) with the first
request shown apart (LiteLLM's loading on a process's first request is in
it, see benchmarks/first_request.py). Runs as the user's commands run (warm
unless ``ASYNCFC_WARM=0`` is set).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from first_request import spans  # this directory: the scripts run as files

HERE = Path(__file__).resolve().parent
MODELS = ("sim", "sim:anthropic", "sim:gemini", "sim:responses")


def run(asyncfc: str, args: list[str]) -> dict:
    out = subprocess.run([asyncfc, "run", str(HERE.parent / "tasks" / "quickstart.toml"), "--json", *args],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    report = json.loads(out.stdout) if out.stdout.strip() else {}
    if out.returncode != 0:
        raise SystemExit(f"asyncfc run {' '.join(args)} failed ({out.returncode}): {out.stdout[-800:]}{out.stderr[-800:]}")
    requests = spans(report["trace"])
    calls = [(c["tool"], json.dumps(c["arguments"], sort_keys=True), c["status"]) for c in report["tool_calls"]]
    return {"wall": report["wall"], "requests": requests, "same": (report["answer"], calls)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mode", default="parallel")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    asyncfc = str(Path(sys.executable).with_name("asyncfc"))
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in MODELS:
            cassette = str(Path(tmp, model.replace(":", "_") + ".jsonl"))
            base = ["--model", model, "--mode", args.mode, "--trace"]
            recorded = run(asyncfc, [*base, str(Path(tmp, "rec.jsonl")), "--record", cassette])
            replays = [run(asyncfc, [*base, str(Path(tmp, f"rep{i}.jsonl")), "--replay", cassette])
                       for i in range(args.repeat)]
            instant = run(asyncfc, [*base, str(Path(tmp, "inst.jsonl")), "--replay", cassette,
                                    "--replay-speed", "instant"])
            same = all(r["same"] == recorded["same"] for r in [*replays, instant])
            median = statistics.median(r["wall"] for r in replays)
            rows.append((model, recorded["wall"], [r["wall"] for r in replays], median / recorded["wall"] - 1,
                         instant["wall"], sum(instant["requests"]), instant["requests"][0], same))
    print(f"load average at end: {os.getloadavg()[0]:.2f}\n")
    print("| model | recorded wall | replays (recorded speed) | median vs recorded | instant wall "
          "| instant model time (first request) | same answer and calls |")
    print("|---|---|---|---|---|---|---|")
    for model, wall, walls, dev, iwall, model_time, first, same in rows:
        print(f"| {model} | {wall:.3f} s | {', '.join(f'{w:.3f}' for w in walls)} s | {dev:+.1%} | {iwall:.3f} s "
              f"| {model_time:.3f} s ({first:.3f} s) | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
