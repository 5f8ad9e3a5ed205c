"""Running tool calls: one place that runs a call, with policies layered on top.

:func:`run_call` is the only code that invokes a tool. It parses arguments,
applies the global and per-tool concurrency limits and the per-tool timeout,
turns every failure into an error result the model will see, and writes the
``tool_begin``/``tool_end`` events. The modes differ only in *when* they
call it:

``sync``      one call after another, in the order the model wrote them;
``parallel``  all calls of one assistant message at once, the model waits for all;
``async``     each call as soon as its arguments are complete in the stream,
              as a future (:class:`AsyncExecutor`; protocol in ``futures.py``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import trio

from asyncfc_cli.futures import Future, PathError, find_references, handle, parse_future_id, substitute
from asyncfc_cli.model import ToolCallReady
from asyncfc_cli.trace import Trace, digest, summarize_args


@dataclass
class CallRecord:
    """One tool call from request to result."""

    call_id: str
    tool: str
    raw_arguments: str
    request: int
    arguments: Any = None  # parsed JSON, None when malformed
    status: str = "pending"  # ok | error | timeout | cancelled
    value: Any = None
    error: str | None = None
    start: float | None = None
    end: float | None = None
    max_chars: int | None = None  # longest result text the model is shown
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start

    def tool_message(self) -> dict[str, Any]:
        """The chat message that returns this call's outcome to the model."""
        return {"role": "tool", "tool_call_id": self.call_id, "content": self.content()}

    def content(self) -> str:
        if self.status == "ok":
            text = self.value if isinstance(self.value, str) else json.dumps(self.value, ensure_ascii=False)
            return cap(text, self.max_chars)
        return json.dumps({"error": cap(self.error or self.status, self.max_chars)}, ensure_ascii=False)

    def shown_value(self) -> Any:
        """The value as the model may see it: whole, or cut to ``max_chars`` as text."""
        if self.max_chars is None or self.status != "ok":
            return self.value
        text = self.value if isinstance(self.value, str) else json.dumps(self.value, ensure_ascii=False)
        return self.value if len(text) <= self.max_chars else cap(text, self.max_chars)


def cap(text: str, limit: int | None) -> str:
    """Cut ``text`` to ``limit`` characters, saying how much was cut.

    Only what the model sees is cut; dependent calls in async mode still get
    the whole value.
    """
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


def parse_arguments(raw: str) -> tuple[Any, str | None]:
    """Parse a call's argument JSON; an empty string means no arguments."""
    if not raw.strip():
        return {}, None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, f"arguments are not valid JSON ({exc.msg} at character {exc.pos}): {raw[:200]}"
    if not isinstance(value, dict):
        return None, f"arguments must be a JSON object, got {type(value).__name__}"
    return value, None


def new_record(call: ToolCallReady, request: int, max_chars: int | None = None) -> CallRecord:
    record = CallRecord(call.id, call.name, call.arguments, request, max_chars=max_chars)
    record.arguments, error = parse_arguments(call.arguments)
    if error:
        record.status, record.error = "error", error
    return record


async def run_call(
    record: CallRecord,
    tools: dict[str, Any],
    limits: Limits,
    trace: Trace,
    **trace_fields: Any,
) -> CallRecord:
    """Run one call to completion and fill in its outcome.

    Never raises for a tool's failure (it becomes ``record.error``); only
    cancellation propagates, after the call is recorded as cancelled.
    """
    tool = tools.get(record.tool)
    try:
        if record.status == "error":
            _begin(record, trace, trace_fields)  # malformed arguments: recorded, nothing to run
        elif tool is None:
            _begin(record, trace, trace_fields)
            known = ", ".join(sorted(tools)) or "none"
            record.status, record.error = "error", f"unknown tool {record.tool!r}; available tools: {known}"
        else:
            await _invoke(record, tool, limits, lambda: _begin(record, trace, trace_fields))
    except BaseException:
        # Only cancellation gets here (tool failures were caught in _invoke),
        # possibly grouped by a nursery inside the tool.
        if record.start is None:  # cancelled while queued for a concurrency slot
            _begin(record, trace, trace_fields)
        record.status, record.error = "cancelled", "cancelled: the run ended before the call finished"
        _finish(record, trace)
        raise
    _finish(record, trace)
    return record


async def _invoke(record: CallRecord, tool: Any, limits: Limits, begin: Any) -> None:
    from asyncfc_cli.tools import ToolError

    timeout = tool.timeout if tool.timeout is not None else math.inf
    per_tool = limits.per_tool.get(record.tool)
    # A borrower must be hashable and unique per call; the record (a dataclass
    # compared by value) is neither.
    borrower = object()
    async with limits.all:
        if per_tool is not None:
            await per_tool.acquire_on_behalf_of(borrower)
        try:
            # tool_begin marks when the tool really starts, after any queueing
            # for a concurrency slot, so tool time is execution time.
            begin()
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


