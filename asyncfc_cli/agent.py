"""The agent loop: model turn, tool calls, repeat until an answer or a limit.

The loop knows nothing about terminals: it reads a :class:`RunSpec`-like
:class:`AgentRun`, talks to a :class:`~asyncfc_cli.model.ModelClient`,
hands calls to the executor and reports everything as trace events.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import trio

from asyncfc_cli import executor, futures
from asyncfc_cli.executor import AsyncExecutor, CallRecord, Limits
from asyncfc_cli.model import Decoding, FirstToken, ModelClient, ModelError, StreamDone, TextDelta, ToolCallReady
from asyncfc_cli.trace import Trace, digest

# How a run ended; the CLI maps these to exit codes.
OK, ERROR, MAX_TURNS, TIMEOUT, INTERRUPTED = "ok", "error", "max_turns", "timeout", "interrupted"


@dataclass
class AgentRun:
    """The parts of a validated spec the loop needs."""

    prompt: str
    instructions: str
    tools: dict[str, Any]  # name -> Tool
    mode: str
    max_turns: int
    timeout: float | None
    max_concurrency: int
    futures_instruction: str | None = None  # None: futures.INSTRUCTION
    max_result_chars: int | None = None  # longest tool result text the model is shown


@dataclass
class RunResult:
    status: str
    answer: str | None
    calls: list[CallRecord] = field(default_factory=list)
    error: str | None = None
    turns: int = 0
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    wall: float = 0.0
    messages: list[dict[str, Any]] = field(default_factory=list)
    last_ttft: float | None = None  # of the latest request: what one more round trip costs at least


def is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C or cancellation from outside, possibly wrapped by trio nurseries."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_interrupt(e) for e in exc.exceptions)
    return isinstance(exc, (KeyboardInterrupt, trio.Cancelled))


def initial_messages(run: AgentRun) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = run.instructions.strip()
    if run.mode == "async":
        instruction = futures.INSTRUCTION if run.futures_instruction is None else run.futures_instruction
        system = "\n\n".join(p for p in (system, instruction.strip()) if p)
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": run.prompt})
    return messages


async def run_agent(run: AgentRun, client: ModelClient, trace: Trace) -> RunResult:
    """Run the loop to an answer, a limit, or cancellation; always writes a summary.

    A ``KeyboardInterrupt`` or outer cancellation still closes the trace with
    status ``interrupted`` before it propagates.
    """
    result = RunResult(status=ERROR, answer=None, messages=initial_messages(run))
    schemas = [tool.openai_schema() for tool in run.tools.values()]
    if run.mode == "async":
        schemas.append(futures.WAIT_SCHEMA)
    limits = Limits(run.tools, run.max_concurrency, run.max_result_chars)
    started = trace.now()
    try:
        with trio.move_on_after(run.timeout if run.timeout else math.inf) as scope:
            if run.mode == "async":
                await _async_loop(run, client, trace, result, schemas, limits)
            else:
                await _loop(run, client, trace, result, schemas, limits)
        if scope.cancelled_caught:
            result.status, result.error = TIMEOUT, f"run timed out after {run.timeout:g}s"
    except ModelError as exc:
        result.status, result.error = ERROR, f"model error: {exc}"
    except BaseException as exc:
        if is_interrupt(exc):
            result.status, result.error = INTERRUPTED, "interrupted"
        else:
            result.status, result.error = ERROR, f"internal error: {type(exc).__name__}: {exc}"
        raise
    finally:
        result.wall = trace.now() - started
        trace.emit(
            "summary",
            status=result.status,
            answer_chars=len(result.answer or ""),
            turns=result.turns,
            requests=result.requests,
            tool_calls=len(result.calls),
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            wall=round(result.wall, 6),
            **({"error": result.error} if result.error else {}),
        )
    return result


async def _loop(
    run: AgentRun,
    client: ModelClient,
    trace: Trace,
    result: RunResult,
    schemas: list[dict],
    limits: Limits,
) -> None:
    messages = result.messages
    for _turn in range(run.max_turns):
        result.turns += 1
        done = await _model_turn(client, messages, schemas, trace, result)
        messages.append(assistant_message(done))
        if not done.tool_calls:
            result.status, result.answer = OK, done.content
            return
        records = [executor.new_record(call, result.requests, limits.max_result_chars) for call in done.tool_calls]
        result.calls.extend(records)
        if run.mode == "parallel":
            await executor.run_parallel(records, run.tools, limits, trace)
        else:
            await executor.run_sync(records, run.tools, limits, trace)
        messages.extend(record.tool_message() for record in records)
    result.status = MAX_TURNS
    result.error = f"no final answer after {run.max_turns} turns (max_turns)"


def assistant_message(done: StreamDone) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": done.content or None}
    if done.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in done.tool_calls
        ]
    return message


async def _async_loop(
    run: AgentRun,
    client: ModelClient,
    trace: Trace,
    result: RunResult,
    schemas: list[dict],
    limits: Limits,
) -> None:
    """Async mode: calls start mid-stream; the model waits only when it asks to.

    The finish rule keeps accuracy equal to sync: an answer given while any
    future is unresolved or unseen is held, the outcomes are delivered, and
    the model gets one more turn to confirm or revise.
    """
    messages = result.messages
    model_error: ModelError | None = None
    async with trio.open_nursery() as nursery:
        ex = AsyncExecutor(run.tools, limits, trace, nursery)
        try:
            answered = await _async_turns(run, client, trace, result, schemas, ex, messages)
        except ModelError as exc:
            # Raised outside the nursery, so callers see it, not an ExceptionGroup.
            model_error, answered = exc, False
        # Leaving the run cancels whatever is still running.
        nursery.cancel_scope.cancel()
    if model_error is not None:
        raise model_error
    if not answered:
        result.status = MAX_TURNS
        result.error = f"no final answer after {run.max_turns} turns (max_turns)"


async def _async_turns(
    run: AgentRun,
    client: ModelClient,
    trace: Trace,
    result: RunResult,
    schemas: list[dict],
    ex: AsyncExecutor,
    messages: list[dict[str, Any]],
) -> bool:
    """The turns of an async run; True once an answer is accepted."""
    records: dict[str, CallRecord] = {}

    def on_call(call: ToolCallReady) -> None:
        if call.name != futures.WAIT_TOOL:
            records[call.id] = ex.start(call, result.requests)
            result.calls.append(records[call.id])

    for _turn in range(run.max_turns):
        result.turns += 1
        resolved = ex.take_resolved("message")
        if resolved:
            messages.append(futures.delivery_message(resolved))
        done = await _model_turn(client, messages, schemas, trace, result, on_call)
        messages.append(assistant_message(done))
        if done.tool_calls:
            await ex.hold([records[c.id] for c in done.tool_calls if c.id in records], result.last_ttft)
            # Handles (or fast results) first, so nothing waits on a wait.
            replies = {c.id: ex.tool_message(records[c.id]) for c in done.tool_calls if c.id in records}
            for call in done.tool_calls:
                if call.id not in records:
                    replies[call.id] = {"role": "tool", "tool_call_id": call.id, "content": await ex.wait(call)}
            messages.extend(replies[c.id] for c in done.tool_calls)
            continue
        if ex.outstanding():
            trace.emit("finish_held", outstanding=ex.outstanding())
            await ex.settle()
            messages.append(futures.delivery_message(ex.take_resolved("message"), finishing=True))
            continue
        result.status, result.answer = OK, done.content
        return True
    return False


async def _model_turn(
    client: ModelClient,
    messages: list[dict[str, Any]],
    schemas: list[dict],
    trace: Trace,
    result: RunResult,
    on_call: Callable[[ToolCallReady], None] | None = None,
) -> StreamDone:
    result.requests += 1
    request = result.requests
    trace.emit("model_begin", request=request, messages=len(messages))
    begin = trace.now()
    ttft: float | None = None
    done: StreamDone | None = None
    status, error = "ok", None
    try:
        async with aclosing(client.stream(list(messages), schemas)) as stream:
            async for event in stream:
                if isinstance(event, FirstToken):
                    ttft = trace.now() - begin
                    trace.emit("model_first_token", request=request)
                elif isinstance(event, ToolCallReady):
                    trace.emit("call_ready", request=request, call_id=event.id, tool=event.name,
                               args_digest=digest(event.arguments))
                    if on_call is not None:
                        on_call(event)
                elif isinstance(event, StreamDone):
                    done = event
                elif isinstance(event, Decoding):
                    trace.emit("model_progress", request=request, chunks=event.chunks)
                elif isinstance(event, TextDelta):
                    pass
    except ModelError as exc:
        status, error = "error", str(exc)
        raise
    except BaseException:
        status = "cancelled"
        raise
    finally:
        fields: dict[str, Any] = {}
        if done is not None:
            result.tokens_in += done.prompt_tokens
            result.tokens_out += done.completion_tokens
            fields = dict(tokens_in=done.prompt_tokens, tokens_out=done.completion_tokens,
                          finish_reason=done.finish_reason, tool_calls=len(done.tool_calls))
        if error:
            fields["error"] = error
        trace.emit("model_end", request=request, status=status,
                   ttft=None if ttft is None else round(ttft, 6), **fields)
        if ttft is not None:
            result.last_ttft = ttft
    if done is None:
        raise ModelError("the stream ended without a final chunk")
    return done
