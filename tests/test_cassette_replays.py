"""The project's own cassettes (tests/cassettes/), replayed in the default suite.

Each was recorded from the repository root by ``asyncfc run TASK --mode M
--model X --record tests/cassettes/...``: the example tasks on the simulated
model in each wire format, and runs of the real model (SmolLM2-135M on
llama.cpp's llama-server, tests/data/real_model/), so the real model's paths
(its stream, as llama.cpp sends it, decoded by LiteLLM's OpenAI adapter; the
tools it called, really run again) are covered without building the server.

Re-record them with ``python tests/test_cassette_replays.py --record`` (the
simulated ones) and ``--record-real`` (needs ``python
benchmarks/real_model/prepare.py`` first).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CASSETTES = REPO / "tests" / "cassettes"

# (task, mode, model) recorded on the simulated model.
SIM_RUNS = [
    ("tasks/quickstart.toml", "parallel", "sim"),
    ("tasks/quickstart.toml", "sync", "sim:anthropic"),
    ("tasks/quickstart.toml", "parallel", "sim:gemini"),
    ("tasks/quickstart.toml", "parallel", "sim:responses"),
    ("tasks/futures_demo.toml", "parallel", "sim"),
    ("tasks/mcp.toml", "sync", "sim"),
]
# (task, mode) recorded on the real model.
REAL_RUNS = [("arith", "sync"), ("notes", "sync"), ("notes", "async")]
REAL_TASKS = REPO / "tests" / "data" / "real_model" / "tasks"


def sim_name(task: str, mode: str, model: str) -> str:
    return f"{Path(task).stem}-{mode}-{model.replace(':', '-')}.jsonl"


def real_name(task: str, mode: str) -> str:
    return f"real-smollm2-{task}-{mode}.jsonl"


def env(**extra: str) -> dict[str, str]:
    out = dict(os.environ)
    out.pop("FORCE_COLOR", None)
    # The real-model agents read their server from LLAMA_API_BASE; a replay never reaches it.
    out.update(LITELLM_LOCAL_MODEL_COST_MAP="True", ASYNCFC_WARM="0", CI="1", ASYNCFC_TEST_PYTHON=sys.executable,
               LLAMA_API_BASE="http://127.0.0.1:9/v1")
    out.update(extra)
    return out


def asyncfc(*args: object, cwd: Path = REPO, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "asyncfc_cli.cli", *map(str, args)], cwd=cwd,
                          env=env(**(extra or {})), capture_output=True, text=True, timeout=300)


def header(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.loads(f.readline())


@pytest.mark.parametrize("task, mode, model", SIM_RUNS, ids=[sim_name(*r)[:-6] for r in SIM_RUNS])
def test_example_task_cassette_replays(tmp_path, task, mode, model):
    cassette = CASSETTES / sim_name(task, mode, model)
    assert header(cassette)["model"] == model and header(cassette)["mode"] == mode
    proc = asyncfc("run", task, "--mode", mode, "--model", model, "--replay", cassette, "--replay-speed", "instant",
                   "--json", "--trace", tmp_path / "t.jsonl")
    assert "Traceback" not in proc.stderr
    # 0: the task's [expect] holds on the replayed answer, with the tools really run again.
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["status"] == "ok" and data["tool_calls"]
    assert all(c["status"] == "ok" for c in data["tool_calls"])


@pytest.mark.parametrize("task, mode", REAL_RUNS, ids=[real_name(*r)[:-6] for r in REAL_RUNS])
def test_real_model_cassette_replays(tmp_path, task, mode):
    """A run of SmolLM2-135M on llama-server, replayed: the same outcome, the same calls, each run again."""
    cassette = CASSETTES / real_name(task, mode)
    recorded = json.loads((CASSETTES / (cassette.stem + ".report.json")).read_text())
    assert header(cassette)["model"] == "openai/smollm2-135m" and header(cassette)["provider"] == "openai"
    log = tmp_path / "executions.jsonl"
    proc = asyncfc("run", REAL_TASKS / f"{task}.toml", "--mode", mode, "--replay", cassette, "--replay-speed", "instant",
                   "--json", "--trace", tmp_path / "t.jsonl", cwd=tmp_path, extra={"REAL_MODEL_TOOL_LOG": str(log)})
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    assert (proc.returncode, data["status"]) == (recorded["exit_code"], recorded["status"]), proc.stderr
    assert data["answer"] == recorded["answer"]
    assert [(c["tool"], c["arguments"], c["status"]) for c in data["tool_calls"]] == \
        [(c["tool"], c["arguments"], c["status"]) for c in recorded["tool_calls"]]
    assert data["usage"]["requests"] == recorded["usage"]["requests"]
    ran = [json.loads(line)["tool"] for line in log.read_text().splitlines()] if log.exists() else []
    assert sorted(ran) == sorted(c["tool"] for c in data["tool_calls"] if c["status"] == "ok")


def _record_sim() -> None:
    for task, mode, model in SIM_RUNS:
        out = CASSETTES / sim_name(task, mode, model)
        proc = asyncfc("run", task, "--mode", mode, "--model", model, "--record", out.relative_to(REPO), "-q")
        print(out.name, proc.returncode, proc.stderr.strip()[-200:])


def _record_real() -> None:
    import tempfile

    sys.path.insert(0, str(REPO / "benchmarks"))
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import real_model_manifest
    from real_model.llama_server import llama_server

    with tempfile.TemporaryDirectory() as tmp, llama_server(real_model_manifest(), Path(tmp) / "log", threads=1) as server:
        for task, mode in REAL_RUNS:
            out = CASSETTES / real_name(task, mode)
            proc = asyncfc("run", REAL_TASKS / f"{task}.toml", "--mode", mode, "--record", out, "--json",
                           cwd=Path(tmp), extra={"LLAMA_API_BASE": server.base_url})
            data = json.loads(proc.stdout)
            keep = {k: data[k] for k in ("status", "exit_code", "answer", "tool_calls", "usage")}
            for call in keep["tool_calls"]:
                for k in ("start", "end", "duration"):
                    call.pop(k, None)
            (CASSETTES / (out.stem + ".report.json")).write_text(json.dumps(keep, indent=1) + "\n")
            print(out.name, proc.returncode, data["status"], len(data["tool_calls"]), "calls")


if __name__ == "__main__":
    if "--record" in sys.argv:
        _record_sim()
    if "--record-real" in sys.argv:
        _record_real()
