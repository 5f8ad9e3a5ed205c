"""Running tool calls: one place that runs a call, with policies layered on top.

:func:`run_call` is the only code that invokes a tool. It parses arguments,
applies the global and per-tool concurrency limits and the per-tool timeout,
turns every failure into an error result the model will see, and writes the
``tool_begin``/``tool_end`` events. The modes differ only in *when* they
call it:

``sync``      one call after another, in the order the model wrote them;
``parallel``  all calls of one assistant message at once, the model waits for all;
``async``     (futures, see ``futures.py``) each call as soon as its arguments
              are complete in the stream.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import trio

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
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        return None if self.start is None or self.end is None else self.end - self.start

    def tool_message(self) -> dict[str, Any]:
        """The chat message that returns this call's outcome to the model."""
        return {"role": "tool", "tool_call_id": self.call_id, "content": self.content()}

    def content(self) -> str:
        if self.status == "ok":
            return self.value if isinstance(self.value, str) else json.dumps(self.value, ensure_ascii=False)
        return json.dumps({"error": self.error or self.status}, ensure_ascii=False)


class Limits:
    """The concurrency limits of one run: a global one and one per tool."""

    def __init__(self, tools: dict[str, Any], global_limit: int) -> None:
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


def new_record(call: ToolCallReady, request: int) -> CallRecord:
    record = CallRecord(call.id, call.name, call.arguments, request)
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
    trace.emit(
        "tool_begin",
        call_id=record.call_id,
        tool=record.tool,
        args_digest=digest(record.raw_arguments),
        args_summary=summarize_args(record.arguments if record.arguments is not None else record.raw_arguments),
        **trace_fields,
    )
    record.start = trace.now()
    try:
        if record.status == "error":
            pass  # malformed arguments: recorded, nothing to run
        elif tool is None:
            known = ", ".join(sorted(tools)) or "none"
            record.status, record.error = "error", f"unknown tool {record.tool!r}; available tools: {known}"
        else:
            await _invoke(record, tool, limits)
    except trio.Cancelled:
        record.status, record.error = "cancelled", "cancelled: the run ended before the call finished"
        _finish(record, trace)
        raise
    _finish(record, trace)
    return record


async def _invoke(record: CallRecord, tool: Any, limits: Limits) -> None:
    from asyncfc_cli.tools import ToolError

    timeout = tool.timeout if tool.timeout is not None else math.inf
    per_tool = limits.per_tool.get(record.tool)
    async with limits.all:
        if per_tool is not None:
            await per_tool.acquire_on_behalf_of(record)
        try:
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
                per_tool.release_on_behalf_of(record)


def _finish(record: CallRecord, trace: Trace) -> None:
    record.end = trace.now()
    fields: dict[str, Any] = {"call_id": record.call_id, "tool": record.tool, "status": record.status}
    if record.error:
        fields["error"] = record.error[:500]
    else:
        fields["result_chars"] = len(record.content())
    trace.emit("tool_end", **fields)


async def run_sync(records: list[CallRecord], tools: dict[str, Any], limits: Limits, trace: Trace) -> None:
    for record in records:
        await run_call(record, tools, limits, trace)


async def run_parallel(records: list[CallRecord], tools: dict[str, Any], limits: Limits, trace: Trace) -> None:
    async with trio.open_nursery() as nursery:
        for record in records:
            nursery.start_soon(run_call, record, tools, limits, trace)
