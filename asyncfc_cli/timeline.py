"""The run timeline as a Rich renderable, built from trace events only.

:class:`Timeline` draws lanes over a shared time axis: one lane for the
model (each request as time to first token ``░`` then decoding ``█``; ``·``
where no request is in flight, ``⋯`` while the model is in ``wait``) and
one lane per tool call, labelled with its future id (or call number in
sync/parallel mode), the futures it references (``f4 ← f1,f2``), the tool
and a short argument summary. Each state has its own glyph *and* colour
(Okabe-Ito palette, safe for colour-blind readers), and a symbol in the
right-hand column:

========== ===== ====== ==========================================
state      glyph symbol meaning
========== ===== ====== ==========================================
pending    ``┄``  ``┄``  issued, waiting for its inputs or its turn
running    ``▒``  ``▸``  executing (live only)
done       ``█``  ``✓``  returned a value
failed     ``▓``  ``✗``  raised, exited non-zero, bad arguments
timeout    ``▓``  ``⏱``  hit its timeout
cancelled  ``╱``  ``⊘``  the run ended first (answer, Ctrl-C)
unfinished ``▒``  ``?``  the trace ends while it was open
========== ===== ====== ==========================================

The same class renders live (:class:`LiveTimeline`, a trace sink driving a
``rich.live.Live`` at 10 Hz, the axis compressing as the run grows and old
finished lanes folding into one line when the terminal is short) and once
for ``asyncfc trace`` (full width, every lane). Numbers in the footer come
from :mod:`asyncfc_cli.analysis`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Mapping, Sequence

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.text import Text

from asyncfc_cli import analysis
from asyncfc_cli.analysis import Run, ToolSpan
from asyncfc_cli.events import Summary, TraceEvent, from_emitted, parse_many
from asyncfc_cli.output import label as clip
from asyncfc_cli.trace import TraceData

# Okabe-Ito colours: distinguishable with the common colour-vision deficiencies.
BLUE, SKY, GREEN, ORANGE, VERMILLION, PURPLE, GREY = (
    "#0072B2", "#56B4E9", "#009E73", "#E69F00", "#D55E00", "#CC79A7", "#999999")

# state -> (fill glyph, style, symbol)
STATES: dict[str, tuple[str, str, str]] = {
    analysis.PENDING: ("┄", ORANGE, "┄"),
    analysis.RUNNING: ("▒", SKY, "▸"),
    analysis.OK: ("█", BLUE, "✓"),
    analysis.ERROR: ("▓", VERMILLION, "✗"),
    analysis.TIMEOUT: ("▓", VERMILLION, "⏱"),
    # Its own glyph: ░ is the model's time to first token.
    analysis.CANCELLED: ("╱", PURPLE, "⊘"),
    analysis.UNFINISHED: ("▒", GREY, "?"),
}
MODEL_TTFT, MODEL_DECODE, MODEL_IDLE, MODEL_WAIT = ("░", GREEN), ("█", GREEN), ("·", GREY), ("⋯", PURPLE)
MODEL_ERROR = ("▓", VERMILLION)
MODEL_START = ("╌", GREY)  # start-up: the model has not been asked yet (not "blocked")

NICE_STEPS = (0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
LIVE_AXIS = (5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300, 450, 600, 900, 1200, 1800, 2700, 3600)


def fmt_seconds(s: float) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    if s >= 3600:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    if s >= 60:
        return f"{int(s // 60)}m{s % 60:04.1f}s"
    return f"{s:.2f}s"


def _tick_label(t: float) -> str:
    if t >= 60 and t % 60 == 0:
        return f"{int(t // 60)}m"
    return f"{t:g}s"


def live_axis_span(elapsed: float) -> float:
    """The live axis: the next round length above the elapsed time, so the
    picture compresses in steps as a run grows rather than on every frame."""
    for span in LIVE_AXIS:
        if elapsed <= span * 0.98:
            return float(span)
    return math.ceil(elapsed / 3600 * 1.1) * 3600.0


class _Bar:
    """One lane's cells; a higher priority paint wins a shared cell."""

    def __init__(self, width: int, origin: float, span: float) -> None:
        self.width, self.origin, self.span = width, origin, span
        self.cells: list[tuple[str, str, int]] = [(" ", "", -1)] * width

    def x(self, t: float) -> float:
        x = (t - self.origin) / self.span * self.width if self.span > 0 else 0.0
        # Clamped to just beyond the bar: a cell index, never inf or NaN.
        return min(max(x, -1.0), self.width + 1.0) if math.isfinite(x) else 0.0

    def paint(self, a: float, b: float, glyph: str, style: str, priority: int) -> tuple[int, int] | None:
        if not b >= a:  # also false for NaN
            return None
        i0 = min(max(int(math.floor(self.x(a))), 0), self.width - 1)
        i1 = min(max(int(math.ceil(self.x(b))), i0 + 1), self.width)
        for i in range(i0, i1):
            if priority >= self.cells[i][2]:
                self.cells[i] = (glyph, style, priority)
        return i0, i1

    def put(self, i: int, glyph: str, style: str, priority: int) -> None:
        if 0 <= i < self.width and priority >= self.cells[i][2]:
            self.cells[i] = (glyph, style, priority)

    def text(self) -> Text:
        out = Text()
        run_glyphs, run_style = "", None
        for glyph, style, _ in self.cells:
            if style != run_style and run_glyphs:
                out.append(run_glyphs, style=run_style or "")
                run_glyphs = ""
            run_glyphs, run_style = run_glyphs + glyph, style
        if run_glyphs:
            out.append(run_glyphs, style=run_style or "")
        return out


def _deps(deps: list[str], keep: int = 20) -> str:
    """The futures a call references, as a label: a hostile trace may list a million."""
    shown = ",".join(clip(d, 40) for d in deps[:keep])
    return shown + (f",…{len(deps) - keep} more" if len(deps) > keep else "")


class Timeline:
    """A timeline of one run, rendered from its trace events.

    Args:
        events: the trace events, header first (a summary last if the run ended):
            typed events, or dicts as a live sink receives them (invalid ones
            are left out, so any input renders).
        now: the current run time for a live run; open spans are drawn up to it.
        live: open spans are in progress (pending/running) rather than cut off.
        axis: seconds the axis spans (default: the run's length, or a round
            length above it when live); ``asyncfc trace compare`` passes the
            longer run's wall time to both timelines so their scales match.
        max_lanes: fold the oldest finished tool lanes into one line beyond
            this many (None: the console height when live, every lane otherwise).
        title: a line above the axis.
    """

    def __init__(self, events: Sequence[TraceEvent | Mapping] = (), *, now: float | None = None, live: bool = False,
                 axis: float | None = None, max_lanes: int | None = None, title: str | None = None,
                 legend: bool = True, footer: bool = True, run: Run | None = None) -> None:
        # ``run``: spans already built (the live view keeps them as events arrive); then ``events`` is unused.
        self.events, self.now, self.live, self.run = parse_many(events), now, live, run
        self.axis, self.max_lanes, self.title = axis, max_lanes, title
        self.legend, self.footer = legend, footer

    @classmethod
    def from_trace(cls, data: TraceData, **kwargs) -> Timeline:
        return cls(data.all_events(), **kwargs)

    # -- layout ---------------------------------------------------------------------

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        run = self.run
        if run is None:
            run = analysis.build_run(self.events, now=self.now, live=self.live and not self._ended())
        # A live frame has no room for the critical path; its walk is the costliest figure.
        metrics = analysis.compute(run, critical=not run.live)
        width = max(options.max_width, 40)
        label_w = int(min(max(width * 0.32, 16), 44))
        info_w = 10
        bar_w = max(width - label_w - info_w - 2, 10)
        elapsed = max(run.end - run.start, 0.0)
        span = self.axis if self.axis else (live_axis_span(elapsed) if run.live else max(elapsed, 1e-3))
        span = max(span, 1e-3) if math.isfinite(span) else max(elapsed, 1e-3)

        def line(label: Text | str, bar: Text, info: Text | str = "") -> Text:
            label_t = label if isinstance(label, Text) else Text(label)
            label_t.truncate(label_w, overflow="ellipsis", pad=True)
            info_t = info if isinstance(info, Text) else Text(info)
            info_t.truncate(info_w, overflow="ellipsis")
            out = Text.assemble(label_t, " ", bar, " ", info_t, no_wrap=True, overflow="crop", end="\n")
            return out

        if self.title:
            # The widest console is 1,000 columns: more of the title is never shown.
            yield Text(clip(self.title, 1000), style="bold", no_wrap=True, overflow="ellipsis")
        yield line(Text("time", style="dim"), self._axis(bar_w, span))
        yield line(*self._model_lane(run, bar_w, span))
        for source in run.setup:
            yield line(*self._setup_lane(run, source, bar_w, span))
        lanes = run.tools
        folded: list[ToolSpan] = []
        limit = self._lane_limit(options, run)
        if limit is not None and len(lanes) > limit:
            lanes, folded = self._fold(run, lanes, limit)
        if folded:
            yield line(*self._folded_lane(run, folded, bar_w))
        for tool in lanes:
            yield line(*self._tool_lane(run, tool, bar_w, span))
        if self.legend:
            yield self._legend(run, width)
        if self.footer:
            yield self._footer(run, metrics, width)

    def _ended(self) -> bool:
        if self.run is not None:
            return self.run.finished
        return bool(self.events) and isinstance(self.events[-1], Summary)

    def _lane_limit(self, options: ConsoleOptions, run: Run) -> int | None:
        if self.max_lanes is not None:
            return max(self.max_lanes, 1)
        if not run.live:
            return None
        # title, axis, model lane, folded line, legend, footer, plus the lines around the display
        reserved = 8 + (1 if self.title else 0)
        return max(options.size.height - reserved, 3)

    @staticmethod
    def _fold(run: Run, lanes: list[ToolSpan], limit: int) -> tuple[list[ToolSpan], list[ToolSpan]]:
        """Keep active lanes and the most recent finished ones; fold the oldest finished."""
        keep_room = limit - 1  # one line for the folded summary
        active = [s for s in lanes if s.end is None]
        finished = [s for s in lanes if s.end is not None]
        room = max(keep_room - len(active), 0)
        kept_finished = sorted(finished, key=lambda s: s.end or 0.0)[len(finished) - room:] if room else []
        kept_ids = {s.call_id for s in active[: max(keep_room, 0)]} | {s.call_id for s in kept_finished}
        kept = [s for s in lanes if s.call_id in kept_ids]
        folded = [s for s in lanes if s.call_id not in kept_ids]
        return kept, folded

    # -- rows ---------------------------------------------------------------------------

    def _axis(self, bar_w: int, span: float) -> Text:
        # Ticks at least 8 columns apart: a round step, or whole hours for
        # a very long axis, so there are never more ticks than columns.
        step = next((c for c in NICE_STEPS if c / span * bar_w >= 8), None)
        if step is None:
            step = math.ceil(span * 8 / bar_w / 3600) * 3600.0
        chars = [" "] * bar_w
        next_free = 0
        for k in range(int(span / step + 1e-9) + 1):
            t = k * step
            col = int(round(t / span * bar_w))
            label = "╵" + _tick_label(round(t, 6))
            if col >= next_free and col + len(label) <= bar_w:
                chars[col:col + len(label)] = label
                next_free = col + len(label) + 1
        return Text("".join(chars), style="dim")

    def _model_lane(self, run: Run, bar_w: int, span: float) -> tuple[Text, Text, Text]:
        bar = _Bar(bar_w, run.start, span)
        if run.models or run.live:
            bar.paint(run.start, run.ready, *MODEL_START, 0)
            bar.paint(run.ready, run.end, *MODEL_IDLE, 0)
        for wait in run.waits:
            bar.paint(wait.start, wait.end if wait.end is not None else run.end, *MODEL_WAIT, 1)
        for m in run.models:
            stop = m.stop(run.end)
            first = m.first_token if m.first_token is not None else stop
            bar.paint(m.start, min(first, stop), *MODEL_TTFT, 2)
            if m.first_token is not None:
                glyph, style = MODEL_DECODE
                if m.status == "error":
                    glyph, style = MODEL_ERROR
                elif m.status == "cancelled":  # stopped (Ctrl-C, timeout): it was not decoding to the end
                    glyph, style = STATES[analysis.CANCELLED][:2]
                elif m.end is None and not run.live:
                    glyph, style = STATES[analysis.UNFINISHED][:2]
                bar.paint(m.first_token, stop, glyph, style, 3)
        tokens_in = sum(m.tokens_in or 0 for m in run.models)
        tokens_out = sum(m.tokens_out or 0 for m in run.models)
        label = Text.assemble(("model", f"bold {GREEN}"), f" {clip(run.header.model or '')}")
        if tokens_in or tokens_out:
            label.append(f" · {tokens_in}↓ {tokens_out}↑ tok", style="dim")
        current = run.models[-1] if run.models and run.models[-1].end is None else None
        if current is not None and run.live:
            phase = "decode" if current.first_token is not None else "ttft"
            if current.chunks and current.first_token is not None:
                phase = f"{current.chunks}tok"  # tokens so far (streamed chunks, ~1 token each)
            info = Text(f"#{current.request} {phase}", style=GREEN)
        elif current is not None:
            info = Text(f"#{current.request} ?", style=GREY)
        elif run.live and not run.finished:
            info = Text("blocked", style="dim")
        else:
            info = Text(f"{len(run.models)} req", style="dim")
        return label, bar.text(), info

    def _setup_lane(self, run: Run, source: analysis.SetupSpan, bar_w: int,
                    span: float) -> tuple[Text, Text, Text]:
        """A tool source starting (an MCP server): start-up, drawn as its own line."""
        bar = _Bar(bar_w, run.start, span)
        bar.paint(source.start, source.end, "█", GREY, 2)
        label = Text.assemble(("start ", "bold"), clip(source.name), (f" ({clip(source.kind)})", "dim"))
        return label, bar.text(), Text(f"✓ {fmt_seconds(source.end - source.start)}", style=GREY)

    def _tool_lane(self, run: Run, tool: ToolSpan, bar_w: int, span: float) -> tuple[Text, Text, Text]:
        bar = _Bar(bar_w, run.start, span)
        state = run.tool_state(tool)
        if tool.issued is not None:
            pend_end = tool.start if tool.start is not None else run.end
            glyph, style, _ = STATES[analysis.PENDING]
            if state == analysis.UNFINISHED and tool.start is None:
                glyph, style, _ = STATES[analysis.UNFINISHED]
            bar.paint(tool.issued, pend_end, glyph, style, 1)
        if tool.start is not None:
            glyph, style, _ = STATES.get(state, STATES[analysis.OK])
            cells = bar.paint(tool.start, tool.stop(run.end), glyph, style, 2)
            if state == analysis.RUNNING and cells:
                bar.put(cells[1] - 1, "▸", style, 3)
        label = Text()
        # Every piece is cut before the lane is laid out (trace fields have no length limit).
        label.append(clip(tool.label), style="bold")
        if tool.deps:
            label.append(f" ← {_deps(tool.deps)}", style=ORANGE)
        label.append(f" {clip(tool.tool)}")
        if tool.args_summary:
            label.append(f"({clip(tool.args_summary)})", style="dim")
        _, style, symbol = STATES.get(state, STATES[analysis.OK])
        if state == analysis.PENDING:
            waited = run.end - (tool.issued if tool.issued is not None else run.end)
            info = Text(f"{symbol} {fmt_seconds(waited)}", style=style)
        elif state in (analysis.RUNNING, analysis.UNFINISHED) and tool.start is not None:
            info = Text(f"{symbol} {fmt_seconds(run.end - tool.start)}", style=style)
        elif state == analysis.UNFINISHED:
            info = Text(f"{symbol} never ran", style=style)
        else:
            info = Text(f"{symbol} {fmt_seconds(tool.duration or 0.0)}", style=style)
        return label, bar.text(), info

    def _folded_lane(self, run: Run, folded: list[ToolSpan], bar_w: int) -> tuple[Text, Text, Text]:
        counts: dict[str, int] = {}
        for s in folded:
            counts[run.tool_state(s)] = counts.get(run.tool_state(s), 0) + 1
        summary = Text()
        for state, n in counts.items():
            _, style, symbol = STATES.get(state, STATES[analysis.OK])
            summary.append(f"{symbol}{n} ", style=style)
        calls = "earlier call" if len(folded) == 1 else "earlier calls"
        return Text(f"… {len(folded)} {calls}", style="dim"), summary, Text("")

    def _legend(self, run: Run, width: int) -> Text:
        parts: list[tuple[str, str, str]] = [
            (MODEL_TTFT[0], MODEL_TTFT[1], "ttft"), (MODEL_DECODE[0], MODEL_DECODE[1], "decoding"),
            (MODEL_IDLE[0], MODEL_IDLE[1], "model blocked"),
        ]
        if run.setup:  # a tool source's start: long enough to be seen (a bare start-up is a moment)
            parts.append((MODEL_START[0], MODEL_START[1], "start-up"))
        if run.waits:
            parts.append((MODEL_WAIT[0], MODEL_WAIT[1], "wait"))
        seen = {run.tool_state(s) for s in run.tools} | {analysis.PENDING, analysis.OK}
        if any(m.status == "cancelled" for m in run.models):
            seen.add(analysis.CANCELLED)
        names = {analysis.PENDING: "pending", analysis.RUNNING: "running", analysis.OK: "done",
                 analysis.ERROR: "failed", analysis.TIMEOUT: "timeout", analysis.CANCELLED: "cancelled",
                 analysis.UNFINISHED: "unfinished"}
        if run.live:
            seen.add(analysis.RUNNING)
        for state in STATES:
            if state in seen:
                glyph, style, symbol = STATES[state]
                mark = glyph if glyph == symbol else f"{glyph}{symbol}"
                parts.append((mark, style, names[state]))
        # Lines break between entries, never inside one: a 60-column
        # terminal gets two or three whole lines, not a glyph cut from its name.
        out, used = Text(end="\n"), 0
        for glyph, style, name in parts:
            size = len(glyph) + 1 + len(name)
            if used and used + 2 + size > width:
                out.append("\n")
                used = 0
            elif used:
                out.append("  ")
                used += 2
            out.append(glyph, style=style)
            out.append(f" {name}", style="dim")
            used += size
        return out

    def _footer(self, run: Run, m: analysis.Metrics, width: int) -> Text:
        label = "elapsed" if run.live else "wall"
        status = "" if run.live else f" ({run.status})"
        parts = [
            Text(f"{label} {fmt_seconds(m.wall)}{status}", style="bold"),
            Text(f"model blocked {fmt_seconds(m.blocked)}"),
            Text(f"overlap {fmt_seconds(m.overlap)} (model‖tool {fmt_seconds(m.overlap_model_tool)})"),
            Text(f"sequential-equivalent {fmt_seconds(m.sequential)}"),
        ]
        if m.wall > 0:
            parts.append(Text(f"speedup {m.speedup:.2f}×", style="bold"))
        out, used = Text(end="\n"), 0
        for part in parts:  # break between parts, never inside one
            if used and used + 3 + len(part) > width:
                out.append("\n")
                used = 0
            elif used:
                out.append(" · ")
                used += 3
            out.append_text(part)
            used += len(part)
        return out


