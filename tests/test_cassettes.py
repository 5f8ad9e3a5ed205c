"""Cassettes through the CLI: ``asyncfc run --record`` / ``--replay`` (and their settings).

Recording talks to a model through LiteLLM's real path (the simulated model's
server in each provider's wire format, or a scripted OpenAI-compatible endpoint
on 127.0.0.1); replaying serves the cassette through the simulated model's
server again, and the tools really run both times.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asyncfc_cli.trace import read_trace
from conftest import REPO, Reply, ScriptedServer, chunk

QUICKSTART = REPO / "tasks" / "quickstart.toml"


def env(**extra: str) -> dict[str, str]:
    out = dict(os.environ)
    out.pop("FORCE_COLOR", None)
    out.update(LITELLM_LOCAL_MODEL_COST_MAP="True", ASYNCFC_WARM="0", CI="1", ASYNCFC_TEST_PYTHON=sys.executable,
               **extra)
    return out


def cli(*args: object, cwd: Path, extra_env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "asyncfc_cli.cli", *map(str, args)], cwd=cwd,
                          env=env(**(extra_env or {})), capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def report(proc: subprocess.CompletedProcess) -> dict:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


def calls(data: dict) -> list[tuple[str, str]]:
    return sorted((c["tool"], json.dumps(c["arguments"], sort_keys=True)) for c in data["tool_calls"])


def model_seconds(trace: Path) -> float:
    """Time spent in model requests, less the first request's wait for its first token:
    that is LiteLLM's lazy set-up in a fresh process (seconds on a loaded machine), not the model."""
    spans = read_trace(trace).spans("model")
    setup = spans[0].marks.get("first_token", spans[0].start) - spans[0].start
    return sum(span.end - span.start for span in spans) - setup


