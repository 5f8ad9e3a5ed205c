"""What a run's first model request costs beyond the later ones, cold and warm, per wire format.

    LITELLM_LOCAL_MODEL_COST_MAP=True python benchmarks/first_request.py [--repeat 5]

For each of sim, sim:anthropic, sim:gemini and sim:responses it records
``tasks/quickstart.toml`` (parallel mode) into a cassette, then replays it at
``--replay-speed instant``, so the model side of every request takes no time
and what a request's span in the trace measures (model_begin to model_end) is
the client's own work: LiteLLM's and the bridge's. The first request of a
process pays what LiteLLM loads on demand; the later ones do not. Replays run
cold (``ASYNCFC_WARM=0``) and warm (a worker of the script's own, a private
XDG_RUNTIME_DIR; each run checked to have been served by it). Prints, per
format and way, the median first request, the median of the later ones and
the median run wall, and the worker's "first model request" line.
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

HERE = Path(__file__).resolve().parent
MODELS = ("sim", "sim:anthropic", "sim:gemini", "sim:responses")


def asyncfc_json(asyncfc: str, args: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run([asyncfc, *args, "--json"], capture_output=True, text=True, env=env,
                         stdin=subprocess.DEVNULL, check=False)
    if out.returncode != 0:
        raise SystemExit(f"asyncfc {' '.join(args)} failed ({out.returncode}): {out.stdout[-1000:]}{out.stderr[-1000:]}")
    return json.loads(out.stdout)


def spans(trace: str) -> list[float]:
    begun: dict[int, float] = {}
    done = []
    with open(trace, encoding="utf-8") as f:
        for line in f:
            event = json.loads(line)
            if event["type"] == "model_begin":
                begun[event["request"]] = event["t"]
            elif event["type"] == "model_end" and event["request"] in begun:
                done.append(event["t"] - begun[event["request"]])
    return done


def served(asyncfc: str, env: dict[str, str]) -> int:
    out = subprocess.run([asyncfc, "worker", "status", "--json"], capture_output=True, text=True, env=env)
    return json.loads(out.stdout).get("served", -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    asyncfc = str(Path(sys.executable).with_name("asyncfc"))
    task = str(HERE.parent / "tasks" / "quickstart.toml")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        xdg = Path(tmp, "xdg")
        xdg.mkdir(mode=0o700)
        warm_env = {**os.environ, "XDG_RUNTIME_DIR": str(xdg), "ASYNCFC_WARM": "1", "ASYNCFC_WARM_IDLE": "600"}
        cold_env = {**warm_env, "ASYNCFC_WARM": "0"}
        start = subprocess.run([asyncfc, "worker", "start", "--timeout", "300"], env=warm_env,
                               capture_output=True, text=True)
        if start.returncode != 0:
            raise SystemExit(f"the worker did not start: {start.stdout}{start.stderr}")
        status = subprocess.run([asyncfc, "worker", "status"], env=warm_env, capture_output=True, text=True).stdout
        print(next((line.strip() for line in status.splitlines() if "first model request" in line), status))
        rows = []
        try:
            for model in MODELS:
                cassette = str(Path(tmp, model.replace(":", "_") + ".jsonl"))
                base = ["run", task, "--mode", "parallel", "--model", model, "--trace"]
                asyncfc_json(asyncfc, [*base, str(Path(tmp, "rec.jsonl")), "--record", cassette], cold_env)
                for way, env in (("cold", cold_env), ("warm", warm_env)):
                    firsts, laters, walls = [], [], []
                    for i in range(args.repeat):
                        before = served(asyncfc, warm_env) if way == "warm" else None
                        trace = str(Path(tmp, f"{way}-{i}.jsonl"))
                        report = asyncfc_json(asyncfc, [*base, trace, "--replay", cassette,
                                                        "--replay-speed", "instant"], env)
                        if way == "warm" and served(asyncfc, warm_env) != before + 1:
                            raise SystemExit("a warm run was not served by the worker")
                        requests = spans(trace)
                        firsts.append(requests[0])
                        laters += requests[1:]
                        walls.append(report["wall"])
                    rows.append((model, way, statistics.median(firsts), statistics.median(laters),
                                 statistics.median(walls)))
        finally:
            subprocess.run([asyncfc, "worker", "stop"], env=warm_env, capture_output=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print(f"\n| model | way | first request | later requests | run wall |  (medians of {args.repeat})")
    print("|---|---|---|---|---|")
    for model, way, first, later, wall in rows:
        print(f"| {model} | {way} | {first:.3f} s | {later:.3f} s | {wall:.3f} s |")


if __name__ == "__main__":
    main()
