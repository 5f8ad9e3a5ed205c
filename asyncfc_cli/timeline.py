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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.text import Text

from asyncfc_cli import analysis
from asyncfc_cli.analysis import ModelSpan, Run, ToolSpan
from asyncfc_cli.events import Header, Summary, TraceEvent, from_emitted, parse_many
from asyncfc_cli.livespans import Figures, LiveFrame, LiveSpans
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
SOURCE_START = ("█", GREY)  # a tool source (an MCP server) starting, on its own line

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
    """One lane's cells; a higher priority paint wins a shared cell.

    Each cell keeps the legend entry of its paint (``key``), so the legend
    names what is on screen and nothing else."""

    def __init__(self, width: int, origin: float, span: float) -> None:
        self.width, self.origin, self.span = width, origin, span
        self.cells: list[tuple[str, str, int, str]] = [(" ", "", -1, "")] * width

    def x(self, t: float) -> float:
        x = (t - self.origin) / self.span * self.width if self.span > 0 else 0.0
        # Clamped to just beyond the bar: a cell index, never inf or NaN.
        return min(max(x, -1.0), self.width + 1.0) if math.isfinite(x) else 0.0

    def first(self, a: float) -> int:
        """The first cell a paint from ``a`` fills."""
        return min(max(int(math.floor(self.x(a))), 0), self.width - 1)

    def last(self, b: float, first: int) -> int:
        """One past the last cell a paint to ``b`` fills (at least one cell from ``first``)."""
        return min(max(int(math.ceil(self.x(b))), first + 1), self.width)

    def paint(self, a: float, b: float, glyph: str, style: str, priority: int, key: str) -> tuple[int, int] | None:
        if not b >= a:  # also false for NaN
            return None
        i0 = self.first(a)
        i1 = self.last(b, i0)
        for i in range(i0, i1):
            if priority >= self.cells[i][2]:
                self.cells[i] = (glyph, style, priority, key)
        return i0, i1

    def put(self, i: int, glyph: str, style: str, priority: int, key: str) -> None:
        if 0 <= i < self.width and priority >= self.cells[i][2]:
            self.cells[i] = (glyph, style, priority, key)

    def keys(self) -> set[str]:
        return {key for _, _, priority, key in self.cells if priority >= 0}

    def text(self) -> Text:
        out = Text()
        run_glyphs, run_style = "", None
        for glyph, style, _, _ in self.cells:
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


# Legend entries in the order they are listed: key -> (glyph shown, style, name).
MODEL_KEYS = {"ttft": (*MODEL_TTFT, "ttft"), "decoding": (*MODEL_DECODE, "decoding"),
              "blocked": (*MODEL_IDLE, "model blocked"), "start-up": (*MODEL_START, "start-up"),
              "starting": (*SOURCE_START, "tool source starting"), "wait": (*MODEL_WAIT, "wait")}
STATE_NAMES = {analysis.PENDING: "pending", analysis.RUNNING: "running", analysis.OK: "done",
               analysis.ERROR: "failed", analysis.TIMEOUT: "timeout", analysis.CANCELLED: "cancelled",
               analysis.UNFINISHED: "unfinished"}
# How a request is drawn from its first token on, by legend key.
DECODE_PAINT = {"decoding": MODEL_DECODE, analysis.ERROR: MODEL_ERROR,
                analysis.CANCELLED: STATES[analysis.CANCELLED][:2],
                analysis.UNFINISHED: STATES[analysis.UNFINISHED][:2]}


def tool_state(span: ToolSpan, live: bool) -> str:
    """pending / running while live; the final status; unfinished if the trace ended first."""
    return analysis.UNFINISHED if span.end is None and not live else span.status


def lane_limit(height: int, title: bool = False) -> int:
    """Tool lines a live frame has room for on a console ``height`` lines tall."""
    # title, axis, model lane, folded line, legend, footer, plus the lines around the display
    return max(height - 8 - (1 if title else 0), 3)


@dataclass
class _View:
    """What a picture shows, from a whole run or from a live frame's indexes."""

    header: Header
    start: float
    end: float
    live: bool
    finished: bool
    status: str
    lanes: list[ToolSpan]
    folded: dict[str, int]  # state -> calls folded into one line
    figures: Figures
    tokens: tuple[int, int]
    requests: int
    current: ModelSpan | None  # the latest request, when it has no end
    paint_model: Callable[[_Bar], None]
    setup: list[analysis.SetupSpan]  # tool sources that started for the run, each drawn on its own line