def _begin(record: CallRecord, trace: Trace, fields: dict[str, Any]) -> None:
    trace.emit(
        "tool_begin",
        call_id=record.call_id,
        tool=record.tool,
        args_digest=digest(record.raw_arguments),
        args_summary=summarize_args(trace.redact(
            record.arguments if record.arguments is not None else record.raw_arguments)),
        **fields,
    )
    record.start = trace.now()


def _finish(record: CallRecord, trace: Trace) -> None:
    record.end = trace.now()
    fields: dict[str, Any] = {"call_id": record.call_id, "tool": record.tool, "status": record.status}
    if record.error:
        fields["error"] = trace.redact(record.error)[:500]
    else:
        fields["result_chars"] = len(record.content())
    trace.emit("tool_end", **fields)


async def run_sync(records: list[CallRecord], tools: dict[str, Any], limits: Limits, trace: Trace) -> None:
    for record in records:
        await run_call(record, tools, limits, trace)


async def run_parallel(records: list[CallRecord], tools: dict[str, Any], limits: Limits, trace: Trace) -> None:
    """All calls at once, except that ``ordered`` tools keep message order."""
    previous: trio.Event | None = None
    async with trio.open_nursery() as nursery:
        for record in records:
            tool = tools.get(record.tool)
            if tool is not None and getattr(tool, "ordered", False):
                done = trio.Event()
                nursery.start_soon(_after, previous, done, record, tools, limits, trace)
                previous = done
            else:
                nursery.start_soon(run_call, record, tools, limits, trace)


async def _after(
    previous: trio.Event | None, done: trio.Event, record: CallRecord, tools: dict[str, Any], limits: Limits,
    trace: Trace,
) -> None:
    try:
        if previous is not None:
            await previous.wait()
        await run_call(record, tools, limits, trace)
    finally:
        done.set()


