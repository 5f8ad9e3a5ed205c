"""Text that is not Unicode, from anywhere, never becomes a failed request
(docs/reliability.md, issue 17 item 7).

Bytes that are not UTF-8 reach Python as lone surrogates: an argument
(``--set name=$'\\xff'``), an environment variable, a program's output; a
JSON ``"\\ud800"`` escape (a matrix row, a model, an MCP server) decodes to
one. No HTTP request can carry one. What the user passes is refused at once,
exit 2, naming the parameter; everything else reaches the model with U+FFFD
in its place. Before: the simulated model's thread raised UnicodeEncodeError
and the run retried a "Connection error", then exited 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import Reply, ScriptedServer, chunk, invoke, tool_call_stream

DATA = Path(__file__).parent / "data" / "surrogates"
NOT_UTF8 = "caf\udcff"  # what Python makes of the bytes b"caf\xff" in argv or the environment
LONE = "x\ud800y"  # what a JSON "\ud800" escape decodes to


def no_trace_written(tmp_path: Path) -> bool:
    return not any(tmp_path.rglob("*.jsonl"))


@pytest.mark.parametrize("value", [NOT_UTF8, LONE], ids=["byte 0xff", "lone surrogate"])
def test_a_set_value_that_is_not_text_is_exit_2_naming_the_parameter(tmp_path, value):
    result = invoke("run", str(DATA / "greet.toml"), "--set", f"name={value}", "--trace", str(tmp_path / "t.jsonl"))
    assert result.exit_code == 2
    assert "--set: parameter name holds" in result.stderr and "fix:" in result.stderr
    assert ("the byte 0xFF, which is not UTF-8" if value == NOT_UTF8 else "U+D800") in result.stderr
    assert "Connection error" not in result.output and no_trace_written(tmp_path)
    as_json = invoke("run", str(DATA / "greet.toml"), "--set", f"name={value}", "--json")
    report = json.loads(as_json.stdout)
    assert as_json.exit_code == 2 and report["status"] == "spec_error" and report["key"] == "--set"
    assert "parameter name" in report["error"]


def test_set_from_a_real_shell_argument(tmp_path):
    # The bytes as a shell passes them ($'\xff'), through a real process's argv.
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    proc = subprocess.run([sys.executable.encode(), b"-m", b"asyncfc_cli.cli", b"run", str(DATA / "greet.toml").encode(),
                           b"--set", b"name=caf\xff"], cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert b"parameter name holds the byte 0xFF" in proc.stderr and b"Traceback" not in proc.stderr


def test_a_prompt_that_is_not_text_is_exit_2(tmp_path):
    result = invoke("run", "-a", "simulated", "--agents", str(DATA / "agents.toml"), f"hello {NOT_UTF8}",
                     "--trace", str(tmp_path / "t.jsonl"))
    assert result.exit_code == 2
    assert "prompt: the prompt holds the byte 0xFF" in result.stderr and no_trace_written(tmp_path)


def test_a_prompt_made_from_the_environment_is_checked_too(tmp_path):
    task = tmp_path / "task.toml"
    task.write_text('agent = "simulated"\nprompt = "Say ${ASYNCFC_TEST_WORD}."\n')
    result = invoke("run", str(task), "--agents", str(DATA / "agents.toml"), env={"ASYNCFC_TEST_WORD": NOT_UTF8})
    assert result.exit_code == 2
    assert f"{task}: prompt: the prompt holds the byte 0xFF" in result.stderr


def test_a_matrix_value_that_is_not_text_is_exit_2_naming_its_row(tmp_path):
    matrix = tmp_path / "m.jsonl"
    matrix.write_text('{"name": "Ada"}\n{"name": "x\\ud800y"}\n')  # a JSON escape: valid UTF-8 file
    result = invoke("batch", str(DATA / "greet.toml"), "--matrix", str(matrix), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert f"{matrix}: row 2: parameter name holds a lone surrogate (U+D800)" in result.stderr
    assert not (tmp_path / "out" / "results.jsonl").exists()  # nothing ran


def test_the_simulated_model_sends_what_the_environment_gave_it_as_replacement_characters(tmp_path):
    # The sim's own plan picks up the variable's bytes; it answers as any UTF-8 stream would.
    result = invoke("run", str(DATA / "greet.toml"), "--json", "--trace", str(tmp_path / "t.jsonl"),
                     env={"ASYNCFC_TEST_SIM_ANSWER": NOT_UTF8})
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["answer"] == "Hello Ada caf\ufffd" and report["usage"]["requests"] == 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_real_models_requests_carry_replacement_characters_never_a_connection_error(tmp_path, mode):
    # A tool's description and the instructions from the environment, a tool
    # result from bytes that are not UTF-8: every request still goes out.
    def script(request):
        if not any(m["role"] == "tool" for m in request["body"]["messages"]):
            return Reply(chunks=tool_call_stream([("c1", "bytes_out", "{}")]))
        return Reply(chunks=[chunk({"role": "assistant", "content": "done"}), chunk({}, "stop")])

    env = {"ASYNCFC_TEST_DESCRIPTION": f"Return {NOT_UTF8}.", "ASYNCFC_TEST_INSTRUCTIONS": f"Be {NOT_UTF8}!"}
    with ScriptedServer([script]) as server:
        env["ASYNCFC_TEST_API_BASE"] = server.base_url
        result = invoke("run", str(DATA / "remote.toml"), "--json", "--mode", mode,
                         "--trace", str(tmp_path / "t.jsonl"), env=env)
        requests = server.requests
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["answer"] == "done" and report["tool_calls"][0]["status"] == "ok"
    assert len(requests) == 2  # no retry
    first, second = (json.dumps(r["body"], ensure_ascii=False) for r in requests)
    assert "Return caf\ufffd." in first and "Be caf\ufffd!" in first
    assert "caf\ufffd \ufffd" in second  # the tool's output, as the model reads it
    assert "Connection error" not in result.output
