"""The timeline and the span maths, checked against recorded runs.

The traces in tests/data/traces/ come from real runs of the quickstart (sync,
parallel, async), the futures demo, failing tools, a Ctrl-C'd run and a run
killed with SIGKILL (README, "Timeline and traces", names the commands).
Expected numbers are computed here from the raw events by other means
(sums, and a brute-force time grid for overlaps), never copied from output.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from asyncfc_cli import analysis
from asyncfc_cli.progress import ProgressPrinter, progress_sink
from asyncfc_cli.timeline import LiveTimeline, Timeline, fmt_seconds, live_allowed
from asyncfc_cli.trace import parse_trace, read_trace

TRACES = Path(__file__).parent / "data" / "traces"
WIDTH = 120
ESC = "\x1b"


def raw_events(name: str) -> list[dict]:
    return [json.loads(line) for line in (TRACES / name).read_text().splitlines() if line.strip()]


def render(name_or_events, **kwargs) -> list[str]:
    events = raw_events(name_or_events) if isinstance(name_or_events, str) else name_or_events
    console = Console(record=True, width=WIDTH, file=io.StringIO(), color_system=None)
    console.print(Timeline(events, **kwargs))
    return console.export_text().splitlines()


class Expected:
    """Numbers computed straight from the events: sums, and a 0.1 ms grid for overlaps."""

    def __init__(self, events: list[dict]):
        header = events[0]
        self.t0 = header["t"]
        self.t1 = events[-1]["t"]
        self.finished = events[-1]["type"] == "summary"
        models: dict = {}
        tools: dict = {}
        for ev in events:
            if ev["type"] == "model_begin":
                models[ev["request"]] = [ev["t"], None]
            elif ev["type"] == "model_end":
                models[ev["request"]][1] = ev["t"]
            elif ev["type"] == "tool_begin":
                tools[ev["call_id"]] = [ev["t"], None, ev["tool"]]
            elif ev["type"] == "tool_end":
                tools[ev["call_id"]][1] = ev["t"]
        self.models = [(a, b if b is not None else self.t1) for a, b in models.values()]
        self.tools = [(a, b if b is not None else self.t1, name) for a, b, name in tools.values()]
        self.wall = self.t1 - self.t0
        self.model_time = sum(b - a for a, b in self.models)
        self.tool_time = sum(b - a for a, b, _ in self.tools)
        self.tokens_in = sum(ev.get("tokens_in") or 0 for ev in events if ev["type"] == "model_end")
        self.tokens_out = sum(ev.get("tokens_out") or 0 for ev in events if ev["type"] == "model_end")
        step = 1e-4
        n = int(self.wall / step)
        both = tools2 = any2 = 0
        for i in range(n):
            t = self.t0 + (i + 0.5) * step
            m = sum(a <= t < b for a, b in self.models)
            k = sum(a <= t < b for a, b, _ in self.tools)
            both += bool(m and k)
            tools2 += k >= 2
            any2 += m + k >= 2
        self.overlap_model_tool, self.overlap_tool_tool, self.overlap = both * step, tools2 * step, any2 * step


ALL = ["quickstart_sync.jsonl", "quickstart_parallel.jsonl", "quickstart_async.jsonl",
       "futures_demo_async.jsonl", "errors_async.jsonl", "slow_interrupted.jsonl", "quickstart_killed.jsonl"]


@pytest.mark.parametrize("name", ALL)
def test_summary_numbers_match_the_events(name):
    events = raw_events(name)
    exp = Expected(events)
    m = analysis.compute(analysis.run_from_trace(read_trace(TRACES / name)))
    assert m.wall == pytest.approx(exp.wall, abs=1e-6)
    assert m.model_time == pytest.approx(exp.model_time, abs=1e-6)
    assert m.tool_time == pytest.approx(exp.tool_time, abs=1e-6)
    # start-up (before the first request) is neither blocked time nor in the speedup
    startup = min((e["t"] for e in events if e["type"] == "model_begin"), default=exp.t0 + exp.wall) - exp.t0
    assert m.startup == pytest.approx(startup, abs=1e-6)
    assert m.blocked == pytest.approx(exp.wall - startup - exp.model_time, abs=1e-6)
    assert m.sequential == pytest.approx(exp.model_time + exp.tool_time, abs=1e-6)
    assert m.speedup == pytest.approx((exp.model_time + exp.tool_time) / (exp.wall - startup), rel=1e-6)
    for got, want in ((m.overlap, exp.overlap), (m.overlap_model_tool, exp.overlap_model_tool),
                      (m.overlap_tool_tool, exp.overlap_tool_tool)):
        assert got == pytest.approx(want, abs=2e-3)
    assert (m.tokens_in, m.tokens_out) == (exp.tokens_in, exp.tokens_out)
    assert m.finished == exp.finished
    # The critical path runs through every request (they are sequential) and
    # no schedule respecting the dependencies can beat it, so neither did this run.
    assert exp.model_time - 1e-6 <= m.critical_path <= exp.wall + 1e-6
    assert m.critical_chain[0] == "model #1"


def test_sync_never_overlaps_and_async_overlaps_decoding_with_tools():
    sync = analysis.compute(analysis.run_from_trace(read_trace(TRACES / "quickstart_sync.jsonl")))
    par = analysis.compute(analysis.run_from_trace(read_trace(TRACES / "quickstart_parallel.jsonl")))
    asy = analysis.compute(analysis.run_from_trace(read_trace(TRACES / "quickstart_async.jsonl")))
    assert sync.overlap == 0 and sync.speedup == pytest.approx(1.0, abs=0.01)
    assert par.overlap_model_tool == 0 and par.overlap_tool_tool > 0.5  # two fetches of 1 s together
    assert asy.overlap_model_tool > 1.0 and asy.blocked < 0.5 * sync.blocked
    # The final request needed compute's result (it waited for f4), and compute needed both fetches.
    assert asy.critical_chain[-2:] == ["f4 compute", "model #4"]


def test_percentiles_per_tool():
    events = raw_events("quickstart_async.jsonl")
    begins = {e["call_id"]: e["t"] for e in events if e["type"] == "tool_begin"}
    fetches = sorted(e["t"] - begins[e["call_id"]] for e in events if e["type"] == "tool_end" and e["tool"] == "fetch")
    m = analysis.compute(analysis.build_run(events))
    stats = m.per_tool["fetch"]
    assert (stats.count, stats.ok, stats.failed) == (2, 2, 0)
    assert stats.p50 == pytest.approx(sum(fetches) / 2) and stats.max == pytest.approx(fetches[-1])
    assert stats.p90 == pytest.approx(fetches[0] + 0.9 * (fetches[1] - fetches[0]))
    assert analysis.compute(analysis.build_run(raw_events("errors_async.jsonl"))).per_tool["boom"].failed == 1


# --- rendering ------------------------------------------------------------------------------


# The legend's first line: a glyph, a space and a name, then the next entry or the line's end.
LEGEND_LINE = re.compile(r"\S+ (ttft|decoding|model blocked|wait|pending|running|done|failed|timeout|cancelled"
                         r"|unfinished)(  |$)")


def lanes(lines: list[str]) -> tuple[list[str], str]:
    """Tool lane lines (between the model lane and the legend), and the footer."""
    start = next(i for i, line in enumerate(lines) if line.startswith("model"))
    end = next(i for i, line in enumerate(lines) if i > start and LEGEND_LINE.match(line))
    return lines[start + 1:end], " ".join(lines[end + 1:])


def bar_origin(lines: list[str]) -> int:
    """Column where the bars start: the axis's ``╵0s`` mark."""
    axis = next(line for line in lines if line.startswith("time"))
    return axis.index("╵0s")


