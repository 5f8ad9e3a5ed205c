"""Running tool calls: one record per call, one place that runs it, modes as schedulers.

:class:`CallRecord` is everything known about one call, from the moment its
arguments completed in the stream to its outcome and how the model saw it.
:func:`run_call` is the only code that invokes a tool: it applies the global
and per-tool concurrency limits and the per-tool timeout, turns every
failure into an error result the model will see, and writes the
``tool_begin``/``tool_end`` events.

The agent loop (:mod:`asyncfc_cli.agent`) is the same for every mode; what
differs is a :class:`Scheduler`. The loop calls exactly these, in this order:

``running()``               once: the run's lifetime (leaving it cancels what still runs)
``add_earlier(futures)``    a continued conversation only, first: the earlier runs' futures
``before_request(msgs)``    before each request: anything to add to the conversation
``on_call_ready(call, n)``  a call's arguments are complete in the stream of request ``n``
``wants_cut(chars, calls)`` after each streamed text fragment: stop an answer begun too early
``text_is_final(calls)``    may the response's text be shown live (it can no longer be cut or held)
``after_response()``        the response ended with calls: the tool messages that go back
``accept_answer(cut)``      the response is an answer (or was cut): accept it, or take another turn

and reads ``records``, every call of the run. Modes are registered in
:mod:`asyncfc_cli.modes` (name -> scheduler, plus what the mode adds to the
conversation): ``sync`` (:class:`SyncScheduler`) runs a response's calls one
after another once it has ended; ``parallel`` (:class:`ParallelScheduler`)
runs them all at once (``ordered`` tools keep message order); ``async``
(:class:`asyncfc_cli.futures.scheduler.AsyncScheduler`) starts each as a
future the moment it is ready.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from asyncfc_cli.decoding import MAX_DEPTH, nesting_depth
from asyncfc_cli.events import ToolBegin, ToolEnd
from asyncfc_cli.model import ToolCallReady
from asyncfc_cli.trace import Trace, digest, summarize_args

CANCELLED = "cancelled: the run ended before the call finished"


@dataclass(eq=False)
class CallRecord:
    """One tool call from the stream to its outcome (compared by identity)."""

    call_id: str
    tool: str
    raw_arguments: str
    request: int
    arguments: Any = None  # parsed JSON, None when malformed; async: inputs substituted once bound
    # pending -> (waiting: for inputs, async) -> running -> ok | error | timeout | cancelled
    status: str = "pending"
    value: Any = None
    error: str | None = None
    start: float | None = None
    end: float | None = None
    max_chars: int | None = None  # longest result text the model is shown
    # Async mode: the future this call is, the futures it reads, and how the
    # model got its outcome (result | wait | message), so it gets it exactly once.
    future: str | None = None
    deps: list[str] = field(default_factory=list)
    delivered: str | None = None
    resolved: trio.Event = field(default_factory=trio.Event)

    @property
    def duration(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start

    @property
    def done(self) -> bool:
        return self.resolved.is_set()

    def tool_message(self) -> dict[str, Any]:
        """The chat message that returns this call's outcome to the model."""
        return {"role": "tool", "tool_call_id": self.call_id, "content": self.content()}

    def content(self) -> str:
        """The outcome as the text of a tool message, cut to ``max_chars``."""
        if self.status == "ok":
            text = self.value if isinstance(self.value, str) else json.dumps(self.value, ensure_ascii=False)
            return cap(text, self.max_chars)
        return json.dumps({"error": cap(self.error or self.status, self.max_chars)}, ensure_ascii=False)

    def outcome(self) -> Any:
        """The outcome as a JSON value inside a ``wait`` result or a delivery,
        cut to ``max_chars`` like a tool message; dependent calls still get
        the whole value."""
        if self.status != "ok":
            return {"error": cap(self.error or self.status, self.max_chars)}
        if self.max_chars is None:
            return self.value
        text = self.value if isinstance(self.value, str) else json.dumps(self.value, ensure_ascii=False)
        return self.value if len(text) <= self.max_chars else cap(text, self.max_chars)


def cap(text: str, limit: int | None) -> str:
    """Cut ``text`` to ``limit`` characters, saying how much was cut."""
    if limit is None or len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters cut]"


