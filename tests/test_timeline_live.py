"""The live frame: drawn from indexes kept as events arrive, in work that does
not grow with the run, and the same picture as the whole run's spans give.

Work is counted (spans a frame reads, look-ups per column), never timed;
benchmarks/live_frame.py measures the time.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from asyncfc_cli import analysis, livespans
from asyncfc_cli.events import (CallReady, FutureCreated, Header, ModelBegin, ModelEnd, ModelFirstToken, Summary,
                                ToolBegin, ToolEnd, WaitBegin, WaitEnd, parse_many)
from asyncfc_cli.livespans import LiveSpans
from asyncfc_cli.timeline import LiveTimeline, Timeline
from asyncfc_cli.trace import Trace

TRACES = Path(__file__).parent / "data" / "traces"
RECORDED = ["quickstart_sync.jsonl", "quickstart_parallel.jsonl", "quickstart_async.jsonl",
            "futures_demo_async.jsonl", "errors_async.jsonl", "slow_interrupted.jsonl", "quickstart_killed.jsonl"]


def text(renderable, width: int = 120, height: int = 40) -> str:
    console = Console(file=io.StringIO(), width=width, height=height, color_system=None, record=True)
    console.print(renderable)
    return console.export_text()


def busy_run(calls: int, requests: int = 3) -> list:
    """A run with everything a lane can show: waits, failures, timeouts, a cancelled
    request, calls still pending and running, ``calls`` calls over ``requests`` requests.

    Its times are multiples of 1/64 s, so every sum is exact: the footer kept
    event by event and the one summed over the whole run agree to the last
    bit (elsewhere to a rounding error, far below the hundredths shown)."""
    now = [0.0]
    trace = Trace(clock=lambda: now[0])
    out = [trace.emit(Header(version=1, run_id="r", model="sim", mode="async"))]
    per_request = max(calls // requests, 1)
    n = 0
    for r in range(1, requests + 1):
        now[0] += 3 / 64
        out.append(trace.emit(ModelBegin(request=r, messages=2)))
        now[0] += 5 / 64
        out.append(trace.emit(ModelFirstToken(request=r)))
        for _ in range(per_request if r < requests else calls - n):
            n += 1
            now[0] += 1 / 64
            deps = [f"f{n - 1}"] if n % 7 == 0 else []
            out.append(trace.emit(CallReady(request=r, call_id=f"c{n}", tool="t")))
            out.append(trace.emit(FutureCreated(future=f"f{n}", call_id=f"c{n}", tool="t", request=r, deps=deps)))
            if n % 5 != 0:  # every fifth stays pending
                out.append(trace.emit(ToolBegin(call_id=f"c{n}", tool="t", future=f"f{n}", args_summary=f"i={n}")))
            if n % 5 not in (0, 4):  # ... and every fifth after it stays running
                status = {1: "ok", 2: "error", 3: "timeout"}[n % 5]
                out.append(trace.emit(ToolEnd(call_id=f"c{n}", tool="t", status=status, result_chars=1)))
        now[0] += 2 / 64
        status = "cancelled" if r == 2 else "ok"
        out.append(trace.emit(ModelEnd(request=r, status=status, tokens_in=10, tokens_out=5)))
        if r % 2 == 1 and r < requests:
            out.append(trace.emit(WaitBegin(call_id=f"w{r}", futures=[f"f{n}"])))
            now[0] += 7 / 64
            out.append(trace.emit(WaitEnd(call_id=f"w{r}", ready=[f"f{n}"])))
    now[0] += 1 / 64
    out.append(trace.emit(ModelBegin(request=requests + 1, messages=2)))  # in flight, no token yet
    return out


def replay(events: list) -> LiveSpans:
    spans = LiveSpans()
    for ev in parse_many(events):
        spans.add(ev)
    return spans


def same_picture(events: list, now: float, limit: int, width: int) -> None:
    spans = replay(events)
    frame = spans.frame(now, limit)
    assert frame is not None  # a run's own trace keeps the order the indexes rely on
    whole = Timeline(events, live=True, now=now, max_lanes=limit)
    assert text(Timeline(frame=frame), width) == text(whole, width)


@pytest.mark.parametrize("name", RECORDED)
def test_every_live_frame_of_a_recorded_run_is_the_picture_of_its_whole_spans(name):
    events = [json.loads(line) for line in (TRACES / name).read_text().splitlines() if line.strip()]
    if events[-1]["type"] == "summary":
        events = events[:-1]  # live frames come before the summary
    for cut in range(1, len(events) + 1):
        now = events[cut - 1]["t"] + 0.05 * (cut % 3)
        for limit, width in ((3, 60), (5, 80), (40, 200)):
            same_picture(events[:cut], now, limit, width)


def test_a_busy_live_frame_with_folded_lanes_is_the_picture_of_its_whole_spans():
    events = busy_run(60, requests=5)
    for cut in (2, 9, 40, 120, 200, len(events)):
        now = events[cut - 1].t + 1 / 32
        for limit, width in ((3, 60), (12, 120), (30, 200), (400, 150)):
            same_picture(events[:cut], now, limit, width)


def test_a_live_frame_reads_what_it_shows_however_long_the_run(monkeypatch):
    """Structurally bounded: the spans a frame reads and the look-ups its model lane
    makes are the same for 10 calls as for 10,000 calls over 1,000 requests; the
    whole run is never rebuilt, swept or re-parsed for a frame."""
    rebuilt = []
    for name in ("build_run", "compute", "union_length", "critical_path"):
        real = getattr(analysis, name)
        monkeypatch.setattr(analysis, name, lambda *a, _real=real, _name=name, **k: rebuilt.append(_name) or _real(*a, **k))
    monkeypatch.setattr(analysis.RunBuilder, "run", lambda *a, **k: rebuilt.append("run"))
    lookups = []
    search = livespans.bisect.bisect_right
    monkeypatch.setattr(livespans.bisect, "bisect_right", lambda *a, **k: lookups.append(1) or search(*a, **k))

    work = {}
    for calls, requests in ((10, 2), (10_000, 1_000)):
        sink = LiveTimeline(Console(file=io.StringIO(), width=120, height=30))
        for ev in busy_run(calls, requests):
            sink(ev)
        lookups.clear()
        frame = sink.spans.frame(sink.now(), 22)
        shown = text(Timeline(frame=frame), width=120, height=30)
        assert len(frame.lanes) <= 22 and frame.touched <= 22 + 22 + 2
        assert len(lookups) <= 3 * 120  # at most one per column of the model lane, per layer
        work[calls] = (frame.touched, len(lookups))
        assert "elapsed" in shown
        if calls <= 22:
            assert [s.label for s in frame.lanes] == [f"f{n}" for n in range(1, calls + 1)]
        else:  # the oldest calls still open keep their lanes; the rest fold into one line
            still_open = [f"f{n}" for n in range(1, calls + 1) if n % 5 in (0, 4)]
            assert [s.label for s in frame.lanes] == still_open[:21]
            assert f"… {calls - 21} earlier calls" in shown
    assert not rebuilt
    assert work[10_000][1] <= 3 * 120 and work[10_000][0] <= 46


def test_the_live_figures_are_the_analysis_figures():
    events = busy_run(300, requests=7)
    for cut in (20, 150, len(events)):
        spans = replay(events[:cut])
        now = events[cut - 1].t + 0.3
        frame = spans.frame(now, 10)
        m = analysis.compute(analysis.build_run(events[:cut], now=now, live=True), critical=False)
        for name in ("wall", "blocked", "overlap", "overlap_model_tool", "sequential", "speedup"):
            assert getattr(frame.figures, name) == pytest.approx(getattr(m, name), abs=1e-9), name


def test_events_out_of_order_fall_back_to_the_whole_spans():
    events = busy_run(12)
    late = ToolEnd(t=0.0, call_id="c1", tool="t", status="ok")  # back in time, and c1 had ended
    spans = replay([*events, late])
    assert spans.frame(1.0, 10) is None
    sink = LiveTimeline(Console(file=io.StringIO(), width=120, height=30))
    for ev in [*events, late]:
        sink(ev)
    assert "f12" in text(sink.renderable())  # still drawn, from the whole run's spans


def interrupted(never_started: int) -> list:
    """A run stopped with calls that never started: issued, waiting on f1, no begin, no end."""
    now = [0.0]
    trace = Trace(clock=lambda: now[0])
    out = [trace.emit(Header(version=1, run_id="r", model="sim", mode="async")),
           trace.emit(ModelBegin(request=1, messages=2))]
    now[0] = 0.4
    out += [trace.emit(ModelFirstToken(request=1)),
            trace.emit(CallReady(request=1, call_id="c1", tool="nap")),
            trace.emit(FutureCreated(future="f1", call_id="c1", tool="nap", request=1)),
            trace.emit(ToolBegin(call_id="c1", tool="nap", future="f1", args_summary="seconds=30"))]
    for i in range(2, never_started + 2):
        now[0] += 0.05
        out += [trace.emit(CallReady(request=1, call_id=f"c{i}", tool="nap")),
                trace.emit(FutureCreated(future=f"f{i}", call_id=f"c{i}", tool="nap", request=1, deps=["f1"]))]
    now[0] = 1.2
    out.append(trace.emit(ModelEnd(request=1, status="ok")))
    now[0] = 2.0
    out.append(trace.emit(ToolEnd(call_id="c1", tool="nap", status="cancelled")))
    out.append(trace.emit(Summary(status="interrupted")))
    return out


@pytest.mark.parametrize("width", [80, 150, 200])
def test_an_interrupted_runs_never_started_calls_are_drawn_whole_at_any_width(width):
    events = interrupted(3)
    out = io.StringIO()
    console = Console(file=out, width=width, height=40, color_system=None, record=True)
    with LiveTimeline(console, refresh_per_second=50) as sink:
        for ev in events:
            sink(ev)
    for picture in (text(sink.renderable(), width), text(Timeline(events), width)):
        rows = picture.splitlines()
        never = [row for row in rows if row.startswith(("f2 ", "f3 ", "f4 "))]
        assert len(never) == 3
        for row in never:
            assert row.endswith("? not run") and "…" not in row and len(row) <= width, row
            assert "▒" in row  # from its issue to the end: unfinished, not pending
        assert all(len(row) <= width for row in rows)
        legend = next(row for row in rows if row.startswith("░ ttft"))
        assert "unfinished" in " ".join(rows[rows.index(legend):])
        assert "pending" not in picture and "running" not in picture  # neither is on screen
