"""The ``asyncfc`` command in a subprocess: stdout/stderr discipline, --json,
exit codes, validate, --help, Ctrl-C, and hostile arguments kept in one argv
element end to end.

Every ``run`` that reaches the model pays LiteLLM's import (seconds), so those
few runs start together in one module fixture and each test reads its own
result; runs that must fail before the model (bad spec, bad trace path,
validate, --help) never import LiteLLM and are cheap.
"""

from __future__ import annotations

import io
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from asyncfc_cli.trace import read_trace
from conftest import DATA, REPO, Done, Reply, ScriptedServer, asyncfc_argv, cli_env, run_cli, text_stream

HOSTILE_FIRST = "x; rm -rf /nonexistent-asyncfc-canary"
HOSTILE_SECOND = "$(touch PWNED) `touch PWNED2` 'q' \"dq\" --help"


class Launched:
    """An ``asyncfc`` process started in the background; stderr read line by line."""

    def __init__(self, args: list, cwd: Path):
        self.cwd = cwd
        self.started = time.monotonic()
        self.proc = subprocess.Popen(asyncfc_argv(*args), cwd=cwd, env=cli_env(), text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._err: list[str] = []
        self._out: list[str] = []
        self._readers = [threading.Thread(target=self._read_err, daemon=True),
                         threading.Thread(target=lambda: self._out.append(self.proc.stdout.read()), daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_err(self) -> None:
        for line in self.proc.stderr:
            self._err.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for_line(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {text!r} on stderr after {timeout}s: {''.join(self._err)}") from None
            if line is None:
                raise AssertionError(f"exited before {text!r}: {''.join(self._err)}")
            if text in line:
                return line

    def result(self, timeout: float = 240) -> Done:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        for reader in self._readers:
            reader.join(5)
        return Done(self.proc.returncode, "".join(self._out), "".join(self._err),
                    time.monotonic() - self.started)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every LiteLLM-paying run, started at once (they are mostly import time)."""
    base = tmp_path_factory.mktemp("cli")
    dirs = {name: base / name for name in ("ok", "json", "unmet", "timeout", "sigint")}
    for d in dirs.values():
        d.mkdir()
    launched = {
        "ok": Launched(["run", DATA / "ok.toml"], dirs["ok"]),
        "json": Launched(["run", DATA / "hostile.toml", "--json", "--trace", dirs["json"] / "h.jsonl"],
                         dirs["json"]),
        "unmet": Launched(["run", DATA / "unmet.toml", "-q", "--trace", dirs["unmet"] / "u.jsonl"],
                          dirs["unmet"]),
        "timeout": Launched(["run", DATA / "slow.toml", "--timeout", "1", "--json",
                             "--trace", dirs["timeout"] / "t.jsonl"], dirs["timeout"]),
        "sigint": Launched(["run", DATA / "slow.toml", "--trace", dirs["sigint"] / "s.jsonl"],
                           dirs["sigint"]),
    }
    yield launched
    for proc in launched.values():
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()


# --- cheap: nothing reaches a model ---------------------------------------------------------


def test_help_lists_exit_codes_and_is_fast(tmp_path):
    done = run_cli("--help", cwd=tmp_path)
    assert done.code == 0
    text = " ".join(done.stdout.split())
    for needle in ("Exit codes: 0 success", "1 the run failed", "2 usage or spec error",
                   "3 expectations in the task not met", "130 interrupted", "run", "validate"):
        assert needle in text
    assert done.seconds < 5, done.seconds  # no LiteLLM import (that alone takes seconds)


def test_the_cli_does_not_wait_for_litellm_unless_a_run_needs_it(tmp_path):
    # validate never imports it; run starts importing it in the background at once,
    # and a run that stops on a bad spec exits without waiting for the import.
    code = (
        "import sys\n"
        "import asyncfc_cli.cli as cli\n"
        "assert 'litellm' not in sys.modules, 'imported by asyncfc_cli.cli'\n"
        f"sys.argv = ['asyncfc', 'validate', {str(DATA / 'ok.toml')!r}]\n"
        "try:\n"
        "    cli.app()\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code, 'litellm' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "exit 0 False"
    # -X importtime reports each module when its import finishes.
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "asyncfc_cli.cli", "run",
                           str(DATA / "bad_spec.toml")], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    finished = [line for line in proc.stderr.splitlines() if line.rstrip().endswith("| litellm")]
    assert finished == [], "the run waited for the LiteLLM import before exiting"


def test_bad_spec_exits_2_naming_file_and_key(tmp_path):
    done = run_cli("run", DATA / "bad_spec.toml", cwd=tmp_path)
    assert done.code == 2
    assert done.stdout == ""
    assert f"{DATA / 'bad_spec.toml'}: agent.max_turns: input should be a valid integer" in done.stderr
    assert "fix: expected an integer" in done.stderr
    assert not (tmp_path / ".asyncfc").exists()  # no trace for a run that never started


def test_unwritable_trace_path_exits_2_before_any_model_request(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    trace = blocker / "trace.jsonl"
    with ScriptedServer([Reply(chunks=text_stream("should never be asked"))]) as server:
        done = run_cli("run", DATA / "ok.toml", "--model", "counter", "--trace", trace, cwd=tmp_path,
                       env=cli_env(ASYNCFC_TEST_API_BASE=server.base_url))
    assert done.code == 2
    assert done.stdout == ""
    assert f"cannot write the trace to {trace}" in done.stderr and "--trace" in done.stderr
    assert server.requests == []


def test_validate_good_and_bad_files(tmp_path):
    done = run_cli("validate", DATA / "agents.toml", DATA / "ok.toml", cwd=tmp_path)
    assert done.code == 0, done.stderr
    assert f"ok {DATA / 'agents.toml'}: agents ok" in done.stderr
    assert f"ok {DATA / 'ok.toml'}: task ok (agent worker)" in done.stderr
    assert done.stdout == ""

    done = run_cli("validate", DATA / "ok.toml", DATA / "bad_spec.toml", cwd=tmp_path)
    assert done.code == 2
    assert f"ok {DATA / 'ok.toml'}" in done.stderr
    assert f"error: {DATA / 'bad_spec.toml'}: agent.max_turns:" in done.stderr


# --- runs through the model (started together by the ``runs`` fixture) ---------------------


def test_run_prints_only_the_answer_on_stdout(runs):
    done = runs["ok"].result()
    assert done.code == 0, done.stderr
    assert done.stdout == "The echo said hello.\n"
    # Progress and the footer go to stderr.
    assert "→ #1 echo(text=\"hello\")" in done.stderr and "✓ #1 echo ok" in done.stderr
    assert "done in" in done.stderr and "· 1 tool call ·" in done.stderr and "· 2 model requests ·" in done.stderr
    # The default trace lands in the project's .asyncfc/runs/ (the directory of the
    # agents.toml ok.toml uses, tests/data), not where the command was started.
    assert not (runs["ok"].cwd / ".asyncfc").exists()
    said = "".join(done.stderr.split())
    (trace,) = [p for p in (DATA / ".asyncfc" / "runs").glob("*.jsonl") if f"trace:{p}" in said]
    assert read_trace(trace).summary["status"] == "ok"


def test_json_output_and_hostile_arguments_stay_one_argv_element(runs):
    done = runs["json"].result()
    assert done.code == 0, done.stderr
    report = json.loads(done.stdout)  # the whole of stdout is one JSON object
    assert done.stdout.strip().count("\n") == 0
    assert report["status"] == "ok" and report["exit_code"] == 0 and report["error"] is None
    assert report["mode"] == "sync" and report["agent"] == "worker" and report["model"] == "sim"
    assert report["usage"]["requests"] == 2
    assert report["usage"]["tokens_in"] > 0 and report["usage"]["tokens_out"] > 0
    assert 0 < report["wall"] < 30
    assert report["expectations"] == {"met": True, "failures": []}

    call, chatty = report["tool_calls"]
    assert chatty["tool"] == "chatty" and chatty["status"] == "ok"
    # What the python tool printed went to stderr, not into the JSON.
    assert "chatty: print() noise" in done.stderr and "chatty: fd 1 noise" in done.stderr
    assert call["tool"] == "argv" and call["status"] == "ok" and call["error"] is None
    assert call["arguments"] == {"first": HOSTILE_FIRST, "second": HOSTILE_SECOND}
    assert 0 <= call["start"] <= call["end"] <= report["wall"]
    assert call["duration"] == pytest.approx(call["end"] - call["start"], abs=1e-5)

    # The command printed its argv: each model-supplied value is exactly one
    # element, unexpanded, and nothing ran in a shell.
    assert json.loads(report["answer"]) == [HOSTILE_FIRST, HOSTILE_SECOND]
    for where in (DATA, runs["json"].cwd, REPO):
        assert not (where / "PWNED").exists() and not (where / "PWNED2").exists()

    trace = read_trace(Path(report["trace"]))
    assert Path(report["trace"]) == runs["json"].cwd / "h.jsonl"
    assert trace.summary["status"] == "ok" and trace.header["run_id"]


def test_unmet_expectations_exit_3(runs):
    done = runs["unmet"].result()
    assert done.code == 3, done.stderr
    assert done.stdout == "apple\n"
    assert "expectation not met: answer does not contain 'banana'" in done.stderr


def test_run_timeout_exits_1(runs):
    done = runs["timeout"].result()
    assert done.code == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "timeout" and report["exit_code"] == 1
    assert "timed out after 1s" in report["error"]
    assert report["answer"] is None
    trace = read_trace(runs["timeout"].cwd / "t.jsonl")
    assert trace.summary["status"] == "timeout"


def test_ctrl_c_exits_130_and_the_trace_says_interrupted(runs):
    proc = runs["sigint"]
    proc.wait_for_line("→ #1 nap(", timeout=240)  # the 30 s tool is running
    proc.proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    done = proc.result(timeout=30)
    assert done.code == 130, done.stderr
    assert time.monotonic() - sent < 15
    assert done.stdout == ""
    assert "interrupted" in done.stderr
    trace = read_trace(proc.cwd / "s.jsonl")
    assert trace.summary is not None and trace.summary["status"] == "interrupted"
    (nap,) = trace.spans("tool")
    assert nap.status == "cancelled"


# --- progress lines (in process) ------------------------------------------------------------


def test_progress_prints_model_supplied_names_as_text():
    # A model may call a tool that does not exist, with any name: "[/]" as
    # Rich markup raised MarkupError inside the trace sink and killed the run.
    from rich.console import Console

    from asyncfc_cli.progress import ProgressPrinter

    out = io.StringIO()
    printer = ProgressPrinter(Console(file=out, width=300, color_system=None, soft_wrap=True))
    printer({"type": "tool_begin", "t": 0.5, "call_id": "c1", "tool": "[/]", "args_summary": 'x="[bold]"'})
    printer({"type": "tool_end", "t": 0.75, "call_id": "c1", "tool": "[/]", "status": "error",
             "error": "unknown tool '[/]'; [red]"})
    printer({"type": "retry", "t": 1.0, "attempt": 1, "error": "[/] upstream"})
    printer({"type": "model_end", "t": 1.5, "request": 1, "status": "error", "error": "[/x] gone"})
    lines = out.getvalue().splitlines()
    assert lines == [
        '   0.50s → #1 [/](x="[bold]")',
        "   0.75s ✗ #1 [/] error in 0.25s unknown tool '[/]'; [red]",
        "   1.00s retrying model request (attempt 1): [/] upstream",
        "   1.50s model error: [/x] gone",
    ]
