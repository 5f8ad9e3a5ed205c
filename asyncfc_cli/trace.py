"""Trace events: one JSONL file per run, and the reader every later command shares.

A trace is strict JSONL: a header line, then events as they happen, then a
summary line; every line one JSON object, no blank lines, no NaN. The
header is written as soon as the file is opened, before the seconds of
start-up, so a run stopped at any moment leaves a trace that reads. Each
line is flushed when written, so a run that dies leaves every event up to
that moment readable; the reader tolerates a cut-off last line and a
missing summary, and skips (and reports, with line numbers) any line that
is not a valid event: binary or non-UTF-8 bytes, broken JSON, a value that
is not an object, a missing or mistyped field, NaN or Infinity. Times
(``t``) are monotonic seconds from the run's start.

The event types and their fields are defined once, typed, in
:mod:`asyncfc_cli.events`; every reader goes through them. In brief
(fields beyond ``type`` and ``t``):

``header``            version, run_id, started_at, task, agent, model (the LiteLLM model
                      string; sim or sim:P for the simulated model), model_alias (the
                      [models] name or string as given), litellm_model (what LiteLLM was
                      called with), provider (LiteLLM's provider; asyncfc.sim), mode,
                      spec_digest, tools (those known when the run starts; read_trace adds
                      each tool_source's, so the header read back lists every tool the run
                      had), tool_kinds, cassette? ({"replayed": FILE, "speed", "match"} or
                      {"recorded": FILE}: the run's --record / --replay)
``model_begin``       request, messages
``model_first_token`` request
``model_progress``    request, chunks (streamed so far, ~1 token each; every 0.25 s)
``call_ready``        request, call_id, tool, args_digest     (arguments complete in the stream)
``model_end``         request, status (ok|error|cancelled|cut), ttft, tokens_in, tokens_out,
                      finish_reason, tool_calls, error?, chars? (cut: an answer stopped early,
                      see futures.AsyncScheduler.wants_cut; its tokens are not reported)
``tool_begin``        call_id, tool, args_digest, args_summary, future?, deps?
                      (when the tool really starts: after its inputs and a concurrency slot)
``tool_end``          call_id, tool, status (ok|error|timeout|cancelled), error?, result_chars?
``retry``             request, attempt, error
``summary``           status, answer_chars, turns, requests, tool_calls, tokens_in, tokens_out,
                      wall, error?

Async mode adds:

``future_created``    future, call_id, tool, deps (future ids it references), request,
                      ordered_after (the ordered call's predecessor future, or null)
``future_resolved``   future, status                          (every future gets one)
``wait_begin``        call_id, futures, timeout
``wait_end``          call_id, ready, pending
``delivery``          futures, via (result: in its own tool message | wait | message)
``finish_held``       outstanding, cut                        (an answer was held or cut, see futures/delivery.py)
``hold``              futures, expected, held, budget         (the next request waited for calls that
                                                               may finish soon, see AsyncScheduler._hold)
``tool_source``       name, kind, server, tools, protocol, began (an MCP server started for the run:
                                                               it began starting at ``began`` and was
                                                               ready at ``t``; start-up, not model time)
``tool_source_error`` name, error                             (an MCP server failed to start, its session
                                                               failed, it wrote a line that is not JSON-RPC,
                                                               or the SDK logged a problem; redacted)
``tool_progress``     call_id, tool, status, mcp_task?, message? (an MCP task's state changed)
``tool_blocked``      call_id, tool, seconds                  (an async def tool blocked the loop)

Runs that share per-model limits (``asyncfc batch``, :mod:`asyncfc_cli.limits`) add:

``limit_wait``        request, seconds, reason (concurrency | rate_limit)  (the request waited that long
                                                               for a slot or a shared 429 cooldown before it
                                                               was sent; inside the request's span)

Secrets are removed from every line before it is written (:func:`Trace.emit`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from asyncfc_cli import project, safefiles
from asyncfc_cli.events import (EventError, Header, ModelBegin, ModelEnd, ModelFirstToken, Summary, ToolBegin,
                                ToolEnd, ToolSourceOpened, TraceEvent, field_names, loads, parse_event, to_line)
from asyncfc_cli.redaction import Redactor

TRACE_VERSION = 1
DEFAULT_DIR = project.RUNS  # in the project's directory

Event = dict[str, Any]
Sink = Callable[[TraceEvent], None]


def digest(value: Any) -> str:
    """A short stable digest of a JSON value (arguments, specs)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    # surrogatepass: a model may send a lone surrogate (a "\\ud800" escape).
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def summarize_args(arguments: Any, limit: int = 60) -> str:
    """A one-line, bounded rendering of a call's arguments for labels."""
    if isinstance(arguments, dict):
        text = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in arguments.items())
    else:
        text = str(arguments)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Trace:
    """Stamps typed events (:mod:`asyncfc_cli.events`) with run time and hands
    them to every sink.

    The file writer is one sink; the CLI's progress printer or live timeline
    are others, so renderers see exactly what the file holds. The trace also
    holds the little the run needs to know of itself while it runs, set as
    the events pass rather than read back from them: the model request in
    flight (``request``, for retries and limit waits) and the ``header``
    (the model's identity, for the ``--json`` report).
    """

    def __init__(self, secrets: Iterable[str | None] = (), clock: Callable[[], float] = time.monotonic,
                 redactor: Redactor | None = None) -> None:
        # Tests pass trio.current_time so MockClock runs have exact timestamps.
        self.clock = clock
        self.t0 = clock()
        self.sinks: list[Sink] = []
        self.events: list[TraceEvent] = []
        self.redactor = redactor if redactor is not None else Redactor()
        self.redactor.add(secrets)
        self.header: Header | None = None
        self.request: int | None = None  # the latest model request begun

    def now(self) -> float:
        return self.clock() - self.t0

    def redact(self, value: Any) -> Any:
        """``value`` with the run's secrets masked: for callers that cut text
        before emitting it (a cut secret would no longer match)."""
        return self.redactor.value(value)

    def emit(self, event: TraceEvent, at: float | None = None) -> TraceEvent:
        """Record ``event`` now (or at ``at``, a run time just read from :meth:`now`,
        when the event states a time it must agree with: the summary's wall): the
        event as written, stamped and with the run's secrets masked in every field,
        which is what every sink receives."""
        redact = self.redactor.value
        # Field by field: a field's name is never a secret to mask.
        stamped = type(event)(t=round(self.now() if at is None else at, 6),
                              **{name: redact(getattr(event, name)) for name in field_names(type(event))})
        if isinstance(stamped, ModelBegin):
            self.request = stamped.request
        elif isinstance(stamped, Header) and self.header is None:
            self.header = stamped
        self.events.append(stamped)
        for sink in self.sinks:
            sink(stamped)
        return stamped


