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

from asyncfc_cli.trace import Event

_MARK = {"ok": "[green]✓[/]", "error": "[red]✗[/]", "timeout": "[red]⏱[/]", "cancelled": "[yellow]⊘[/]"}


class ProgressPrinter:
    """A trace sink that prints tool starts/ends and model trouble."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._starts: dict[str, float] = {}

    def __call__(self, event: Event) -> None:
        kind, t = event["type"], event["t"]
        if kind == "tool_begin":
            self._starts[event["call_id"]] = t
            # The tool name comes from the model (it may name a tool that does
            # not exist), so it is text, never Rich markup.
            label = f"{escape(event['tool'])}({escape(event.get('args_summary', ''))})"
            self.console.print(f"[dim]{t:7.2f}s[/] → {label}", highlight=False)
        elif kind == "tool_end":
            took = t - self._starts.pop(event["call_id"], t)
            mark = _MARK.get(event["status"], "?")
            detail = f" [dim]{escape(event['error'][:120])}[/]" if event.get("error") else ""
            self.console.print(
                f"[dim]{t:7.2f}s[/] {mark} {escape(event['tool'])} {escape(event['status'])} in {took:.2f}s{detail}",
                highlight=False,
            )
        elif kind == "retry":
            self.console.print(f"[dim]{t:7.2f}s[/] [yellow]retrying model request[/] "
                               f"(attempt {event['attempt']}): {escape(event['error'])}", highlight=False)
        elif kind == "model_end" and event.get("status") == "error":
            self.console.print(f"[dim]{t:7.2f}s[/] [red]model error:[/] {escape(event.get('error', ''))}",
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
