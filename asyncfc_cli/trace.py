"""Trace events: one JSONL file per run, and the reader every later command shares.

A trace is a header line, then events as they happen, then a summary line.
Each line is flushed when written, so a run that dies leaves every event up
to that moment readable; the reader tolerates a cut-off last line and a
missing summary. Times (``t``) are monotonic seconds from the run's start.

Event types (fields beyond ``type`` and ``t``):

``header``            version, run_id, started_at, task, agent, model (the LiteLLM model
                      string; sim or sim:P for the simulated model), model_alias (the
                      [models] name or string as given), litellm_model (what LiteLLM was
                      called with), provider (LiteLLM's provider; asyncfc.sim), mode,
                      spec_digest, tools
``model_begin``       request, messages
``model_first_token`` request
``model_progress``    request, chunks (streamed so far, ~1 token each; every 0.25 s)
``call_ready``        request, call_id, tool, args_digest     (arguments complete in the stream)
``model_end``         request, status (ok|error|cancelled), ttft, tokens_in, tokens_out,
                      finish_reason, tool_calls, error?
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
``finish_held``       outstanding                             (an answer was held, see futures.py)
``hold``              futures, expected, held, budget         (the next request waited for calls
                                                               about to finish, see AsyncExecutor.hold)

Secrets are removed from every line before it is written (:func:`Trace.emit`).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

TRACE_VERSION = 1
DEFAULT_DIR = Path(".asyncfc") / "runs"

Event = dict[str, Any]
Sink = Callable[[Event], None]


def digest(value: Any) -> str:
    """A short stable digest of a JSON value (arguments, specs)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def summarize_args(arguments: Any, limit: int = 60) -> str:
    """A one-line, bounded rendering of a call's arguments for labels."""
    if isinstance(arguments, dict):
        text = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in arguments.items())
    else:
        text = str(arguments)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Trace:
    """Stamps events with run time and hands them to every sink.

    The file writer is one sink; the CLI's progress printer (and later the
    live timeline) are others, so renderers see exactly what the file holds.
    """

    def __init__(self, secrets: Iterable[str | None] = (), clock: Callable[[], float] = time.monotonic) -> None:
        # Tests pass trio.current_time so MockClock runs have exact timestamps.
        self.clock = clock
        self.t0 = clock()
        self.sinks: list[Sink] = []
        self.events: list[Event] = []
        self._secrets = [s for s in secrets if s and len(s) >= 4]

    def now(self) -> float:
        return self.clock() - self.t0

    def emit(self, type: str, **fields: Any) -> Event:
        event: Event = {"type": type, "t": round(self.now(), 6), **fields}
        if self._secrets:
            event = _scrub(event, self._secrets)
        self.events.append(event)
        for sink in self.sinks:
            sink(event)
        return event


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    return value


class TraceWriter:
    """A sink that appends one JSON line per event and flushes it.

    Opening probes the file with a flushed newline (blank lines are skipped
    by the reader), so an unwritable path or a full disk fails before the run
    starts. A write that fails later (disk filled up mid-run) must not kill
    the run: the writer stops, keeps the error in ``failed``, and the CLI
    reports it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.failed: OSError | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "w", encoding="utf-8")
        try:
            self._file.write("\n")
            self._file.flush()
        except OSError:
            self._close_quietly()
            raise

    def __call__(self, event: Event) -> None:
        if self._file.closed:
            return
        try:
            self._file.write(json.dumps(event, ensure_ascii=False, default=str) + "\n")
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


def new_run_id() -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def default_trace_path(run_id: str, base: Path | None = None) -> Path:
    return (base or DEFAULT_DIR) / f"{run_id}.jsonl"


def header_fields(run_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "version": TRACE_VERSION,
        "run_id": run_id,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **fields,
    }


# --- reading ---------------------------------------------------------------------------


@dataclass
class Span:
    """A begin/end pair read back from a trace; ``end`` is None if the run died."""

    kind: str  # "model" or "tool"
    key: str  # request number or call id
    start: float
    end: float | None
    begin: Event
    finish: Event | None = None
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.finish is None:
            return "unfinished"
        return str(self.finish.get("status", "ok"))


@dataclass
class TraceData:
    path: Path | None
    header: Event
    events: list[Event]
    summary: Event | None
    truncated: bool  # the last line was cut, or the run never wrote its summary

    def spans(self, kind: str) -> list[Span]:
        """Model requests (``kind="model"``) or tool executions (``"tool"``)."""
        begin, end = f"{kind}_begin", f"{kind}_end"
        key = "request" if kind == "model" else "call_id"
        open_: dict[Any, Span] = {}
        out: list[Span] = []
        for ev in self.events:
            if ev["type"] == begin:
                span = Span(kind, str(ev[key]), ev["t"], None, ev)
                open_[ev[key]] = span
                out.append(span)
            elif ev["type"] == end and ev.get(key) in open_:
                span = open_.pop(ev[key])
                span.end, span.finish = ev["t"], ev
            elif kind == "model" and ev["type"] == "model_first_token" and ev.get(key) in open_:
                open_[ev[key]].marks["first_token"] = ev["t"]
        return out

    def of_type(self, type: str) -> list[Event]:
        return [ev for ev in self.events if ev["type"] == type]


class TraceError(Exception):
    pass


def read_trace(path: Path) -> TraceData:
    """Read a trace, tolerating a run that died mid-line or before its summary."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from None
    return parse_trace(text, Path(path))


def parse_trace(text: str, path: Path | None = None) -> TraceData:
    lines = text.splitlines()
    records: list[Event] = []
    truncated = False
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):  # the writer died mid-line
                truncated = True
                break
            raise TraceError(f"{path}: line {number} is not JSON") from None
    if not records or records[0].get("type") != "header":
        raise TraceError(f"{path}: not an asyncfc trace (no header line)")
    header, rest = records[0], records[1:]
    summary = rest[-1] if rest and rest[-1].get("type") == "summary" else None
    events = rest[:-1] if summary else rest
    return TraceData(path, header, events, summary, truncated or summary is None)
