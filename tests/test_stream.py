"""Item 13 of issue 21: the answer on stdout as the model writes it (``run --stream``).

A scripted endpoint streams the answer; the command runs as a real process.
On a terminal (a pty) the first half of the answer must be on screen while
the endpoint still holds the second half back. In async mode an answer begun
while an outcome is unseen, cut short or held by the finish rule, is never
printed, whatever its length; only the answer the run accepts is.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import LocalServer, Reply, ScriptedServer, asyncfc_argv, chunk, cli_env, tool_call_stream

TOOLS = Path(__file__).parent / "data" / "testtools.py"


def project(tmp_path: Path, mode: str = "sync") -> Path:
    (tmp_path / "testtools.py").write_text(TOOLS.read_text())
    marker = tmp_path / "release"
    (tmp_path / "agents.toml").write_text(f"""
[models.endpoint]
model = "openai/scripted"
api_base = "${{ASYNCFC_TEST_API_BASE}}"
api_key = "sk-none"
retries = 0

[tools.echo]
python = "testtools:echo"

[tools.gate]
description = "Return once the release file exists."
command = ["{sys.executable}", "-c", "import os, time\\nwhile not os.path.exists({str(marker)!r}): time.sleep(0.02)\\nprint('released')"]
timeout = 60

[agents.talker]
model = "endpoint"
tools = ["echo", "gate"]
mode = "{mode}"
max_turns = 6
timeout = 120
""")
    return tmp_path


def text_chunks(*parts: str) -> list[dict]:
    return [chunk({"role": "assistant", "content": ""}), *(chunk({"content": p}) for p in parts), chunk({}, "stop")]


class HeldServer(LocalServer):
    """Streams ``first``, then holds the rest of the answer until ``release`` is set."""

    def __init__(self, first: str, rest: str) -> None:
        from http.server import BaseHTTPRequestHandler

        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()

                def send(item: dict) -> None:
                    self.wfile.write(b"data: " + json.dumps(item).encode() + b"\n\n")
                    self.wfile.flush()

                send(chunk({"role": "assistant", "content": ""}))
                send(chunk({"content": first}))
                outer.release.wait(120)
                send(chunk({"content": rest}))
                send(chunk({}, "stop"))
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        super().__init__(Handler)


def on_terminal(args: list[str], cwd: Path, env: dict[str, str], seen: str, then: threading.Event,
                stderr_too: bool = False) -> tuple[int, str, bool]:
    """Run asyncfc with stdout on a pty; when ``seen`` appears on it, set ``then``.
    Returns (exit code, what the pty showed, whether ``seen`` came before ``then`` was set)."""
    master, slave = pty.openpty()
    env = {k: v for k, v in env.items() if k != "CI"}
    env.update(TERM="xterm-256color", COLUMNS="100", LINES="40")
    err = subprocess.PIPE if not stderr_too else slave
    proc = subprocess.Popen(asyncfc_argv(*args), cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave, stderr=err,
                            env=env, close_fds=True)
    os.close(slave)
    screen = b""
    early = False
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                screen += data
                if not then.is_set() and seen.encode() in screen:
                    early = True
                    then.set()
            elif proc.poll() is not None:
                break
        then.set()  # never leave the server holding
        if proc.stderr is not None:
            proc.stderr.read()
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, screen.decode("utf-8", "replace"), early


def test_the_answer_appears_on_a_terminal_while_the_model_is_still_writing_it(tmp_path):
    root = project(tmp_path)
    with HeldServer("The first half, ", "and the second half.") as server:
        env = cli_env(ASYNCFC_TEST_API_BASE=server.base_url, ASYNCFC_RUNS_DIR=str(tmp_path / "runs"))
        code, screen, early = on_terminal(["run", "-a", "talker", "hello"], root, env,
                                          "The first half, ", server.release)
    assert code == 0, screen
    # The first half was on the terminal while the server still held the second back.
    assert early, screen
    assert "The first half, and the second half." in screen
    assert screen.count("The first half") == 1  # shown once: not printed again at the end


def test_with_the_live_view_the_text_comes_below_it(tmp_path):
    root = project(tmp_path)
    with HeldServer("Streaming ", "below the timeline.") as server:
        env = cli_env(ASYNCFC_TEST_API_BASE=server.base_url, ASYNCFC_RUNS_DIR=str(tmp_path / "runs"))
        code, screen, early = on_terminal(["run", "-a", "talker", "hello"], root, env, "Streaming ",
                                          server.release, stderr_too=True)
    assert code == 0 and early, screen
    assert "Traceback" not in screen
    assert screen.index("model openai/scripted") < screen.index("Streaming below the timeline.")


def run_piped(root: Path, server: ScriptedServer, *args: str):
    env = cli_env(ASYNCFC_TEST_API_BASE=server.base_url, ASYNCFC_RUNS_DIR=str(root / "runs"))
    return subprocess.run(asyncfc_argv("run", "-a", "talker", *args), cwd=root, env=env, capture_output=True,
                          text=True, timeout=240)


def gated_script(root: Path, early: Reply, final: str) -> list:
    """Request 1 starts the gate tool (still running: a handle); request 2 answers
    ``early`` with f1 unseen, and opens the gate; request 3 gets f1 and answers ``final``."""

    def second(_request: dict) -> Reply:
        (root / "release").touch()
        return early

    return [Reply(chunks=tool_call_stream([("c1", "gate", "{}")])), second, Reply(chunks=text_chunks(final))]


def test_async_an_answer_cut_short_by_the_finish_rule_is_never_printed(tmp_path):
    root = project(tmp_path, "async")
    early = Reply(chunks=text_chunks(*(["EARLY-GUESS " * 4] * 6)))  # far past the cut, in pieces
    with ScriptedServer(gated_script(root, early, "The gate said released.")) as server:
        done = run_piped(root, server, "--stream", "open the gate")
        assert len(server.requests) == 3
    assert done.returncode == 0, done.stderr
    assert done.stdout == "The gate said released.\n"
    assert "EARLY" not in done.stdout
    trace = next((root / "runs").glob("*.jsonl")).read_text()
    assert '"status": "cut"' in trace.replace('"status":"cut"', '"status": "cut"')
    assert "model_text" not in trace  # live only: the streamed pieces are not written to the trace


def test_async_a_short_answer_held_by_the_finish_rule_is_never_printed(tmp_path):
    root = project(tmp_path, "async")
    early = Reply(chunks=text_chunks("EARLY ", "short ", "guess."))
    with ScriptedServer(gated_script(root, early, "Confirmed: released.")) as server:
        done = run_piped(root, server, "--stream", "open the gate")
        held = server.requests[2]["body"]["messages"]
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Confirmed: released.\n"
    # The model did write it (it is in the conversation), it was just never shown as the answer.
    assert any(m.get("content") == "EARLY short guess." for m in held if m["role"] == "assistant")


def test_sync_text_before_calls_is_its_own_paragraph_and_no_stream_prints_only_the_answer(tmp_path):
    root = project(tmp_path, "sync")
    first = tool_call_stream([("c1", "echo", '{"text": "hi"}')])
    first.insert(1, chunk({"content": "Let me check."}))
    script = [Reply(chunks=first), Reply(chunks=text_chunks("The echo ", "said hi."))]
    with ScriptedServer(script) as server:
        streamed = run_piped(root, server, "--stream", "echo hi")
    with ScriptedServer(script) as server:
        plain = run_piped(root, server, "--no-stream", "echo hi")
    with ScriptedServer(script) as server:
        as_json = run_piped(root, server, "--stream", "--json", "echo hi")
    assert streamed.returncode == plain.returncode == as_json.returncode == 0, streamed.stderr
    assert streamed.stdout == "Let me check.\n\nThe echo said hi.\n"
    assert plain.stdout == "The echo said hi.\n"
    assert json.loads(as_json.stdout)["answer"] == "The echo said hi."  # --json: one object, no stream


def test_a_secret_split_across_pieces_is_masked_on_stdout(tmp_path):
    root = project(tmp_path, "sync")
    secret = "sk-live-0123456789abcdef"
    script = [Reply(chunks=text_chunks("the key is ", secret[:9], secret[9:], " ok"))]
    with ScriptedServer(script) as server:
        env = cli_env(ASYNCFC_TEST_API_BASE=server.base_url, ASYNCFC_RUNS_DIR=str(root / "runs"),
                      OPENAI_API_KEY=secret)
        done = subprocess.run(asyncfc_argv("run", "-a", "talker", "--stream", "tell"), cwd=root, env=env,
                              capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert secret[:9] not in done.stdout and secret[9:] not in done.stdout
    assert done.stdout == "the key is *** ok\n"


def test_on_a_terminal_text_before_calls_then_the_timeline_resumes_below_it(tmp_path):
    root = project(tmp_path, "sync")
    first = tool_call_stream([("c1", "echo", '{"text": "hi"}')])
    first.insert(1, chunk({"content": "Let me check."}))
    script = [Reply(chunks=first), Reply(chunks=text_chunks("The echo ", "said hi."))]
    with ScriptedServer(script) as server:
        env = cli_env(ASYNCFC_TEST_API_BASE=server.base_url, ASYNCFC_RUNS_DIR=str(tmp_path / "runs"))
        code, screen, _ = on_terminal(["run", "-a", "talker", "echo hi"], root, env, "never shown",
                                      threading.Event(), stderr_too=True)
    assert code == 0 and "Traceback" not in screen, screen
    assert screen.index("Let me check.") < screen.index("The echo said hi.")
    # The timeline drew again after the first text, below it: its tool lane comes after the
    # text, and drawing it moved the cursor up over no line of the text.
    after = screen[screen.index("Let me check.") + len("Let me check."):screen.index("The echo said hi.")]
    assert 'echo(text="hi")' in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", after), screen
    assert "\x1b[1A" not in after[:after.index("time")], screen
