"""The live view's spans, indexed so a frame costs what it shows.

:class:`LiveSpans` takes each trace event once, as the run emits it, into a
:class:`~asyncfc_cli.analysis.RunBuilder` and into a few indexes kept
beside it: the calls still open in lane order, the finished ones in the
order they ended, a count of calls per state, the footer's sums (one sweep
advanced event by event) and the model lane's segments in time order. A
frame (:meth:`LiveSpans.frame`) reads the lanes it shows, the few calls it
needs to decide which lanes those are, and one look-up per column of the
model lane: its cost does not grow with the number of calls or requests
before it (``touched`` counts the spans a frame reads, for the tests).

The indexes rely on what a run's own trace guarantees: times never go
back, requests follow one another, each call begins and ends once. An
event that breaks this (a hand-fed or hostile sequence) marks the spans
*irregular*; frames then fall back to rebuilding the whole run, which is
exact for any input (:meth:`frame` returns None).
"""

from __future__ import annotations

import bisect
import copy
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from asyncfc_cli import analysis
from asyncfc_cli.analysis import ModelSpan, RunBuilder, ToolSpan, WaitSpan
from asyncfc_cli.events import (CallReady, FutureCreated, Header, ModelBegin, ModelEnd, ModelFirstToken,
                                ModelProgress, Summary, ToolBegin, ToolEnd, TraceEvent, WaitBegin, WaitEnd)


@dataclass
class Figures:
    """The footer's numbers (definitions in :mod:`asyncfc_cli.analysis`)."""

    wall: float
    blocked: float
    overlap: float
    overlap_model_tool: float
    sequential: float
    speedup: float

    @classmethod
    def of(cls, m: analysis.Metrics) -> Figures:
        return cls(m.wall, m.blocked, m.overlap, m.overlap_model_tool, m.sequential, m.speedup)


class Layer:
    """Segments of one kind of paint on the model lane, in time order.

    ``reach[k]`` is the latest end among the first k+1 segments: with it a
    column finds whether any segment touches it by one binary search."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.reach: list[float] = []
        self.kinds: list[str] = []

    def add(self, a: float, b: float, kind: str) -> None:
        if not b >= a:
            return  # paints nothing (as _Bar.paint)
        self.starts.append(a)
        self.ends.append(b)
        self.reach.append(max(b, self.reach[-1]) if self.reach else b)
        self.kinds.append(kind)

    def columns(self, n: int, width: int, first: Callable[[float], int],
                last: Callable[[float, int], int]) -> list[str | None]:
        """For each column, the kind of the latest of the first ``n`` segments that paints it, or None.

        ``first(a)`` is the first column a paint from ``a`` covers, ``last(b, i0)``
        one past its last: the columns :meth:`asyncfc_cli.timeline._Bar.paint`
        fills. At most one binary search per column: the cost is the width's."""
        out: list[str | None] = [None] * width
        if n == 0:
            return out
        j, i0, i1 = -1, 0, 0
        for i in range(width):
            if j + 1 < n and first(self.starts[j + 1]) <= i:
                # The latest segment starting at or before this column.
                j = bisect.bisect_right(self.starts, i, j + 1, n, key=first) - 1
                i0 = first(self.starts[j])
                i1 = last(self.ends[j], i0)
            if j < 0:
                continue
            if i < i1:
                out[i] = self.kinds[j]
            elif i < last(self.reach[j], -1):
                # Only segments that overlap one another get here; a run's own trace has none.
                for k in range(j - 1, -1, -1):
                    if i < last(self.ends[k], first(self.starts[k])):
                        out[i] = self.kinds[k]
                        break
            elif j == n - 1:
                break  # past the last segment's reach: nothing more to paint
        return out


@dataclass
class LiveFrame:
    """What one live frame draws: copies of the spans it shows and the figures of the whole run."""

    header: Header
    start: float
    end: float
    lanes: list[ToolSpan]  # in lane order
    folded: dict[str, int]  # state -> calls folded into one line
    figures: Figures
    tokens: tuple[int, int]
    requests: int
    current: ModelSpan | None  # the request in flight
    layers: dict[str, tuple[Layer, int]]  # decode / ttft / wait -> (layer, segments in this frame)
    open_models: list[ModelSpan]
    open_waits: list[WaitSpan]
    touched: int  # spans this frame read
    ready: float = 0.0  # when start-up ended: the first request, or the frame's end if none began yet
    setup: list[analysis.SetupSpan] = field(default_factory=list)  # tool sources started (a few: copied)


