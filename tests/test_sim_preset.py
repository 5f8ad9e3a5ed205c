"""``[sim] preset``: a real engine's clock for the simulated model, through the CLI.

The preset's values come from benchmarks/real_model/clock.py (fitted to
llama-server with SmolLM2-135M); these tests check that a run uses them, that
a key written beside the preset wins, and that an unknown preset is a spec
error naming the choices. Timing is only checked from below (a simulated
delay is a sleep: it can run late on a busy machine, never early).
"""

from __future__ import annotations

import json
from pathlib import Path
from asyncfc_cli.sim.presets import PRESETS
from asyncfc_cli.trace import read_trace

from conftest import invoke

NAME = "llama.cpp-smollm2-135m-2core"
ANSWER = "The preset sets the clock of this simulated reply from a real engine."  # 72 characters: 18 tokens


def run(tmp_path: Path, sim_extra: str) -> tuple[int, dict, Path]:
    (tmp_path / "agents.toml").write_text("")
    task = tmp_path / "task.toml"
    task.write_text(f'prompt = "p"\n[agent]\nmodel = "sim"\ntools = []\n[sim]\n{sim_extra}\n'
                    f'[sim.final]\nanswer = "{ANSWER}"\n')
    trace = tmp_path / "t.jsonl"
    result = invoke("run", str(task), "--json", "--trace", str(trace), catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout), trace


def first_request(trace: Path) -> tuple[float, float]:
    """(time to first token, decode time) of the run's first request."""
    data = read_trace(trace)
    begin = data.of_type("model_begin")[0].t
    first = data.of_type("model_first_token")[0].t
    end = data.of_type("model_end")[0].t
    return first - begin, end - first


def test_a_preset_sets_the_sims_clock(tmp_path):
    preset = PRESETS[NAME]
    assert preset["ttft"] > 0 and preset["prefill_tps"] > 0 and preset["decode_tps"] > 0
    code, report, trace = run(tmp_path, f'preset = "{NAME}"')
    assert code == 0 and report["answer"] == ANSWER
    ttft, decode = first_request(trace)
    assert ttft >= preset["ttft"]
    # 18 tokens of answer at the preset's rate (the first is in the first token's time).
    assert decode >= 0.9 * 17 / preset["decode_tps"]


def test_a_key_written_beside_the_preset_wins(tmp_path):
    slower = PRESETS[NAME]["ttft"] + 1.0
    code, report, trace = run(tmp_path, f'preset = "{NAME}"\nttft = {slower}\ndecode_tps = 5000')
    assert code == 0
    ttft, _ = first_request(trace)
    assert ttft >= slower


def test_an_unknown_preset_is_a_spec_error_naming_the_presets(tmp_path):
    (tmp_path / "agents.toml").write_text("")
    task = tmp_path / "task.toml"
    task.write_text('prompt = "p"\n[agent]\nmodel = "sim"\ntools = []\n[sim]\npreset = "gpu-fast"\n'
                    '[sim.final]\nanswer = "x"\n')
    result = invoke("validate", str(task), "--json", catch_exceptions=False)
    assert result.exit_code == 2
    (checked,) = json.loads(result.stdout)["files"]
    assert "sim.preset" in checked["error"] and NAME in checked["error"] + (checked.get("fix") or "")