class TraceWriter:
    """A sink that appends one line of strict JSON per event and flushes it.

    The file is strict JSONL: every line one JSON object (see
    :func:`asyncfc_cli.events.to_line`: no NaN, text the file can hold), no
    blank lines. :meth:`write_header` writes the first line at once and
    raises ``OSError`` if it cannot (an unwritable path, a full disk), so a
    run fails before it starts; the CLI calls it as soon as the trace is
    opened, so a run stopped during its start still leaves a header.
    A write that fails later (the disk filled up mid-run) must not kill the
    run: the writer stops and keeps the error in ``failed``; the run's
    verdict (:func:`asyncfc_cli.verdict.judge`) then makes it an error, exit
    1, with a message naming this file and the OS error.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.failed: OSError | None = None
        self.header_written = False
        path.parent.mkdir(parents=True, exist_ok=True)
        # A fresh file renamed into place: a link planted at a stable name
        # (a batch's traces/) is replaced, never written through.
        self._file = safefiles.create(path)

    def write_header(self, header: Header) -> None:
        """Write the header line now; ``OSError`` if the file cannot take it."""
        try:
            self._file.write(to_line(header) + "\n")
            self._file.flush()
        except OSError:
            self._close_quietly()
            raise
        self.header_written = True

    def __call__(self, event: TraceEvent) -> None:
        if self._file.closed or event.LIVE_ONLY:
            return
        if event.get("type") == "header":
            if self.header_written:
                return  # written when the trace was opened
            self.header_written = True
        try:
            self._file.write(to_line(event) + "\n")
            self._file.flush()
        except OSError as exc:
            self.failed = exc
            self._close_quietly()

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as exc:
            self.failed = self.failed or exc

    def _close_quietly(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass


def check_writable(path: Path) -> None:
    """Raise ``OSError`` at once if ``path`` cannot be created or written.

    A cheap check before the seconds of start-up; creating nothing but the
    missing directories. A full disk is only found by writing, which
    :meth:`TraceWriter.write_header` does. A project's runs directory
    (``.asyncfc/runs``) is asyncfc's own: a link there that leads out of the
    project is refused (:func:`asyncfc_cli.project.make_state_dirs`).
    """
    path = Path(path)
    project.make_state_dirs(path)
    safefiles.check_replaceable(path)
    # The file is replaced, not written (TraceWriter): its directory must be writable.
    target = path if safefiles.written_in_place(path) else path.parent
    if not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


RUNS_DIR_ENV = project.RUNS_DIR_ENV
runs_dir = project.runs_dir  # one function for every reader and writer (asyncfc_cli/project.py)


def default_trace_path(run_id: str, base: Path | None = None, agents_path: Path | None = None) -> Path:
    """``<runs dir>/<run id>.jsonl``: ``base``, else the runs directory of the
    project of ``agents_path`` (the agents.toml the run uses)."""
    return (base or runs_dir(agents_path)) / f"{run_id}.jsonl"


def run_id_time(run_id: Any) -> datetime | None:
    """The instant a run id made by :func:`new_run_id` was made (UTC, to the second), else None."""
    try:
        return datetime.strptime(str(run_id)[:15], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def header_fields(run_id: str, **fields: Any) -> Header:
    """The header of a run starting now (its ``t`` is 0 until :meth:`Trace.emit` stamps it).

    ``started_at`` is the instant of the run id, when the command took the run
    on, so what lists show by one and by the other never disagree (the header
    is written seconds later, after LiteLLM's import)."""
    started = run_id_time(run_id) or datetime.now(timezone.utc)
    return Header(version=TRACE_VERSION, run_id=run_id, started_at=started.isoformat(timespec="seconds"), **fields)


# --- reading ---------------------------------------------------------------------------


@dataclass
class Span:
    """A begin/end pair read back from a trace; ``end`` is None if the run died."""

    kind: str  # "model" or "tool"
    key: str  # request number or call id
    start: float
    end: float | None
    begin: TraceEvent
    finish: TraceEvent | None = None
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.finish is None:
            return "unfinished"
        return str(self.finish.get("status", "ok"))


@dataclass
class TraceData:
    """A trace file read back: typed events (see :mod:`asyncfc_cli.events`).

    ``problems`` lists the lines that were skipped and why ("line 7: not
    JSON ..."); ``truncated`` is set when the last line was cut or the run
    never wrote its summary.
    """

    path: Path | None
    header: Header
    events: list[TraceEvent]
    summary: Summary | None
    truncated: bool
    problems: list[str] = field(default_factory=list)

    def all_events(self) -> list[TraceEvent]:
        """Header, events and summary, in file order."""
        return [self.header, *self.events, *([self.summary] if self.summary else [])]

    def spans(self, kind: str) -> list[Span]:
        """Model requests (``kind="model"``) or tool executions (``"tool"``)."""
        begin, end = (ModelBegin, ModelEnd) if kind == "model" else (ToolBegin, ToolEnd)
        key = "request" if kind == "model" else "call_id"
        open_: dict[Any, Span] = {}
        out: list[Span] = []
        for ev in self.events:
            if isinstance(ev, begin):
                span = Span(kind, str(getattr(ev, key)), ev.t, None, ev)
                open_[getattr(ev, key)] = span
                out.append(span)
            elif isinstance(ev, end) and getattr(ev, key) in open_:
                span = open_.pop(getattr(ev, key))
                span.end, span.finish = ev.t, ev
            elif kind == "model" and isinstance(ev, ModelFirstToken) and ev.request in open_:
                open_[ev.request].marks["first_token"] = ev.t
        return out

    def of_type(self, type: str) -> list[TraceEvent]:
        return [ev for ev in self.all_events() if ev.type == type]


class TraceError(Exception):
    pass


MAX_PROBLEMS = 1000  # kept in full; beyond this only counted


def read_trace(path: Path) -> TraceData:
    """Read a trace, tolerating a run that died mid-line or before its summary,
    and skipping (and reporting) every line that is not a valid event."""
    try:
        content = Path(path).read_bytes()
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from None
    return parse_trace(content, Path(path))


def parse_trace(content: bytes | str, path: Path | None = None) -> TraceData:
    """Typed events from the text of a trace.

    Lines are split at ``\\n`` only (a JSON string may hold other line
    separators, such as U+2028). A line that is not UTF-8, not strict JSON,
    not an object or not a valid event is skipped and reported in
    ``problems``, except a cut-off last line (the writer died mid-line),
    which only marks the trace truncated. Raises :class:`TraceError` when
    no header comes first: then it is not an asyncfc trace.
    """
    raw = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line
    where = f"{path}: " if path is not None else ""
    problems: list[str] = []
    dropped = 0
    truncated = False
    header: Header | None = None
    events: list[TraceEvent] = []

    def problem(number: int, message: str) -> None:
        nonlocal dropped
        if len(problems) < MAX_PROBLEMS:
            problems.append(f"line {number}: {message}")
        else:
            dropped += 1

    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue  # traces before strict JSONL opened with a blank line
        last = number == len(lines) and not raw.endswith(b"\n")
        try:
            text = line.decode("utf-8")
            value = loads(text)
        except UnicodeDecodeError as exc:
            problem(number, f"not UTF-8 text (byte {exc.start + 1})")
            continue
        except RecursionError:
            problem(number, "JSON nested too deeply")
            continue
        except ValueError as exc:  # JSONDecodeError, NaN/Infinity, a number too long to convert
            if last:
                truncated = True  # the writer died mid-line
            else:
                problem(number, f"not JSON ({_first_line(exc)})")
            continue
        try:
            event = parse_event(value)
        except EventError as exc:
            problem(number, str(exc))
            continue
        if header is None:
            if not isinstance(event, Header):
                raise TraceError(f"{where}not an asyncfc trace: line {number} is a {event.type} event, "
                                 "not the header" + _problems_note(problems))
            header = event
        elif isinstance(event, Header):
            problem(number, "a second header (skipped)")
        else:
            events.append(event)
    if header is None:
        raise TraceError(f"{where}not an asyncfc trace: no header line" + _problems_note(problems))
    if dropped:
        problems.append(f"... and {dropped} more lines skipped")
    header = _with_source_tools(header, events)
    summary = events[-1] if events and isinstance(events[-1], Summary) else None
    if summary is not None:
        events.pop()
    # A summary anywhere but last is not the run's end: skip it rather than
    # let renderers end the run in the middle of its events.
    early = [i for i, ev in enumerate(events) if isinstance(ev, Summary)]
    for i in early:
        problems.append(f"a summary event at t={events[i].t:g} is not the last event (skipped)")
    if early:
        events = [ev for ev in events if not isinstance(ev, Summary)]
    return TraceData(path, header, events, summary, truncated or summary is None, problems)


def _with_source_tools(header: Header, events: list[TraceEvent]) -> Header:
    """The header with the run's tools: the header line is written before the tool
    sources start, so it lists the tools known then; each source that started
    (an MCP server, ``tool_source``) adds the tools it brought."""
    names = list(header.tools or [])
    for ev in events:
        if isinstance(ev, ToolSourceOpened):
            names += [n for n in ev.tools if n not in names]
    if names == list(header.tools or []):
        return header
    return parse_event({**header.raw, "tools": names})


def _first_line(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 120 else text[:119] + "…"


def _problems_note(problems: list[str]) -> str:
    return f"; {problems[0]}" if problems else ""