class LiveSpans:
    """The spans of a run in progress, for frames that cost what they show."""

    def __init__(self) -> None:
        self.builder = RunBuilder()
        self.regular = True
        self.open_tools: OrderedDict[str, ToolSpan] = OrderedDict()  # by number: lane order
        self.ended: list[ToolSpan] = []  # in the order they ended
        self.states: dict[str, int] = {}
        self.layers = {"decode": Layer(), "ttft": Layer(), "wait": Layer()}
        self.open_model: ModelSpan | None = None
        self.open_waits: dict[str, WaitSpan] = {}
        self.last_request = 0
        self.first_request: float | None = None  # when start-up ended
        self.tokens = [0, 0]
        # The footer's sweep, advanced at each span boundary (analysis._sweep, one event at a time).
        self.prev: float | None = None
        self.models_open = self.tools_running = 0
        self.model_tool = self.tool_tool = self.any_two = 0.0
        self.model_done = self.tool_done = self.running_starts = 0.0
        self.touched = 0

    # -- events -------------------------------------------------------------------------

    def add(self, ev: TraceEvent) -> None:
        if self.regular:
            self.regular = self._regular(ev)
        b = self.builder
        known = b.tools.get(getattr(ev, "call_id", None) or "")
        before = known.status if known is not None else None
        b.add(ev)
        if not self.regular or isinstance(ev, (Header, Summary)):
            return
        t = ev.t
        if isinstance(ev, ModelBegin):
            if self.first_request is None:
                self.first_request = t
            self._advance(t)
            self.models_open += 1
            self.open_model, self.last_request = b.models[ev.request], ev.request
        elif isinstance(ev, ModelEnd) and self.open_model is not None and ev.request == self.open_model.request:
            self._advance(t)
            self.models_open -= 1
            m, self.open_model = b.models[ev.request], None
            self.model_done += m.end - m.start
            self.tokens[0] += ev.tokens_in or 0
            self.tokens[1] += ev.tokens_out or 0
            first = m.first_token if m.first_token is not None else m.end
            self.layers["ttft"].add(m.start, min(first, m.end), "ttft")
            if m.first_token is not None:
                kind = {"error": analysis.ERROR, "cancelled": analysis.CANCELLED}.get(m.status or "", "decoding")
                self.layers["decode"].add(m.first_token, m.end, kind)
        elif isinstance(ev, WaitBegin):
            self.open_waits[ev.call_id] = b.waits[ev.call_id]
        elif isinstance(ev, WaitEnd) and ev.call_id in self.open_waits:
            w = self.open_waits.pop(ev.call_id)
            self.layers["wait"].add(w.start, w.end, "wait")
        call_id = getattr(ev, "call_id", None)
        span = b.tools.get(call_id) if isinstance(ev, (CallReady, FutureCreated, ToolBegin, ToolEnd)) else None
        if span is None:
            return
        if known is None:
            self.open_tools[span.call_id] = span
            before = None
        if isinstance(ev, ToolBegin):
            self._advance(t)
            self.tools_running += 1
            self.running_starts += span.start
        elif isinstance(ev, ToolEnd):
            if before == analysis.RUNNING:
                self._advance(t)
                self.tools_running -= 1
                self.running_starts -= span.start
            self.tool_done += span.end - span.start
            self.open_tools.pop(span.call_id, None)
            self.ended.append(span)
        if before != span.status:
            if before is not None:
                self.states[before] -= 1
            self.states[span.status] = self.states.get(span.status, 0) + 1

    def _regular(self, ev: TraceEvent) -> bool:
        """Whether ``ev`` keeps the order the indexes rely on (see the module docstring)."""
        b = self.builder
        if ev.t < b.last_t or (b.start is None and not isinstance(ev, Header)):
            return False
        if isinstance(ev, ModelBegin):
            return self.open_model is None and ev.request > self.last_request
        if isinstance(ev, (ModelFirstToken, ModelProgress, ModelEnd)):
            return ev.request not in b.models or (self.open_model is not None
                                                  and ev.request == self.open_model.request)
        if isinstance(ev, WaitBegin):
            return ev.call_id not in self.open_waits
        span = b.tools.get(getattr(ev, "call_id", None) or "") if isinstance(
            ev, (CallReady, FutureCreated, ToolBegin, ToolEnd)) else None
        if span is None:
            return True
        if span.end is not None:
            return False  # nothing comes after a call's end
        if isinstance(ev, CallReady):
            return False  # a call is issued once, first
        if isinstance(ev, FutureCreated):
            return span.issued is not None  # else its lane would move back in the order
        if isinstance(ev, ToolBegin):
            return span.start is None
        return True

    def _advance(self, t: float) -> None:
        self.model_tool, self.tool_tool, self.any_two = self._swept(t)
        self.prev = t

    def _swept(self, t: float) -> tuple[float, float, float]:
        sums = (self.model_tool, self.tool_tool, self.any_two)
        if self.prev is not None and t > self.prev:
            sums = analysis.overlap_step(sums, t - self.prev, self.models_open, self.tools_running)
        return sums

    # -- frames -------------------------------------------------------------------------

    def frame(self, now: float | None, limit: int) -> LiveFrame | None:
        """A frame at ``now`` with at most ``limit`` tool lines; None when the spans are irregular."""
        b = self.builder
        if not self.regular or b.summary is not None:
            return None
        self.touched = 0
        start = b.start if b.start is not None else 0.0
        end = max(max(now, b.last_t) if now is not None else b.last_t, start)
        lanes, folded = self._lanes(limit)
        mt, _, anyo = self._swept(end)
        model_time = self.model_done + (end - self.open_model.start if self.open_model is not None else 0.0)
        tool_time = self.tool_done + self.tools_running * end - self.running_starts
        wall = end - start
        ready = min(max(self.first_request if self.first_request is not None else end, start), end)
        startup = ready - start  # as analysis.compute: neither "blocked" nor in the speedups
        loop = max(wall - startup, 0.0)
        sequential = model_time + tool_time
        figures = Figures(wall, max(wall - startup - model_time, 0.0), anyo, mt, sequential,
                          sequential / loop if loop > 0 else math.nan)
        opened = [copy.copy(self.open_model)] if self.open_model is not None else []
        waits = [copy.copy(w) for w in self.open_waits.values()]
        self.touched += len(opened) + len(waits)
        return LiveFrame(
            header=b.header if b.header is not None else Header(t=start), start=start, end=end, lanes=lanes,
            folded=folded, figures=figures, tokens=(self.tokens[0], self.tokens[1]), requests=len(b.models),
            current=opened[0] if opened else None,
            layers={name: (layer, len(layer.starts)) for name, layer in self.layers.items()},
            open_models=opened, open_waits=waits, touched=self.touched, ready=ready,
            setup=[copy.copy(source) for source in b.setup])

    def _lanes(self, limit: int) -> tuple[list[ToolSpan], dict[str, int]]:
        """The lanes :meth:`asyncfc_cli.timeline.Timeline._fold` keeps, found without a walk over every call."""
        total = len(self.builder.tools)
        if total <= limit:
            shown = list(self.builder.tools.values())
            self.touched += len(shown)
            return [copy.copy(s) for s in sorted(shown, key=lambda s: s.number)], {}
        keep_room = limit - 1
        active: list[ToolSpan] = []
        for span in self.open_tools.values():
            if len(active) >= keep_room:
                break
            active.append(span)
        room = max(keep_room - len(self.open_tools), 0)
        finished: list[ToolSpan] = []
        if room:
            # The last ``room`` to end; calls that ended at the same instant are ordered
            # as the lanes are, so take the whole tie at the boundary and sort.
            k = max(len(self.ended) - room, 0)
            while k > 0 and self.ended[k - 1].end == self.ended[k].end:
                k -= 1
            tail = sorted(self.ended[k:], key=lambda s: (s.end, s.number))
            self.touched += len(tail)
            finished = tail[len(tail) - room:]
        self.touched += len(active)
        kept = sorted([*active, *finished], key=lambda s: s.number)
        folded = dict(self.states)
        for span in kept:
            folded[span.status] -= 1
        return [copy.copy(s) for s in kept], {state: n for state, n in folded.items() if n > 0}