class Limits:
    """The concurrency limits of one run: a global one and one per tool."""

    def __init__(self, tools: dict[str, Any], global_limit: int, max_result_chars: int | None = None) -> None:
        self.max_result_chars = max_result_chars
        self.all = trio.CapacityLimiter(global_limit)
        self.per_tool = {
            name: trio.CapacityLimiter(tool.max_concurrency)
            for name, tool in tools.items()
            if getattr(tool, "max_concurrency", None)
        }


def parse_arguments(raw: str, depth: int | None = None) -> tuple[Any, str | None]:
    """Parse a call's argument JSON; an empty string means no arguments.

    NaN and Infinity are refused: no tool schema can ask for them, and they
    would make the trace and ``--json`` invalid JSON. So is nesting deeper
    than ``MAX_DEPTH`` (``depth``: as the stream's scanner counted it, else
    counted here when there are enough brackets for it to matter).
    """
    if not raw.strip():
        return {}, None
    if depth is None and raw.count("[") + raw.count("{") > MAX_DEPTH:
        depth = nesting_depth(raw)
    if depth is not None and depth > MAX_DEPTH:
        return None, (f"arguments are nested {depth} levels deep; at most {MAX_DEPTH} levels are accepted "
                      "(pass deeply nested data as a JSON string)")
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError as exc:
        where = f" at character {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        return None, f"arguments are not valid JSON ({message}{where}): {raw[:200]}"
    except RecursionError:
        return None, "arguments are nested too deeply"
    if not isinstance(value, dict):
        return None, f"arguments must be a JSON object, got {type(value).__name__}"
    return value, None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def new_record(call: ToolCallReady, request: int, max_chars: int | None = None) -> CallRecord:
    record = CallRecord(call.id, call.name, call.arguments, request, max_chars=max_chars)
    record.arguments, error = parse_arguments(call.arguments, call.depth)
    if error:
        record.status, record.error = "error", error
    return record


async def run_call(record: CallRecord, tools: dict[str, Any], limits: Limits, trace: Trace,
                   **trace_fields: Any) -> CallRecord:
    """Run one call to completion and fill in its outcome.

    Never raises for a tool's failure (it becomes ``record.error``); only
    cancellation propagates, after the call is recorded as cancelled. A
    record that already failed (malformed arguments, a bad reference) is
    recorded without running.
    """
    tool = tools.get(record.tool)
    try:
        if record.status == "error":
            begin(record, trace, trace_fields)
        elif tool is None:
            begin(record, trace, trace_fields)
            known = ", ".join(sorted(tools)) or "none"
            record.status, record.error = "error", f"unknown tool {record.tool!r}; available tools: {known}"
        else:
            await _invoke(record, tool, limits, lambda: begin(record, trace, trace_fields))
    except BaseException:
        # Only cancellation gets here (tool failures were caught in _invoke),
        # possibly grouped by a nursery inside the tool.
        if record.start is None:  # cancelled while queued for a concurrency slot
            begin(record, trace, trace_fields)
        record.status, record.error = "cancelled", CANCELLED
        finish(record, trace)
        raise
    finish(record, trace)
    return record


async def _invoke(record: CallRecord, tool: Any, limits: Limits, on_begin: Any) -> None:
    from asyncfc_cli.tools import ToolError

    timeout = tool.timeout if tool.timeout is not None else math.inf
    per_tool = limits.per_tool.get(record.tool)
    # A borrower must be hashable and unique per call.
    borrower = object()
    async with limits.all:
        if per_tool is not None:
            await per_tool.acquire_on_behalf_of(borrower)
        try:
            # tool_begin marks when the tool really starts, after any queueing
            # for a concurrency slot, so tool time is execution time.
            on_begin()
            record.status = "running"
            with trio.move_on_after(timeout) as scope:
                try:
                    record.value = await tool.invoke(record.arguments)
                    record.status = "ok"
                except ToolError as exc:
                    record.status, record.error = "error", str(exc)
                except Exception as exc:  # a tool bug is the model's problem to hear about, not a crash
                    record.status, record.error = "error", f"{type(exc).__name__}: {exc}"
            if scope.cancelled_caught:
                record.status, record.error = "timeout", f"timed out after {tool.timeout:g}s"
        finally:
            if per_tool is not None:
                per_tool.release_on_behalf_of(borrower)