def _paint_request(bar: _Bar, m: ModelSpan, end: float, live: bool) -> None:
    stop = m.stop(end)
    first = m.first_token if m.first_token is not None else stop
    bar.paint(m.start, min(first, stop), *MODEL_TTFT, 2, "ttft")
    if m.first_token is not None:
        key = "decoding"
        if m.status == "error":
            key = analysis.ERROR
        elif m.status == "cancelled":  # stopped (Ctrl-C, timeout): it was not decoding to the end
            key = analysis.CANCELLED
        elif m.end is None and not live:
            key = analysis.UNFINISHED
        bar.paint(m.first_token, stop, *DECODE_PAINT[key], 3, key)


def _paint_run(run: Run, bar: _Bar) -> None:
    if run.models or run.live:
        # Before the first request the model has not been asked: start-up, not "blocked".
        if run.ready > run.start:
            bar.paint(run.start, run.ready, *MODEL_START, 0, "start-up")
        bar.paint(run.ready, run.end, *MODEL_IDLE, 0, "blocked")
    for wait in run.waits:
        bar.paint(wait.start, wait.end if wait.end is not None else run.end, *MODEL_WAIT, 1, "wait")
    for m in run.models:
        _paint_request(bar, m, run.end, run.live)


def _paint_indexed(frame: LiveFrame, bar: _Bar) -> None:
    """The model lane of a live frame, one look-up per cell: the same cells as
    :func:`_paint_run` gives, without a walk over every request and wait."""
    idle0 = bar.first(frame.start)
    idle1 = bar.last(frame.end, idle0)
    layers = [(frame.layers[name][0].columns(frame.layers[name][1], bar.width, bar.first, bar.last), priority)
              for name, priority in (("decode", 3), ("ttft", 2), ("wait", 1))]
    for i in range(bar.width):
        for keys, priority in layers:
            key = keys[i]
            if key is not None:
                glyph, style = DECODE_PAINT.get(key) or MODEL_KEYS[key][:2]
                bar.cells[i] = (glyph, style, priority, key)
                break
        else:
            if idle0 <= i < idle1:
                bar.cells[i] = (*MODEL_IDLE, 0, "blocked")
    if frame.ready > frame.start:  # at most a width of cells, as each layer above
        bar.paint(frame.start, frame.ready, *MODEL_START, 0, "start-up")
        bar.paint(frame.ready, frame.end, *MODEL_IDLE, 0, "blocked")
    for wait in frame.open_waits:
        bar.paint(wait.start, frame.end, *MODEL_WAIT, 1, "wait")
    for m in frame.open_models:
        _paint_request(bar, m, frame.end, True)


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
        run: spans already built; then ``events`` is unused.
        frame: a live frame (:meth:`asyncfc_cli.livespans.LiveSpans.frame`),
            its lanes already chosen; then ``events`` and ``run`` are unused.
    """

    def __init__(self, events: Sequence[TraceEvent | Mapping] = (), *, now: float | None = None, live: bool = False,
                 axis: float | None = None, max_lanes: int | None = None, title: str | None = None,
                 legend: bool = True, footer: bool = True, run: Run | None = None,
                 frame: LiveFrame | None = None) -> None:
        self.events = parse_many(events) if run is None and frame is None else []
        self.now, self.live, self.run, self.frame = now, live, run, frame
        self.axis, self.max_lanes, self.title = axis, max_lanes, title
        self.legend, self.footer = legend, footer

    @classmethod
    def from_trace(cls, data: TraceData, **kwargs) -> Timeline:
        return cls(data.all_events(), **kwargs)

    # -- what is shown ----------------------------------------------------------------

    def _view(self, options: ConsoleOptions) -> _View:
        if self.frame is not None:
            f = self.frame
            return _View(f.header, f.start, f.end, True, False, analysis.UNFINISHED, f.lanes, f.folded, f.figures,
                         f.tokens, f.requests, f.current, lambda bar: _paint_indexed(f, bar), f.setup)
        run = self.run
        if run is None:
            run = analysis.build_run(self.events, now=self.now, live=self.live and not self._ended())
        lanes, folded = run.tools, {}
        limit = self._lane_limit(options, run)
        if limit is not None and len(lanes) > limit:
            lanes, hidden = self._fold(run, lanes, limit)
            for s in hidden:
                folded[run.tool_state(s)] = folded.get(run.tool_state(s), 0) + 1
        # The footer shows no critical path: its walk is the costliest figure.
        figures = Figures.of(analysis.compute(run, critical=False))
        tokens = (sum(m.tokens_in or 0 for m in run.models), sum(m.tokens_out or 0 for m in run.models))
        current = run.models[-1] if run.models and run.models[-1].end is None else None
        return _View(run.header, run.start, run.end, run.live, run.finished, run.status, lanes, folded, figures,
                     tokens, len(run.models), current, lambda bar: _paint_run(run, bar), run.setup)

    # -- layout ---------------------------------------------------------------------

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        view = self._view(options)
        width = max(options.max_width, 40)
        label_w = int(min(max(width * 0.32, 16), 44))
        info_w = 10
        bar_w = max(width - label_w - info_w - 2, 10)
        elapsed = max(view.end - view.start, 0.0)
        span = self.axis if self.axis else (live_axis_span(elapsed) if view.live else max(elapsed, 1e-3))
        span = max(span, 1e-3) if math.isfinite(span) else max(elapsed, 1e-3)
        shown: set[str] = set()  # legend keys of what is drawn

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
        yield line(*self._model_lane(view, bar_w, span, shown))
        for source in view.setup:
            yield line(*self._setup_lane(view, source, bar_w, span, shown))
        if view.folded:
            yield line(*self._folded_lane(view.folded, shown))
        for tool in view.lanes:
            yield line(*self._tool_lane(view, tool, bar_w, span, shown))
        if self.legend and shown:
            yield self._legend(shown, width)
        if self.footer:
            yield self._footer(view, width)

    def _ended(self) -> bool:
        if self.run is not None:
            return self.run.finished
        return bool(self.events) and isinstance(self.events[-1], Summary)

    def _lane_limit(self, options: ConsoleOptions, run: Run) -> int | None:
        if self.max_lanes is not None:
            return max(self.max_lanes, 1)
        if not run.live:
            return None
        return lane_limit(options.size.height, bool(self.title))

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

    def _model_lane(self, view: _View, bar_w: int, span: float, shown: set[str]) -> tuple[Text, Text, Text]:
        bar = _Bar(bar_w, view.start, span)
        view.paint_model(bar)
        shown |= bar.keys()
        tokens_in, tokens_out = view.tokens
        label = Text.assemble(("model", f"bold {GREEN}"), f" {clip(view.header.model or '')}")
        if tokens_in or tokens_out:
            label.append(f" · {tokens_in}↓ {tokens_out}↑ tok", style="dim")
        current = view.current
        if current is not None and view.live:
            phase = "decode" if current.first_token is not None else "ttft"
            if current.chunks and current.first_token is not None:
                phase = f"{current.chunks}tok"  # tokens so far (streamed chunks, ~1 token each)
            info = Text(f"#{current.request} {phase}", style=GREEN)
        elif current is not None:
            info = Text(f"#{current.request} ?", style=GREY)
        elif view.live and not view.finished:
            info = Text("blocked", style="dim")
        else:
            info = Text(f"{view.requests} req", style="dim")
        return label, bar.text(), info

    @staticmethod
    def _setup_lane(view: _View, source: analysis.SetupSpan, bar_w: int, span: float,
                    shown: set[str]) -> tuple[Text, Text, Text]:
        """A tool source starting (an MCP server): start-up, drawn as its own line."""
        bar = _Bar(bar_w, view.start, span)
        bar.paint(source.start, source.end, *SOURCE_START, 2, "starting")
        shown |= bar.keys()
        label = Text.assemble(("start ", "bold"), clip(source.name), (f" ({clip(source.kind)})", "dim"))
        return label, bar.text(), Text(f"✓ {fmt_seconds(source.end - source.start)}", style=GREY)

    def _tool_lane(self, view: _View, tool: ToolSpan, bar_w: int, span: float,
                   shown: set[str]) -> tuple[Text, Text, Text]:
        bar = _Bar(bar_w, view.start, span)
        state = tool_state(tool, view.live)
        if tool.issued is not None:
            pend_end = tool.start if tool.start is not None else view.end
            glyph, style, _ = STATES[analysis.PENDING]
            key = analysis.PENDING
            if state == analysis.UNFINISHED and tool.start is None:
                glyph, style, _ = STATES[analysis.UNFINISHED]
                key = analysis.UNFINISHED
            bar.paint(tool.issued, pend_end, glyph, style, 1, key)
        if tool.start is not None:
            glyph, style, _ = STATES.get(state, STATES[analysis.OK])
            key = state if state in STATES else analysis.OK
            cells = bar.paint(tool.start, tool.stop(view.end), glyph, style, 2, key)
            if state == analysis.RUNNING and cells:
                bar.put(cells[1] - 1, "▸", style, 3, analysis.RUNNING)
        shown |= bar.keys()
        label = Text()
        # Every piece is cut before the lane is laid out (trace fields have no length limit).
        label.append(clip(tool.label), style="bold")
        if tool.deps:
            label.append(f" ← {_deps(tool.deps)}", style=ORANGE)
        label.append(f" {clip(tool.tool)}")
        if tool.args_summary:
            label.append(f"({clip(tool.args_summary)})", style="dim")
        _, style, symbol = STATES.get(state, STATES[analysis.OK])
        shown.add(state if state in STATES else analysis.OK)  # its symbol is in the right-hand column
        if state == analysis.PENDING:
            waited = view.end - (tool.issued if tool.issued is not None else view.end)
            info = Text(f"{symbol} {fmt_seconds(waited)}", style=style)
        elif state in (analysis.RUNNING, analysis.UNFINISHED) and tool.start is not None:
            info = Text(f"{symbol} {fmt_seconds(view.end - tool.start)}", style=style)
        elif state == analysis.UNFINISHED:
            # Fits the right-hand column (10 cells) whole at any terminal width.
            info = Text(f"{symbol} not run", style=style)
        else:
            info = Text(f"{symbol} {fmt_seconds(tool.duration or 0.0)}", style=style)
        return label, bar.text(), info

    @staticmethod
    def _folded_lane(folded: dict[str, int], shown: set[str]) -> tuple[Text, Text, Text]:
        summary = Text()
        # In the legend's order, so the line does not reshuffle from one frame to the next.
        for state in sorted(folded, key=lambda s: list(STATES).index(s) if s in STATES else len(STATES)):
            _, style, symbol = STATES.get(state, STATES[analysis.OK])
            shown.add(state if state in STATES else analysis.OK)
            summary.append(f"{symbol}{folded[state]} ", style=style)
        n = sum(folded.values())
        calls = "earlier call" if n == 1 else "earlier calls"
        return Text(f"… {n} {calls}", style="dim"), summary, Text("")

    @staticmethod
    def _legend(shown: set[str], width: int) -> Text:
        """Only what is drawn: every glyph on screen is named, and nothing else."""
        parts = [MODEL_KEYS[key] for key in MODEL_KEYS if key in shown]
        for state, (glyph, style, symbol) in STATES.items():
            if state in shown:
                mark = glyph if glyph == symbol else f"{glyph}{symbol}"
                parts.append((mark, style, STATE_NAMES[state]))
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

    @staticmethod
    def _footer(view: _View, width: int) -> Text:
        m = view.figures
        label = "elapsed" if view.live else "wall"
        status = "" if view.live else f" ({view.status})"
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

    The sink takes each event into the run's spans and their indexes once,
    as it arrives (it is called synchronously from the run's trio tasks);
    Rich's refresh thread draws a frame about ten times a second from the
    lanes it shows and the figures kept up to date, so a frame costs the
    same in the run's first second and its ten-thousandth call
    (:class:`asyncfc_cli.livespans.LiveSpans`). The last frame, after the
    run's summary, is the whole run: every lane.
    """

    def __init__(self, console: Console, refresh_per_second: float = 10) -> None:
        self.events: list[TraceEvent] = []
        self.spans = LiveSpans()
        self._anchor: tuple[float, float] | None = None  # (run time, monotonic) of the last event
        self._lock = threading.Lock()
        self.console = console
        self._live_options = dict(console=console, refresh_per_second=refresh_per_second, transient=False,
                                  get_renderable=self.renderable)
        self.live = Live(**self._live_options)

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
            # Copies of the lanes shown: the run goes on adding events while this frame is drawn.
            frame = self.spans.frame(self.now(), lane_limit(self.console.size.height))
            if frame is not None:
                return _Guarded(Timeline(frame=frame))
            # The run ended (its last frame shows every lane), or its events came out of the
            # order the indexes rely on: the spans of the whole run, exact for any input.
            ended = self.spans.builder.summary is not None
            run = self.spans.builder.run(now=None if ended else self.now(), live=not ended, detached=True)
        return _Guarded(Timeline(run=run, max_lanes=None if not ended else 10**9))

    def __enter__(self) -> LiveTimeline:
        self.live.start(refresh=True)
        return self

    def __exit__(self, *exc: object) -> None:
        # Stopping draws the final frame (every lane) and returns the cursor.
        self.live.stop()

    @property
    def paused(self) -> bool:
        return not self.live.is_started

    def pause(self) -> None:
        """Stop drawing, its last frame left in place: text is written below it
        (the streamed answer, asyncfc_cli/answer_stream.py)."""
        self.live.stop()

    def resume(self) -> None:
        """Draw again, below what was written since :meth:`pause`. A fresh Live:
        the stopped one would first erase as many lines as its last frame had."""
        if self.paused:
            self.live = Live(**self._live_options)
            self.live.start(refresh=True)


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
