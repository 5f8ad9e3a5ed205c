"""``asyncfc batch --ray local``: the same batch as Ray tasks on a real local Ray
instance on 127.0.0.1 (skipped, with the reason, where Ray is not installed;
``pip install -e '.[test,ray]'`` brings it).

Each test is one ``asyncfc`` process that starts Ray, runs, and must leave no
Ray process behind. They are slower than the rest (Ray's start, and LiteLLM's
import in each Ray worker), so there are few.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from junitparser import JUnitXml, Skipped
from typer.testing import CliRunner

from asyncfc_cli.cli import app
from asyncfc_cli.trace import read_trace
from conftest import wait_until
from test_batch import NAP, OK, REMOTE, Endpoint

try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False

needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install -e '.[test,ray]')")


def test_without_ray_the_error_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as where it is not installed
    result = CliRunner().invoke(app, ["batch", str(OK), "--ray", "local", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "Ray is not installed" in result.stderr and "pip install 'asyncfc[ray]'" in result.stderr
    assert not (tmp_path / "o").exists()


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


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", CI="true", **extra)
    env.pop("FORCE_COLOR", None)
    return env


def asyncfc(*args) -> list[str]:
    return [sys.executable, "-m", "asyncfc_cli", "batch", *map(str, args)]


@needs_ray
def test_batch_on_local_ray_with_limits_across_workers(tmp_path):
    before = ray_processes()
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"word": "one"}\n{"word": "two"}\n{"word": "three"}\n')
    out, junit = tmp_path / "out", tmp_path / "j.xml"
    # The first request is held 6 s: if the cluster-wide limit of one request did not
    # hold, another run's request would arrive meanwhile and the peak would be 2.
    endpoint = Endpoint(hold=0.1, first_hold=6.0)
    with endpoint.server as server:
        proc = subprocess.run(asyncfc(REMOTE, OK, "--matrix", rows, "--ray", "local", "--max-runs", "3",
                                      "--max-per-model", "1", "--out", out, "--junit", junit, "--json"),
                              env=cli_env(**endpoint.env()), cwd=tmp_path, capture_output=True, text=True,
                              timeout=240)
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
    assert wait_until(lambda: not (ray_processes() - before), 20), ray_processes() - before


@needs_ray
def test_ctrl_c_stops_remote_runs_and_every_trace_comes_back_closed(tmp_path):
    before = ray_processes()
    out, junit = tmp_path / "out", tmp_path / "j.xml"
    proc = subprocess.Popen(asyncfc(NAP, "--repeat", "3", "--max-runs", "2", "--ray", "local", "--out", out,
                                    "--junit", junit), env=cli_env(), cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Ray is up when it says so; the two runs then start (each naps 30 s).
        line = ""
        deadline = time.monotonic() + 120
        while "Ray started" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "exited before Ray started"
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
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
    assert wait_until(lambda: not (ray_processes() - before), 20), ray_processes() - before
