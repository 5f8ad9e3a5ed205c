"""asyncfc bench: the checker, the ideal bound, the workloads and the commands.

Fast on purpose: tiny workloads on the in-process simulated model under
MockClock, one small run over HTTP. BFCL data is read from ../shared (never
copied here); tests that need it skip, saying why, when it is absent.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import trio

from asyncfc_cli.bench import checker, fs
from asyncfc_cli.bench.data import ENV_VAR, SINGLE_TURN, DataNotFound, find_bfcl_dir, json_schema, load_single, tool_names
from asyncfc_cli.bench.ideal import ideal_bound
from asyncfc_cli.bench.latency import Latency
from asyncfc_cli.bench.runner import InProcess, run_case, run_workload, summarize
from asyncfc_cli.bench.workloads import (FIXTURE_REPO, Timing, bfcl_cases, dag_cases, dag_plan_steps, fs_check,
                                         inspect_tools, multiturn_cases, nogain_cases)
from asyncfc_cli.sim.plan import SimPlan

from conftest import invoke

try:
    BFCL = find_bfcl_dir()
except DataNotFound as exc:
    BFCL, WHY = None, str(exc)
else:
    WHY = ""
needs_bfcl = pytest.mark.skipif(BFCL is None, reason=f"BFCL data not available ({WHY})")

MOCK = InProcess(mock=True)
FAST = Timing(decode_tps=50.0, ttft=0.25, prefill_tps=5000.0)


# --- finding the data --------------------------------------------------------------------


def _fake_bfcl(root: Path) -> Path:
    """A directory shaped like the BFCL one (empty files: no BFCL data)."""
    d = root / "shared" / "data" / "bfcl"
    (d / "possible_answer").mkdir(parents=True)
    (d / "BFCL_v4_parallel.json").write_text("")
    return d


def test_data_dir_option_then_env_then_walking_up(tmp_path, monkeypatch):
    found = _fake_bfcl(tmp_path / "project")
    deep = tmp_path / "project" / "main" / "sub"
    deep.mkdir(parents=True)
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert find_bfcl_dir(cwd=deep) == found.resolve()
    other = _fake_bfcl(tmp_path / "elsewhere")
    monkeypatch.setenv(ENV_VAR, str(other))
    assert find_bfcl_dir(cwd=deep) == other.resolve()
    assert find_bfcl_dir(found, cwd=deep) == found.resolve()


def test_data_dir_errors_say_where_and_how(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(DataNotFound, match="--data .*no BFCL files there"):
        find_bfcl_dir(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(DataNotFound, match=f"\\${ENV_VAR}=.*no BFCL files"):
        find_bfcl_dir(cwd=tmp_path)


def test_schemas_and_names_are_what_providers_accept():
    schema = json_schema({"type": "dict", "properties": {"x": {"type": "float"}, "t": {"type": "tuple", "items": {"type": "integer"}},
                                                         "n": {"type": "dict", "properties": {"a": {"type": "any"}}}}})
    assert schema["type"] == "object" and schema["properties"]["x"]["type"] == "number"
    assert schema["properties"]["t"]["type"] == "array" and schema["properties"]["n"]["properties"]["a"]["type"] == "string"
    assert tool_names(["spotify.play", "spotify_play", "a b"]) == {"spotify_play": "spotify.play",
                                                                   "spotify_play_2": "spotify_play", "a_b": "a b"}


# --- the checker -------------------------------------------------------------------------

GT = [{"area.calc": {"side": [5], "unit": ["cm", ""], "exact": [True, ""]}},
      {"city.info": {"city": ["New York", "NYC"], "fields": [["population", "area"]], "when": [{"year": [2020], "month": ["", 1]}]}}]
FUNCS = [{"name": "area.calc", "parameters": {"type": "dict", "properties": {
    "side": {"type": "integer"}, "unit": {"type": "string"}, "exact": {"type": "boolean"}}}},
    {"name": "city.info", "parameters": {"type": "dict", "properties": {
        "city": {"type": "string"}, "fields": {"type": "array"}, "when": {"type": "dict"}}}}]


def test_checker_accepts_any_order_omitted_optionals_and_any_acceptable_value():
    calls = [("city.info", {"city": "new york", "fields": ["population", "area"], "when": {"year": 2020}}),
             ("area.calc", {"side": 5})]
    assert checker.check(calls, GT, FUNCS).ok
    calls = [("area.calc", {"side": 5, "unit": "CM", "exact": True}),
             ("city.info", {"city": "NYC", "fields": ["population", "area"], "when": {"year": 2020, "month": 1}})]
    assert checker.check(calls, GT, FUNCS).ok


@pytest.mark.parametrize("calls, why", [
    ([("area.calc", {"side": 6}), ("city.info", {"city": "NYC", "fields": ["population", "area"], "when": {"year": 2020}})], "side=6"),
    ([("area.calc", {"side": 5.5}), ("city.info", {"city": "NYC", "fields": ["population", "area"], "when": {"year": 2020}})], "side=5.5"),
    ([("area.calc", {"side": True}), ("city.info", {"city": "NYC", "fields": ["population", "area"], "when": {"year": 2020}})], "side=true"),
    ([("area.calc", {"side": 5, "color": "red"}), ("city.info", {"city": "NYC", "fields": ["population", "area"], "when": {"year": 2020}})], "unexpected parameter 'color'"),
    ([("area.calc", {"unit": "cm"}), ("city.info", {"city": "NYC", "fields": ["population", "area"], "when": {"year": 2020}})], "missing required parameter 'side'"),
    ([("area.calc", {"side": 5}), ("city.info", {"city": "NYC", "fields": ["area", "population"], "when": {"year": 2020}})], "fields="),
    ([("area.calc", {"side": 5}), ("city.info", {"city": "NYC", "fields": ["population", "area"], "when": {"year": 2021}})], "when="),
    ([("area.calc", {"side": 5})], "expected 2 call(s)"),
    ([("area.calc", {"side": 5}), ("area.calc", {"side": 5}), ("city.info", {"city": "NYC", "fields": ["population", "area"], "when": {"year": 2020}})], "got 3"),
    ([("area.calc", {"side": 5}), ("area.calc", {"side": 5})], "called area.calc, expected city.info"),
])
def test_checker_catches_and_explains(calls, why):
    verdict = checker.check(calls, GT, FUNCS)
    assert not verdict.ok and why in verdict.reason


def _wrong_value(value):
    if isinstance(value, bool):
        return "not-a-bool"
    if isinstance(value, (int, float)):
        return value + 1000003
    if isinstance(value, str):
        return "zz" + value + "qq"
    if isinstance(value, list):
        return [*value, "zzextra"]
    return "zzwrong"


@needs_bfcl
@pytest.mark.parametrize("category", SINGLE_TURN)
def test_checker_on_bfcl_ground_truth_and_perturbations(category):
    entries = load_single(BFCL, category)
    assert len(entries) >= 100
    perturbed = 0
    for e in entries:
        truth = checker.ground_truth_calls(e.ground_truth)
        assert checker.check(truth, e.ground_truth, e.functions).ok, e.id
        assert checker.check(truth[::-1], e.ground_truth, e.functions).ok, e.id
        # missing call, extra call, wrong function: always possible, always caught
        assert not checker.check(truth[:-1], e.ground_truth, e.functions).ok, e.id
        assert not checker.check([*truth, truth[0]], e.ground_truth, e.functions).ok, e.id
        others = [f["name"] for f in e.functions if f["name"] != truth[0][0]]
        renamed = [(others[0] if others else truth[0][0] + "_x", truth[0][1]), *truth[1:]]
        assert not checker.check(renamed, e.ground_truth, e.functions).ok, e.id
        # wrong value: the first parameter whose perturbed value is not acceptable
        name, args = truth[0]
        for param, value in args.items():
            options = e.ground_truth[0][name][param]
            bad = _wrong_value(value)
            if not checker.acceptable(bad, options):
                verdict = checker.check([(name, {**args, param: bad}), *truth[1:]], e.ground_truth, e.functions)
                assert not verdict.ok and param in verdict.reason, (e.id, verdict)
                perturbed += 1
                break
    assert perturbed >= 0.95 * len(entries)


# --- the ideal bound ---------------------------------------------------------------------


def _ideal_plan(**kw):
    kw.setdefault("prefix_cache", False)
    return SimPlan.model_validate({"decode_tps": 10.0, "ttft": 1.0, "prefill_tps": 100.0, "chunk_chars": 4,
                                   "final": {"answer": "x" * 8}, **kw})


def test_ideal_bound_by_hand():
    # R = 1 + 100/100 = 2 s; 0.1 s per token; each call: 1 header + 8/4 fragments = 3 tokens.
    plan = _ideal_plan(steps=[{"id": "a", "tool": "t"}, {"id": "b", "tool": "t"}])
    ideal = ideal_bound(plan, {"a": 5.0, "b": 0.1}, {"a": 8, "b": 8}, answer_chars=8, prompt_tokens=100)
    # a decoded at 2.3, b at 2.6; a ends 7.3 -> answer request 7.3 + 2 = 9.3, answer 2 tokens.
    assert ideal.total == pytest.approx(9.5)
    assert ideal.decode_chain == pytest.approx(2.6 + 2 + 0.2)
    # With the server's prompt cache a later request costs at least the base 1 s only.
    cached = ideal_bound(_ideal_plan(steps=plan.model_dump()["steps"], prefix_cache=True),
                         {"a": 5.0, "b": 0.1}, {"a": 8, "b": 8}, answer_chars=8, prompt_tokens=100)
    assert cached.total == pytest.approx(8.5) and cached.decode_chain == pytest.approx(2.6 + 1 + 0.2)
    assert ideal.tool_chain == pytest.approx(5.0)
    assert ideal.requests == 2


def test_ideal_reads_cost_a_request_forwards_do_not_ordered_chains():
    forward = _ideal_plan(steps=[{"id": "a", "tool": "t"}, {"id": "b", "tool": "t", "args": {"x": "{a}"}}])
    read = _ideal_plan(steps=[{"id": "a", "tool": "t"}, {"id": "b", "tool": "t", "args": {"x": "{a}"}, "needs": ["a"]}])
    lat, chars = {"a": 1.0, "b": 1.0}, {"a": 8, "b": 8}
    f = ideal_bound(forward, lat, chars, 8, 100)
    r = ideal_bound(read, lat, chars, 8, 100)
    assert f.total == pytest.approx(2.3 + 1 + 1 + 2 + 0.2)  # b waits for a inside the executor
    assert r.total == pytest.approx(2.3 + 1 + 2 + 0.3 + 1 + 2 + 0.2) and r.requests == 3
    plain = _ideal_plan(steps=[{"id": "a", "tool": "w"}, {"id": "b", "tool": "w"}])
    assert ideal_bound(plain, lat, chars, 8, 100, {"w"}).total == pytest.approx(2.3 + 2 + 2 + 0.2)
    assert ideal_bound(plain, lat, chars, 8, 100).total == pytest.approx(2.6 + 1 + 2 + 0.2)


# --- workloads ---------------------------------------------------------------------------


def _check_bounds(result):
    for c in result.cases:
        assert c.ideal is not None
        for mode, r in c.runs.items():
            assert r.status == "ok", (c.case.id, mode, r.error)
            assert r.wall >= c.ideal.total - 1e-6, (c.case.id, mode, r.wall, c.ideal)
            assert c.ideal.total >= max(c.ideal.decode_chain, c.ideal.tool_chain) - 1e-9


@needs_bfcl
def test_bfcl_workload_is_correct_in_every_mode_and_async_overlaps():
    entries = [e for cat in SINGLE_TURN for e in load_single(BFCL, cat, limit=2)]
    result = run_workload("bfcl", bfcl_cases(entries, FAST, Latency.parse("const:1.0"), seed=3), MOCK)
    _check_bounds(result)
    for c in result.cases:
        assert all(r.correct for r in c.runs.values()), [(m, r.reason) for m, r in c.runs.items()]
        if c.case.info["calls"] > 1:
            assert c.runs["async"].wall < c.runs["sync"].wall - 0.5  # 1 s tools overlap
            assert c.runs["async"].overlap() > 0
    summary = summarize(result)
    a = summary["modes"]["async"]
    assert a["correct"] == a["runs"] == len(entries)
    assert a["extra_vs_sync"]["tokens_in"]["median"] > 0  # the instruction and handles are not free
    assert a["overhead_ms"]["median"] > 0
    assert 0.5 < a["efficiency"]["median"] <= 1.0 + 1e-9


def test_latency_distributions_are_seeded_and_validated():
    lat = Latency.parse("lognormal:0.5,0.6")
    assert lat.draw(1, "tool", "{}") == lat.draw(1, "tool", "{}") != lat.draw(2, "tool", "{}")
    assert Latency.parse("0.3") == Latency("const", 0.3)
    assert 0.1 <= Latency.parse("uniform:0.1,0.2").draw(0, "x") <= 0.2
    for bad in ("normal:1", "uniform:2,1", "const:-1", "exp:"):
        with pytest.raises(ValueError, match="bad latency"):
            Latency.parse(bad)


def test_file_system_operations():
    f = fs.FileSystem({"root": {"ws": {"type": "directory", "contents": {
        "doc": {"type": "directory", "contents": {"a.txt": {"type": "file", "content": "b line\na line\nbudget here"}}}}}}})
    assert f.call("cd", {"folder": "doc"}) == {"current_working_directory": "/ws/doc"}
    assert f.call("mkdir", {"dir_name": "tmp"}) == {}
    assert f.call("grep", {"file_name": "a.txt", "pattern": "budget"}) == {"matching_lines": ["budget here"]}
    assert f.call("sort", {"file_name": "a.txt"})["sorted_content"].startswith("a line")
    assert f.call("tail", {"file_name": "a.txt", "lines": 1}) == {"last_lines": "budget here"}
    assert f.call("cp", {"source": "a.txt", "destination": "b.txt"})["result"]
    assert f.call("mv", {"source": "a.txt", "destination": "tmp"})["result"]
    assert f.call("ls", {}) == {"current_directory_content": ["tmp", "b.txt"]}
    assert f.call("find", {"name": "a.txt"}) == {"matches": ["./tmp/a.txt"]}
    assert "error" in f.call("cat", {"file_name": "a.txt"})
    assert f.call("cd", {"folder": "tmp"}) and f.call("cat", {"file_name": "a.txt"})["file_content"].startswith("b line")
    assert f.call("diff", {"file_name1": "a.txt", "file_name2": "a.txt"}) == {"diff_lines": ""}
    assert f.call("cd", {"folder": ".."}) == {"current_working_directory": "/ws/doc"}
    assert fs.parse_call("tail('a.txt', lines=5)", {"tail": ["file_name", "lines"]}) == ("tail", {"file_name": "a.txt", "lines": 5})


@needs_bfcl
def test_multiturn_keeps_order_in_async_and_matches_sync():
    cases = multiturn_cases(BFCL, FAST, Latency.parse("lognormal:0.3,0.5"), seed=0, limit=2)
    result = run_workload("multi", cases, MOCK, ("sync", "async"))
    _check_bounds(result)
    for c in result.cases:
        for mode, r in c.runs.items():
            assert r.correct, (c.case.id, mode, r.reason)
            assert all(t.ordered for t in c.case.setup().tools.values())
        assert c.runs["async"].overlap() > 0  # decoding went on while ordered calls ran


@needs_bfcl
def test_order_check_catches_a_reordered_session():
    case = multiturn_cases(BFCL, FAST, Latency.parse("const:0.1"), seed=0, limit=1)[0]
    record = run_case(case, "sync", MOCK)
    assert fs_check(record, record) == (True, "")
    record.state.log[0], record.state.log[1] = record.state.log[1], record.state.log[0]
    ok, why = fs_check(record, None)
    assert not ok and "order broken at call 1" in why


# Parallel mode chains ordered calls in message order (bench found the race).
def test_parallel_mode_keeps_the_order_of_ordered_tools():
    from asyncfc_cli.bench.workloads import Case, Setup, _fs_tool, FsState

    doc = [{"name": "cd", "parameters": {"type": "dict", "properties": {"folder": {"type": "string"}}}},
           {"name": "ls", "parameters": {"type": "dict", "properties": {}}}]

    def setup():
        state = FsState(fs.FileSystem({"root": {"ws": {"type": "directory", "contents": {
            "d": {"type": "directory", "contents": {"f": {"type": "file", "content": ""}}}}}}}))
        slow = {"cd": Latency("const", 0.5), "ls": Latency("const", 0.1)}
        return Setup({f["name"]: _fs_tool(f["name"], f, state, slow[f["name"]], 0) for f in doc}, state)

    plan = SimPlan.model_validate({"decode_tps": 50.0, "ttft": 0.1, "steps": [
        {"id": "a", "tool": "cd", "args": {"folder": "d"}}, {"id": "b", "tool": "ls", "args": {}}],
        "final": {"answer": "{b}"}})
    record = run_case(Case("order", "t", plan, "go", setup), "parallel", MOCK)
    assert record.answer == '{"current_directory_content": ["f"]}'


def test_dag_generator_is_seeded_and_shaped():
    think = Latency.parse("uniform:0,20")
    a, b = dag_plan_steps(4, 3, 2, 0.5, think, 7), dag_plan_steps(4, 3, 2, 0.5, think, 7)
    assert a == b != dag_plan_steps(4, 3, 2, 0.5, think, 8)
    assert len(a) == 12
    for step in a[4:]:
        assert len(step["args"]["inputs"]) == 2
        assert set(step.get("needs", [])) <= {ref.strip("{}").split(".")[0] for ref in step["args"]["inputs"]}
    cases = dag_cases(FAST, 3, 3, 2, Latency.parse("const:1.0"), think, 0.3, [0, 1])
    forward_only = dag_cases(FAST, 3, 3, 2, Latency.parse("const:1.0"), think, 0.0, [2])
    result = run_workload("dag", cases + forward_only, MOCK)
    _check_bounds(result)
    for c in result.cases:
        assert all(r.correct for r in c.runs.values())
        assert c.runs["async"].wall < c.runs["sync"].wall and c.runs["parallel"].wall < c.runs["sync"].wall
    forwarded = result.cases[-1].runs  # nothing read mid-way: async forwards every value as "$fN"
    assert forwarded["async"].wall < forwarded["parallel"].wall - 1.0


def test_nogain_shows_the_extra_request_and_tokens():
    result = run_workload("no-gain", nogain_cases(FAST, latencies=(1.0,)), MOCK, ("parallel", "async"))
    by_id = {c.case.id: c.runs for c in result.cases}
    fan, chain, unread = by_id["nogain-fan3-L1"], by_id["nogain-chain3-L1"], by_id["nogain-unread2-L1"]
    # Each read is an inline wait in the message that makes the calls: no extra request.
    for runs in (fan, chain, unread):
        assert runs["async"].requests == runs["parallel"].requests
    for runs in by_id.values():
        assert runs["async"].answer == runs["parallel"].answer
        assert runs["async"].tokens_in > runs["parallel"].tokens_in
        assert runs["async"].tokens_out > runs["parallel"].tokens_out
        assert runs["async"].wall >= runs["parallel"].wall - 0.1  # nothing to win


def test_inspection_tools_run_real_processes_on_the_fixture():
    tools = inspect_tools(FIXTURE_REPO)

    async def main():
        found = await tools["grep"].invoke({"pattern": "TODO", "path": "ledger"})
        size = await tools["count_lines"].invoke({"path": "ledger/report.py"})
        head = await tools["read_file"].invoke({"path": "ledger/currency.py", "lines": 3})
        return found, size, head

    found, size, head = trio.run(main)
    assert found["stdout"].count("TODO") == 3
    assert size["stdout"].split()[-1] == "ledger/report.py"
    assert head["stdout"].startswith('"""Amounts of money')