@pytest.mark.parametrize("name", ["quickstart_sync.jsonl", "quickstart_async.jsonl", "futures_demo_async.jsonl"])
def test_one_lane_per_call_in_issue_order_with_ids_tools_and_dependencies(name):
    events = raw_events(name)
    lines = render(events)
    tool_lines, _ = lanes(lines)
    issued = [e for e in events if e["type"] == "call_ready" and e["tool"] != "wait"]
    assert len(tool_lines) == len(issued)
    futures = {e["call_id"]: e for e in events if e["type"] == "future_created"}
    for number, (line, ready) in enumerate(zip(tool_lines, issued), 1):
        future = futures.get(ready["call_id"])
        ident = future["future"] if future else f"#{number}"
        deps = f" ← {','.join(future['deps'])}" if future and future["deps"] else ""
        assert line.startswith(f"{ident}{deps} {ready['tool']}("), line
        assert "✓" in line  # every call of these runs succeeded


def test_bars_sit_where_the_events_say():
    events = raw_events("quickstart_async.jsonl")
    lines = render(events)
    origin = bar_origin(lines)
    width = WIDTH - origin - 11  # label | bar | info(10)
    t0, t1 = events[0]["t"], events[-1]["t"]

    def col(t: float) -> int:
        return int((t - t0) / (t1 - t0) * width)

    tool_lines, _ = lanes(lines)
    begins = [e for e in events if e["type"] == "tool_begin"]
    for line, begin in zip(tool_lines, begins):
        first = min(line.index(c, origin) for c in "█┄" if c in line[origin:])
        assert abs(first - origin - col(begin["t"])) <= 1, (line, begin)
    # Overlap is visible: f1 starts while request 1 is still decoding (the model lane has █ above it).
    model = next(line for line in lines if line.startswith("model"))
    f1 = tool_lines[0]
    assert model[f1.index("█", origin)] == "█"