class AsyncExecutor:
    """Async mode: every call becomes a future that starts the moment it is ready.

    Calls run as tasks in the run's nursery, so leaving the run cancels them.
    A call waits inside its task for the futures it references (dataflow) and,
    for ``ordered`` tools, for the previous ordered call; the model never
    waits unless it calls ``wait`` or answers with futures outstanding.
    """

    def __init__(self, tools: dict[str, Any], limits: Limits, trace: Trace, nursery: trio.Nursery) -> None:
        self.tools, self.limits, self.trace, self.nursery = tools, limits, trace, nursery
        self.futures: dict[str, Future] = {}
        self._by_call: dict[str, Future] = {}
        self._last_ordered: Future | None = None  # the chain of ordered calls

    # -- issuing ---------------------------------------------------------------------

    def start(self, call: ToolCallReady, request: int) -> CallRecord:
        """Create the call's future and start it; returns its record."""
        record = new_record(call, request, self.limits.max_result_chars)
        future_id = f"f{len(self.futures) + 1}"
        refs = find_references(record.arguments) if record.arguments is not None else []
        deps = list(dict.fromkeys(ref.future for ref in refs))
        future = Future(future_id, call.id, call.name, deps, record=record)
        record.extra.update(future=future_id, deps=deps)
        unknown = [d for d in deps if d not in self.futures]
        if unknown and record.status != "error":
            known = ", ".join(self.futures) or "none yet"
            record.status = "error"
            record.error = f"unknown future ${unknown[0]} (futures issued so far: {known})"
        after: Future | None = None
        tool = self.tools.get(call.name)
        if tool is not None and getattr(tool, "ordered", False):
            after, self._last_ordered = self._last_ordered, future
        self.futures[future_id] = future
        self._by_call[call.id] = future
        self.trace.emit("future_created", future=future_id, call_id=call.id, tool=call.name, deps=deps,
                        request=request, ordered_after=after.id if after is not None else None)
        if record.status == "error":
            # Malformed arguments or a bad reference: resolved on the spot, so
            # the model reads the error in this call's own tool message.
            _begin(record, self.trace, {"future": future_id, "deps": deps})
            _finish(record, self.trace)
            self._resolve(future)
            if after is not None:
                self._last_ordered = after  # nothing ran: the chain goes on from the previous call
        else:
            self.nursery.start_soon(self._run, future, after)
        return record

    def _resolve(self, future: Future) -> None:
        record = future.record
        future.state, future.value, future.error = record.status, record.value, record.error
        future.resolved.set()
        self.trace.emit("future_resolved", future=future.id, status=record.status)

    async def _run(self, future: Future, after: Future | None) -> None:
        record = future.record
        try:
            if record.status != "error" and future.deps:
                future.state = "waiting"
                for dep in future.deps:
                    await self.futures[dep].resolved.wait()
                self._bind_inputs(future)
            if after is not None:
                await after.resolved.wait()
            future.state = "running"
            await run_call(record, self.tools, self.limits, self.trace, future=future.id, deps=future.deps)
        except BaseException:
            if record.status == "pending":
                record.status, record.error = "cancelled", "cancelled: the run ended before the call finished"
            raise
        finally:
            self._resolve(future)

    def _bind_inputs(self, future: Future) -> None:
        record = future.record
        failed = [d for d in future.deps if self.futures[d].state != "ok"]
        if failed:
            dep = self.futures[failed[0]]
            record.status = "error"
            record.error = f"dependency ${dep.id} ({dep.tool}) failed: {dep.error or dep.state}"
            return
        try:
            record.arguments = substitute(record.arguments, {d: self.futures[d].value for d in future.deps})
        except PathError as exc:
            record.status, record.error = "error", f"bad reference in arguments: {exc}"

    # -- what the model sees --------------------------------------------------------

    async def hold(self, records: list[CallRecord], budget: float | None) -> None:
        """Hold the next request briefly when this response's calls are about to finish.

        A pending handle costs the model at least one more round trip (time
        to first token again) to get the value. When every call still running
        is expected to end within that cost, judged from how long the same
        tool took earlier in this run, waiting for it is cheaper, and its
        value goes back directly. Never longer than ``budget``; a tool with
        no history is not waited for.
        """
        await trio.lowlevel.checkpoint()  # calls started at the end of the stream get to run
        futures = [self._by_call[r.call_id] for r in records]
        pending = [f for f in futures if not f.done]
        if not pending or not budget:
            return
        expected = [self._expected_remaining(f) for f in pending]
        if any(e is None for e in expected) or max(expected) > budget:  # type: ignore[type-var]
            return
        begin = self.trace.now()
        with trio.move_on_after(budget):
            for future in pending:
                await future.resolved.wait()
        self.trace.emit("hold", futures=[f.id for f in pending], expected=round(max(expected), 6),
                        held=round(self.trace.now() - begin, 6), budget=round(budget, 6))

    def _expected_remaining(self, future: Future) -> float | None:
        past = sorted(
            f.record.duration for f in self.futures.values()
            if f.tool == future.tool and f.done and f.state == "ok" and f.record.duration is not None
        )
        if not past:
            return None
        started = future.record.start
        elapsed = 0.0 if started is None else self.trace.now() - started
        return max(past[len(past) // 2] - elapsed, 0.0)

    def tool_message(self, record: CallRecord) -> dict[str, Any]:
        """The result itself if the call already finished, else a pending handle."""
        future = self._by_call[record.call_id]
        if future.done and not future.delivered:
            self._mark([future], "result")
            content = record.content()
        else:
            content = handle(future.id)
        return {"role": "tool", "tool_call_id": record.call_id, "content": content}

    def take_resolved(self, via: str = "message") -> dict[str, Any]:
        """Outcomes resolved but not yet shown to the model, marked as delivered."""
        ready = [f for f in self.futures.values() if f.done and not f.delivered]
        self._mark(ready, via)
        return {f.id: f.outcome() for f in ready}

    def outstanding(self) -> list[str]:
        """Futures the model has not seen the outcome of."""
        return [f.id for f in self.futures.values() if not f.delivered]

    async def settle(self) -> None:
        for future in list(self.futures.values()):
            await future.resolved.wait()

    async def wait(self, call: ToolCallReady) -> str:
        """Serve one ``wait`` call: block on the chosen futures, return their outcomes."""
        args, error = parse_arguments(call.arguments)
        if error:
            return json.dumps({"error": f"wait: {error}"})
        raw_ids = args.get("futures")
        if isinstance(raw_ids, str):
            raw_ids = [raw_ids]
        if not isinstance(raw_ids, list) or not raw_ids:
            return json.dumps({"error": 'wait needs futures=["f1", ...]: the ids of the handles to wait for'})
        timeout = args.get("timeout")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout < 0):
            return json.dumps({"error": "wait: timeout must be a non-negative number of seconds"})
        ids = [parse_future_id(r) for r in raw_ids]
        found = [self.futures[i] for i in ids if i in self.futures]
        self.trace.emit("wait_begin", call_id=call.id, futures=[f.id for f in found], timeout=timeout)
        with trio.move_on_after(math.inf if timeout is None else timeout):
            for future in found:
                await future.resolved.wait()
        out: dict[str, Any] = {}
        pending: list[str] = []
        fresh: list[Future] = []
        for raw, fid in zip(raw_ids, ids):
            future = self.futures.get(fid) if fid else None
            if future is None:
                out[str(raw)] = {"error": f"unknown future {raw!r}; issued: {', '.join(self.futures) or 'none'}"}
            elif not future.done:
                pending.append(future.id)
            elif future.delivered:
                out[future.id] = {"note": f"already delivered ({future.delivered})"}
            else:
                out[future.id] = future.outcome()
                fresh.append(future)
        self._mark(fresh, "wait")
        if pending:
            out["pending"] = pending
        self.trace.emit("wait_end", call_id=call.id, ready=[f.id for f in fresh], pending=pending)
        return json.dumps(out, ensure_ascii=False)

    def _mark(self, futures: list[Future], via: str) -> None:
        for future in futures:
            future.delivered = via
        if futures:
            self.trace.emit("delivery", futures=[f.id for f in futures], via=via)
