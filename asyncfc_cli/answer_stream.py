"""The answer on stdout as the model writes it (``asyncfc run --stream``).

A trace sink like the progress display: it reads ``model_text`` events only
(:class:`~asyncfc_cli.events.ModelText`), which the agent loop emits for text
that can no longer be taken back (in async mode, once no outcome is unseen:
an answer begun earlier may be cut short or held by the finish rule, and is
never shown). So what this prints is always part of the conversation: the
final answer, and any text the model wrote before its calls in an earlier
turn, each turn's text its own paragraph.

On a terminal with the live timeline, the timeline stops where the text
begins (its frame stays above) and starts again below if the model goes on
calling tools; the text itself goes to stdout, below it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from asyncfc_cli.events import ModelBegin, ModelText, ToolBegin, from_emitted
from asyncfc_cli.output import answer_text


class AnswerStream:
    """Writes each ``model_text`` event to ``fd`` (the real stdout) as it comes.

    ``display``: the live timeline (:class:`~asyncfc_cli.timeline.LiveTimeline`)
    to pause while text is written, or None.
    """

    def __init__(self, fd: int | None, display: Any = None) -> None:
        self.fd = fd
        self.display = display
        self.texts: dict[int, list[str]] = {}  # request -> the text shown for it
        self._last: int | None = None  # the request whose text was shown last
        self._line_open = False  # the last thing written did not end a line
        try:
            self._tty = os.isatty(fd) if fd is not None else sys.stdout.isatty()
        except (OSError, ValueError):
            self._tty = False

    def _write(self, text: str) -> None:
        data = (answer_text(text, _Tty(self._tty)) if self._tty else text)
        encoded = data.encode(getattr(sys.stdout, "encoding", None) or "utf-8", "backslashreplace")
        try:
            if self.fd is None:
                sys.stdout.buffer.write(encoded)
                sys.stdout.flush()
            else:
                while encoded:
                    encoded = encoded[os.write(self.fd, encoded):]
        except OSError:
            pass  # a closed pipe: the answer still goes into the trace and --json
        if text:
            self._line_open = not text.endswith("\n")

    def __call__(self, event: Mapping) -> None:
        ev = from_emitted(event)
        if isinstance(ev, ModelText):
            self._pause()
            if self._last is not None and self._last != ev.request:
                self._write("\n\n" if self._line_open else "\n")  # a new turn's text: a new paragraph
            self._last = ev.request
            self.texts.setdefault(ev.request, []).append(ev.text)
            self._write(ev.text)
        elif isinstance(ev, (ModelBegin, ToolBegin)) and self._paused():
            # The model goes on after text it wrote: the timeline resumes below the text.
            self._end_line()
            self.display.resume()

    def _pause(self) -> None:
        if hasattr(self.display, "pause") and not self.display.paused:
            self.display.pause()

    def _paused(self) -> bool:
        return hasattr(self.display, "resume") and self.display.paused and self._last is not None

    def _end_line(self) -> None:
        if self._line_open:
            self._write("\n")

    def shown(self, answer: str | None) -> bool:
        """Whether ``answer`` was shown whole, as the last text written."""
        return answer is not None and self._last is not None and "".join(self.texts[self._last]) == answer

    def close(self) -> None:
        """The run ended: end the line the text left open."""
        self._end_line()


class _Tty:
    """A stand-in stream for :func:`answer_text`: a terminal or not, as the real stdout is."""

    def __init__(self, tty: bool) -> None:
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty
