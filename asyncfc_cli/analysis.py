"""Span maths over trace events: what a run did, and what it saved.

Everything here is computed from trace events only (the same list a live
sink receives, or a file read back by :func:`asyncfc_cli.trace.read_trace`),
so the live timeline, ``asyncfc trace``, the exporters and the benchmarks
agree on every number. Times are seconds on the trace's clock.

Spans
-----

*Model request*: ``model_begin`` .. ``model_end`` of one request; its time
to first token is ``model_first_token - model_begin`` and the rest is
decoding. *Tool execution*: ``tool_begin`` .. ``tool_end`` of one call (this
includes any time spent waiting for a concurrency limit, since the executor
emits ``tool_begin`` before it acquires one). A call is *issued* when its
arguments completed in the stream (``call_ready``, or ``future_created`` in
async mode); between issue and ``tool_begin`` it is *pending* (on the
futures it references in async mode, on the end of the response and the
calls before it in sync/parallel mode). A span without its end (the run was
killed) is *unfinished* and ends, for all sums, at the last event of the
trace (or at "now" for a live run).

Metrics (all clipped to the run window ``[run start, run end]``: from the
``header`` event to the ``summary`` event, or to the last event of a
truncated trace)
--------------------------------------------------------------------------

``wall``
    run end - run start: from the trace's zero (the run's start, before its
    model endpoint and tool sources start) to its summary. ``asyncfc run
    --json``, the summary's ``wall``, ``asyncfc trace list`` and the
    exporters give this same figure.
``start-up``
    run start .. the first model request (the run's end if none began): the
    model endpoint and the tool sources starting (an MCP server launched,
    initialized and listing its tools: each is also a span of its own, from
    its ``tool_source`` event's ``began`` to its ``t``). Before the first
    request the model has not been asked anything, so none of it is
    "model blocked".
``model time``
    the measure of the union of model requests (they are sequential, so
    this is also their sum).
``tool time``
    the sum of tool execution durations (each call counted fully, even when
    calls run at once).
``model blocked``
    time after start-up when no model request is in flight but the run is
    not finished: ``wall - start-up - model time``. The model is waiting for tools (sync/parallel
    mode, ``wait``, the finish rule) or for the agent loop's bookkeeping
    between two requests.
``overlap``
    time during which at least two spans are active at once, of any kind.
    It is split into ``model‖tool`` (a model request in flight and at
    least one tool running: decoding overlapped with execution, the point
    of async mode) and ``tool‖tool`` (at least two tools running at once,
    what parallel mode also gives); a moment can count in both, so
    ``overlap <= model‖tool + tool‖tool``.
``sequential-equivalent``
    ``model time + tool time``: what the same spans would cost one after
    another, as sync semantics run them (ignoring the small gaps between
    spans). Start-up is the same in every mode and overlaps nothing, so it
    is left out of this and the two speedups.
``achieved speedup``
    ``sequential-equivalent / (wall - start-up)``. About 1.0 for a sync run (slightly
    less: gaps), above 1 when spans overlapped.
``critical path``
    the shortest wall time any executor could reach with the same span
    durations and dependencies: the longest chain through this graph,
    with every span starting as soon as its dependencies allow (measured
    from the end of start-up):

    - model requests are sequential: request *k* starts after request
      *k-1* ends, and after every tool whose result it received (async:
      the futures listed by ``delivery`` events before it began, whether
      via a fast result, ``wait`` or a delivery message; sync/parallel:
      every call whose ``tool_end`` came before its ``model_begin``);
    - a tool starts when its arguments completed in the stream
      (``call_ready``, at the same offset into its request as observed)
      and after the tools whose futures it references (``deps``).

    - an ``ordered`` tool also starts after the previous ordered call
      (``ordered_after`` in ``future_created``).

    Approximations: a request is assumed to need every result it received
    (it may not have); a sync trace's tools may start at
    ``call_ready`` in this bound, so a sync run's critical path shows what
    an overlapping executor could reach with sync's dependencies.
    ``ideal speedup = sequential-equivalent / critical path``.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from asyncfc_cli.events import (CallReady, Delivery, FutureCreated, Header, ModelBegin, ModelEnd, ModelFirstToken,
                                ModelProgress, Retry, Summary, ToolBegin, ToolEnd, ToolSourceOpened, TraceEvent,
                                WaitBegin, WaitEnd, parse_many)
from asyncfc_cli.futures.protocol import WAIT_TOOL
from asyncfc_cli.intervals import (Interval, clip_to as _clip, overlap_step, percentile,  # noqa: F401
                                   sweep as _sweep, union_length)
from asyncfc_cli.trace import TraceData

# Tool states; the final ones are the ``tool_end`` statuses.
PENDING, RUNNING, OK, ERROR, TIMEOUT, CANCELLED = "pending", "running", "ok", "error", "timeout", "cancelled"
UNFINISHED = "unfinished"  # the trace ended while the span was open


@dataclass
class ModelSpan:
    """One model request."""

    request: int
    start: float
    end: float | None = None
    first_token: float | None = None
    status: str | None = None  # model_end status; None while in flight
    tokens_in: int | None = None
    tokens_out: int | None = None
    chunks: int | None = None  # streamed so far (model_progress), for a request in flight
    tool_calls: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    retries: int = 0

    @property
    def finished(self) -> bool:
        return self.end is not None

    def stop(self, now: float) -> float:
        """The end, or ``now`` for an open span."""
        return self.end if self.end is not None else max(now, self.start)

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.start


@dataclass
class ToolSpan:
    """One tool call (a future in async mode), from issue to result."""

    call_id: str
    tool: str
    number: int  # 1-based, in issue order
    issued: float | None = None  # arguments complete in the stream
    start: float | None = None  # tool_begin
    end: float | None = None  # tool_end
    status: str = PENDING  # pending | running | ok | error | timeout | cancelled
    request: int | None = None  # the model request that issued it
    future: str | None = None
    deps: list[str] = field(default_factory=list)  # future ids it references
    after: str | None = None  # ordered tools: the previous ordered call's future
    args_summary: str = ""
    error: str | None = None

    @property
    def label(self) -> str:
        """The short name shown in lanes: the future id, else the call's number."""
        return self.future or f"#{self.number}"

    @property
    def first_seen(self) -> float:
        return self.issued if self.issued is not None else (self.start or 0.0)

    def stop(self, now: float) -> float | None:
        """End of execution, ``now`` if still running, None if it never started."""
        if self.start is None:
            return None
        return self.end if self.end is not None else max(now, self.start)

    @property
    def duration(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start


@dataclass
class WaitSpan:
    call_id: str
    start: float
    end: float | None
    futures: list[str]


@dataclass
class SetupSpan:
    """A tool source starting for the run (an MCP server: launched, initialized, its tools listed)."""

    name: str
    kind: str
    start: float
    end: float
    tools: list[str] = field(default_factory=list)
    server: str | None = None


@dataclass
class Run:
    """Spans of one run, rebuilt from its events."""

    header: Header
    start: float
    end: float  # summary time, last event time, or "now" for a live run
    finished: bool  # a summary event was seen
    summary: Summary | None
    models: list[ModelSpan]
    tools: list[ToolSpan]
    waits: list[WaitSpan]
    received: dict[int, list[str]]  # request -> call ids whose results it received
    ready_marks: list[tuple[float, int | None, str, str]]  # (t, request, call_id, tool) of call_ready
    live: bool = False  # open spans are in progress (live run), not cut off (dead run)
    setup: list[SetupSpan] = field(default_factory=list)  # tool sources that started for the run

    @property
    def ready(self) -> float:
        """When start-up ended: the first model request, or the run's end if none began."""
        first = min((m.start for m in self.models), default=self.end)
        return min(max(first, self.start), self.end)

    @property
    def tool_names(self) -> list[str]:
        """The run's tools: the header's (known when it started), then each source's as it started."""
        names = list(self.header.tools or [])
        for source in self.setup:
            names += [n for n in source.tools if n not in names]
        return names

    @property
    def mode(self) -> str:
        return self.header.mode or "?"

    @property
    def status(self) -> str:
        if self.summary is not None:
            return self.summary.status
        return UNFINISHED

    def tool_state(self, span: ToolSpan) -> str:
        """pending / running while live; the final status; unfinished if the trace ended first."""
        if span.end is None and not self.live:
            return UNFINISHED
        return span.status


def build_run(events: Iterable[TraceEvent | Mapping[str, Any]], now: float | None = None,
              live: bool = False) -> Run:
    """Rebuild the spans from events (header first, summary last if any).

    ``events`` are typed events (:mod:`asyncfc_cli.events`) or the dicts a
    live sink receives; a dict that is not a valid event is left out, so
    any input builds a run. ``now`` is the current time for a live run;
    open spans end there. For a recorded trace, open spans end at the last
    event.
    """
    builder = RunBuilder()
    for ev in parse_many(events):
        builder.add(ev)
    return builder.run(now=now, live=live)


class RunBuilder:
    """The spans of a run, kept up to date one event at a time.

    :func:`build_run` feeds it a whole trace; the live timeline feeds it each
    event as the run emits it, so a frame never parses or replays the events
    before it. :meth:`run` is a snapshot of the spans so far.
    """

    def __init__(self) -> None:
        self.header: Header | None = None
        self.summary: Summary | None = None
        self.models: dict[int, ModelSpan] = {}
        self.open_models: dict[int, ModelSpan] = {}
        self.tools: dict[str, ToolSpan] = {}
        self.by_future: dict[str, str] = {}
        self.waits: dict[str, WaitSpan] = {}
        self.wait_list: list[WaitSpan] = []
        self.deliveries: list[tuple[float, list[str]]] = []
        self.ready_marks: list[tuple[float, int | None, str, str]] = []
        self.setup: list[SetupSpan] = []
        self.last_t = 0.0
        self.start: float | None = None
        self.added = 0  # events taken in: what a caller can count to see the work done

    def _tool_for(self, call_id: str, tool: str) -> ToolSpan:
        span = self.tools.get(call_id)
        if span is None:
            span = ToolSpan(call_id, tool, len(self.tools) + 1)
            self.tools[call_id] = span
        return span

    def add(self, ev: TraceEvent) -> None:
        """Take one typed event into the spans."""
        self.added += 1
        t = ev.t
        self.last_t = max(self.last_t, t)
        if isinstance(ev, Header):
            if self.header is None:
                self.header, self.start = ev, t
            return
        if self.start is None:
            self.start = t
        models, tools = self.models, self.tools
        if isinstance(ev, Summary):
            self.summary = ev
        elif isinstance(ev, ModelBegin):
            models[ev.request] = self.open_models[ev.request] = ModelSpan(ev.request, t)
        elif isinstance(ev, ModelFirstToken) and ev.request in models:
            models[ev.request].first_token = t
        elif isinstance(ev, ModelProgress) and ev.request in models:
            models[ev.request].chunks = ev.chunks
        elif isinstance(ev, ModelEnd) and ev.request in models:
            self.open_models.pop(ev.request, None)
            span = models[ev.request]
            span.end, span.status = t, ev.status
            span.tokens_in, span.tokens_out = ev.tokens_in, ev.tokens_out
            span.tool_calls, span.finish_reason, span.error = ev.tool_calls, ev.finish_reason, ev.error
            if span.first_token is None and ev.ttft is not None:
                span.first_token = span.start + ev.ttft
        elif isinstance(ev, Retry):
            if self.open_models:  # retries happen inside the latest open request
                self.open_models[next(reversed(self.open_models))].retries += 1
        elif isinstance(ev, CallReady):
            self.ready_marks.append((t, ev.request, ev.call_id, ev.tool))
            if ev.tool == WAIT_TOOL and ev.call_id not in tools:
                return  # the futures protocol's own tool: shown as a wait, not a lane
            span = self._tool_for(ev.call_id, ev.tool)
            span.issued, span.request = t, ev.request
        elif isinstance(ev, FutureCreated):
            span = self._tool_for(ev.call_id, ev.tool)
            span.future, span.deps = ev.future, list(ev.deps)
            if ev.ordered_after is not None:
                span.after = ev.ordered_after
            if span.issued is None:
                span.issued = t
            if span.request is None:
                span.request = ev.request
            self.by_future[ev.future] = span.call_id
        elif isinstance(ev, ToolBegin):
            span = self._tool_for(ev.call_id, ev.tool)
            span.start, span.status = t, RUNNING
            span.args_summary = ev.args_summary
            if ev.future:
                span.future = ev.future
                self.by_future[ev.future] = span.call_id
            if ev.deps is not None:
                span.deps = list(ev.deps)
        elif isinstance(ev, ToolEnd):
            span = self._tool_for(ev.call_id, ev.tool)
            if span.start is None:
                span.start = t
            span.end, span.status, span.error = t, ev.status, ev.error
        elif isinstance(ev, WaitBegin):
            self.waits[ev.call_id] = w = WaitSpan(ev.call_id, t, None, list(ev.futures))
            self.wait_list.append(w)
        elif isinstance(ev, WaitEnd) and ev.call_id in self.waits:
            self.waits.pop(ev.call_id).end = t
        elif isinstance(ev, Delivery):
            self.deliveries.append((t, list(ev.futures)))
        elif isinstance(ev, ToolSourceOpened):
            # Older traces do not say when the start began: sources start one after
            # another from the run's start.
            began = ev.began if ev.began is not None else (self.setup[-1].end if self.setup else self.start)
            self.setup.append(SetupSpan(ev.name, ev.kind, min(began, t), t, list(ev.tools), ev.server))

    def run(self, now: float | None = None, live: bool = False, detached: bool = False) -> Run:
        """The run so far; ``now`` ends open spans for a live run (else the last event does).

        ``detached``: the spans are copies, so the run can be drawn in another
        thread while this builder takes more events."""
        start = self.start if self.start is not None else 0.0
        header = self.header if self.header is not None else Header(t=start)
        if self.summary is not None:
            end = self.summary.t
        elif now is not None:
            end = max(now, self.last_t)
        else:
            end = self.last_t
        end = max(end, start)  # events out of order must not make a negative window
        own = copy.copy if detached else (lambda span: span)
        model_list = sorted(map(own, self.models.values()), key=lambda m: m.request)
        tool_list = sorted(map(own, self.tools.values()), key=lambda s: (s.first_seen, s.number))
        return Run(header, start, end, self.summary is not None, self.summary, model_list, tool_list,
                   list(map(own, self.wait_list)),
                   _received(model_list, tool_list, self.deliveries, self.by_future, header.mode),
                   list(self.ready_marks), live=live, setup=list(map(own, self.setup)))


def run_from_trace(data: TraceData) -> Run:
    return build_run(data.all_events())


def _received(models: list[ModelSpan], tools: list[ToolSpan], deliveries: list[tuple[float, list[str]]],
              by_future: dict[str, str], mode: Any) -> dict[int, list[str]]:
    """Which call results each request carried to the model (see the module docstring)."""
    out: dict[int, list[str]] = {m.request: [] for m in models}

    # The first request (in request order) that began at or after t: the
    # first place where the running maximum of the starts reaches t.
    reach = list(itertools.accumulate((m.start for m in models), max))

    def first_request_from(t: float) -> int | None:
        i = bisect.bisect_left(reach, t)
        return models[i].request if i < len(models) else None

    if mode == "async" or deliveries:
        for t, futures in deliveries:
            request = first_request_from(t)
            if request is not None:
                out[request].extend(by_future[f] for f in futures if f in by_future)
    else:
        for span in tools:
            if span.end is not None:
                request = first_request_from(span.end)
                if request is not None:
                    out[request].append(span.call_id)
    return out


# --- interval maths ---------------------------------------------------------------------


# --- metrics ------------------------------------------------------------------------------


@dataclass
class ToolStats:
    count: int
    ok: int
    failed: int  # error, timeout or cancelled
    unfinished: int
    p50: float
    p90: float
    p99: float
    max: float
    total: float


@dataclass
class Metrics:
    wall: float
    startup: float
    model_time: float
    tool_time: float
    blocked: float
    overlap: float
    overlap_model_tool: float
    overlap_tool_tool: float
    sequential: float
    critical_path: float
    critical_chain: list[str]
    speedup: float
    ideal_speedup: float
    requests: int
    tool_calls: int
    tokens_in: int
    tokens_out: int
    ttft_total: float
    per_tool: dict[str, ToolStats]
    status: str
    finished: bool

    def as_dict(self) -> dict[str, Any]:
        def r(x: float) -> float | None:
            return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, 6)

        return {
            "status": self.status,
            "finished": self.finished,
            "wall": r(self.wall),
            "startup": r(self.startup),
            "model_time": r(self.model_time),
            "tool_time": r(self.tool_time),
            "model_blocked": r(self.blocked),
            "overlap": r(self.overlap),
            "overlap_model_tool": r(self.overlap_model_tool),
            "overlap_tool_tool": r(self.overlap_tool_tool),
            "sequential_equivalent": r(self.sequential),
            "critical_path": r(self.critical_path),
            "critical_chain": self.critical_chain,
            "speedup": r(self.speedup),
            "ideal_speedup": r(self.ideal_speedup),
            "requests": self.requests,
            "tool_calls": self.tool_calls,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "ttft_total": r(self.ttft_total),
            "tools": {
                name: {"count": s.count, "ok": s.ok, "failed": s.failed, "unfinished": s.unfinished,
                       "p50": r(s.p50), "p90": r(s.p90), "p99": r(s.p99), "max": r(s.max), "total": r(s.total)}
                for name, s in sorted(self.per_tool.items())
            },
        }