def test_footer_shows_the_same_numbers_as_the_analysis():
    events = raw_events("quickstart_async.jsonl")
    _, footer = lanes(render(events))
    m = analysis.compute(analysis.build_run(events))
    assert f"wall {fmt_seconds(m.wall)} (ok)" in footer
    assert f"model blocked {fmt_seconds(m.blocked)}" in footer
    assert f"overlap {fmt_seconds(m.overlap)} (model‖tool {fmt_seconds(m.overlap_model_tool)})" in footer
    assert f"sequential-equivalent {fmt_seconds(m.sequential)}" in footer
    assert f"speedup {m.speedup:.2f}×" in footer


def test_states_have_their_own_glyphs_and_symbols():
    failed, _ = lanes(render("errors_async.jsonl"))
    assert len(failed) == 3 and all("✗" in line and "▓" in line for line in failed)
    cancelled, footer = lanes(render("slow_interrupted.jsonl"))
    assert len(cancelled) == 1 and "⊘" in cancelled[0] and "╱" in cancelled[0].split(")", 1)[1]
    assert "(interrupted)" in footer


def test_cancelled_has_a_glyph_of_its_own():
    from asyncfc_cli.timeline import MODEL_DECODE, MODEL_IDLE, MODEL_TTFT, MODEL_WAIT, STATES

    glyph = STATES[analysis.CANCELLED][0]
    others = {g for state, (g, _, _) in STATES.items() if state != analysis.CANCELLED}
    assert glyph not in others | {MODEL_TTFT[0], MODEL_DECODE[0], MODEL_IDLE[0], MODEL_WAIT[0]}
    lane = lanes(render("slow_interrupted.jsonl"))[0][0]
    assert "░" not in lane  # that is the model's time to first token


def test_a_cancelled_request_is_not_drawn_as_decoding():
    events = [{"type": "header", "t": 0.0, "mode": "async", "model": "sim"},
              {"type": "model_begin", "t": 0.0, "request": 1},
              {"type": "model_first_token", "t": 1.0, "request": 1},
              {"type": "model_end", "t": 4.0, "request": 1, "status": "cancelled"},
              {"type": "summary", "t": 4.0, "status": "interrupted"}]
    for live in (False, True):
        lines = render(events, live=live, now=4.0)
        model = next(line for line in lines if line.startswith("model"))
        assert "█" not in model and model.count("╱") > model.count("░") > 0
        assert any("╱⊘ cancelled" in line for line in lines)  # and the legend says what it is


