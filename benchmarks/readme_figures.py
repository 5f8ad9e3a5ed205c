"""Every figure the README quotes from a run, measured and printed by one script.

Run it before a release, on a machine as the README describes (the project's
2-core machine), and let it write what it measured into README.md:

    python benchmarks/readme_figures.py            # print the blocks
    python benchmarks/readme_figures.py --write    # and replace them in README.md
    python benchmarks/readme_figures.py --check    # exit 1 if README.md's blocks are stale

Each block sits in README.md between ``<!-- readme_figures NAME -->`` and
``<!-- /readme_figures -->``. The runs are real ``asyncfc run --json``
processes on the simulated model, in a fresh copy of the project (its
agents.toml, tasks/ and tools/, no learned tool durations: what a new clone
gives), one per mode. ``--check`` compares what does not depend on the
machine's speed (requests, tokens, and the text around them) with a fresh
run, and the wall times' prose with the walls the README states; the test
suite runs it (tests/test_readme_figures.py). One more figure moves with the
machine's speed: async mode's tokens in. Whether a tool's result went back in
a request as its value or as a pending handle depends on when the tool
finished (measured: 1269 to 1281 for quickstart between a loaded and an idle
machine), so those are checked within :data:`ASYNC_TOKENS_SPREAD`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MODES = ("sync", "parallel", "async")
ASYNC_TOKENS_SPREAD = 0.03  # async tokens may differ this much (relative) from the README's
# block name -> the task it runs
TASKS = {"quickstart": "tasks/quickstart.toml", "mcp": "tasks/mcp.toml"}
BLOCK = re.compile(r"(<!-- readme_figures (\w+) -->\n)(.*?)(<!-- /readme_figures -->)", re.S)
ROW = re.compile(r"^\| (`--mode \w+`|`async` \(default\)) \| ([\d.]+) s \| (\d+) \| (\d+) / (\d+) \|$", re.M)


def measure(task: str, project: Path) -> dict[str, dict]:
    """One ``asyncfc run TASK --mode M --json`` per mode, at once, in ``project``."""
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", ASYNCFC_RUNS_DIR=str(project / "runs"))
    env.pop("ASYNCFC_MODE", None)
    env.pop("ASYNCFC_MODEL", None)

    def one(mode: str) -> dict:
        proc = subprocess.run([sys.executable, "-m", "asyncfc_cli.cli", "run", task, "--mode", mode, "--json", "-q"],
                              cwd=project, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise SystemExit(f"asyncfc run {task} --mode {mode} failed ({proc.returncode}):\n{proc.stderr}")
        report = json.loads(proc.stdout)
        return {"wall": report["wall"], **report["usage"]}

    # One mode at a time: the walls are compared with each other.
    return {mode: one(mode) for mode in MODES}


def fresh_project(into: Path) -> Path:
    """A copy of the project's agents.toml, tasks/ and tools/: no learned durations, no runs."""
    project = into / "project"
    project.mkdir()
    shutil.copy(ROOT / "agents.toml", project / "agents.toml")
    for name in ("tasks", "tools"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__", ".asyncfc"))
    return project


def render(name: str, runs: dict[str, dict]) -> str:
    """The README block of ``name`` from its runs (wall, requests, tokens_in, tokens_out per mode)."""
    label = {"sync": "`--mode sync`", "parallel": "`--mode parallel`", "async": "`async` (default)"}
    lines = ["| mode | wall time | model requests | tokens in / out |", "|---|---|---|---|"]
    for mode in MODES:
        r = runs[mode]
        lines.append(f"| {label[mode]} | {r['wall']:.2f} s | {r['requests']} | {r['tokens_in']} / {r['tokens_out']} |")
    a, s, p = (runs[m] for m in ("async", "sync", "parallel"))
    fewer = s["requests"] - a["requests"]
    than = {1: "one request fewer", 0: "as many requests"}.get(fewer, f"{abs(fewer)} requests "
                                                            f"{'fewer' if fewer > 0 else 'more'}")
    if fewer == -1:
        than = "one request more"
    lines += ["", f"Async mode is {s['wall'] / a['wall']:.2f}× faster than sync here and "
                  f"{p['wall'] / a['wall']:.2f}× faster than parallel, with {than}."]
    return "\n".join(lines) + "\n"


def parse(block: str) -> dict[str, dict]:
    """The runs a README block states."""
    label = {"`--mode sync`": "sync", "`--mode parallel`": "parallel", "`async` (default)": "async"}
    return {label[m[0]]: {"wall": float(m[1]), "requests": int(m[2]), "tokens_in": int(m[3]), "tokens_out": int(m[4])}
            for m in ROW.findall(block)}


def blocks(text: str) -> dict[str, str]:
    return {m.group(2): m.group(3) for m in BLOCK.finditer(text)}


def replace(text: str, rendered: dict[str, str]) -> str:
    return BLOCK.sub(lambda m: m.group(1) + rendered.get(m.group(2), m.group(3)) + m.group(4), text)


def check(text: str, measured: dict[str, dict[str, dict]]) -> list[str]:
    """What in the README's blocks differs from ``measured`` (walls aside: the README's own are kept)."""
    problems = []
    found = blocks(text)
    for name, runs in measured.items():
        if name not in found:
            problems.append(f"README.md has no block {name} (<!-- readme_figures {name} -->)")
            continue
        stated = parse(found[name])
        if set(stated) != set(MODES):
            problems.append(f"block {name}: a row per mode is expected, found {sorted(stated)}")
            continue
        # The walls are the README's (they vary run to run), so are async's tokens
        # within their spread; everything else must be as measured.
        kept = {m: {**runs[m], "wall": stated[m]["wall"]} for m in MODES}
        for key in ("tokens_in", "tokens_out"):
            said, now = stated["async"][key], runs["async"][key]
            if abs(said - now) <= ASYNC_TOKENS_SPREAD * max(said, now):
                kept["async"][key] = said
        expected = render(name, kept)
        if expected != found[name]:
            problems.append(f"block {name} is stale; it should read:\n{expected}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="replace the blocks in README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md's blocks are stale")
    parser.add_argument("--only", choices=sorted(TASKS), action="append", help="measure only these blocks")
    args = parser.parse_args(argv)
    names = args.only or list(TASKS)
    with tempfile.TemporaryDirectory() as tmp:
        project = fresh_project(Path(tmp))
        with ThreadPoolExecutor(len(names)) as pool:
            measured = dict(zip(names, pool.map(lambda n: measure(TASKS[n], project), names)))
    text = README.read_text(encoding="utf-8")
    if args.check:
        problems = check(text, measured)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    rendered = {name: render(name, runs) for name, runs in measured.items()}
    for name, block in rendered.items():
        print(f"<!-- readme_figures {name} -->\n{block}<!-- /readme_figures -->\n")
    if args.write:
        README.write_text(replace(text, rendered), encoding="utf-8")
        print("README.md updated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
