"""What the loop knows about time, through the CLI: tool durations (expected_latency,
.asyncfc/latency.json across runs) decide holds, and the simulated server's
prompt cache decides each request's time to first token."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from asyncfc_cli.cli import app
from asyncfc_cli.trace import read_trace

DATA = Path(__file__).parent / "data"


def run(tmp_path: Path, task: Path, name: str = "t") -> tuple[dict, list[dict]]:
    trace = tmp_path / f"{name}.jsonl"
    cwd = os.getcwd()
    os.chdir(tmp_path)  # .asyncfc/ is relative to where asyncfc runs
    try:
        result = CliRunner().invoke(app, ["run", str(task), "--json", "--trace", str(trace)],
                                    catch_exceptions=False)
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), read_trace(trace).events


def test_expected_latency_and_remembered_durations_decide_the_holds(tmp_path):
    report, events = run(tmp_path, DATA / "latency_holds.toml", "first")
    assert report["answer"] == "napped 0.1 and 0.3"
    holds = [e for e in events if e["type"] == "hold"]
    via = {f: e["via"] for e in events if e["type"] == "delivery" for f in e["futures"]}
    # quick_nap was unknown: held for up to one time to first token, and back as a value.
    assert [h["futures"] for h in holds] == [["f1"]] and via["f1"] == "result"
    # slow_nap is expected to take 30 s (agents.toml): its handle went back at once.
    assert via["f2"] != "result"
    # The durations are remembered for the next run, keyed by tool and definition.
    stored = json.loads((tmp_path / ".asyncfc" / "latency.json").read_text())
    assert {k.split("#")[0] for k in stored} == {"quick_nap", "slow_nap"}
    assert all(0.05 < v < 5 for vs in stored.values() for v in vs)
    # Next run: both are known from the first (measured beats the configured guess):
    # quick_nap 0.1 s and slow_nap 0.3 s, both under a round trip, so both are held.
    _, events = run(tmp_path, DATA / "latency_holds.toml", "second")
    holds = {tuple(e["futures"]): e for e in events if e["type"] == "hold"}
    assert set(holds) == {("f1",), ("f2",)}
    assert 0.05 < holds[("f1",)]["expected"] < 0.25 < holds[("f2",)]["expected"] < 0.8
    assert len(json.loads((tmp_path / ".asyncfc" / "latency.json").read_text())["quick_nap#" + next(
        k.split("#")[1] for k in stored if k.startswith("quick_nap"))]) == 2


def prefill_task(tmp_path: Path, cache: bool) -> Path:
    task = tmp_path / f"prefill-{cache}.toml"
    task.write_text(f'''
prompt = "{'Read this and then call the tool. ' * 120}"
[agent]
model = "sim"
mode = "sync"
tools = ["nothing"]
[tools.nothing]
description = "Do nothing."
command = ["true"]
[sim]
decode_tps = 2000
ttft = 0.0
prefill_tps = 1000
prefix_cache = {str(cache).lower()}
[[sim.steps]]
id = "a"
tool = "nothing"
[sim.final]
answer = "done"
''')
    return task


def test_the_simulated_server_caches_the_prompt_prefix_unless_told_not_to(tmp_path):
    ttfts = {}
    for cache in (True, False):
        _, events = run(tmp_path, prefill_task(tmp_path, cache), f"cache-{cache}")
        ttfts[cache] = [e["ttft"] for e in events if e["type"] == "model_end"]
    # About 1,000 prompt tokens at 1,000 tokens/s: a second to the first token of the
    # first request either way; the second request prefills only what is new when cached.
    first_cached, second_cached = ttfts[True]
    first, second = ttfts[False]
    assert first_cached > 0.5 and first > 0.5
    assert second_cached < first_cached / 4
    assert second > first / 2  # uncached: the whole (slightly longer) prompt again