def model_intervals(run: Run) -> list[Interval]:
    return _clip(((m.start, m.stop(run.end)) for m in run.models), run.start, run.end)


def tool_intervals(run: Run) -> list[Interval]:
    spans = ((s.start, s.stop(run.end)) for s in run.tools if s.start is not None)
    return _clip(spans, run.start, run.end)  # type: ignore[arg-type]


def compute(run: Run, critical: bool = True) -> Metrics:
    """Every summary number of one run (definitions in the module docstring).

    ``critical=False`` leaves out the critical path (NaN, no chain), the one
    figure that walks the dependency graph: a live frame does not show it."""
    wall = max(run.end - run.start, 0.0)
    startup = max(run.ready - run.start, 0.0)
    models, tools = model_intervals(run), tool_intervals(run)
    model_time = union_length(models)
    tool_time = sum(b - a for a, b in tools)
    mt, tt, anyo = _sweep(models, tools)
    sequential = model_time + tool_time
    loop = max(wall - startup, 0.0)
    cp, chain = critical_path(run) if critical else (math.nan, [])
    per_tool: dict[str, ToolStats] = {}
    by_name: dict[str, list[ToolSpan]] = {}
    for s in run.tools:
        by_name.setdefault(s.tool, []).append(s)
    for name, spans in sorted(by_name.items()):
        done = [s.duration for s in spans if s.duration is not None]
        per_tool[name] = ToolStats(
            count=len(spans),
            ok=sum(s.status == OK for s in spans),
            failed=sum(s.status in (ERROR, TIMEOUT, CANCELLED) for s in spans),
            unfinished=sum(s.end is None for s in spans),
            p50=percentile(done, 50), p90=percentile(done, 90), p99=percentile(done, 99),
            max=max(done) if done else math.nan, total=sum(done),
        )
    return Metrics(
        wall=wall,
        startup=startup,
        model_time=model_time,
        tool_time=tool_time,
        blocked=max(wall - startup - model_time, 0.0),
        overlap=anyo,
        overlap_model_tool=mt,
        overlap_tool_tool=tt,
        sequential=sequential,
        critical_path=cp,
        critical_chain=chain,
        speedup=sequential / loop if loop > 0 else math.nan,
        ideal_speedup=sequential / cp if cp > 0 else math.nan,
        requests=len(run.models),
        tool_calls=len(run.tools),
        tokens_in=sum(m.tokens_in or 0 for m in run.models),
        tokens_out=sum(m.tokens_out or 0 for m in run.models),
        ttft_total=sum(m.ttft or 0.0 for m in run.models if m.ttft is not None),
        per_tool=per_tool,
        status=run.status,
        finished=run.finished,
    )