@pytest.mark.parametrize("name", ["errors_async.jsonl", "slow_interrupted.jsonl", "futures_demo_async.jsonl"])
def test_the_legend_fits_60_columns_without_cutting_an_entry(name):
    events = raw_events(name)
    for live in (False, True):
        console = Console(record=True, width=60, file=io.StringIO(), color_system=None)
        console.print(Timeline(events[:-1] if live else events, live=live, now=events[-1]["t"]))
        lines = console.export_text().splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("░ ttft"))
        legend = []
        for line in lines[start:]:
            if line.startswith(("wall", "elapsed")):
                break
            legend.append(line)
        assert legend and all(len(line) <= 60 for line in legend)
        entries = re.split(r"  (?=\S)", "  ".join(legend))
        for entry in entries:  # each a glyph, a space and a name, whole
            assert re.fullmatch(r"\S+ [a-z ]+", entry.strip()), (entry, legend)
        assert_legend_names_what_is_drawn(lines[:start], entries)


def assert_legend_names_what_is_drawn(rows: list[str], entries: list[str]) -> None:
    """Every glyph the legend names is drawn (in a bar or the right-hand column),
    and every glyph drawn in a bar or that column is named."""
    drawn = "".join(row[20:] for row in rows[1:])  # past the labels: 19 columns at 60
    named = "".join(entry.split()[0] for entry in entries)
    for entry in entries:
        assert any(glyph in drawn for glyph in entry.split()[0]), (entry, rows)
    assert {c for c in drawn if c in "░█·⋯┄▒▓╱▸✓✗⏱⊘"} <= set(named), (named, rows)


def test_a_killed_run_renders_with_its_open_spans_marked_unfinished():
    events = raw_events("quickstart_killed.jsonl")
    assert events[-1]["type"] != "summary"
    lines = render(events)
    tool_lines, footer = lanes(lines)
    open_calls = {e["call_id"] for e in events if e["type"] == "tool_begin"} - {
        e["call_id"] for e in events if e["type"] == "tool_end"}
    assert len(open_calls) == 1
    (open_line,) = [line for line in tool_lines if "?" in line.split()[-2]]
    assert open_line.startswith("f4 ← f1,f2 compute")
    assert "(unfinished)" in footer
    # A line cut in the middle (the writer died mid-write) reads the same.
    text = (TRACES / "quickstart_killed.jsonl").read_text() + '{"type": "tool_end", "t": 3.3, "call_'
    data = parse_trace(text)
    assert data.truncated and len(data.events) == len(events) - 1
    assert lines == render([data.header, *data.events])


def test_live_frames_show_running_and_pending_calls_and_compress_the_axis():
    events = raw_events("futures_demo_async.jsonl")
    f3 = next(e for e in events if e["type"] == "future_created" and e["future"] == "f3")
    cut = events.index(f3) + 1  # f3 issued, waiting on f1
    lines = render(events[:cut], now=f3["t"] + 0.05, live=True)
    tool_lines, footer = lanes(lines)
    by_id = {line.split()[0]: line for line in tool_lines}
    assert "▸" in by_id["f1"] and "┄" in by_id["f3"].split("compute", 1)[1]
    assert footer.startswith("elapsed") and lines[1].startswith("model") and "req" not in lines[1][-10:]
    origin, bar_w = bar_origin(lines), WIDTH - bar_origin(lines) - 11

    def axis_span(lines: list[str]) -> float:
        """Seconds across the bar, read back from the position of the last tick."""
        axis = next(line for line in lines if line.startswith("time"))
        col, label = max((m.start(), float(m.group(1))) for m in re.finditer(r"╵([\d.]+)s", axis))
        return label * bar_w / (col - origin)

    assert f3["t"] < 2.5 and axis_span(lines) == pytest.approx(5, rel=0.05)  # a round span, not the run so far
    late = render(events[:-1], now=events[-1]["t"] + 30, live=True)  # about 36 s in
    assert axis_span(late) == pytest.approx(45, rel=0.05)  # compressed to the next round span


