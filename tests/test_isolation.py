"""Runs of one batch never touch each other (docs/reliability.md, "Isolation").

``asyncfc batch`` runs every run inside one ``trio.run``; what belongs to a
run (its process token and guard, the sweep at its end, its MCP sessions,
its thread limit and loop watch) must be the run's, not the trio run's.

The property: a run's outcome (its status, its answer, and for every call
of its plan the call's status, error and the size of its result, from its
trace) in a batch equals the same task run alone with ``asyncfc run``. The
tasks are random: 1-3 calls each of command tools, python tools in a thread
and on the loop, and an MCP server's tools (tests/mcp_server.py over
stdio), some failing, with random durations, some taking an earlier call's
result as an argument; batches of 2-6 of them, in every mode, with
``--max-runs`` from 1 to the number of runs. The seed is fixed so a failure
reproduces; ``ASYNCFC_ISOLATION_SEED`` picks another.

Most batches run in process through the typer app (LiteLLM's import is paid
once per session); one batch mixes every mode in a real ``asyncfc``
process, and the first test is the reproduction from the report, through
the CLI too.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from asyncfc_cli.trace import read_trace
from conftest import DATA, cli_env, invoke

AGENTS = DATA / "isolation" / "agents.toml"
MODES = ("sync", "parallel", "async")
SEED = int(os.environ.get("ASYNCFC_ISOLATION_SEED", "1717"))
DURATIONS = (0.0, 0.05, 0.2, 0.5)
LOCAL_TOOLS = ("cmd", "cmd_fail", "hold", "rest", "boom")
MCP_TOOLS = ("lib_slow", "lib_echo", "lib_fail")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    # Runs remember tool durations in ./.asyncfc/latency.json: not in the repository.
    monkeypatch.chdir(tmp_path)


# --- random tasks ------------------------------------------------------------------------------


def _step(rng: random.Random, number: int, name: str, tools: tuple[str, ...], results: list[str],
          seconds: float | None = None) -> tuple[dict, str | None]:
    """One step of a plan, and the template of its result if it succeeds."""
    tool = rng.choice(tools)
    seconds = rng.choice(DURATIONS) if seconds is None else seconds
    tag = f"{name}-s{number}"
    if results and rng.random() < 0.4:
        tag += "+{" + rng.choice(results) + "}"  # an earlier result as an argument (a future in async mode)
    args = {"lib_echo": {"text": tag}, "lib_fail": {"reason": tag}}.get(tool, {"seconds": seconds, "tag": tag})
    step = {"id": f"s{number}", "tool": tool, "args": args}
    if tool in ("cmd_fail", "boom", "lib_fail"):
        return step, None
    # A command's result is {exit_code, stdout, stderr}.
    return step, f"s{number}.stdout" if tool == "cmd" else f"s{number}"


def random_task(rng: random.Random, name: str, directory: Path, first: tuple[str, float] | None = None) -> Path:
    """A task of 1-3 random calls; ``first``: the tool and duration of its first call."""
    agent = "mixed" if first and first[0].startswith("lib_") else rng.choice(("local", "mixed"))
    tools = LOCAL_TOOLS + (MCP_TOOLS if agent == "mixed" else ())  # "mixed" starts an MCP server for the run
    steps, results = [], []
    for number in range(1, rng.randint(1, 3) + 1):
        forced = first is not None and number == 1
        step, result = _step(rng, number, name, (first[0],) if forced else tools, results,
                             first[1] if forced else None)
        steps.append(step)
        if result is not None:
            results.append(result)
    answer = " | ".join(f"{r.split('.')[0]}={{{r}}}" for r in results) or "nothing came back"
    lines = [f"agents_file = {json.dumps(str(AGENTS))}", f"agent = {json.dumps(agent)}",
             'prompt = "Run the plan."', "", "[sim]", "decode_tps = 2000", "ttft = 0", ""]
    for step in steps:
        args = ", ".join(f"{k} = {json.dumps(v)}" for k, v in step["args"].items())
        lines += ["[[sim.steps]]", f'id = "{step["id"]}"', f'tool = "{step["tool"]}"', f"args = {{ {args} }}", ""]
    # The answer waits for every call, so every call ends before the run does, alone or not.
    lines += ["[sim.final]", f"answer = {json.dumps(answer)}", f"needs = {json.dumps([s['id'] for s in steps])}"]
    path = directory / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# --- outcomes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: str
    answer: str | None
    calls: tuple  # per plan step, sorted: (step, tool, status, error, result_chars)

    @classmethod
    def of(cls, status: str, answer: str | None, trace: Path) -> Outcome:
        data = read_trace(trace)
        assert data.summary is not None and not data.problems, (trace, data.problems)
        calls = []
        for ev in data.of_type("tool_end"):
            if ev.tool == "wait":
                continue  # how often async mode waits depends on timing, not on the run's outcome
            step = ev.call_id.removeprefix("call_").rsplit("_", 1)[0]
            calls.append((step, ev.tool, ev.status, ev.error, ev.result_chars))
        return cls(status, answer, tuple(sorted(calls, key=str)))


def run_alone(task: Path, mode: str, traces: Path) -> Outcome:
    trace = traces / f"{task.stem}-{mode}.jsonl"
    result = invoke("run", str(task), "--mode", mode, "--json", "--trace", str(trace), "-q",
                    catch_exceptions=False)
    doc = json.loads(result.stdout)
    assert doc["status"] == "ok", (task.read_text(), doc["error"])
    return Outcome.of(doc["status"], doc["answer"], trace)


def batch_outcomes(doc: dict) -> dict[tuple[str, str], Outcome]:
    return {(Path(r["task"]).stem, r["mode"]): Outcome.of(r["run_status"], r["answer"], Path(r["trace"]))
            for r in doc["runs"]}


def assert_same(alone: dict[tuple[str, str], Outcome], batched: dict[tuple[str, str], Outcome],
                what: str, tasks: list[Path]) -> None:
    for key, outcome in batched.items():
        if outcome != alone[key]:
            plan = next(t for t in tasks if t.stem == key[0]).read_text()
            pytest.fail(f"{what}: {key} in the batch differs from the same task run alone "
                        f"(seed {SEED})\nalone: {alone[key]}\nbatch: {outcome}\nplan:\n{plan}")


# --- the reproduction ------------------------------------------------------------------------------


def test_a_run_that_ends_does_not_kill_the_processes_and_servers_of_another(tmp_path):
    """The report: two tasks whose commands sleep 0.2 s and 3 s; the first run to end
    swept every run's processes, and the long command came back as exit 0 with no
    output (its MCP server died too: "Connection closed")."""
    short = tmp_path / "short.toml"
    short.write_text(f'agents_file = {json.dumps(str(AGENTS))}\nagent = "local"\nprompt = "p"\n[sim]\n'
                     'decode_tps = 2000\nttft = 0\n[[sim.steps]]\nid = "s1"\ntool = "cmd"\n'
                     'args = { seconds = 0.2, tag = "short" }\n[sim.final]\nanswer = "{s1.stdout}"\n')
    long = tmp_path / "long.toml"
    long.write_text(f'agents_file = {json.dumps(str(AGENTS))}\nagent = "sdk"\nprompt = "p"\n[sim]\n'
                    'decode_tps = 2000\nttft = 0\n[[sim.steps]]\nid = "s1"\ntool = "cmd"\n'
                    'args = { seconds = 3, tag = "long" }\n[[sim.steps]]\nid = "s2"\ntool = "sdk_slow"\n'
                    'args = { seconds = 3 }\n[sim.final]\nanswer = "{s1.stdout}{s2.result}"\n')
    done = subprocess.run([sys.executable, "-m", "asyncfc_cli", "batch", str(short), str(long), "--out",
                           str(tmp_path / "out"), "--json"], cwd=tmp_path, env=cli_env(CI="true"), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    runs = {Path(r["task"]).stem: r for r in json.loads(done.stdout)["runs"]}
    assert runs["short"]["answer"] == "short\n"
    assert runs["long"]["answer"] == "long\nslept 3.0"
    ends = read_trace(Path(runs["long"]["trace"])).of_type("tool_end")
    assert sorted((ev.tool, ev.status) for ev in ends) == [("cmd", "ok"), ("sdk_slow", "ok")]


# --- the property ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_every_run_of_a_batch_has_the_outcome_it_has_alone(tmp_path, mode):
    rng = random.Random(f"{SEED}-{mode}")
    pool = [random_task(rng, f"t{i}", tmp_path) for i in range(6)]
    alone = {(t.stem, mode): run_alone(t, mode, tmp_path / "alone") for t in pool}
    # All six at once; a few one after the other in the same trio run (a run's state must
    # also be gone when the next run of the same worker starts); a sample in between.
    size = rng.randint(2, 5)
    examples = [(pool, len(pool)), (rng.sample(pool, rng.randint(2, 3)), 1), (rng.sample(pool, size),
                                                                             rng.randint(2, size))]
    for number, (tasks, max_runs) in enumerate(examples):
        out = tmp_path / f"batch{number}"
        result = invoke("batch", *map(str, tasks), "--mode", mode, "--max-runs", str(max_runs),
                        "--out", str(out), "--json", catch_exceptions=False)
        doc = json.loads(result.stdout)
        assert_same(alone, batch_outcomes(doc), f"{len(tasks)} runs, --max-runs {max_runs}", tasks)
        assert doc["counts"]["passed"] == len(tasks), [r["error"] for r in doc["runs"]]


def test_a_batch_of_every_mode_at_once_in_an_asyncfc_process(tmp_path):
    rng = random.Random(f"{SEED}-cli")
    # One run's command ends while the other's MCP server is still busy, and the other way round.
    tasks = [random_task(rng, f"c{i}", tmp_path, first)
             for i, first in enumerate((("cmd", 0.2), ("lib_slow", 1.5)))]
    tasks += [random_task(rng, "c2", tmp_path, ("cmd", 1.5))]
    alone = {(t.stem, mode): run_alone(t, mode, tmp_path / "alone") for t in tasks for mode in MODES}
    max_runs = rng.randint(2, len(alone))
    done = subprocess.run([sys.executable, "-m", "asyncfc_cli", "batch", *map(str, tasks), "--mode",
                           ",".join(MODES), "--max-runs", str(max_runs), "--out", str(tmp_path / "out"), "--json"],
                          cwd=tmp_path, env=cli_env(CI="true"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert_same(alone, batch_outcomes(json.loads(done.stdout)), f"every mode, --max-runs {max_runs}", tasks)
