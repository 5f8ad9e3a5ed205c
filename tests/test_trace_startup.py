"""Start-up is accounted once, the same way everywhere (issue 21, item 2): a run with a
real MCP server (tests/mcp_server.py, over stdio) has one wall in `run --json`, the
trace's summary, `trace --json`, `trace list` and the exporters; the server's start is
its own span, never "model blocked"; the header read back lists the server's tools."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from asyncfc_cli.trace import read_trace

from conftest import invoke

SERVER = Path(__file__).parent / "mcp_server.py"
STDIO = f'{{ command = [{json.dumps(sys.executable)}, {json.dumps(str(SERVER))}] }}'


@pytest.fixture(scope="module", params=["async", "sync"])
def mcp_run(request, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp(f"startup-{request.param}")
    (tmp / "agents.toml").write_text("")
    task = tmp / "task.toml"
    task.write_text(
        f'prompt = "p"\n[agent]\nmodel = "sim"\ntools = ["srv"]\nmode = "{request.param}"\n'
        f'[tools.srv]\nmcp = {STDIO}\ninclude = ["add", "echo"]\n'
        '[sim]\ndecode_tps = 400\nttft = 0.05\n'
        '[[sim.steps]]\nid = "a"\ntool = "add"\nargs = { a = 2, b = 3 }\n'
        '[[sim.steps]]\nid = "b"\ntool = "echo"\nargs = { text = "hi" }\n'
        '[sim.final]\nanswer = "sum={a}"\n')
    trace = tmp / "runs" / "t.jsonl"
    result = invoke("run", task, "--json", "--trace", trace)
    assert result.exit_code == 0, result.output
    shown = invoke("trace", "show", trace, "--json")
    listed = invoke("trace", "list", "--json", "--dir", trace.parent)
    text = invoke("trace", "show", trace, "--width", "120")
    chrome = invoke("trace", "show", trace, "--export", "chrome")
    otel = invoke("trace", "show", trace, "--export", "otel")
    for done in (shown, listed, text, chrome, otel):
        assert done.exit_code == 0, done.output
    return {"report": json.loads(result.stdout), "shown": json.loads(shown.stdout),
            "listed": json.loads(listed.stdout.splitlines()[0]), "text": text.stdout, "trace": trace,
            "chrome": json.loads(chrome.stdout), "otel": json.loads(otel.stdout)}


def test_one_wall_in_every_output(mcp_run):
    wall = mcp_run["report"]["wall"]
    data = read_trace(mcp_run["trace"])
    assert data.summary["wall"] == wall == round(data.summary.t - data.header.t, 6)
    assert mcp_run["shown"]["wall"] == wall
    assert mcp_run["listed"]["wall"] == wall
    assert mcp_run["chrome"]["otherData"]["summary"]["wall"] == wall
    (root,) = [s for s in mcp_run["otel"]["resourceSpans"][0]["scopeSpans"][0]["spans"] if "parentSpanId" not in s]
    assert abs((int(root["endTimeUnixNano"]) - int(root["startTimeUnixNano"])) / 1e9 - wall) < 1e-5
    # the view's footer and summary table say the same
    assert f"wall {wall:.2f}s" in mcp_run["text"]
    # issue 21 item 11: the header's start time and the run id are one instant
    from asyncfc_cli.trace import run_id_time

    assert data.header["started_at"] == run_id_time(data.header["run_id"]).isoformat(timespec="seconds")


def test_the_servers_start_is_start_up_not_model_blocked(mcp_run):
    shown = mcp_run["shown"]
    (source,) = shown["setup"]
    assert source["name"] == "srv" and source["kind"] == "mcp" and sorted(source["tools"]) == ["add", "echo"]
    assert source["seconds"] > 0 and source["end"] <= shown["startup"] + 1e-6
    # start-up runs to the first request and is counted once: in the wall, not as blocked time
    first = min(e.t for e in read_trace(mcp_run["trace"]).events if e.type == "model_begin")
    assert shown["startup"] == pytest.approx(first, abs=1e-5)
    assert shown["model_blocked"] == pytest.approx(shown["wall"] - shown["startup"] - shown["model_time"], abs=1e-5)
    # start-up is the same in every mode: the speedups are the agent loop's
    assert shown["sequential_equivalent"] == pytest.approx(shown["model_time"] + shown["tool_time"], abs=1e-5)
    assert shown["speedup"] == pytest.approx(
        shown["sequential_equivalent"] / (shown["wall"] - shown["startup"]), rel=1e-4)
    assert shown["critical_path"] <= shown["wall"] - shown["startup"] + 1e-5


def test_the_view_draws_the_start_as_its_own_line(mcp_run):
    lines = mcp_run["text"].splitlines()
    model = next(line for line in lines if line.startswith("model "))
    bar = model[model.index("tok") + 3:]
    before_first_request = bar.strip().split("░", 1)[0]
    assert before_first_request and set(before_first_request) == {"╌"}, model  # never "·" (blocked)
    assert any(re.match(r"start srv \(mcp\)\s+█+", line) for line in lines), mcp_run["text"]
    assert re.search(r"start-up\s+\d+\.\d\ds\s+srv \(mcp\) \d+\.\d\ds, 2 tools", mcp_run["text"])
    assert "╌ start-up" in mcp_run["text"]


def test_the_exporters_show_the_start(mcp_run):
    slices = [e for e in mcp_run["chrome"]["traceEvents"] if e.get("cat") == "startup"]
    assert [s["name"] for s in slices] == ["start srv (mcp)"] and slices[0]["dur"] > 0
    spans = mcp_run["otel"]["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert [s["name"] for s in spans if s["name"].startswith("start ")] == ["start srv"]
    assert sorted(mcp_run["chrome"]["otherData"]["tools"]) == ["add", "echo"]


def test_the_header_read_back_lists_the_servers_tools(mcp_run):
    assert sorted(read_trace(mcp_run["trace"]).header["tools"]) == ["add", "echo"]
    assert sorted(mcp_run["shown"]["tool_names"]) == ["add", "echo"]