def test_many_calls_fold_into_one_line_when_the_terminal_is_short():
    events = [{"type": "header", "t": 0.0, "mode": "async", "model": "sim"},
              {"type": "model_begin", "t": 0.0, "request": 1}]
    for i in range(1, 31):
        events += [{"type": "call_ready", "t": i * 0.1, "request": 1, "call_id": f"c{i}", "tool": "t"},
                   {"type": "tool_begin", "t": i * 0.1, "call_id": f"c{i}", "tool": "t", "future": f"f{i}"}]
        if i <= 25:
            events.append({"type": "tool_end", "t": i * 0.1 + 0.05, "call_id": f"c{i}", "tool": "t", "status": "ok"})
    lines = render(events, now=3.2, live=True, max_lanes=8)
    tool_lines, _ = lanes(lines)
    assert tool_lines[0].startswith("… 23 earlier calls") and "✓23" in tool_lines[0]
    shown = [line.split()[0] for line in tool_lines[1:]]
    assert shown == ["f24", "f25", "f26", "f27", "f28", "f29", "f30"]  # every running call stays


# --- where the live display may appear -------------------------------------------------------


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_live_only_on_an_interactive_terminal():
    tty = Console(file=FakeTTY(), force_terminal=True, force_interactive=True)
    assert live_allowed(tty, env={})
    assert not live_allowed(tty, env={"CI": "true"})
    assert not live_allowed(tty, env={}, quiet=True) and not live_allowed(tty, env={}, as_json=True)
    # FORCE_COLOR makes Rich call a pipe a terminal; the live display still stays off.
    piped = Console(file=io.StringIO(), force_terminal=True)
    assert piped.is_terminal and not live_allowed(piped, env={"FORCE_COLOR": "1"})
    assert isinstance(progress_sink(piped, env={}), ProgressPrinter)
    assert isinstance(progress_sink(tty, env={}), LiveTimeline)


def test_plain_progress_has_no_escape_codes_off_a_terminal():
    out = io.StringIO()
    sink = progress_sink(Console(file=out, highlight=False), env={})
    for event in raw_events("errors_async.jsonl"):
        sink(event)
    text = out.getvalue()
    assert ESC not in text and text.count("→") == 3 and text.count("✗") == 3


def test_the_live_sink_appends_and_its_last_frame_is_the_whole_run():
    out = FakeTTY()
    console = Console(file=out, force_terminal=True, force_interactive=True, width=WIDTH, color_system=None)
    events = raw_events("quickstart_async.jsonl")
    with LiveTimeline(console, refresh_per_second=50) as sink:
        for event in events:
            sink(event)
    assert sink.events == events
    final = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue()).split("\r")[-1]
    assert "f4 ← f1,f2 compute" in final and "wall " in final and "(ok)" in final


@pytest.mark.parametrize("name, labels", [("quickstart_sync.jsonl", ["#1", "#2", "#3", "#4"]),
                                          ("quickstart_async.jsonl", ["f1", "f2", "f3", "f4"])])
def test_plain_progress_lines_name_each_call_as_the_timeline_does(name, labels):
    out = io.StringIO()
    printer = ProgressPrinter(Console(file=out, width=300, color_system=None, soft_wrap=True))
    for event in raw_events(name):
        printer(event)
    lines = out.getvalue().splitlines()
    starts = [line.split("→ ", 1)[1].split()[0] for line in lines if "→ " in line]
    ends = [line.split("✓ ", 1)[1].split()[0] for line in lines if "✓ " in line]
    assert starts == labels and sorted(ends) == labels
    lanes_shown = [line.split()[0] for line in lanes(render(name))[0]]
    assert lanes_shown == labels  # the same names as the timeline's lanes