def begin(record: CallRecord, trace: Trace, fields: dict[str, Any]) -> None:
    trace.emit(ToolBegin(
        call_id=record.call_id,
        tool=record.tool,
        args_digest=digest(record.raw_arguments),
        # Redacted before the cut: a secret cut in half would no longer match.
        args_summary=summarize_args(trace.redact(
            record.arguments if record.arguments is not None else record.raw_arguments)),
        **fields,
    ))
    record.start = trace.now()


def finish(record: CallRecord, trace: Trace) -> None:
    record.end = trace.now()
    if record.error:
        outcome: dict[str, Any] = {"error": trace.redact(record.error)[:500]}
    else:
        outcome = {"result_chars": len(record.content())}
    trace.emit(ToolEnd(call_id=record.call_id, tool=record.tool, status=record.status, **outcome))


# --- schedulers -----------------------------------------------------------------------


class Scheduler:
    """What one execution mode decides; the agent loop is the same for all.

    The base class is the part every mode shares: it keeps the run's call
    records and builds each call's record when its arguments are complete.
    """

    def __init__(self, tools: dict[str, Any], limits: Limits, trace: Trace) -> None:
        self.tools, self.limits, self.trace = tools, limits, trace
        self.records: list[CallRecord] = []  # every call of the run, in issue order
        self._response: list[CallRecord] = []  # the calls of the response being streamed

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The run's lifetime: leaving it cancels whatever is still running."""
        yield

    def before_request(self, messages: list[dict[str, Any]]) -> None:
        """Append to ``messages`` what the model should read before the next request."""

    def on_call_ready(self, call: ToolCallReady, request: int) -> None:
        record = new_record(call, request, self.limits.max_result_chars)
        self.records.append(record)
        self._response.append(record)

    def text_is_final(self, calls: int) -> bool:
        """True once the text of the response being streamed (with ``calls`` calls
        so far) can no longer be cut or held: live renderers may show it."""
        return True

    def add_earlier(self, futures: list[dict[str, Any]]) -> None:
        """A continued conversation: the futures of the runs before (async mode numbers on)."""

    def wants_cut(self, chars: int, calls: int) -> bool:
        """True to stop the stream: an answer (``chars`` of content and ``calls``
        calls so far) begun while outcomes are still unseen."""
        return False

    async def after_response(self) -> list[dict[str, Any]]:
        """The response's calls are all known: one tool message per call, in order."""
        raise NotImplementedError

    async def accept_answer(self, cut: bool) -> bool:
        """True to accept the answer; False to take another turn. ``cut``: the
        answer was stopped by :meth:`wants_cut` and the model never saw it."""
        return True

    def take_response(self) -> list[CallRecord]:
        response, self._response = self._response, []
        return response


class SyncScheduler(Scheduler):
    """The baseline: a response's calls run one after another once it ends; the model waits."""

    async def after_response(self) -> list[dict[str, Any]]:
        records = self.take_response()
        for record in records:
            await run_call(record, self.tools, self.limits, self.trace)
        return [r.tool_message() for r in records]


class ParallelScheduler(Scheduler):
    """Provider-style parallel tool calls: a response's calls run at once; the model waits for all.
    ``ordered`` tools keep message order among themselves."""

    async def after_response(self) -> list[dict[str, Any]]:
        records = self.take_response()
        previous: trio.Event | None = None
        async with trio.open_nursery() as nursery:
            for record in records:
                tool = self.tools.get(record.tool)
                if tool is not None and getattr(tool, "ordered", False):
                    turn = trio.Event()
                    nursery.start_soon(self._after, previous, turn, record)
                    previous = turn
                else:
                    nursery.start_soon(run_call, record, self.tools, self.limits, self.trace)
        return [r.tool_message() for r in records]

    async def _after(self, previous: trio.Event | None, turn: trio.Event, record: CallRecord) -> None:
        try:
            if previous is not None:
                await previous.wait()
            await run_call(record, self.tools, self.limits, self.trace)
        finally:
            turn.set()
