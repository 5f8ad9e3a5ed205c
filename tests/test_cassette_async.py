"""Async-mode replays do not depend on the tools' timing.

In async mode which outcomes a request carries (a value, a pending handle, a
``wait`` result, the plain delivery message) depends on when the tools
finished. A cassette of an async run says, for each request, what it carried;
a replay makes exactly those deliveries: it holds a call whose value went back
in its own tool message until it is done, however slow the tool is now, and
gives a handle to one that went back as a handle, however fast it is now.

The tools here really run (a Python tool that sleeps as long as an environment
variable says), and the recording talks to the simulated model through
LiteLLM's real path, as does the replay.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asyncfc_cli.trace import read_trace
from test_cassettes import cli, report

WORK_TOOL = '''
import os

import trio


async def work(name: str) -> str:
    """Do one job.

    Args:
        name: The job.
    """
    await trio.sleep(float(os.environ["WORK_DELAY_" + name.upper()]))
    return f"{name} done"
'''

AGENTS = """
[tools.work]
python = "work:work"

[agents.worker]
model = "sim"
tools = ["work"]
mode = "async"
"""

# a and b start together; the model needs a before it goes on (a wait), then
# starts c and waits for b and c.
TASK = """
agent = "worker"
prompt = "Do the jobs a, b and c."

[sim]
decode_tps = 50
ttft = 0.3
seed = 1

[[sim.steps]]
id = "a"
tool = "work"
args = { name = "a" }

[[sim.steps]]
id = "b"
think = 10
tool = "work"
args = { name = "b" }

[[sim.steps]]
id = "c"
think = 10
tool = "work"
args = { name = "c" }
needs = ["a"]

[sim.final]
think = 10
answer = "Results: {a}, {b}, {c}."
"""


def delays(a: float, b: float, c: float) -> dict[str, str]:
    return {"WORK_DELAY_A": str(a), "WORK_DELAY_B": str(b), "WORK_DELAY_C": str(c)}


def requests(cassette: Path) -> list[dict]:
    lines = [json.loads(line) for line in cassette.read_text().splitlines()]
    return [line for line in lines if line["type"] == "request"]


def resolved_at(trace: Path, future: str) -> float:
    return next(e.t for e in read_trace(trace).events if e.type == "future_resolved" and e["future"] == future)


def request_began_at(trace: Path, request: int) -> float:
    return next(e.t for e in read_trace(trace).events if e.type == "model_begin" and e["request"] == request)


def request_ended_at(trace: Path, request: int) -> float:
    return next(e.t for e in read_trace(trace).events if e.type == "model_end" and e["request"] == request)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, dict]:
    """An async run where a and c are quick and b is slow."""
    root = tmp_path_factory.mktemp("async-cassette")
    (root / "work.py").write_text(WORK_TOOL)
    (root / "agents.toml").write_text(AGENTS)
    (root / "task.toml").write_text(TASK)
    live = cli("run", "task.toml", "--record", "c.jsonl", "--json", cwd=root, extra_env=delays(0.01, 3, 0.01))
    assert live.returncode == 0, live.stderr
    return root, report(live)


def test_an_async_cassette_says_what_each_request_carried(recorded):
    root, live = recorded
    carried = [r["futures"] for r in requests(root / "c.jsonl")]
    # a was done when the first response ended (its value inline), b was not (a handle);
    # the wait for a had nothing left to return; c came back inline, b through the second wait.
    assert carried == [{}, {"result": ["f1"], "waits": [[]]}, {"result": ["f3"], "waits": [["f2"]]}]
    tool_messages = [m["content"] for m in live["messages"] if m["role"] == "tool"]
    assert tool_messages[:2] == ["a done", '{"future":"f2"}']


@pytest.mark.parametrize("speed", ["recorded", "instant"])
def test_an_async_replay_with_other_tool_timing_makes_the_recorded_deliveries(tmp_path, recorded, speed):
    root, live = recorded
    # Now a and c are slow and b is quick: left to the clock, request 2 would carry a
    # handle for f1 and the value of f2, and the replay would stop as diverged.
    trace = tmp_path / "replay.jsonl"
    replay = cli("run", "task.toml", "--replay", "c.jsonl", "--replay-speed", speed, "--json", "--trace", trace,
                 cwd=root, extra_env=delays(2.5, 0.01, 1.5))
    assert replay.returncode == 0, replay.stderr
    again = report(replay)
    assert again["answer"] == live["answer"] == "Results: a done, b done, c done."
    assert again["messages"] == live["messages"]  # the same conversation, request by request
    assert [(c["tool"], c["arguments"]) for c in again["tool_calls"]] == \
        [(c["tool"], c["arguments"]) for c in live["tool_calls"]]
    # f1 was still running when the first response ended, and was held for;
    # f2 was done before the second request began, and went back as a handle all the same.
    assert resolved_at(trace, "f1") > request_ended_at(trace, 1)
    assert resolved_at(trace, "f2") < request_began_at(trace, 2)


def test_an_async_cassette_without_deliveries_still_replays_by_timing(tmp_path, recorded):
    """A cassette written before requests said what they carried replays as before:
    by the tools' timing, and a divergence says why it can happen."""
    root, _ = recorded
    old = root / "old.jsonl"
    lines = []
    for line in (root / "c.jsonl").read_text().splitlines():
        value = json.loads(line)
        value.pop("futures", None)
        lines.append(json.dumps(value))
    old.write_text("\n".join(lines) + "\n")
    same = cli("run", "task.toml", "--replay", old, "-q", cwd=root,
               extra_env=delays(0.01, 3, 0.01))
    assert same.returncode == 0, same.stderr
    other = cli("run", "task.toml", "--replay", old, "--replay-speed", "instant", cwd=root,
                extra_env=delays(2.5, 0.01, 1.5))
    assert other.returncode == 2
    assert "request 2 does not match the recorded one" in other.stderr
    assert "does not say which tool results each request carried" in other.stderr
