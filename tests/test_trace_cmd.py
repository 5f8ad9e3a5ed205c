"""``asyncfc trace``: show, latest, list, compare, --json and the two exports,
on the recorded traces in tests/data/traces/ (numbers checked against the
raw events, never against earlier output)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import invoke

TRACES = Path(__file__).parent / "data" / "traces"
SYNC, ASYNC, KILLED = TRACES / "quickstart_sync.jsonl", TRACES / "quickstart_async.jsonl", TRACES / "quickstart_killed.jsonl"


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def trace_cli(*args, cwd: Path | None = None):
    old = Path.cwd()
    try:
        if cwd:
            os.chdir(cwd)
        return invoke("trace", *map(str, args), catch_exceptions=False)
    finally:
        os.chdir(old)


@pytest.fixture
def runs(tmp_path):
    """A working directory whose .asyncfc/runs holds three recorded runs, newest last."""
    runs_dir = tmp_path / ".asyncfc" / "runs"
    runs_dir.mkdir(parents=True)
    for age, name in enumerate(["quickstart_killed.jsonl", "quickstart_sync.jsonl", "quickstart_async.jsonl"]):
        dest = runs_dir / name
        shutil.copy(TRACES / name, dest)
        os.utime(dest, (1_800_000_000 + age, 1_800_000_000 + age))
    return tmp_path


def test_show_a_file_prints_the_timeline_and_the_summary_table():
    result = trace_cli(ASYNC, "--width", "120")
    assert result.exit_code == 0, result.output
    out = result.output
    for needle in ("model sim", "f4 ← f1,f2 compute", "summary", "critical path", "sequential-equivalent",
                   "achieved speedup", "model requests", "tools", "p50", "p99"):
        assert needle in out
    evs = events(ASYNC)
    wall = evs[-1]["t"] - evs[0]["t"]
    assert re.search(rf"^wall\s+{wall:.2f}s\s+ok", out, re.M)
    tokens = (sum(e.get("tokens_in", 0) for e in evs if e["type"] == "model_end"),
              sum(e.get("tokens_out", 0) for e in evs if e["type"] == "model_end"))
    assert re.search(rf"tokens in / out\s+{tokens[0]} / {tokens[1]}", out)
    assert re.search(r"^fetch\s+2\s+2\s+0\s", out, re.M)


def test_json_summary_matches_the_events():
    result = trace_cli(SYNC, "--json")
    summary = json.loads(result.output)
    evs = events(SYNC)
    begins = {e["call_id"]: e["t"] for e in evs if e["type"] == "tool_begin"}
    tool_time = sum(e["t"] - begins[e["call_id"]] for e in evs if e["type"] == "tool_end")
    mbegins = {e["request"]: e["t"] for e in evs if e["type"] == "model_begin"}
    model_time = sum(e["t"] - mbegins[e["request"]] for e in evs if e["type"] == "model_end")
    wall = evs[-1]["t"] - evs[0]["t"]
    assert summary["mode"] == "sync" and summary["status"] == "ok" and not summary["truncated"]
    assert summary["wall"] == pytest.approx(wall, abs=1e-5)
    assert summary["tool_time"] == pytest.approx(tool_time, abs=1e-5)
    assert summary["model_time"] == pytest.approx(model_time, abs=1e-5)
    startup = min(mbegins.values()) - evs[0]["t"]  # before the first request: not blocked
    assert summary["startup"] == pytest.approx(startup, abs=1e-5)
    assert summary["model_blocked"] == pytest.approx(wall - startup - model_time, abs=1e-5)
    assert summary["sequential_equivalent"] == pytest.approx(model_time + tool_time, abs=1e-5)
    assert summary["overlap"] == 0  # sync: nothing at once
    assert summary["tools"]["fetch"]["count"] == 2 and summary["requests"] == 3


def test_latest_list_and_run_ids_read_the_runs_directory(runs):
    latest = json.loads(trace_cli("latest", "--json", cwd=runs).output)
    assert latest["mode"] == "async" and latest["path"].endswith("quickstart_async.jsonl")
    assert json.loads(trace_cli("--json", cwd=runs).output)["path"] == latest["path"]  # no target: latest
    assert json.loads(trace_cli("quickstart_sync", "--json", cwd=runs).output)["mode"] == "sync"  # a run id

    listed = [json.loads(line) for line in trace_cli("list", "--json", cwd=runs).output.splitlines()]
    assert [Path(e["path"]).stem for e in listed] == ["quickstart_async", "quickstart_sync", "quickstart_killed"]
    assert [e["status"] for e in listed] == ["ok", "ok", "unfinished"]
    # the run's span on the trace's clock, as `asyncfc trace` measures it
    assert listed[1]["wall"] == round(events(SYNC)[-1]["t"] - events(SYNC)[0]["t"], 6)

    table = invoke("trace", "list", "--dir", str(runs / ".asyncfc" / "runs"),
                   env={"COLUMNS": "160"}, catch_exceptions=True).output
    rows = [line for line in table.splitlines() if "quickstart" in line]
    assert len(rows) == 3 and "async" in rows[0] and "sync" in rows[1] and "unfinished" in rows[2]
    for column in ("time", "task", "model", "mode", "status", "wall"):
        assert column in table.splitlines()[0]


def long_named_runs(tmp_path: Path, count: int = 3) -> Path:
    """Runs with the names real ones have (run ids), a long task path and a long model name."""
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    lines = [line for line in SYNC.read_text().splitlines() if line.strip()]
    header = json.loads(lines[0])
    for i in range(count):
        run_id = f"2026010{i + 1}T101010-{'abcdef'[i]}{i}c0ffee"[:22]
        header.update(run_id=run_id, task=f"/home/someone/projects/a-rather-long-project-name/tasks/task_{i}.toml",
                      model="openrouter/anthropic/claude-3-5-haiku-latest")
        dest = runs_dir / f"{run_id}.jsonl"
        dest.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
        os.utime(dest, (1_800_000_000 + i, 1_800_000_000 + i))
    return runs_dir


def test_list_stays_readable_at_80_columns(tmp_path):
    runs_dir = long_named_runs(tmp_path)
    for columns in (80, 60, 200):
        table = invoke("trace", "list", "--dir", str(runs_dir), env={"COLUMNS": str(columns)},
                       catch_exceptions=True).output
        lines = table.splitlines()
        assert all(len(line) <= columns for line in lines), table
        assert "…" not in table  # nothing collapsed: long cells go onto more lines
        for path in runs_dir.iterdir():
            assert path.stem in table  # the whole run id, which asyncfc trace takes
        assert "task_2.toml" in "".join(table.split())  # the task is all there, folded if need be
    header = invoke("trace", "list", "--dir", str(runs_dir), env={"COLUMNS": "100"}, catch_exceptions=True).output
    assert header.splitlines()[0].split() == ["time", "run", "task", "model", "mode", "status", "wall"]


@pytest.mark.parametrize("columns", [80, 40])
def test_list_never_splits_a_task_name_mid_word(tmp_path, columns):
    """Issue 21 item 11: `quickstart.to` / `ml` at 80 columns. Every line fits; the task's
    file name is on one line, whole when the line can hold it, else cut with "…"."""
    runs_dir = long_named_runs(tmp_path, count=2)
    table = invoke("trace", "list", "--dir", str(runs_dir), env={"COLUMNS": str(columns)}).output
    lines = table.splitlines()
    assert all(len(line) <= columns for line in lines), table
    for path in runs_dir.iterdir():
        assert any(path.stem in line for line in lines), table  # the run id whole, on one line
    for n in range(2):
        assert any(f"task_{n}.toml" in line for line in lines), table  # never split over lines
    assert not any(line.strip() in ("ml", "toml", ".toml") for line in lines), table


def test_list_limit_zero_means_all_and_a_negative_limit_is_refused(tmp_path):
    runs_dir = long_named_runs(tmp_path, count=3)

    def listed(*args: str) -> list[dict]:
        result = invoke("trace", "list", "--json", "--dir", str(runs_dir), *args, catch_exceptions=True)
        return [json.loads(line) for line in result.output.splitlines()]

    assert len(listed("--limit", "0")) == 3 and len(listed("-n", "1")) == 1 and len(listed()) == 3
    result = invoke("trace", "list", "--dir", str(runs_dir), "--limit", "-1", catch_exceptions=True)
    assert result.exit_code == 2


def test_a_run_id_prefix_names_a_run(tmp_path):
    runs_dir = long_named_runs(tmp_path, count=3)
    ids = sorted(p.stem for p in runs_dir.iterdir())

    def shown(target: str):
        return invoke("trace", target, "--json", "--dir", str(runs_dir), catch_exceptions=True)

    assert json.loads(shown(ids[1][:9]).output)["run_id"] == ids[1]  # the start of the id
    assert json.loads(shown(ids[2].rpartition("-")[2][:3]).output)["run_id"] == ids[2]  # the start of its last part
    ambiguous = invoke("trace", "2026", "--dir", str(runs_dir), catch_exceptions=True)
    assert ambiguous.exit_code == 2 and "start of 3 run ids" in ambiguous.output
    assert all(i in ambiguous.output for i in ids)
    assert invoke("trace", "2027", "--dir", str(runs_dir), catch_exceptions=True).exit_code == 2


def test_compare_warns_when_the_runs_are_of_different_tasks():
    other = TRACES / "futures_demo_async.jsonl"
    result = subprocess.run([sys.executable, "-m", "asyncfc_cli.cli", "trace", "compare", str(SYNC), str(other)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "warning: A and B are runs of different tasks (A: tasks/quickstart.toml; B: tasks/futures_demo.toml)" \
        in result.stderr
    data = json.loads(trace_cli("compare", SYNC, other, "--json").output.splitlines()[-1])
    assert len(data["warnings"]) == 1 and "different tasks" in data["warnings"][0]
    same = subprocess.run([sys.executable, "-m", "asyncfc_cli.cli", "trace", "compare", str(SYNC), str(ASYNC)],
                          capture_output=True, text=True, timeout=60)
    assert "warning" not in same.stderr
    assert json.loads(trace_cli("compare", SYNC, ASYNC, "--json").output)["warnings"] == []


def test_missing_traces_are_usage_errors(tmp_path):
    assert trace_cli("latest", cwd=tmp_path).exit_code == 2
    result = trace_cli(tmp_path / "nope.jsonl")
    assert result.exit_code == 2 and "asyncfc trace list" in result.output
    assert trace_cli(ASYNC, "--export", "svg").exit_code == 2


def test_compare_puts_both_runs_on_one_scale_with_the_speedup():
    result = trace_cli("compare", SYNC, ASYNC, "--width", "120")
    assert result.exit_code == 0, result.output
    wall_a, wall_b = events(SYNC)[-1]["t"] - events(SYNC)[0]["t"], events(ASYNC)[-1]["t"] - events(ASYNC)[0]["t"]
    assert f"B is {wall_a / wall_b:.2f}× faster than A" in result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("A: sync") and any(line.startswith("B: async") for line in lines)
    axes = [line for line in lines if line.startswith("time")]
    assert len(axes) == 2 and axes[0] == axes[1]  # the same time scale
    data = json.loads(trace_cli("compare", SYNC, ASYNC, "--json").output)
    assert data["speedup"] == pytest.approx(wall_a / wall_b, rel=1e-4)
    assert (data["a"]["mode"], data["b"]["mode"]) == ("sync", "async")


# --- exports -----------------------------------------------------------------------------------


@pytest.mark.parametrize("trace", [ASYNC, SYNC, KILLED, TRACES / "futures_demo_async.jsonl"])
def test_chrome_export_is_valid_trace_event_json(tmp_path, trace):
    out = tmp_path / "chrome.json"
    result = trace_cli(trace, "--export", "chrome", "-o", out)
    assert result.exit_code == 0 and "perfetto" in result.output.lower()
    doc = json.loads(out.read_text())
    evs = doc["traceEvents"]
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in evs if e["ph"] == "M" and e["name"] == "thread_name"}
    assert any(e["ph"] == "M" and e["name"] == "process_name" for e in evs)
    for e in evs:
        assert {"ph", "pid", "tid", "ts", "name"} <= e.keys(), e
        assert isinstance(e["ts"], (int, float)) and e["ts"] >= 0
        if e["ph"] != "M":
            assert (e["pid"], e["tid"]) in names, e  # every lane is named
        if e["ph"] == "X":
            assert e["dur"] >= 0
    assert "model" in names.values() and "tool slot 1" in names.values()
    # Slices in one lane nest or follow each other, never cross.
    by_lane: dict = {}
    for e in evs:
        if e["ph"] == "X":
            by_lane.setdefault(e["tid"], []).append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_lane.values():
        stack: list[float] = []
        for a, b in sorted(spans, key=lambda s: (s[0], -s[1])):
            while stack and stack[-1] <= a + 1e-3:
                stack.pop()
            assert not stack or b <= stack[-1] + 1e-3, (a, b, stack)
            stack.append(b)
    raw = events(trace)
    t0 = raw[0]["t"]
    ready = [e for e in raw if e["type"] == "call_ready"]
    instants = [e for e in evs if e["ph"] == "i"]
    assert len(instants) == len(ready)
    assert sorted(e["ts"] for e in instants) == pytest.approx(sorted((e["t"] - t0) * 1e6 for e in ready), abs=1)
    assert len([e for e in evs if e["ph"] == "X" and e["cat"] == "model"]) == sum(
        e["type"] == "model_begin" for e in raw)
    assert len([e for e in evs if e["ph"] == "X" and e["cat"] == "tool"]) == sum(e["type"] == "tool_begin" for e in raw)
    flows = [e for e in evs if e["ph"] in "sf"]
    assert sorted(e["id"] for e in flows if e["ph"] == "s") == sorted(e["id"] for e in flows if e["ph"] == "f")
    if trace == KILLED:
        assert any(e.get("args", {}).get("unfinished") and "(unfinished)" in e["name"] for e in evs)


# Attribute names of the OpenTelemetry GenAI semantic conventions (gen-ai-spans.md:
# inference and execute_tool spans; gen-ai-agent-spans.md: invoke_agent) and error.type.
GENAI_ATTRIBUTES = {
    "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens", "gen_ai.response.finish_reasons", "gen_ai.agent.name", "gen_ai.tool.name",
    "gen_ai.tool.call.id", "gen_ai.tool.type", "error.type",
}


def attrs(span: dict) -> dict:
    out = {}
    for a in span["attributes"]:
        (kind, value), = a["value"].items()
        out[a["key"]] = [next(iter(v.values())) for v in value["values"]] if kind == "arrayValue" else value
    return out


@pytest.mark.parametrize("trace", [ASYNC, TRACES / "errors_async.jsonl", KILLED])
def test_otel_export_follows_the_genai_conventions(tmp_path, trace):
    out = tmp_path / "otel.json"
    assert trace_cli(trace, "--export", "otel", "-o", out).exit_code == 0
    doc = json.loads(out.read_text())
    (resource,) = doc["resourceSpans"]
    assert {"key": "service.name", "value": {"stringValue": "asyncfc"}} in resource["resource"]["attributes"]
    (scope,) = resource["scopeSpans"]
    spans = scope["spans"]
    raw = events(trace)
    header = raw[0]
    model = header["model"]
    (root,) = [s for s in spans if "parentSpanId" not in s]
    assert root["name"] == f"invoke_agent {header['agent']}" and attrs(root)["gen_ai.operation.name"] == "invoke_agent"
    for s in spans:
        assert re.fullmatch(r"[0-9a-f]{32}", s["traceId"]) and re.fullmatch(r"[0-9a-f]{16}", s["spanId"])
        assert int(s["startTimeUnixNano"]) <= int(s["endTimeUnixNano"])
        assert s.get("parentSpanId", root["spanId"]) == root["spanId"]
        for key in attrs(s):
            assert key in GENAI_ATTRIBUTES or key.startswith(("asyncfc.", )), key
    chats = [s for s in spans if s["name"] == f"chat {model}"]
    ends = [e for e in raw if e["type"] == "model_end"]
    assert len(chats) == sum(e["type"] == "model_begin" for e in raw)
    for span, end in zip(chats, ends):
        a = attrs(span)
        assert span["kind"] == 3 and a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == model
        assert a["gen_ai.provider.name"] and a["gen_ai.usage.input_tokens"] == str(end["tokens_in"])
        assert a["gen_ai.usage.output_tokens"] == str(end["tokens_out"])
        assert a["gen_ai.response.finish_reasons"] == [end["finish_reason"]]
    tools = [s for s in spans if s["name"].startswith("execute_tool ")]
    tool_ends = {e["call_id"]: e for e in raw if e["type"] == "tool_end"}
    assert len(tools) == sum(e["type"] == "tool_begin" for e in raw)
    for span in tools:
        a = attrs(span)
        assert span["kind"] == 1 and a["gen_ai.operation.name"] == "execute_tool"
        assert span["name"] == f"execute_tool {a['gen_ai.tool.name']}" and a["gen_ai.tool.type"] == "function"
        end = tool_ends.get(a["gen_ai.tool.call.id"])
        if end is None:
            assert a["asyncfc.unfinished"] is True and span["status"]["code"] == 2
        elif end["status"] != "ok":
            assert a["error.type"] and span["status"]["code"] == 2
        else:
            assert "error.type" not in a
    f4 = next((s for s in tools if attrs(s).get("asyncfc.future") == "f4"), None)
    if f4 is not None:  # its dependencies are links to f1's and f2's spans
        linked = {link["spanId"] for link in f4["links"]}
        assert {s["spanId"] for s in tools if attrs(s)["asyncfc.future"] in ("f1", "f2")} <= linked


def test_trace_output_off_a_terminal_has_no_escape_codes_and_no_litellm():
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    code = ("import sys\nfrom asyncfc_cli.cli import main\nsys.argv = ['asyncfc', 'trace', 'compare', "
            f"{str(SYNC)!r}, {str(ASYNC)!r}]\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
            "assert 'litellm' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "B is" in proc.stdout and "\x1b" not in proc.stdout + proc.stderr
