"""The live timeline's cost per frame does not grow with the run: events are
taken into the spans once, as they arrive, and a frame never parses or
replays the events before it. Work is counted, not timed."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from asyncfc_cli import analysis, events
from asyncfc_cli.events import (CallReady, FutureCreated, Header, ModelBegin, ModelEnd, Summary, ToolBegin, ToolEnd)
from asyncfc_cli.timeline import LiveTimeline, Timeline
from asyncfc_cli.trace import Trace


def run_events(calls: int) -> list:
    """A run of ``calls`` tool calls, as its Trace emits them (typed, stamped)."""
    now = [0.0]
    trace = Trace(clock=lambda: now[0])
    out = [trace.emit(Header(version=1, run_id="r", model="sim", mode="async"))]
    out.append(trace.emit(ModelBegin(request=1, messages=2)))
    for i in range(1, calls + 1):
        now[0] = i * 0.01
        out.append(trace.emit(CallReady(request=1, call_id=f"c{i}", tool="t")))
        out.append(trace.emit(FutureCreated(future=f"f{i}", call_id=f"c{i}", tool="t", request=1)))
        out.append(trace.emit(ToolBegin(call_id=f"c{i}", tool="t", future=f"f{i}")))
        out.append(trace.emit(ToolEnd(call_id=f"c{i}", tool="t", status="ok", result_chars=1)))
    return out


class Counts:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.parsed = self.built = self.added = 0
        parse, build, add = events.parse_event, analysis.build_run, analysis.RunBuilder.add

        def counted_parse(value):
            self.parsed += 1
            return parse(value)

        def counted_build(*args, **kwargs):
            self.built += 1
            return build(*args, **kwargs)

        def counted_add(builder, ev):
            self.added += 1
            return add(builder, ev)

        monkeypatch.setattr(events, "parse_event", counted_parse)
        monkeypatch.setattr(analysis, "build_run", counted_build)
        monkeypatch.setattr(analysis.RunBuilder, "add", counted_add)

    def reset(self) -> None:
        self.parsed = self.built = self.added = 0


def frames(sink: LiveTimeline, n: int) -> str:
    console = Console(file=io.StringIO(), width=120, height=30, color_system=None)
    for _ in range(n):
        console.print(sink.renderable())
    return console.file.getvalue()


@pytest.mark.parametrize("calls", [25, 2500])  # 102 and 10,002 events
def test_a_live_frame_neither_parses_nor_replays_the_events_before_it(monkeypatch, calls):
    emitted = run_events(calls)
    counts = Counts(monkeypatch)
    sink = LiveTimeline(Console(file=io.StringIO()))
    for event in emitted:
        sink(event)
    # Each event went into the spans once; typed events are not parsed again.
    assert counts.added == len(emitted) and counts.parsed == 0
    counts.reset()
    text = frames(sink, 20)
    assert (counts.parsed, counts.built, counts.added) == (0, 0, 0)
    # A live frame of this run, down to its latest call.
    assert "elapsed" in text and f"f{calls}" in text
    # Dicts (what a sink fed by hand gets) are parsed once each, on arrival, never per frame.
    counts.reset()
    other = LiveTimeline(Console(file=io.StringIO()))
    some = emitted[:100]
    for event in some:
        other(dict(event))
    assert counts.parsed == len(some) and counts.added == len(some)
    counts.reset()
    frames(other, 20)
    assert (counts.parsed, counts.built, counts.added) == (0, 0, 0)


def test_the_spans_kept_live_are_the_spans_of_the_whole_trace():
    emitted = run_events(40)
    sink = LiveTimeline(Console(file=io.StringIO()))
    for event in emitted:
        sink(event)
    sink(Summary(t=1.0, status="ok"))
    whole = [*emitted, Summary(t=1.0, status="ok")]

    def text(renderable) -> str:
        console = Console(file=io.StringIO(), width=120, height=10**6, color_system=None, record=True)
        console.print(renderable)
        return console.export_text()

    assert text(sink.renderable()) == text(Timeline(whole, max_lanes=10**9))
