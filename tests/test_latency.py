"""What the loop knows about time, through the CLI: tool durations (expected_latency,
.asyncfc/latency.json across runs) decide holds, and the simulated server's
prompt cache decides each request's time to first token. Then :class:`LatencyBook`
directly: which durations its window keeps, its estimate, and its store (hostile
stores and concurrent saves from many processes: tests/test_hostile_files.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path


from asyncfc_cli import latency
from asyncfc_cli.latency import WINDOW, LatencyBook, load_store, tool_key
from asyncfc_cli.trace import read_trace

from conftest import invoke

DATA = Path(__file__).parent / "data"


def run(tmp_path: Path, task: Path, name: str = "t") -> tuple[dict, list[dict]]:
    trace = tmp_path / f"{name}.jsonl"
    # .asyncfc/ is the project's: the directory of the agents.toml in use
    (tmp_path / "agents.toml").touch()
    result = invoke("run", str(task), "--json", "--trace", str(trace), "--agents", str(tmp_path / "agents.toml"),
                    catch_exceptions=False)
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
    # Each expected time is what is left of its remembered run (its duration less
    # what the call had already run), not slow_nap's configured 30 s. Compared
    # with the remembered values rather than with fixed windows: on a loaded
    # machine a 0.1 s nap can take 0.3 s.
    remembered = {key.split("#")[0]: durations[-1] for key, durations in stored.items()}
    for futures, tool in ((("f1",), "quick_nap"), (("f2",), "slow_nap")):
        assert 0 < holds[futures]["expected"] <= remembered[tool] + 1e-6, (tool, holds[futures], remembered)
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


# --- LatencyBook, directly: the window, the estimate, the store -----------------------------


def seconds(*values: float) -> list[float]:
    return [float(v) for v in values]


def test_save_remembers_the_newest_window_of_durations():
    book = LatencyBook()
    for d in range(1, 21):
        book.observe("t", d)
    book.save()
    assert WINDOW == 16
    assert book.remembered["t"] == seconds(*range(5, 21))  # the newest 16, oldest first
    assert book.observed == {}
    book.save()  # nothing new: nothing counted twice
    assert book.remembered["t"] == seconds(*range(5, 21))
    book.observe("t", 21)
    book.save()
    assert book.remembered["t"] == seconds(*range(6, 22))


def test_durations_are_the_newest_known_this_runs_first():
    book = LatencyBook(remembered={"t": seconds(*range(1, 17))})
    assert book.durations("t") == seconds(*range(16, 0, -1))
    for d in (100, 101, 102):
        book.observe("t", d)
    assert book.durations("t") == seconds(102, 101, 100, *range(16, 3, -1))
    for d in range(200, 220):  # more than a window in this run alone: its newest
        book.observe("t", d)
    assert book.durations("t") == seconds(*range(219, 203, -1))


def test_durations_are_kept_by_tool_definition():
    class Tool:
        def __init__(self, name: str, parameters: dict) -> None:
            self.name, self.parameters, self.kind, self.source = name, parameters, "python", "m:f"

    old, new = Tool("t", {"a": {"type": "string"}}), Tool("t", {"a": {"type": "integer"}})
    assert tool_key(old) != tool_key(new) and tool_key(old).startswith("t#")
    book = LatencyBook.for_tools({"t": new})
    book.remembered = {tool_key(old): [5.0]}
    assert book.durations("t") == []  # what the old definition took says nothing of the new one
    book.observe("t", 1.0)
    book.save()
    assert book.remembered == {tool_key(old): [5.0], tool_key(new): [1.0]}


def test_the_configured_latency_counts_only_until_one_is_measured():
    book = LatencyBook(configured={"t": 30.0})
    assert book.durations("t") == [30.0]
    assert book.remaining("t", 0.0) == 30.0 and book.remaining("t", 10.0) == 20.0
    book.observe("t", 0.5)
    assert book.durations("t") == [0.5] and book.remaining("t", 0.0) == 0.5


def test_remaining_is_the_median_of_what_longer_runs_had_left():
    book = LatencyBook(remembered={"t": seconds(1, 2, 3, 10)})
    assert book.remaining("t", 0.0) == 2.5  # the median, not the mean (4.0)
    assert book.remaining("t", 1.5) == 1.5  # of 0.5, 1.5, 8.5
    assert book.remaining("t", 2.0) == 4.5  # only runs that lasted longer: 3 and 10
    assert book.remaining("t", 10.0) is None  # slower than every known run: not soon
    assert book.remaining("other", 0.0) is None  # nothing known
    assert LatencyBook(remembered={"z": [0.0]}).remaining("z", 0.0) == 0.0  # known to end at once


def test_observe_keeps_only_real_durations():
    book = LatencyBook()
    for d in (-1.0, float("nan"), float("inf"), 0.0, 2.0):
        book.observe("t", d)
    assert book.observed == {"t": [0.0, 2.0]}


def test_save_merges_with_what_other_runs_saved_meanwhile(tmp_path):
    store = tmp_path / ".asyncfc" / "latency.json"
    a, b = LatencyBook.for_tools({}, store), LatencyBook.for_tools({}, store)  # both started on an empty store
    a.observe("t", 1.0)
    a.observe("u", 5.0)
    a.save()
    b.observe("t", 2.0)
    b.save()
    assert json.loads(store.read_text()) == {"u": [5.0], "t": [1.0, 2.0]}  # b's save kept a's
    assert LatencyBook.for_tools({}, store).remembered == {"u": [5.0], "t": [1.0, 2.0]}
    for d in range(20):
        a.observe("t", 100 + d)
    a.save()
    assert json.loads(store.read_text())["t"] == seconds(*range(104, 120))


def test_a_store_keeps_the_newest_window_and_only_durations(tmp_path):
    store = tmp_path / "latency.json"
    store.write_text(json.dumps({"t": list(range(1, 21)), "u": [-1, 1e10, "x", True, None, 0.5]}))
    remembered, problem = load_store(store)
    assert remembered == {"t": seconds(*range(5, 21)), "u": [0.5]}
    assert "1 entries that are not durations" in problem
    assert load_store(tmp_path / "missing.json") == ({}, None)


def test_nothing_is_written_without_a_measurement_or_a_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "latency.json"
    LatencyBook.for_tools({}, store).save()
    assert not store.exists()
    book = LatencyBook()
    book.observe("t", 1.0)
    book.save()
    assert list(tmp_path.iterdir()) == [] and book.remembered == {"t": [1.0]}


def test_the_store_forgets_the_least_recently_saved_tools(tmp_path, monkeypatch):
    monkeypatch.setattr(latency, "MAX_TOOLS", 3)
    store = tmp_path / "latency.json"
    for name in ("a", "b", "c", "a", "d"):  # "a" saved again: now newer than b and c
        book = LatencyBook(store=store)
        book.observe(name, 1.0)
        book.save()
    assert list(json.loads(store.read_text())) == ["c", "a", "d"]


async def test_save_async_still_saves_in_a_cancelled_run(tmp_path):
    import trio

    store = tmp_path / "latency.json"
    book = LatencyBook(store=store)
    book.observe("t", 1.0)
    with trio.CancelScope() as scope:
        scope.cancel()
        await book.save_async()  # shielded: the run was cancelled, what it measured is kept
    assert json.loads(store.read_text()) == {"t": [1.0]}


async def test_a_cancelled_run_waits_only_a_moment_for_a_lock_held_elsewhere(tmp_path, monkeypatch):
    import fcntl

    import trio

    monkeypatch.setattr(latency, "LOCK_WAIT", 30.0)  # a cancelled save that used it would warn "over 30s"
    store = tmp_path / "latency.json"
    warnings: list[str] = []
    book = LatencyBook(store=store, warn=warnings.append)
    book.observe("t", 1.0)
    with open(tmp_path / "latency.json.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process that never lets go
        with trio.CancelScope() as scope:
            scope.cancel()  # Ctrl-C
            await book.save_async()
    assert not store.exists() and "locked by another process for over 0.5s" in warnings[0]