def critical_path(run: Run) -> tuple[float, list[str]]:
    """Length of the longest dependency chain, and its spans' names in order.

    Earliest-start scheduling over the graph described in the module
    docstring, measured from the run's start. The graph comes from the
    trace, so it may be anything: a call that references itself, calls
    that reference each other, references to futures that never existed.
    A reference that would close a cycle is ignored (the bound is then
    computed as if that edge were absent), unknown ones are skipped, and
    the walk is iterative, so neither a cycle nor a chain of any length
    can exhaust the stack.
    """
    # Nodes are ("model", index) and ("tool", index): names can collide
    # (two calls may share a future id in a hostile trace), indexes cannot.
    Node = tuple[str, int]
    finish: dict[Node, float] = {}
    pred: dict[Node, Node | None] = {}
    tools = run.tools
    by_call = {s.call_id: i for i, s in enumerate(tools)}
    by_future = {s.future: i for i, s in enumerate(tools) if s.future}
    tools_by_request: dict[int | None, list[int]] = {}
    for i, span in enumerate(tools):
        tools_by_request.setdefault(span.request, []).append(i)

    def name(node: Node) -> str:
        kind, i = node
        if kind == "model":
            return f"model #{run.models[i].request}"
        return f"{tools[i].label} {tools[i].tool}"

    def duration(a: float | None, b: float | None) -> float:
        if a is None or b is None:
            return 0.0
        return max(min(b, run.end) - max(a, run.start), 0.0)

    def inputs(i: int) -> list[int]:
        span = tools[i]
        refs = [*span.deps, *([span.after] if span.after else [])]
        return [by_future[r] for r in refs if r in by_future]

    def place_tool(i: int, request_es: float | None, r: int | None) -> None:
        span = tools[i]
        es, p = 0.0, None
        if r is not None and request_es is not None:
            request = run.models[r]
            offset = (span.issued if span.issued is not None else request.stop(run.end)) - request.start
            offset = min(max(offset, 0.0), request.stop(run.end) - request.start)
            es, p = request_es + offset, ("model", r)
        for d in inputs(i):
            done = finish.get(("tool", d))
            if done is not None and done > es:  # None: an edge that closes a cycle
                es, p = done, ("tool", d)
        pred[("tool", i)] = p
        finish[("tool", i)] = es + duration(span.start, span.stop(run.end))

    def schedule_tool(i: int, request_es: float | None, r: int | None) -> None:
        # Post-order over the references, with an explicit stack. A node is
        # "open" from its expansion until it is placed: a reference to an
        # open node closes a cycle and is not followed.
        if ("tool", i) in finish:
            return
        open_: set[int] = set()
        stack: list[tuple[int, bool]] = [(i, False)]
        while stack:
            j, expanded = stack.pop()
            if ("tool", j) in finish:
                continue
            if expanded:
                open_.discard(j)
                # Only the call the model request issued is placed in it; the
                # inputs found on the way are placed on their own.
                if j == i:
                    place_tool(j, request_es, r)
                else:
                    place_tool(j, None, None)
                continue
            if j in open_:
                continue
            open_.add(j)
            stack.append((j, True))
            stack.extend((d, False) for d in inputs(j) if ("tool", d) not in finish and d not in open_)

    prev: Node | None = None
    for index, m in enumerate(run.models):
        node: Node = ("model", index)
        es, p = 0.0, None
        if prev is not None:
            es, p = finish[prev], prev
        for call_id in run.received.get(m.request, []):
            i = by_call.get(call_id)
            done = finish.get(("tool", i)) if i is not None else None
            if done is not None and done > es:
                es, p = done, ("tool", i)
        pred[node] = p
        finish[node] = es + duration(m.start, m.stop(run.end))
        for i in tools_by_request.get(m.request, []):
            schedule_tool(i, es, index)
        prev = node
    for i in range(len(tools)):  # calls whose issuing request is unknown
        schedule_tool(i, None, None)
    if not finish:
        return 0.0, []
    last = max(finish, key=lambda k: (finish[k], k[0] == "model"))
    chain: list[str] = []
    seen: set[Node] = set()
    cursor: Node | None = last
    while cursor is not None and cursor not in seen:  # pred only points back in time; the guard is cheap
        seen.add(cursor)
        chain.append(name(cursor))
        cursor = pred.get(cursor)
    return finish[last], chain[::-1]
