"""Untrusted text at every output (docs/reliability.md; asyncfc_cli/output.py).

A scripted endpoint answers with a lone surrogate, control sequences,
characters a Latin-1 or ASCII console cannot encode, and NaN arguments; the
answer on stdout, the progress lines on stderr, ``--json``, the trace file
and ``asyncfc trace`` must all come out whole, and the live display on a
real terminal (a pty) must draw its last frame, also for a call whose
arguments reference itself.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from asyncfc_cli.trace import read_trace
from conftest import Reply, ScriptedServer, chunk, invoke, tool_call_stream

TASK = Path(__file__).parent / "data" / "hostile_output" / "task.toml"
ANSWER = "bad \ud800 text \x1b]0;pwned\x07 and \U0001f642 done"


def strict_json(text: str):
    def no_constants(name: str):
        raise AssertionError(f"{name}: not strict JSON")

    return json.loads(text, parse_constant=no_constants)


def answer_reply(text: str = ANSWER) -> Reply:
    return Reply(chunks=[chunk({"role": "assistant", "content": text}), chunk({}, "stop")])


def run(server: ScriptedServer, tmp_path: Path, *args: str):
    return invoke("run", str(TASK), "--trace", str(tmp_path / "t.jsonl"), *args,
                  env={"ASYNCFC_TEST_API_BASE": server.base_url}, catch_exceptions=False)


def check_trace_file(path: Path) -> None:
    """Valid UTF-8, strict JSON on every line, no blank line; every command reads it."""
    raw = path.read_bytes()
    assert not raw.startswith(b"\n")
    for line in raw.decode("utf-8").split("\n")[:-1]:
        assert isinstance(strict_json(line), dict)
    assert not read_trace(path).problems
    for args in ([], ["--json"], ["--export", "chrome"], ["--export", "otel"]):
        shown = invoke("trace", str(path), *args, catch_exceptions=False)
        assert shown.exit_code == 0
        if args:
            strict_json(shown.stdout)


def test_an_answer_that_does_not_encode_is_printed_whole(tmp_path):
    with ScriptedServer([answer_reply()]) as server:
        as_json = run(server, tmp_path, "--json")
        plain = run(server, tmp_path)
    assert as_json.exit_code == 0 and plain.exit_code == 0
    # JSON: the exact text comes back through the escapes.
    assert strict_json(as_json.stdout)["answer"] == ANSWER
    # Text: what UTF-8 cannot hold is written as its escape; the rest as is (a pipe gets the data).
    assert plain.stdout == "bad \\ud800 text \x1b]0;pwned\x07 and \U0001f642 done\n"
    check_trace_file(tmp_path / "t.jsonl")


def test_a_console_that_cannot_encode_gets_escapes_not_a_traceback(tmp_path):
    """ASCII and Latin-1 consoles, text and --json (four real processes, at once)."""
    with ScriptedServer([answer_reply()]) as server:
        procs = {}
        for encoding in ("ascii", "latin-1"):
            env = dict(os.environ, ASYNCFC_TEST_API_BASE=server.base_url, PYTHONIOENCODING=encoding,
                       LITELLM_LOCAL_MODEL_COST_MAP="True")
            for extra in ((), ("--json",)):
                procs[encoding, extra] = subprocess.Popen(
                    [sys.executable, "-m", "asyncfc_cli.cli", "run", str(TASK), "--trace",
                     str(tmp_path / f"{encoding}{len(extra)}.jsonl"), *extra],
                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        done = {key: (proc.communicate(timeout=180), proc.returncode) for key, proc in procs.items()}
    for key, ((out, err), code) in done.items():
        assert code == 0 and b"Traceback" not in err, (key, err)
        if key[1]:
            assert strict_json(out.decode("ascii"))["answer"] == ANSWER
        else:
            assert out == b"bad \\ud800 text \x1b]0;pwned\x07 and \\U0001f642 done\n"
            assert b"done in" in err  # the footer's "\u00b7" did not stop it either


def test_names_and_arguments_that_do_not_encode_in_progress_json_and_trace(tmp_path):
    """A tool name with a lone surrogate and an argument with an escape
    sequence and NaN: the progress lines show them escaped, --json and the
    trace stay strict JSON. The agent has one turn, so the calls are not
    sent back to the endpoint (how a request carries such text is the model
    bridge's business, not the output's)."""
    calls = [("c1", "ec\ud800ho", '{"text": "x"}'), ("c2", "echo", '{"text": "a\\u001b[2Jb"}'),
             ("c3", "echo", '{"text": NaN}')]
    with ScriptedServer([Reply(chunks=tool_call_stream(calls))]) as server:
        for mode in ("sync", "async"):
            plain = run(server, tmp_path, "--mode", mode)
            assert plain.exit_code == 1 and "max_turns" in plain.stderr  # one turn, no answer: exit 1
            label = "#1" if mode == "sync" else "f1"
            assert f"→ {label} ec\\ud800ho(text=\"x\")" in plain.stderr
            assert "unknown tool 'ec\\ud800ho'" in plain.stderr
            assert 'echo(text="a\\u001b[2Jb")' in plain.stderr and "\x1b[2J" not in plain.stderr
            check_trace_file(tmp_path / "t.jsonl")
            as_json = run(server, tmp_path, "--mode", mode, "--json")
            report = strict_json(as_json.stdout)
            assert [c["tool"] for c in report["tool_calls"]] == ["ec\ud800ho", "echo", "echo"]
            assert report["tool_calls"][2]["arguments"] in ({"text": None}, '{"text": NaN}')
            check_trace_file(tmp_path / "t.jsonl")


# --- a real terminal ------------------------------------------------------------------------------


def run_on_a_terminal(args: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Run asyncfc with stdout and stderr on a pseudo-terminal; (exit code, everything it drew)."""
    master, slave = pty.openpty()
    env = {k: v for k, v in env.items() if k != "CI"}  # CI turns the live display off
    env.update(TERM="xterm-256color", COLUMNS="120", LINES="40", LITELLM_LOCAL_MODEL_COST_MAP="True")
    proc = subprocess.Popen([sys.executable, "-m", "asyncfc_cli.cli", *args], stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the other side closed
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_the_live_display_draws_its_last_frame_for_hostile_calls(tmp_path):
    """Item 4 (live side) and 5 on a terminal: a call referencing itself, an
    argument and an answer with escape sequences, a lone surrogate.
    The run ends with its answer and exit code, never a crash of the
    display; the answer's escape sequence is shown, not obeyed."""
    script = [
        Reply(chunks=tool_call_stream([("c1", "echo", '{"text": "$f1"}'), ("c2", "echo", '{"text": "a\\u001b[2Jb"}')])),
        answer_reply(),
    ]
    agents = tmp_path / "agents.toml"
    agents.write_text((TASK.parent / "agents.toml").read_text().replace("max_turns = 1", "max_turns = 4"))
    with ScriptedServer(script) as server:
        env = dict(os.environ, ASYNCFC_TEST_API_BASE=server.base_url)
        code, screen = run_on_a_terminal(["run", str(TASK), "--agents", str(agents), "--mode", "async",
                                          "--timeout", "30", "--trace", str(tmp_path / "t.jsonl")], env)
    assert "Traceback" not in screen and "timeline not drawn" not in screen
    assert code in (0, 1), screen  # 1 only if the run itself failed (e.g. a self-reference the engine refuses)
    assert "model openai/hostile" in screen  # the live timeline was drawn (its model lane)
    if code == 0:
        assert "bad \\ud800 text \\x1b]0;pwned\\x07 and \U0001f642 done" in screen
    assert "\x1b]0;pwned" not in screen and "\x1b[2Jb" not in screen
    check_trace_file(tmp_path / "t.jsonl")
