"""The trace events, defined once: one class per event type, and the two
conversions every reader and writer goes through.

:func:`to_line` turns an emitted event (a dict) into one line of strict JSON:
no NaN or Infinity (a non-finite number becomes ``null``), nothing that is
not a JSON value (it becomes its ``str``), and no text the file cannot hold
(a lone surrogate such as ``\\ud800``, which a model can send as a JSON
escape, is written as that escape). :func:`parse_event` turns one
decoded JSON value back into a typed event, or raises :class:`EventError`
naming the field that is wrong. The reader (``asyncfc_cli.trace``), the
analysis, the timeline (live and static), the exporters, ``asyncfc trace``
and the benchmarks all read events through :func:`parse_event`, so a line
they accept is a line every one of them can render.

What a valid event holds (beyond ``type`` and ``t``, see the classes below):

- ``t`` is seconds from the run's start: a finite number in ``[0, 1e9]``
  (1e9 seconds is 31 years; anything larger is a corrupt value, and would
  make a time axis meaningless);
- counts (``request``, tokens, ...) are integers in ``[0, 2**63)``, never
  ``true``/``false``;
- other seconds (``ttft``, ``wall``) are finite and in ``[0, 1e9]``;
- ids and names are strings; lists of ids are lists of strings;
- unknown extra fields are kept (a newer writer may add some) and ignored.

A typed event also reads like the JSON object it came from
(``ev["tool"]``, ``ev.get("future")``, ``dict(ev)``), which keeps scripts
and tests that index events working.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Annotated, Any, ClassVar

from asyncfc_cli.output import json_text, plain

MAX_SECONDS = 1e9
MAX_COUNT = 2**63 - 1

Seconds = Annotated[float, "seconds"]  # finite, 0 <= x <= MAX_SECONDS
Number = Annotated[float, "number"]  # finite, >= 0, unbounded (e.g. a wait's timeout)
Count = Annotated[int, "count"]  # 0 <= n <= MAX_COUNT, not a bool
Text = str
Ids = list[str]
Json = Annotated[Any, "json"]  # any JSON value; its reader checks its shape (asyncfc_cli/continuation.py)


class EventError(ValueError):
    """A JSON value that is not a valid trace event; the message says why."""


# --- writing ---------------------------------------------------------------------------


def to_line(event: Mapping[str, Any]) -> str:
    """One line of strict JSON (no trailing newline) for an emitted event.

    See :func:`asyncfc_cli.output.json_text`: non-finite numbers become
    ``null``, values that are not JSON become their text, and a line with
    a character UTF-8 cannot encode (a lone surrogate) is written in its
    ASCII form, so it reads back to the same string.
    """
    return json_text(event, "utf-8")


# --- reading ---------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (strict JSON has no NaN or Infinity)")


def loads(text: str | bytes) -> Any:
    """Strict JSON: ``NaN``/``Infinity`` are errors, not floats."""
    return json.loads(text, parse_constant=_reject_constant)


@dataclass(frozen=True, eq=False, kw_only=True)
class TraceEvent(Mapping):
    """Fields every event has. ``raw`` is the JSON object as read."""

    TYPE: ClassVar[str] = ""
    # Only for live sinks (the streamed answer): never written to the trace file.
    LIVE_ONLY: ClassVar[bool] = False
    t: Seconds = 0.0  # stamped by Trace.emit; required in a line read back
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.raw:  # made by a writer: the JSON object is its fields
            object.__setattr__(self, "raw", encode(self))

    @property
    def type(self) -> str:
        return self.TYPE

    # Mapping over the JSON object, so an event reads like the line it came from.
    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


EVENT_TYPES: dict[str, type[TraceEvent]] = {}
# class -> (field, kind, optional, has a default) for each field but ``raw``
_FIELDS: dict[type[TraceEvent], list[tuple[str, str, bool, bool]]] = {}
# class -> its fields declared lenient()
_LENIENT: dict[type[TraceEvent], frozenset[str]] = {}
# class -> (field, written when None) for each field a writer sets, in line order
_WRITTEN: dict[type[TraceEvent], list[tuple[str, bool]]] = {}


def nullable() -> Any:
    """An optional field a writer always writes, as ``null`` when it has no value
    (a reader tells "none" from "not recorded"); other optional fields are left
    out of the line when None."""
    return field(default=None, metadata={"null": True})


def lenient(default: Any = None) -> Any:
    """A field readers never checked before it joined the schema: a value of the
    wrong kind reads as the default instead of making the line invalid, so every
    trace that read before still reads."""
    return field(default=default, metadata={"lenient": True})


def encode(event: TraceEvent) -> dict[str, Any]:
    """The JSON object a writer's event is written as: ``type``, ``t``, then its
    fields in the order of the class; an optional field without a value is left
    out unless it is :func:`nullable`."""
    out: dict[str, Any] = {"type": event.TYPE, "t": event.t}
    for name, null in _WRITTEN[type(event)]:
        value = getattr(event, name)
        if value is not None or null:
            out[name] = value
    return out


def field_names(cls: type[TraceEvent]) -> list[str]:
    """The fields a writer sets (``t`` and ``raw`` aside), in line order."""
    return [name for name, _ in _WRITTEN[cls]]


def _event(name: str):
    """Register an event class under its ``type`` and read its field kinds once."""

    def register(cls: type[TraceEvent]) -> type[TraceEvent]:
        cls.TYPE = name
        EVENT_TYPES[name] = cls
        hints = typing.get_type_hints(cls, include_extras=True)
        spec = []
        for f in fields(cls):
            if f.name == "raw":
                continue
            ann = hints[f.name]
            members = typing.get_args(ann) if typing.get_origin(ann) in (typing.Union, types.UnionType) else ()
            optional = type(None) in members
            if optional:
                ann = next(a for a in members if a is not type(None))
            # ``t`` has a default for writers only: a line without it is not an event.
            has_default = f.name != "t" and (f.default is not MISSING or f.default_factory is not MISSING)
            spec.append((f.name, _kind(ann), optional, has_default))
        _FIELDS[cls] = spec
        _LENIENT[cls] = frozenset(f.name for f in fields(cls) if f.metadata.get("lenient"))
        # A field without a default is always written (null too: the reader reports it).
        _WRITTEN[cls] = [(f.name, bool(f.metadata.get("null")) or (f.default is MISSING and f.default_factory is MISSING))
                         for f in fields(cls) if f.name not in ("t", "raw")]
        return cls

    return register


def _kind(ann: Any) -> str:
    if typing.get_origin(ann) is Annotated:
        return typing.get_args(ann)[1]
    if ann is str:
        return "text"
    if ann is bool:
        return "flag"
    if typing.get_origin(ann) is list:
        return "ids"
    if typing.get_origin(ann) is dict:
        return "names"
    raise TypeError(f"no checker for {ann!r}")  # a programming error in this module


def _check(kind: str, value: Any) -> Any:
    """The value if it is of ``kind``, else raise ValueError with what was expected."""
    if kind == "text":
        if isinstance(value, str):
            return value
        raise ValueError("must be a string")
    if kind == "ids":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise ValueError("must be a list of strings")
    if kind == "flag":
        if isinstance(value, bool):
            return value
        raise ValueError("must be true or false")
    if kind == "names":
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return dict(value)
        raise ValueError("must be an object of strings")
    if kind == "json":
        return value
    if kind == "count":
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
            return value
        raise ValueError(f"must be a whole number from 0 to {MAX_COUNT}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("must be a number")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError("must be a finite number >= 0")
    if kind == "seconds" and number > MAX_SECONDS:
        raise ValueError(f"must be at most {MAX_SECONDS:g} seconds")
    return number


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def parse_event(value: Any) -> TraceEvent:
    """The typed event for one decoded JSON value; :class:`EventError` if it is not one."""
    if not isinstance(value, dict):
        raise EventError(f"not a JSON object (got {type(value).__name__ if value is not None else 'null'})")
    name = value.get("type")
    if not isinstance(name, str):
        raise EventError("no event type (a \"type\" string)")
    cls = EVENT_TYPES.get(name)
    if cls is None:
        raise EventError(f"unknown event type {_shown(name)}")
    data = _COMPAT.get(name, lambda v: v)(value)
    kwargs: dict[str, Any] = {}
    loose = _LENIENT[cls]
    for fname, kind, optional, has_default in _FIELDS[cls]:
        if fname not in data:
            if has_default:
                continue
            raise EventError(f"{name}: {fname} is missing")
        given = data[fname]
        if given is None:
            if optional:
                kwargs[fname] = None
                continue
            raise EventError(f"{name}: {fname} must not be null")
        try:
            kwargs[fname] = _check(kind, given)
        except ValueError as exc:
            if fname in loose:
                continue  # read as its default, as before it joined the schema
            raise EventError(f"{name}: {fname} {exc} (got {_shown(given)})") from None
    return cls(raw=value, **kwargs)


def parse_many(items: Iterable[Any]) -> list[TraceEvent]:
    """Typed events from typed events or emitted dicts; what is not a valid event is dropped.

    For live sinks and programmatic callers, which have no line to report
    a problem against (files go through :func:`asyncfc_cli.trace.parse_trace`).
    """
    out = []
    for item in items:
        if isinstance(item, TraceEvent):
            out.append(item)
            continue
        try:
            out.append(parse_event(plain(item)))
        except EventError:
            pass
    return out


def from_emitted(event: Mapping[str, Any]) -> TraceEvent | None:
    """The typed event for an event a live sink received, or None if it is not valid."""
    found = parse_many([event])
    return found[0] if found else None


# Traces written before ordered_after held a future id recorded ``false`` for "none".
_COMPAT = {
    "future_created": lambda v: {**v, "ordered_after": None} if v.get("ordered_after") is False else v,
}


# --- the event types (docs: asyncfc_cli/trace.py) ----------------------------------------


@_event("header")
@dataclass(frozen=True, eq=False, kw_only=True)
class Header(TraceEvent):
    version: Count | None = nullable()
    run_id: Text | None = nullable()
    started_at: Text | None = nullable()
    task: Text | None = nullable()
    agent: Text | None = nullable()
    model: Text | None = nullable()
    model_alias: Text | None = lenient()
    provider: Text | None = lenient()
    litellm_model: Text | None = nullable()
    mode: Text | None = nullable()
    spec_digest: Text | None = nullable()
    tools: Ids | None = nullable()
    tool_kinds: dict[str, str] | None = lenient()  # tool name -> the kind of its source
    cassette: dict[str, str] | None = lenient()  # {"replayed": path, "speed", "match"} or {"recorded": path}
    continues: Text | None = lenient()  # the run whose conversation this one continues (run --continue)


@_event("model_begin")
@dataclass(frozen=True, eq=False, kw_only=True)
class ModelBegin(TraceEvent):
    request: Count
    messages: Count | None = None


@_event("model_first_token")
@dataclass(frozen=True, eq=False, kw_only=True)
class ModelFirstToken(TraceEvent):
    request: Count


@_event("model_progress")
@dataclass(frozen=True, eq=False, kw_only=True)
class ModelProgress(TraceEvent):
    request: Count
    chunks: Count


@_event("call_ready")
@dataclass(frozen=True, eq=False, kw_only=True)
class CallReady(TraceEvent):
    request: Count | None = None
    call_id: Text
    tool: Text
    args_digest: Text | None = None


@_event("model_end")
@dataclass(frozen=True, eq=False, kw_only=True)
class ModelEnd(TraceEvent):
    request: Count
    status: Text
    ttft: Seconds | None = nullable()
    tokens_in: Count | None = None
    tokens_out: Count | None = None
    finish_reason: Text | None = None
    tool_calls: Count | None = None
    chars: Count | None = lenient()  # a cut answer: the characters streamed before the cut
    error: Text | None = None


@_event("tool_begin")
@dataclass(frozen=True, eq=False, kw_only=True)
class ToolBegin(TraceEvent):
    call_id: Text
    tool: Text
    args_digest: Text | None = None
    args_summary: Text = ""
    future: Text | None = None
    deps: Ids | None = None


@_event("tool_end")
@dataclass(frozen=True, eq=False, kw_only=True)
class ToolEnd(TraceEvent):
    call_id: Text
    tool: Text
    status: Text
    error: Text | None = None
    result_chars: Count | None = None


@_event("retry")
@dataclass(frozen=True, eq=False, kw_only=True)
class Retry(TraceEvent):
    request: Count | None = nullable()
    attempt: Count
    error: Text = ""


@_event("summary")
@dataclass(frozen=True, eq=False, kw_only=True)
class Summary(TraceEvent):
    status: Text
    answer_chars: Count | None = None
    turns: Count | None = None
    requests: Count | None = None
    tool_calls: Count | None = None
    tokens_in: Count | None = None
    tokens_out: Count | None = None
    wall: Seconds | None = None
    error: Text | None = None


@_event("future_created")
@dataclass(frozen=True, eq=False, kw_only=True)
class FutureCreated(TraceEvent):
    future: Text
    call_id: Text
    tool: Text
    deps: Ids = field(default_factory=list)
    request: Count | None = None
    ordered_after: Text | None = nullable()


@_event("future_resolved")
@dataclass(frozen=True, eq=False, kw_only=True)
class FutureResolved(TraceEvent):
    future: Text
    status: Text


@_event("wait_begin")
@dataclass(frozen=True, eq=False, kw_only=True)
class WaitBegin(TraceEvent):
    call_id: Text
    futures: Ids = field(default_factory=list)
    timeout: Number | None = nullable()


@_event("wait_end")
@dataclass(frozen=True, eq=False, kw_only=True)
class WaitEnd(TraceEvent):
    call_id: Text
    ready: Ids = field(default_factory=list)
    pending: Ids = field(default_factory=list)


@_event("model_text")
@dataclass(frozen=True, eq=False, kw_only=True)
class ModelText(TraceEvent):
    """Text the model decoded that stays in the conversation: never cut short
    or held by the finish rule (asyncfc_cli/agent.py, ``TextRelease``). Live
    only: the answer renderer reads it; the conversation event keeps the text."""

    LIVE_ONLY: ClassVar[bool] = True
    request: Count
    text: Text


@_event("conversation")
@dataclass(frozen=True, eq=False, kw_only=True)
class Conversation(TraceEvent):
    """The conversation as the model saw it when the run ended, secrets masked,
    and what ``asyncfc run --continue`` needs to go on from it: outcomes the
    model has not seen (``unseen``: call_id, future, content, outcome) and every
    future's outcome (``futures``: future, tool, status, value, error), so a
    continued async run numbers on and can still reference them."""

    messages: Json
    unseen: Json = None
    futures: Json = None


@_event("delivery")
@dataclass(frozen=True, eq=False, kw_only=True)
class Delivery(TraceEvent):
    futures: Ids
    via: Text | None = None


@_event("finish_held")
@dataclass(frozen=True, eq=False, kw_only=True)
class FinishHeld(TraceEvent):
    outstanding: Ids = field(default_factory=list)
    cut: bool | None = lenient()  # the answer was stopped early rather than held whole


@_event("hold")
@dataclass(frozen=True, eq=False, kw_only=True)
class Hold(TraceEvent):
    futures: Ids = field(default_factory=list)
    expected: Number | None = nullable()
    held: Number | None = None
    budget: Number | None = None


# --- tool sources (asyncfc_cli/tools) ------------------------------------------------------


@_event("tool_source")
@dataclass(frozen=True, eq=False, kw_only=True)
class ToolSourceOpened(TraceEvent):
    name: Text
    kind: Text
    server: Text | None = nullable()
    tools: Ids = field(default_factory=list)
    protocol: Text | None = nullable()
    began: Seconds | None = lenient()  # when its start began (run time); ``t`` is when it was ready


@_event("tool_source_error")
@dataclass(frozen=True, eq=False, kw_only=True)
class ToolSourceError(TraceEvent):
    name: Text
    error: Text = ""


@_event("tool_progress")
@dataclass(frozen=True, eq=False, kw_only=True)
class ToolProgress(TraceEvent):
    call_id: Text
    tool: Text
    mcp_task: Text | None = nullable()
    status: Text
    message: Text | None = None


@_event("tool_blocked")
@dataclass(frozen=True, eq=False, kw_only=True)
class ToolBlocked(TraceEvent):
    call_id: Text
    tool: Text
    seconds: Number


# --- limits shared by many runs (asyncfc_cli/limits.py, asyncfc batch) ---------------------


@_event("limit_wait")
@dataclass(frozen=True, eq=False, kw_only=True)
class LimitWait(TraceEvent):
    request: Count | None = nullable()
    seconds: Number
    reason: Text  # concurrency (the model's request slots were taken) | rate_limit (a shared cooldown)