@pytest.mark.parametrize("model", ["sim", "sim:anthropic", "sim:gemini", "sim:responses"])
def test_replay_gives_the_recorded_run_in_each_wire_format(tmp_path, model):
    cassette = tmp_path / "quickstart.jsonl"
    # Parallel mode: what each request carries does not depend on how fast the tools were
    # (in async mode it does: docs/cassettes.md).
    live = cli("run", QUICKSTART, "--model", model, "--mode", "parallel", "--json", "--record", cassette,
               "--trace", tmp_path / "live.jsonl", cwd=tmp_path)
    assert live.returncode == 0, live.stderr
    header = json.loads(cassette.read_text().splitlines()[0])
    assert header["type"] == "cassette" and header["version"] == 1 and header["model"] == model
    assert header["wire"] == (model.partition(":")[2] or "openai") and header["mode"] == "parallel"
    assert header["asyncfc"] and header["provider"] == "asyncfc.sim"

    replayed = cli("run", QUICKSTART, "--model", model, "--mode", "parallel", "--json", "--replay", cassette,
                   "--trace", tmp_path / "replay.jsonl", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    before, after = report(live), report(replayed)
    assert after["answer"] == before["answer"]
    assert calls(after) == calls(before)
    assert after["usage"] == before["usage"]
    # Recorded speed: the run takes about as long as the live one (wide margin: a loaded machine).
    assert abs(after["wall"] - before["wall"]) < 0.35 * before["wall"], (before["wall"], after["wall"])


def test_instant_and_factor_speeds(tmp_path):
    cassette = tmp_path / "sync.jsonl"
    live = cli("run", QUICKSTART, "--mode", "sync", "--json", "--record", cassette, "--trace", tmp_path / "live.jsonl",
               cwd=tmp_path)
    assert live.returncode == 0, live.stderr
    instant = cli("run", QUICKSTART, "--mode", "sync", "--json", "--replay", cassette, "--replay-speed", "instant",
                  "--trace", tmp_path / "instant.jsonl", cwd=tmp_path)
    assert instant.returncode == 0, instant.stderr
    assert report(instant)["answer"] == report(live)["answer"]
    recorded_model_time = model_seconds(tmp_path / "live.jsonl")
    assert recorded_model_time > 2  # the simulated model decodes at 60 tokens/s
    assert model_seconds(tmp_path / "instant.jsonl") < 1.0
    faster = cli("run", QUICKSTART, "--mode", "sync", "--json", "--replay", cassette, "--replay-speed", "4",
                 "--trace", tmp_path / "fast.jsonl", cwd=tmp_path)
    assert faster.returncode == 0, faster.stderr
    assert model_seconds(tmp_path / "fast.jsonl") < recorded_model_time


@pytest.fixture(scope="module")
def quickstart_cassette(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("recorded")
    cassette = where / "quickstart-async.jsonl"
    live = cli("run", QUICKSTART, "--json", "--record", cassette, "--trace", where / "t.jsonl", cwd=where)
    assert live.returncode == 0, live.stderr
    return cassette


def test_a_changed_prompt_stops_the_replay_naming_the_message(tmp_path, quickstart_cassette):
    proc = cli("run", QUICKSTART, "--set", "topic=asyncio", "--replay", quickstart_cassette, cwd=tmp_path)
    assert proc.returncode == 2
    assert "request 1 does not match the recorded one: message 2 (user) differs" in proc.stderr
    assert "asyncio" in proc.stderr and "fix: re-record" in proc.stderr and "--replay-match sequence" in proc.stderr
    as_json = cli("run", QUICKSTART, "--set", "topic=asyncio", "--replay", quickstart_cassette, "--json",
                  cwd=tmp_path)
    assert as_json.returncode == 2
    data = report(as_json)
    assert data["status"] == "cassette_diverged" and data["exit_code"] == 2
    assert data["error"].startswith(f"{quickstart_cassette}: request 1 does not match")
    assert data["fix"].startswith("re-record the cassette")


def test_replay_match_sequence_serves_in_order_whatever_was_sent(tmp_path, quickstart_cassette):
    proc = cli("run", QUICKSTART, "--set", "topic=asyncio", "--replay", quickstart_cassette,
               "--replay-match", "sequence", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "trio is a Python library" in report(proc)["answer"]  # the recorded answer, not a new one


def test_a_cassette_from_another_mode_or_model_is_refused(tmp_path, quickstart_cassette):
    proc = cli("run", QUICKSTART, "--mode", "sync", "--replay", quickstart_cassette, cwd=tmp_path)
    assert proc.returncode == 2
    assert "recorded in async mode and this run is in sync mode" in proc.stderr
    assert "--mode async" in proc.stderr
    other = cli("run", QUICKSTART, "--model", "sim:gemini", "--replay", quickstart_cassette, cwd=tmp_path)
    assert other.returncode == 2
    assert "recorded with the model sim and this run's model is sim:gemini" in other.stderr


READER_AGENTS = """
[tools.read]
description = "Read a file."
command = ["cat", "--", "{path}"]
[tools.read.params]
path = { type = "string", description = "The file", path = true }

[agents.reader]
model = "sim"
tools = ["read"]
mode = "sync"
"""

READER_TASK = """
agent = "reader"
prompt = "What does note.txt say?"

[sim]
decode_tps = 400
ttft = 0.05

[[sim.steps]]
id = "n"
tool = "read"
args = { path = "note.txt" }

[sim.final]
answer = "It says: {n.stdout}"
"""


def test_a_changed_tool_result_stops_the_replay(tmp_path):
    (tmp_path / "agents.toml").write_text(READER_AGENTS)
    (tmp_path / "task.toml").write_text(READER_TASK)
    (tmp_path / "note.txt").write_text("buy milk\n")
    live = cli("run", "task.toml", "--record", "c.jsonl", "-q", cwd=tmp_path)
    assert live.returncode == 0, live.stderr
    again = cli("run", "task.toml", "--replay", "c.jsonl", "--replay-speed", "instant", cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # the tool gave the same result: the replay goes through
    assert "It says: buy milk" in again.stdout
    (tmp_path / "note.txt").write_text("buy bread\n")
    changed = cli("run", "task.toml", "--replay", "c.jsonl", "--replay-speed", "instant", cwd=tmp_path)
    assert changed.returncode == 2
    assert "request 2 does not match the recorded one: message 3 (tool) differs" in changed.stderr
    assert "buy milk" in changed.stderr and "buy bread" in changed.stderr
    assert "fix: re-record" in changed.stderr


# --- secrets ----------------------------------------------------------------------------

SECRET_ENV = "sk-env-0123456789abcdef"
SECRET_PARAM = "param-token-ZYXWVU987654"
SECRET_HEADER = "hdr-secret-AAAA1111BBBB"


def _spread(text: str) -> list[dict]:
    """``text`` streamed three characters per event, as a model decodes."""
    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": text[i:i + 3]}) for i in range(0, len(text), 3)]
    return out + [chunk({}, "stop")]


def test_no_secret_is_written_to_a_cassette(tmp_path):
    answer = (f"The key is {SECRET_ENV} and the token is {SECRET_PARAM}; header {SECRET_HEADER}. "
              f"Whole: {SECRET_ENV}")
    (tmp_path / "agents.toml").write_text(f"""
[models.scripted]
model = "openai/scripted-model"
api_base = "${{CAS_BASE}}"
api_key = "${{CAS_SECRET_KEY}}"
params = {{ temperature = 0, api_token = "{SECRET_PARAM}", extra_headers = {{ "X-Custom" = "{SECRET_HEADER}" }} }}
retries = 0

[agents.echo]
model = "scripted"
instructions = "Answer."
mode = "sync"
""")
    (tmp_path / "task.toml").write_text('agent = "echo"\nprompt = "Say the key."\n')
    with ScriptedServer([Reply(chunks=_spread(answer))]) as server:
        extra = {"CAS_BASE": server.base_url, "CAS_SECRET_KEY": SECRET_ENV}
        live = cli("run", "task.toml", "--record", "c.jsonl", "--json", cwd=tmp_path, extra_env=extra)
        assert live.returncode == 0, live.stderr
        assert server.requests[0]["headers"]["authorization"] == f"Bearer {SECRET_ENV}"  # it was really sent
    text = (tmp_path / "c.jsonl").read_text()
    for secret in (SECRET_ENV, SECRET_PARAM, SECRET_HEADER):
        for part in (secret, secret[:8], secret[-8:], secret[6:14]):
            assert part not in text, part
    # The server is gone: the replay needs neither it nor the key.
    replayed = cli("run", "task.toml", "--replay", "c.jsonl", "--json", cwd=tmp_path,
                   extra_env={"CAS_BASE": "http://127.0.0.1:9/v1", "CAS_SECRET_KEY": "another-key-00000000"})
    assert replayed.returncode == 0, replayed.stderr
    shown = report(replayed)["answer"]
    assert shown.startswith("The key is ") and SECRET_ENV not in shown


# --- options and hostile cassettes ------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--record", "a.jsonl", "--replay", "b.jsonl"], "--record and --replay are given together"),
    (["--replay-speed", "instant"], "--replay-speed: only applies with --replay"),
    (["--replay-match", "sequence"], "--replay-match: only applies with --replay"),
    (["--replay", "c.jsonl", "--replay-speed", "0"], "is not recorded, instant or a positive number"),
    (["--replay", "c.jsonl", "--replay-speed", "fast"], "is not recorded, instant or a positive number"),
    (["--replay", "c.jsonl", "--replay-match", "fuzzy"], "--replay-match 'fuzzy' is not one of request, sequence"),
    (["--replay", "missing.jsonl"], "missing.jsonl: no such cassette"),
    (["--model", "cohere/command-r", "--record", "x.jsonl"], "cannot record cohere/command-r"),
    (["--record", "/proc/asyncfc-none/x.jsonl"], "cannot write the cassette"),
])
def test_bad_options_are_exit_2_with_a_fix(tmp_path, quickstart_cassette, args, message):
    shutil.copy(quickstart_cassette, tmp_path / "c.jsonl")
    proc = cli("run", QUICKSTART, *args, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "fix:" in proc.stderr


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


HOSTILE = {
    "bad_json": (lambda lines: [lines[0], "{not json"] + lines[1:], "line 2: not JSON"),
    "huge_line": (lambda lines: lines[:1] + ['{"type": "request", "x": "' + "a" * 4_100_000 + '"}'],
                  "line 2: the line is longer than 4,000,000 bytes"),
    "deep": (lambda lines: lines[:1] + ["[" * 200_000 + "]" * 200_000], "line 2: JSON nested too deeply"),
    "wrong_version": (lambda lines: [lines[0].replace('"version": 1', '"version": 99')] + lines[1:],
                      "cassette version 99; this asyncfc reads version 1"),
    "surrogate": (lambda lines: lines[:3] + ['{"type": "chunk", "n": 1, "t": 0.1, "data": "x\\ud800y"}'] + lines[3:],
                  "data holds a lone surrogate"),
    "escapes": (lambda lines: [lines[0].replace('"model": "sim"', '"model": "\\u001b[31mred\\u0007"')] + lines[1:],
                "recorded with the model \\x1b[31mred\\x07"),
    "truncated": (lambda lines: lines[:-1], "has no end record"),
    "cut_line": (lambda lines: lines[:-1] + [lines[-1][:10]], "cut off"),
    "not_a_cassette": (lambda lines: ['{"type": "header", "version": 1}'], "not an asyncfc cassette"),
    "empty": (lambda lines: [], "an empty file, not a cassette"),
    "endless_pause": (lambda lines: lines[:3] + ['{"type": "chunk", "n": 1, "t": 1e12, "data": "x"}'] + lines[3:],
                      "t must be seconds between 0 and 3600"),
    "nan": (lambda lines: lines[:3] + ['{"type": "chunk", "n": 1, "t": NaN, "data": "x"}'] + lines[3:],
            "not JSON"),
    "orphan": (lambda lines: lines[:1] + ['{"type": "chunk", "n": 7, "t": 0.1, "data": "x"}'],
               "a chunk record outside its request"),
    "binary": (None, "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_damaged_or_hostile_cassette_is_a_clear_exit_2(tmp_path, quickstart_cassette, case):
    make, message = HOSTILE[case]
    bad = tmp_path / "bad.jsonl"
    if make is None:
        bad.write_bytes(_lines(quickstart_cassette)[0].encode() + b"\n\xff\xfe\x00garbage\n")
    else:
        lines = make(_lines(quickstart_cassette))
        text = "\n".join(lines)
        bad.write_text(text + ("\n" if lines and case != "cut_line" else ""))
    proc = cli("run", QUICKSTART, "--replay", bad, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "fix:" in proc.stderr
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr


# --- asyncfc batch ----------------------------------------------------------------------


def test_batch_records_one_cassette_per_run_and_replays_them(tmp_path):
    (tmp_path / "agents.toml").write_text(READER_AGENTS)
    (tmp_path / "task.toml").write_text(READER_TASK)
    (tmp_path / "note.txt").write_text("buy milk\n")
    recorded = cli("batch", "task.toml", QUICKSTART, "--mode", "sync,parallel", "--record-dir", "cassettes",
                   "--out", "out1", "--json", "-q", cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    runs = report(recorded)["runs"]
    assert all(r["recorded"] and not r["replayed"] for r in runs)
    files = sorted(p.name for p in (tmp_path / "cassettes").iterdir())
    assert len(files) == 4 and files == sorted(Path(r["cassette"]).name for r in runs)
    assert {f.split("-")[0] for f in files} == {"task", "quickstart"}

    replayed = cli("batch", "task.toml", QUICKSTART, "--mode", "sync,parallel", "--replay-dir", "cassettes",
                   "--replay-speed", "instant", "--out", "out2", "--json", "--junit", "junit.xml", "-q", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    again = report(replayed)["runs"]
    assert all(r["replayed"] and r["status"] == "passed" for r in again)
    assert [r["answer"] for r in again] == [r["answer"] for r in runs]
    junit = (tmp_path / "junit.xml").read_text()
    assert junit.count("replayed from the cassette cassettes/") == 4

    # One run's tool now answers differently: that run exits 2, named, the others pass.
    (tmp_path / "note.txt").write_text("buy bread\n")
    diverged = cli("batch", "task.toml", QUICKSTART, "--mode", "sync", "--replay-dir", "cassettes",
                   "--replay-speed", "instant", "--out", "out3", "--json", "--junit", "junit3.xml", "-q", cwd=tmp_path)
    assert diverged.returncode == 2
    by_task = {Path(r["task"]).name: r for r in report(diverged)["runs"]}
    assert by_task["quickstart.toml"]["status"] == "passed"
    bad = by_task["task.toml"]
    assert bad["exit_code"] == 2 and "(tool) differs" in bad["error"] and bad["fix"].startswith("re-record")
    assert "(tool) differs" in (tmp_path / "junit3.xml").read_text()


def test_batch_cassette_options_are_checked_before_anything_runs(tmp_path):
    (tmp_path / "agents.toml").write_text(READER_AGENTS)
    (tmp_path / "task.toml").write_text(READER_TASK)
    (tmp_path / "empty").mkdir()
    missing = cli("batch", "task.toml", "--replay-dir", "empty", "--out", "o", cwd=tmp_path, timeout=120)
    assert missing.returncode == 2
    assert "no cassette for the run task" in missing.stderr and "--record-dir" in missing.stderr
    both = cli("batch", "task.toml", "--replay-dir", "empty", "--record-dir", "x", cwd=tmp_path, timeout=120)
    assert both.returncode == 2 and "given together" in both.stderr
    alone = cli("batch", "task.toml", "--replay-speed", "2", cwd=tmp_path, timeout=120)
    assert alone.returncode == 2 and "only applies with --replay" in alone.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.jsonl"))


def test_a_fifo_or_a_link_given_as_the_cassette_is_refused_without_blocking(tmp_path, quickstart_cassette):
    os.mkfifo(tmp_path / "fifo.jsonl")
    (tmp_path / "link.jsonl").symlink_to(quickstart_cassette)
    for name, message in (("fifo.jsonl", "not a regular file"), ("link.jsonl", "symbolic link")):
        proc = cli("run", QUICKSTART, "--replay", name, cwd=tmp_path, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "fix:" in proc.stderr


def test_a_secret_spread_over_events_is_starred_out_in_each_wire_format():
    """The scrubber on the shapes of Anthropic, Gemini and Responses events (OpenAI's goes through the CLI above)."""
    from asyncfc_cli.cassette.scrub import scrub
    from asyncfc_cli.redaction import Redactor

    secret = "tok-SECRET-value-42"
    pieces = [secret[i:i + 4] for i in range(0, len(secret), 4)]
    shapes = {
        "anthropic": lambda p: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
        "anthropic-args": lambda p: {"type": "content_block_delta", "index": 1,
                                     "delta": {"type": "input_json_delta", "partial_json": p}},
        "gemini": lambda p: {"candidates": [{"content": {"parts": [{"text": p}], "role": "model"}}]},
        "responses": lambda p: {"type": "response.output_text.delta", "delta": p},
    }
    for name, shape in shapes.items():
        body = ["event: x\n" + "data: " + json.dumps(shape("say: ")) + "\n\n"]
        body += ["data: " + json.dumps(shape(p)) + "\n\n" for p in pieces]
        # Reads that cut lines anywhere, as a socket does.
        text = "".join(body)
        reads = [(0.1 * i, text[i:i + 37]) for i in range(0, len(text), 37)]
        out = scrub(reads, Redactor([secret]))
        joined = "".join(t for _, t in out)
        assert all(p not in joined for p in (secret, "SECR", "ECRE", "alue", "e-42")), (name, joined)
        assert "say: " in joined and joined.count("data: ") == len(pieces) + 1
        assert [t for t, _ in out] == sorted(t for t, _ in out)
        for line in joined.splitlines():
            if line.startswith("data: "):
                json.loads(line[6:])  # still valid events


# --- a replay needs no key, ever ---------------------------------------------------------

KEYED_AGENTS = """
[models.by_env]
model = "openai/scripted-model"
api_base = "${CAS_BASE}"
api_key_env = "CAS_KEY_VAR"
retries = 0

[models.by_interpolation]
model = "openai/scripted-model"
api_base = "${CAS_BASE}"
api_key = "${CAS_KEY_VAR}"
params = { temperature = 0, extra_headers = { "X-Token" = "${CAS_HEADER_TOKEN}" } }
retries = 0

[agents.by_env]
model = "by_env"
mode = "sync"

[agents.by_interpolation]
model = "by_interpolation"
mode = "sync"
"""


@pytest.mark.parametrize("agent", ["by_env", "by_interpolation"])
def test_a_replay_needs_no_key_variable_set(tmp_path, monkeypatch, agent):
    for name in ("CAS_BASE", "CAS_KEY_VAR", "CAS_HEADER_TOKEN", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "agents.toml").write_text(KEYED_AGENTS)
    (tmp_path / "task.toml").write_text(f'agent = "{agent}"\nprompt = "Say hello."\n')
    with ScriptedServer([Reply(chunks=_spread("Hello from the recording.")) for _ in range(3)]) as server:
        keys = {"CAS_BASE": server.base_url, "CAS_KEY_VAR": "sk-recording-key-000000", "CAS_HEADER_TOKEN": "tok-1"}
        live = cli("run", "task.toml", "--record", "c.jsonl", "-q", cwd=tmp_path, extra_env=keys)
        assert live.returncode == 0, live.stderr
        batch = cli("batch", "task.toml", "--record-dir", "cassettes", "--out", "out1", "-q", cwd=tmp_path,
                    extra_env=keys)
        assert batch.returncode == 0, batch.stderr
        prompt = cli("run", "-a", agent, "Say hello.", "--record", "p.jsonl", "-q", cwd=tmp_path, extra_env=keys)
        assert prompt.returncode == 0, prompt.stderr
    # Without a replay the unset variable is still the error it was.
    unset = cli("run", "task.toml", cwd=tmp_path)
    assert unset.returncode == 2 and "CAS_" in unset.stderr
    # The server is gone and no variable is set: every replay still runs.
    replayed = cli("run", "task.toml", "--replay", "c.jsonl", "--replay-speed", "instant", cwd=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == "Hello from the recording."
    batch = cli("batch", "task.toml", "--replay-dir", "cassettes", "--replay-speed", "instant", "--out", "out2",
                "--json", "-q", cwd=tmp_path)
    assert batch.returncode == 0, batch.stderr
    assert [r["replayed"] for r in report(batch)["runs"]] == [True]
    prompt = cli("run", "-a", agent, "Say hello.", "--replay", "p.jsonl", "--replay-speed", "instant", cwd=tmp_path)
    assert prompt.returncode == 0, prompt.stderr
    assert prompt.stdout.strip() == "Hello from the recording."


# --- a cassette that cannot be written ---------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_cassette_write_that_fails_is_an_error_not_silence(tmp_path):
    (tmp_path / "agents.toml").write_text(READER_AGENTS)
    (tmp_path / "task.toml").write_text(READER_TASK)
    (tmp_path / "note.txt").write_text("buy milk\n")
    # /dev/full takes the file open and refuses every write: a disk that is full.
    text = cli("run", "task.toml", "--record", "/dev/full", cwd=tmp_path)
    assert text.returncode == 1, text.stderr
    assert "It says: buy milk" in text.stdout  # the run went on
    assert "cannot write the cassette to /dev/full: No space left on device" in text.stderr
    assert "fix: free space on its disk, or choose another path with --record" in text.stderr
    data = cli("run", "task.toml", "--record", "/dev/full", "--json", cwd=tmp_path)
    assert data.returncode == 1
    found = report(data)
    assert found["status"] == "error" and found["exit_code"] == 1
    assert "cannot write the cassette to /dev/full" in found["error"] and "--record" in found["fix"]
    assert found["cassette"] == "/dev/full" and found["recorded"] is True


# --- a replayed run says so --------------------------------------------------------------


def test_run_json_the_trace_header_and_trace_show_say_a_run_was_replayed(tmp_path):
    (tmp_path / "agents.toml").write_text(READER_AGENTS)
    (tmp_path / "task.toml").write_text(READER_TASK)
    (tmp_path / "note.txt").write_text("buy milk\n")
    plain = report(cli("run", "task.toml", "--json", "--trace", "t0.jsonl", cwd=tmp_path))
    assert {k: plain[k] for k in ("cassette", "recorded", "replayed", "replay_speed", "replay_match")} == \
        {"cassette": None, "recorded": False, "replayed": False, "replay_speed": None, "replay_match": None}
    assert read_trace(tmp_path / "t0.jsonl").header.cassette is None

    live = report(cli("run", "task.toml", "--record", "c.jsonl", "--json", "--trace", "t1.jsonl", cwd=tmp_path))
    assert (live["cassette"], live["recorded"], live["replayed"]) == ("c.jsonl", True, False)
    assert read_trace(tmp_path / "t1.jsonl").header.cassette == {"recorded": "c.jsonl"}

    again = report(cli("run", "task.toml", "--replay", "c.jsonl", "--replay-speed", "instant", "--json",
                       "--trace", "t2.jsonl", cwd=tmp_path))
    assert {k: again[k] for k in ("cassette", "recorded", "replayed", "replay_speed", "replay_match")} == \
        {"cassette": "c.jsonl", "recorded": False, "replayed": True, "replay_speed": "instant",
         "replay_match": "request"}
    assert read_trace(tmp_path / "t2.jsonl").header.cassette == \
        {"replayed": "c.jsonl", "speed": "instant", "match": "request"}
    shown = cli("trace", "show", "t2.jsonl", "--width", "200", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "replayed from c.jsonl (instant speed)" in shown.stdout
    described = report(cli("trace", "show", "t2.jsonl", "--json", cwd=tmp_path))
    assert described["cassette"] == {"replayed": "c.jsonl", "speed": "instant", "match": "request"}