def test_hold_experiment_trades_a_wait_round_trip_for_a_grace():
    from asyncfc_cli.bench.experiments import hold_experiment

    cases = nogain_cases(FAST, latencies=(0.3,))
    rows = {r["policy"]: r for r in hold_experiment([("no-gain", cases)], ("never", 1.0, "latency", "inline"))}
    assert all(r["correct"] == len(cases) for r in rows.values())
    assert rows[1.0]["requests"] < rows["never"]["requests"]  # results came back as values, no wait
    assert rows[1.0]["wall"] < rows["never"]["wall"]
    assert rows["latency"]["holds"] > 0 and rows["never"]["holds"] == rows["inline"]["holds"] == 0
    assert rows["inline"]["requests"] <= rows[1.0]["requests"]  # the model said what it needs


# --- overhead, charts, commands ----------------------------------------------------------


def test_overhead_measures_are_positive_and_per_call():
    from asyncfc_cli.bench.overhead import executor_once, loop_once

    # Real-clock figures: the bounds only say "per call, not seconds", wide enough for
    # a loaded machine (the benchmark reports the figures, milliseconds or less).
    for mode in ("sync", "parallel", "async"):
        assert 0 < executor_once(20, mode) < 0.5
    assert 0 < executor_once(20, "async", gate=True) < 0.5
    per_call, without_model, dispatch = loop_once(10, "async")
    assert 0 < without_model < per_call < 0.5 and len(dispatch) == 10 and all(d >= 0 for d in dispatch)


