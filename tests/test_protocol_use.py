"""How a model used the futures protocol (asyncfc_cli/bench/protocol_use.py), counted
from real async runs' traces: the simulated model made to break the protocol the
ways real models do, through ``asyncfc run``; and the table ``asyncfc bench bfcl
--model`` prints next to accuracy."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from asyncfc_cli.bench.protocol_use import protocol_use
from asyncfc_cli.trace import read_trace

from conftest import invoke

DATA = Path(__file__).parent / "data"


def run_async(tmp_path: Path, misbehave: list[str]) -> tuple[dict, dict]:
    (tmp_path / "agents.toml").write_text("")
    module = "naptools_" + "_".join(misbehave)  # runs share this process: one module name each
    task = tmp_path / "task.toml"
    task.write_text(f"""
prompt = "p"
[agent]
model = "sim"
tools = ["nap"]
mode = "async"
[tools.nap]
python = "{module}:nap"
[sim]
decode_tps = 4000
ttft = 0.05
misbehave = {json.dumps(misbehave)}
[[sim.steps]]
id = "a"
tool = "nap"
args = {{ seconds = 2 }}  # long enough to be unseen when the model answers, even on a busy machine
[[sim.steps]]
id = "b"
tool = "nap"
args = {{ seconds = "{{a}}" }}
[sim.final]
answer = "b={{b}}"
""")
    (tmp_path / f"{module}.py").write_text(
        "import time\n\ndef nap(seconds: float) -> float:\n    time.sleep(min(float(seconds), 3))\n    return 0.1\n")
    trace = tmp_path / "t.jsonl"
    result = invoke("run", str(task), "--json", "--trace", str(trace), catch_exceptions=False)
    report = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    return report, protocol_use(read_trace(trace).events)


def test_a_model_that_follows_the_protocol(tmp_path):
    report, use = run_async(tmp_path, [])
    assert report["status"] == "ok"
    assert use["calls"] == 2 and use["refs"] == 1  # b forwards a as "$f1"
    assert use["bad_refs"] == use["bad_waits"] == use["early_answers"] == 0
    assert use["waits"] >= 1


def test_a_model_that_miscounts_and_answers_early(tmp_path):
    report, use = run_async(tmp_path, ["unknown_future", "early_answer"])
    assert report["status"] == "ok"
    assert use["bad_refs"] >= 1  # a reference to a future never issued
    assert use["early_answers"] >= 1  # an answer while an outcome was unseen, held by the finish rule
    calls = report["tool_calls"]
    assert use["calls"] == len(calls)


def bfcl_dir() -> Path | None:
    """The BFCL data as a developer's or CI's checkout has it: $ASYNCFC_BFCL_DIR, the
    shared data above the repository, or the project machine's /work/shared."""
    for candidate in (os.environ.get("ASYNCFC_BFCL_DIR"), DATA.parent.parent.parent / "shared" / "data" / "bfcl",
                      "/work/shared/data/bfcl"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


@pytest.fixture
def bfcl(monkeypatch):
    """Named to the command the way a user outside the tree names it (a clone anywhere)."""
    found = bfcl_dir()
    if found is None:
        pytest.skip("BFCL data not found (set ASYNCFC_BFCL_DIR)")
    monkeypatch.setenv("ASYNCFC_BFCL_DIR", str(found))
    return found


def test_bench_bfcl_model_reports_protocol_use_in_async_mode(bfcl):
    result = invoke("bench", "bfcl", "--model", "sim", "--category", "parallel", "--limit", "2",
                    "--decode-tps", "2000", "--ttft", "0", "--json", "-q",
                    catch_exceptions=False)
    assert result.exit_code == 0, result.output
    accuracy = json.loads(result.stdout)["accuracy"]
    rows = {r["mode"]: r for r in accuracy["rows"]}
    assert rows["sync"]["protocol"] is None and rows["parallel"]["protocol"] is None
    use = rows["async"]["protocol"]
    entries = [e for e in accuracy["entries"] if e["mode"] == "async"]
    assert use["calls"] == sum(len(e["calls"]) for e in entries) > 0
    assert use["bad_refs"] == use["early_answers"] == 0
    assert rows["async"]["requests_vs_sync"] == sum(e["requests"] for e in entries) - sum(
        e["requests"] for e in accuracy["entries"] if e["mode"] == "sync")
    assert "futures protocol use on sim" in result.stderr


def test_bench_bfcl_on_a_local_server_needs_no_key(bfcl, monkeypatch):
    """--api-base without a key: the placeholder `asyncfc run` sends, not LiteLLM's missing-key error."""
    from conftest import Reply, ScriptedServer, text_stream

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with ScriptedServer([Reply(chunks=text_stream("No call needed."))]) as server:
        result = invoke("bench", "bfcl", "--model", "openai/local", "--api-base", server.base_url,
                        "--category", "parallel", "--limit", "1", "--mode", "sync,async",
                        "--json", "-q", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    entries = json.loads(result.stdout)["accuracy"]["entries"]
    assert [e["status"] for e in entries] == ["ok", "ok"]
    assert {r["headers"]["authorization"] for r in server.requests} == {"Bearer asyncfc-no-key"}
