"""Progress on stderr during a run, built only from trace events.

On an interactive terminal: the live timeline (:mod:`asyncfc_cli.timeline`).
Anywhere else (a pipe, a file, ``CI`` set): plain lines, one when a tool
call starts and one when it ends, so CI logs stay readable; no cursor
movement, no escape codes unless the console is a terminal (Rich decides).
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.console import Console
from rich.markup import escape

from asyncfc_cli.events import CallReady, FutureCreated, ModelEnd, Retry, ToolBegin, ToolEnd, from_emitted
from asyncfc_cli.futures.protocol import WAIT_TOOL
from asyncfc_cli.output import LABEL_CHARS, label

_MARK = {"ok": "[green]✓[/]", "error": "[red]✗[/]", "timeout": "[red]⏱[/]", "cancelled": "[yellow]⊘[/]"}


def _text(value: str, limit: int = LABEL_CHARS) -> str:
    # Tool names, arguments and errors come from the model and the tools:
    # text, never Rich markup, never a control sequence for the terminal,
    # and cut before it is printed (a model may name a tool with 5 MB).
    return escape(label(value, limit))


class ProgressPrinter:
    """A trace sink that prints tool starts/ends and model trouble.

    Each call is named as the timeline names it: its future id in async
    mode (``f1``), else its number in issue order (``#1``), so two calls of
    the same tool can be told apart.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self._starts: dict[str, float] = {}
        self._labels: dict[str, str] = {}  # call id -> f1 / #1

    def _label(self, call_id: str, future: str | None = None) -> str:
        # Numbered on first sight, in the order the analysis numbers lanes.
        if future:
            self._labels[call_id] = future
        elif call_id not in self._labels:
            self._labels[call_id] = f"#{len(self._labels) + 1}"
        return self._labels[call_id]

    def __call__(self, event: Mapping) -> None:
        ev = from_emitted(event)
        if ev is None:
            return  # not a valid event: nothing to print (the trace file keeps it)
        t = ev.t
        if isinstance(ev, CallReady) and ev.tool != WAIT_TOOL:
            self._label(ev.call_id)
        elif isinstance(ev, FutureCreated):
            self._label(ev.call_id, ev.future)
        elif isinstance(ev, ToolBegin):
            self._starts[ev.call_id] = t
            label = self._label(ev.call_id, ev.future)
            self.console.print(f"[dim]{t:7.2f}s[/] → {_text(label)} {_text(ev.tool)}({_text(ev.args_summary)})",
                               highlight=False)
        elif isinstance(ev, ToolEnd):
            took = t - self._starts.pop(ev.call_id, t)
            mark = _MARK.get(ev.status, "?")
            detail = f" [dim]{_text(ev.error, 120)}[/]" if ev.error else ""
            self.console.print(
                f"[dim]{t:7.2f}s[/] {mark} {_text(self._label(ev.call_id))} {_text(ev.tool)} {_text(ev.status)} "
                f"in {took:.2f}s{detail}",
                highlight=False,
            )
        elif isinstance(ev, Retry):
            self.console.print(f"[dim]{t:7.2f}s[/] [yellow]retrying model request[/] "
                               f"(attempt {ev.attempt}): {_text(ev.error, 1000)}", highlight=False)
        elif isinstance(ev, ModelEnd) and ev.status == "error":
            self.console.print(f"[dim]{t:7.2f}s[/] [red]model error:[/] {_text(ev.error or '', 1000)}",
                               highlight=False)


def progress_sink(console: Console, env: Mapping[str, str] | None = None):
    """The progress sink for ``asyncfc run``: a :class:`~asyncfc_cli.timeline.LiveTimeline`
    (a context manager: enter it around the run) when a live display is
    allowed, else a :class:`ProgressPrinter`. ``--json``/``--quiet`` runs
    ask for no sink at all."""
    from asyncfc_cli.timeline import LiveTimeline, live_allowed

    if live_allowed(console, env=env):
        return LiveTimeline(console)
    return ProgressPrinter(console)