def test_charts_are_valid_svg_naming_their_command():
    from asyncfc_cli.bench.report import overhead_svg, sweep_svg

    sweep = {"shape": {"width": 3, "depth": 3, "fan_in": 2, "read_share": 0.3, "think": "uniform:0,30"},
             "seeds": [0], "timing": {"ttft": 0.25, "prefill_tps": 5000}, "decode_rates": [10, 100],
             "latencies": [0, 1], "cells": [{"decode_tps": r, "latency": lat, "speedup_vs_sync": 1.2,
                                             "speedup_vs_parallel": 0.9, "efficiency": 0.95}
                                            for r in (10, 100) for lat in (0, 1)]}
    for text in (sweep_svg(sweep, "asyncfc bench sweep --x <y>"),
                 overhead_svg([{"n": n, "mode": m, "executor_ms_per_call": 0.1, "loop_ms_per_call": 0.3,
                                "loop_without_model_ms_per_call": 0.2, "dispatch_ms_median": 0.2} for n in (1, 10) for m in ("sync", "async")],
                              "asyncfc bench sweep --x <y>")):
        root = ET.fromstring(text)
        assert root.tag.endswith("svg")
        assert "asyncfc bench sweep --x <y>" in "".join(root.itertext())


def test_bench_command_json_and_usage_errors():
    done = invoke("bench", "nogain", "--latencies", "0.3", "--mode", "parallel,async", "--json", "-q",
                  catch_exceptions=True)
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    (workload,) = doc["workloads"]
    assert workload["workload"] == "no-gain" and set(workload["modes"]) == {"parallel", "async"}
    # The price, shown: tokens only; every read is an inline wait, no extra request.
    assert {p["extra_requests"] for p in workload["price_vs_parallel"]} == {0}
    assert all(p["extra_tokens_in"] > 0 for p in workload["price_vs_parallel"])
    assert doc["machine"]["cores"] and doc["command"].startswith("asyncfc bench nogain")
    # --no-prefix-cache reaches every plan, and the reproducing command says so.
    cold = invoke("bench", "--no-prefix-cache", "nogain", "--latencies", "0.3", "--mode",
                  "parallel,async", "--json", "-q", catch_exceptions=True)
    doc_cold = json.loads(cold.stdout)
    assert doc_cold["command"].startswith("asyncfc bench --no-prefix-cache nogain")
    cold_async = doc_cold["workloads"][0]["modes"]["async"]["wall"]["median"]
    assert cold_async > workload["modes"]["async"]["wall"]["median"]  # every request prefills it all
    bad = invoke("bench", "bfcl", "--data", "/nonexistent/bfcl", catch_exceptions=True)
    assert bad.exit_code == 2 and "no BFCL files there" in bad.stderr
    bad = invoke("bench", "dag", "--mode", "fast", catch_exceptions=True)
    assert bad.exit_code == 2 and "fast is not a mode" in bad.stderr


def test_bench_module_does_not_import_litellm():
    code = ("import sys\nimport asyncfc_cli.commands.bench, asyncfc_cli.bench.suite, asyncfc_cli.bench.runner\n"
            "print('litellm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


@needs_bfcl
def test_accuracy_over_http_on_the_simulated_model(litellm):
    """The real-model path end to end: LiteLLM, the HTTP bridge, the checker, per mode."""
    from asyncfc_cli.bench.accuracy import run_accuracy
    from asyncfc_cli.bench.runner import http_transport

    entries = load_single(BFCL, "parallel", limit=1)
    timing = Timing(decode_tps=2000.0, ttft=0.0)
    first = bfcl_cases(entries, timing, Latency("const", 0.0), 0)[0]
    with http_transport("sim", first_plan=first.plan) as transport:
        rows, details = run_accuracy(entries, transport, ("sync", "async"), Latency("const", 0.0), timing=timing)
    assert [(r["mode"], r["correct"], r["entries"]) for r in rows] == [("sync", 1, 1), ("async", 1, 1)]
    assert all(d["status"] == "ok" and d["requests"] >= 2 for d in details)
    assert math.isfinite(rows[1]["wall_median"])
