"""``asyncfc batch --ray local``: the same batch as Ray tasks on a real local Ray
instance on 127.0.0.1 (skipped, with the reason, where Ray is not installed;
``pip install -e '.[test,ray]'`` brings it).

Each test is one ``asyncfc`` process that starts Ray, runs, and must leave no
Ray process behind. They are slower than the rest (Ray's start, and LiteLLM's
import in each Ray worker), so there are few. Each gives its ``asyncfc`` its own
``TMPDIR``, which Ray's workers inherit: the tests watch the runs' traces there
while they are written (instead of guessing how long Ray takes to start on a
loaded machine), and check that nothing is left there afterwards.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from junitparser import JUnitXml, Skipped
from asyncfc_cli.trace import read_trace
from conftest import asyncfc_argv, cli_env, invoke, wait_until
from test_batch import NAP, OK, REMOTE, Endpoint
from test_isolation import MODES, SEED, assert_same, batch_outcomes, random_task, run_alone

try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False

needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install -e '.[test,ray]')")


def test_without_ray_the_error_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where it is not installed
    result = invoke("batch", str(OK), "--ray", "local", "--out", str(tmp_path / "o"), catch_exceptions=True)
    assert result.exit_code == 2
    assert "Ray is not installed" in result.stderr and "pip install 'asyncfc[ray]'" in result.stderr
    assert not (tmp_path / "o").exists()


@needs_ray
def test_a_ray_that_cannot_be_reached_is_exit_2_with_a_fix(tmp_path):
    from conftest import free_port

    result = invoke("batch", str(OK), "--ray", f"ray://127.0.0.1:{free_port()}", "--out",
                    str(tmp_path / "o"), "--json", catch_exceptions=True)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    doc = json.loads(result.stdout)
    assert doc["status"] == "spec_error" and "cannot connect to Ray at" in doc["error"] and doc["fix"]
    assert "cannot connect to Ray at" in result.stderr and "Traceback" not in result.stderr


@contextmanager
def listener(answer: bytes | None) -> Iterator[int]:
    """A TCP server on every interface (Ray turns 127.0.0.1 into this machine's address)
    that reads what a client sends and answers ``answer`` then closes (None: never
    answers, holds the connection); yields its port."""
    import socket
    import threading

    server = socket.create_server(("", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)
            if answer is not None:
                try:
                    conn.settimeout(2)
                    conn.recv(1024)
                    conn.sendall(answer)
                except OSError:
                    pass
                conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def unstartable_batch(tmp_path: Path, address: str, **env: str) -> subprocess.CompletedProcess:
    """``asyncfc batch OK --ray ADDRESS --json --junit`` as a real process; bounded by a
    subprocess timeout far beyond the few seconds it may take (before, it took minutes)."""
    argv = asyncfc_argv("batch", OK, "--ray", address, "--out", tmp_path / "o", "--json",
                        "--junit", tmp_path / "junit.xml")
    return subprocess.run(argv, cwd=tmp_path, env=cli_env(**env), capture_output=True, text=True, timeout=150)


def assert_did_not_start(tmp_path: Path, proc: subprocess.CompletedProcess, *said: str) -> dict:
    assert proc.returncode == 2, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["status"] == "spec_error" and doc["fix"], doc
    for text in said:
        assert text in doc["error"] and text in proc.stderr, (text, doc, proc.stderr[-2000:])
    assert "error:" in proc.stderr and "fix:" in proc.stderr and "Traceback" not in proc.stderr
    # Nothing that reads as a batch of no runs: no results.jsonl, no JUnit report.
    assert not (tmp_path / "o" / "results.jsonl").exists()
    assert not (tmp_path / "junit.xml").exists()
    return doc


@needs_ray
def test_an_address_where_nothing_listens_fails_at_once_naming_it(tmp_path):
    from conftest import free_port

    port = free_port()
    proc = unstartable_batch(tmp_path, f"127.0.0.1:{port}")
    doc = assert_did_not_start(tmp_path, proc, f"cannot connect to Ray at 127.0.0.1:{port}", "refused")
    assert "ray start --head" in doc["fix"] and "ASYNCFC_RAY_CONNECT_TIMEOUT" in doc["fix"]
    assert not (tmp_path / "o").exists()  # checked before anything was planned or written


@needs_ray
@pytest.mark.parametrize("address", ["::::", "127.0.0.1", "ray://", "host:99999", "[::1:80", "ray://h:p"])
def test_a_malformed_address_is_named_with_the_forms_that_work(tmp_path, address):
    proc = unstartable_batch(tmp_path, address)
    doc = assert_did_not_start(tmp_path, proc, f"{address!r} is not a Ray address")
    assert "ray://HOST:10001" in doc["fix"]
    assert not (tmp_path / "o").exists()


@needs_ray
def test_an_address_that_never_answers_fails_within_the_connect_timeout(tmp_path):
    with listener(None) as port:
        proc = unstartable_batch(tmp_path, f"127.0.0.1:{port}", ASYNCFC_RAY_CONNECT_TIMEOUT="1")
    doc = assert_did_not_start(tmp_path, proc, f"cannot connect to Ray at 127.0.0.1:{port}", "no answer within 1s")
    assert "ASYNCFC_RAY_CONNECT_TIMEOUT (now 1s)" in doc["fix"]


@needs_ray
def test_an_address_where_something_else_answers_is_not_taken_for_ray(tmp_path):
    with listener(b"HTTP/1.1 400 Bad Request\r\n\r\n") as port:
        proc = unstartable_batch(tmp_path, f"ray://127.0.0.1:{port}")
    doc = assert_did_not_start(tmp_path, proc, "something answers there, but not Ray")
    assert "6379" in doc["fix"]


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_a_bad_connect_timeout_setting_is_named(tmp_path, value):
    pytest.importorskip("ray")
    proc = unstartable_batch(tmp_path, "127.0.0.1:9", ASYNCFC_RAY_CONNECT_TIMEOUT=value)
    assert_did_not_start(tmp_path, proc, "ASYNCFC_RAY_CONNECT_TIMEOUT", "is not a number of seconds")


def ray_processes() -> set[int]:
    """Pids of Ray's own processes (GCS, raylet, workers) on this machine."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if any(mark in cmdline for mark in (b"gcs_server", b"raylet", b"default_worker.py", b"ray::")):
            found.add(int(entry.name))
    return found


def worker_traces(tmp: Path) -> list[bytes]:
    """The traces the Ray workers are writing under ``tmp`` (their TMPDIR)."""
    found = []
    for path in tmp.glob("asyncfc-ray-run-*/trace.jsonl"):
        try:
            found.append(path.read_bytes())
        except OSError:  # removed meanwhile: that run is over
            pass
    return found


def running_tools(tmp: Path) -> int:
    return sum(b'"tool_begin"' in trace for trace in worker_traces(tmp))


def worker_pids(tmp: Path) -> list[int]:
    """Pids of the Ray workers running a run whose TMPDIR is ``tmp``."""
    needle = f"TMPDIR={tmp}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if b"ray::_run_remote" in (entry / "cmdline").read_bytes() and \
                    needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


@contextmanager
def napping_on_ray(tmp_path: Path, tmp: Path, *args: object) -> Iterator[subprocess.Popen]:
    """``asyncfc batch`` of a long nap on local Ray, two runs at once, with ``tmp`` as its
    TMPDIR; yielded once both runs are napping (their traces on the workers say so).

    The nap lasts ten minutes (batch_nap.toml's own 30 s could be over before a
    loaded machine has started the second worker); the test stops it long before.
    """
    nap = tmp_path / "batch_nap.toml"
    nap.write_text(NAP.read_text().replace('agents_file = "batch_agents.toml"',
                                           f'agents_file = {json.dumps(str(NAP.parent / "batch_agents.toml"))}')
                   .replace("seconds = 30", "seconds = 600"))
    proc = subprocess.Popen(asyncfc(nap, "--max-runs", "2", "--ray", "local", "--timeout", "900", *args),
                            env=cli_env(CI="true", TMPDIR=str(tmp)), cwd=tmp_path, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: running_tools(tmp) == 2 or proc.poll() is not None, 400), "no run started"
        assert proc.poll() is None, proc.communicate()[1]
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def printable(text: str) -> bool:
    return all(ch.isprintable() or ch in "\n\t" for ch in text)


def asyncfc(*args) -> list[str]:
    return asyncfc_argv("batch", *args, entry="asyncfc_cli")


@needs_ray
def test_batch_on_local_ray_with_limits_across_workers(tmp_path):
    before = ray_processes()
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"word": "one"}\n{"word": "two"}\n{"word": "three"}\n')
    out, junit, tmp = tmp_path / "out", tmp_path / "j.xml", tmp_path / "tmp"
    tmp.mkdir()

    def all_asked() -> bool:
        return sum(b"batch_remote" in t and b'"model_begin"' in t for t in worker_traces(tmp)) == 3

    # The first request is held until the other two runs have asked for the model: if
    # the cluster-wide limit of one request did not hold, their requests would arrive
    # meanwhile and the peak would be 2. (--timeout: the held run's own clock runs
    # while the other workers start, which takes long on a loaded machine.)
    endpoint = Endpoint(hold=0.1, first_until=all_asked)
    with endpoint.server as server:
        proc = subprocess.run(asyncfc(REMOTE, OK, "--matrix", rows, "--ray", "local", "--max-runs", "3",
                                      "--max-per-model", "1", "--timeout", "600", "--out", out, "--junit", junit,
                                      "--json"),
                              env=cli_env(CI="true", TMPDIR=str(tmp), **endpoint.env()), cwd=tmp_path,
                              capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["counts"]["passed"] == 6 and len(doc["runs"]) == 6
    assert len(endpoint.arrivals) == 3 and endpoint.peak == 1
    stats = doc["limits"]["openai/limited @ " + server.base_url]
    assert stats["peak_requests"] == 1
    waits = [ev for r in doc["runs"] for ev in read_trace(Path(r["trace"])).of_type("limit_wait")]
    assert waits, "no run waited for the model: the runs did not overlap"
    for run in doc["runs"]:  # every trace came back from its worker, whole
        data = read_trace(Path(run["trace"]))
        assert Path(run["trace"]).parent == out / "traces" and data.summary.status == "ok" and not data.problems
    xml = JUnitXml.fromfile(str(junit))
    assert xml.tests == 6 and xml.failures == 0 and xml.errors == 0
    assert not list(tmp.iterdir())  # every worker removed its run's directory
    assert wait_until(lambda: not (ray_processes() - before), 20), ray_processes() - before


@needs_ray
def test_ctrl_c_stops_remote_runs_and_every_trace_comes_back_closed(tmp_path):
    before = ray_processes()
    out, junit, tmp = tmp_path / "out", tmp_path / "j.xml", tmp_path / "tmp"
    tmp.mkdir()
    with napping_on_ray(tmp_path, tmp, "--repeat", "3", "--out", out, "--junit", junit) as proc:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    traces = sorted((out / "traces").glob("*.jsonl"))
    assert len(traces) == 2
    for path in traces:
        data = read_trace(path)
        assert data.summary is not None and data.summary.status == "interrupted" and not data.problems
    recorded = [json.loads(line)["status"] for line in (out / "results.jsonl").read_text().splitlines()]
    assert recorded == ["interrupted", "interrupted"]
    xml = JUnitXml.fromfile(str(junit))
    assert xml.tests == 3 and xml.skipped == 3
    assert all(isinstance(case.result[0], Skipped) for suite in xml for case in suite)
    assert not list(tmp.iterdir())
    assert wait_until(lambda: not (ray_processes() - before), 20), ray_processes() - before


@needs_ray
def test_a_killed_worker_brings_back_its_trace_and_sigterm_stops_the_rest(tmp_path):
    """kill -9 of one run's worker: that run fails, and its trace is what the worker wrote
    (fetched from its node), closed with the failure; its files there are removed.
    Then SIGTERM on the driver: the other run is interrupted like by Ctrl-C. Ray's
    notice of the dead worker (in colour) reaches stderr as plain text, even with --json."""
    before = ray_processes()
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    with napping_on_ray(tmp_path, tmp, "--repeat", "2", "--out", out, "--json") as proc:
        workers = worker_pids(tmp)
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        # The driver has given up on that run once results.jsonl says so.
        results = out / "results.jsonl"
        assert wait_until(lambda: results.exists() and results.read_text().count("\n") == 1, 300)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "\x1b" not in stderr and printable(stderr), stderr
    doc = json.loads(stdout)
    assert doc["counts"]["failed"] == 1 and doc["counts"]["interrupted"] == 1, doc["counts"]
    by_status = {r["status"]: r for r in doc["runs"]}
    failed = read_trace(Path(by_status["failed"]["trace"]))
    # What the worker wrote: its header, the request, the call it was in; then the driver's summary.
    assert [ev.tool for ev in failed.of_type("tool_begin")] == ["nap"]
    assert failed.of_type("model_begin") and not failed.problems
    assert failed.summary.status == "error" and "Ray task failed" in failed.summary.error
    interrupted = read_trace(Path(by_status["interrupted"]["trace"]))
    assert interrupted.summary.status == "interrupted" and not interrupted.problems
    assert not list(tmp.iterdir())  # the dead worker's directory too
    assert wait_until(lambda: not (ray_processes() - before), 20), ray_processes() - before


def test_what_ray_prints_on_the_driver_passes_the_printable_filter(capsys):
    from asyncfc_cli.ray_batch import _printable_stdout

    with _printable_stdout():
        # As Ray prints a raylet's notice (colorama), and worse: a title, the clipboard, a bell.
        print("\x1b[33m(raylet)\x1b[0m A worker died\x07 \x1b]0;pwned\x07\x1b]52;c;Zm9v\x1b\\done\tok")
    assert capsys.readouterr().out == "(raylet) A worker died\\x07 done\tok\n"


def test_a_dead_workers_trace_is_closed_after_its_last_whole_line():
    from asyncfc_cli.ray_batch import _closed
    from asyncfc_cli.trace import parse_trace

    header = b'{"type": "header", "t": 0.0, "version": 1, "run_id": "r"}\n'
    begun = b'{"type": "model_begin", "t": 1.5, "request": 1, "messages": 2}\n'
    closed = parse_trace(_closed(header + begun + b'{"type": "tool_be', "error", "the worker died"))
    assert [ev.type for ev in closed.events] == ["model_begin"] and not closed.problems  # the cut line dropped
    assert (closed.summary.status, closed.summary.error, closed.summary.t) == ("error", "the worker died", 1.5)
    ended = header + b'{"type": "summary", "t": 2.0, "status": "ok"}\n'
    assert _closed(ended, "error", "x") == ended  # it had closed its trace itself: kept as it is
    assert _closed(b'{"type": "head', "error", "x") is None and _closed(b"[1]\n", "error", "x") is None


@needs_ray
def test_every_run_on_ray_has_the_outcome_it_has_alone(tmp_path, monkeypatch):
    """The isolation property of tests/test_isolation.py, with --ray local: two random
    tasks in every mode (one run's command ends while the other's MCP server is busy)."""
    monkeypatch.chdir(tmp_path)
    rng = random.Random(f"{SEED}-ray")
    tasks = [random_task(rng, f"r{i}", tmp_path, first) for i, first in enumerate((("cmd", 0.2), ("lib_slow", 1.0)))]
    alone = {(t.stem, mode): run_alone(t, mode, tmp_path / "alone") for t in tasks for mode in MODES}
    max_runs = rng.randint(2, len(alone))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    done = subprocess.run(asyncfc(*tasks, "--mode", ",".join(MODES), "--ray", "local", "--max-runs", max_runs,
                                  "--out", tmp_path / "out", "--json"), env=cli_env(CI="true", TMPDIR=str(tmp)),
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr + done.stdout
    assert_same(alone, batch_outcomes(json.loads(done.stdout)), f"--ray local, --max-runs {max_runs}", tasks)
    assert not list(tmp.iterdir())


def test_a_run_whose_trace_never_came_back_gets_the_drivers_closed_trace(tmp_path):
    # What the driver writes when nothing of a dead worker's trace can be read.
    from asyncfc_cli.batch import plan_batch
    from asyncfc_cli.ray_batch import _write_closed_trace

    (run,) = plan_batch([OK], None, [None], tmp_path / "o")
    _write_closed_trace(run, "error", "the Ray task failed: WorkerCrashedError")
    trace = read_trace(run.trace)
    assert trace.summary is not None and trace.summary.status == "error"
    assert "WorkerCrashedError" in (trace.summary.error or "")