# --- live ------------------------------------------------------------------------------------


def live_allowed(console: Console, *, quiet: bool = False, as_json: bool = False,
                 env: Mapping[str, str] | None = None) -> bool:
    """Whether ``asyncfc run`` may draw a live display on this console.

    Only on an interactive terminal (the stream is a TTY, and Rich thinks
    it interactive: not ``TERM=dumb``, not ``TTY_INTERACTIVE=0``): Rich
    ``Live`` on anything else prints just the final frame, and with
    ``FORCE_COLOR`` its cursor codes leak into logs. ``CI`` set, ``--json``
    and ``--quiet`` also rule it out.
    """
    env = os.environ if env is None else env
    if quiet or as_json or env.get("CI"):
        return False
    # is_terminal alone is not enough: FORCE_COLOR makes Rich call a pipe a terminal.
    isatty = getattr(console.file, "isatty", None)
    try:
        real_tty = bool(isatty and isatty())
    except (OSError, ValueError):
        real_tty = False
    return real_tty and console.is_interactive


class LiveTimeline:
    """A trace sink showing the timeline live; use as a context manager.

    The sink takes each event into the run's spans once, as it arrives (it
    is called synchronously from the run's trio tasks); Rich's refresh
    thread draws a frame from those spans about ten times a second, without
    parsing or replaying the events before (:class:`analysis.RunBuilder`).
    """

    def __init__(self, console: Console, refresh_per_second: float = 10) -> None:
        self.events: list[TraceEvent] = []
        self.spans = analysis.RunBuilder()
        self._anchor: tuple[float, float] | None = None  # (run time, monotonic) of the last event
        self._lock = threading.Lock()
        self.live = Live(console=console, refresh_per_second=refresh_per_second, transient=False,
                         get_renderable=self.renderable)

    def __call__(self, event: TraceEvent | Mapping) -> None:
        typed = from_emitted(event)  # a TraceEvent (what Trace.emit hands out) is taken as it is
        if typed is None:
            return  # not a valid event: nothing to draw (the file keeps it)
        with self._lock:
            self.events.append(typed)
            self.spans.add(typed)
            self._anchor = (typed.t, time.monotonic())

    def now(self) -> float | None:
        if self._anchor is None:
            return None
        t, mono = self._anchor
        return t + (time.monotonic() - mono)

    def renderable(self) -> Timeline | Text:
        with self._lock:
            if not self.events:
                return Text("starting…", style="dim")
            ended = isinstance(self.events[-1], Summary)
            # Copies of the spans: the run goes on adding events while this frame is drawn.
            run = self.spans.run(now=None if ended else self.now(), live=not ended, detached=True)
        return _Guarded(Timeline(run=run, max_lanes=None if not ended else 10**9))

    def __enter__(self) -> LiveTimeline:
        self.live.start(refresh=True)
        return self

    def __exit__(self, *exc: object) -> None:
        # Stopping draws the final frame (every lane) and returns the cursor.
        self.live.stop()


class _Guarded:
    """A renderable that shows a one-line note instead of raising.

    The live display is drawn from a refresh thread and, for its last
    frame, while the run ends: a rendering bug there must cost the picture,
    never the run's answer or exit code. ``asyncfc trace`` renders without
    this guard, so tests see any such bug.
    """

    def __init__(self, inner: Timeline) -> None:
        self.inner = inner

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        try:
            lines = list(console.render_lines(self.inner, options, pad=False, new_lines=True))
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            yield Text(f"(timeline not drawn: {type(exc).__name__}: {clip(str(exc))})", style="dim")
            return
        for line in lines:
            yield from line
