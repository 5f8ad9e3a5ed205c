"""The agent loop: model turn, tool calls, repeat until an answer or a limit.

The loop knows nothing about terminals: it reads a :class:`RunSpec`-like
:class:`AgentRun`, talks to a :class:`~asyncfc_cli.model.ModelClient`,
hands calls to the executor and reports everything as trace events.
"""

from __future__ import annotations

import math
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import trio

from asyncfc_cli import modes
from asyncfc_cli.events import CallReady, ModelBegin, ModelEnd, ModelFirstToken, ModelProgress, Summary
from asyncfc_cli.executor import CallRecord, Limits, Scheduler, parse_arguments
from asyncfc_cli.latency import LatencyBook, RequestCost
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
    mode: str  # a name in asyncfc_cli.modes.MODES
    max_turns: int
    timeout: float | None
    max_concurrency: int
    futures_instruction: str | None = None  # None: the mode's own (async: futures.INSTRUCTION)
    max_result_chars: int | None = None  # longest tool result text the model is shown
    latency: LatencyBook | None = None  # what is known of tool durations (async holds); None: nothing
    hold: str | float = "latency"  # async: the hold policy (futures.hold.hold_policy); benchmarks vary it


@dataclass
class RunResult:
    status: str
    answer: str | None
    calls: list[CallRecord] = field(default_factory=list)
    error: str | None = None
    fix: str | None = None  # what the user can do about ``error``, when that is known
    turns: int = 0
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    wall: float = 0.0
    messages: list[dict[str, Any]] = field(default_factory=list)


def is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C or cancellation from outside, possibly wrapped by trio nurseries."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_interrupt(e) for e in exc.exceptions)
    return isinstance(exc, (KeyboardInterrupt, trio.Cancelled))


def initial_messages(run: AgentRun) -> list[dict[str, Any]]:
    """The system prompt (the agent's instructions, then what its mode adds) and the prompt."""
    messages: list[dict[str, Any]] = []
    instruction = modes.get(run.mode).instruction(run.futures_instruction)
    system = "\n\n".join(p for p in (run.instructions.strip(), (instruction or "").strip()) if p)
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": run.prompt})
    return messages


async def run_agent(run: AgentRun, client: ModelClient, trace: Trace) -> RunResult:
    """Run the loop to an answer, a limit, or cancellation; always writes a summary.

    A ``KeyboardInterrupt`` or outer cancellation still closes the trace with
    status ``interrupted`` before it propagates.
    """
    mode = modes.get(run.mode)
    limits = Limits(run.tools, run.max_concurrency, run.max_result_chars)
    cost = RequestCost()
    scheduler = mode.scheduler(run, limits, trace, cost)
    result = RunResult(status=ERROR, answer=None, messages=initial_messages(run))
    result.calls = scheduler.records
    schemas = [tool.openai_schema() for tool in (*run.tools.values(), *(t.tool() for t in mode.tools))]
    # The run's wall counts from its trace's zero, the run's start: the start-up
    # before the first request (an MCP server starting) is in it, as in the trace.
    started = 0.0
    try:
        with trio.move_on_after(run.timeout if run.timeout else math.inf) as scope:
            await _loop(run, client, trace, result, schemas, scheduler, cost)
        if scope.cancelled_caught:
            result.status, result.error = TIMEOUT, f"run timed out after {run.timeout:g}s"
    except ModelError as exc:
        result.status, result.error, result.fix = ERROR, f"model error: {exc}", exc.fix
    except BaseException as exc:
        if is_interrupt(exc):
            result.status, result.error = INTERRUPTED, "interrupted"
        else:
            result.status, result.error = ERROR, f"internal error: {type(exc).__name__}: {exc}"
        raise
    finally:
        if run.latency is not None:
            await run.latency.save_async()  # the store merge waits on a lock: off the loop
        end = trace.now()
        result.wall = end - started  # the summary's t and wall are one instant: one wall everywhere
        trace.emit(Summary(
            status=result.status,
            answer_chars=len(result.answer or ""),
            turns=result.turns,
            requests=result.requests,
            tool_calls=len(result.calls),
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            wall=round(result.wall, 6),
            error=result.error or None,
        ), at=end)
    return result


async def _loop(run: AgentRun, client: ModelClient, trace: Trace, result: RunResult, schemas: list[dict],
                scheduler: Scheduler, cost: RequestCost) -> None:
    """The one agent loop: request, stream, calls back as tool messages, until an answer."""
    messages = result.messages
    model_error: ModelError | None = None
    async with scheduler.running():
        try:
            for _turn in range(run.max_turns):
                result.turns += 1
                scheduler.before_request(messages)
                done, cut = await _model_turn(client, messages, schemas, trace, result, scheduler, cost)
                if cut:
                    # An answer begun too early, stopped: the model never sees it.
                    await scheduler.accept_answer(cut=True)
                    continue
                messages.append(assistant_message(done))
                if done.tool_calls:
                    messages.extend(await scheduler.after_response())
                    continue
                if await scheduler.accept_answer(cut=False):
                    result.status, result.answer = OK, done.content
                    return
        except ModelError as exc:
            # Raised outside the scheduler's nursery, so callers see it, not an ExceptionGroup.
            model_error = exc
    if model_error is not None:
        raise model_error
    result.status = MAX_TURNS
    result.error = f"no final answer after {run.max_turns} turns (max_turns)"


def assistant_message(done: StreamDone) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": done.content or None}
    if done.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": sendable_arguments(c.arguments)}}
            for c in done.tool_calls
        ]
    return message


def sendable_arguments(arguments: str) -> str:
    """The arguments of a call as the next request carries them: as written, or
    ``{}`` when they are not a JSON object.

    Servers that render the conversation through a chat template parse each
    call's arguments (llama.cpp's llama-server answers the whole request with a
    500, "Failed to parse tool call arguments as JSON"), so one call cut short by
    ``max_tokens`` would fail every later request. The model still reads what it
    wrote: the call's tool message quotes it in the error. The test is the one
    the call itself was held to, nesting limit included, so nothing the call
    was refused for travels on (and no parser recurses past the stack)."""
    if not arguments.strip():
        return "{}"
    _, error = parse_arguments(arguments)
    return arguments if error is None else "{}"


async def _model_turn(
    client: ModelClient,
    messages: list[dict[str, Any]],
    schemas: list[dict],
    trace: Trace,
    result: RunResult,
    scheduler: Scheduler,
    cost: RequestCost,
) -> tuple[StreamDone, bool]:
    """One streamed request; returns its final chunk and whether it was cut short."""
    result.requests += 1
    request = result.requests
    trace.emit(ModelBegin(request=request, messages=len(messages)))
    begin = trace.now()
    ttft: float | None = None
    done: StreamDone | None = None
    status, error = "ok", None
    content: list[str] = []
    chars = calls = 0
    cut = False
    try:
        async with aclosing(client.stream(list(messages), schemas)) as stream:
            async for event in stream:
                if isinstance(event, FirstToken):
                    ttft = trace.now() - begin
                    trace.emit(ModelFirstToken(request=request))
                elif isinstance(event, ToolCallReady):
                    calls += 1
                    trace.emit(CallReady(request=request, call_id=event.id, tool=event.name,
                                         args_digest=digest(event.arguments)))
                    scheduler.on_call_ready(event, request)
                elif isinstance(event, StreamDone):
                    done = event
                elif isinstance(event, Decoding):
                    trace.emit(ModelProgress(request=request, chunks=event.chunks))
                elif isinstance(event, TextDelta):
                    content.append(event.text)
                    chars += len(event.text)
                    if scheduler.wants_cut(chars, calls):
                        cut = True
                        break
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
            cost.observe(ttft)
        elif cut:
            status = "cut"
            fields = dict(chars=chars)
        if error:
            fields["error"] = error
        trace.emit(ModelEnd(request=request, status=status, ttft=None if ttft is None else round(ttft, 6),
                            **fields))
    if cut:
        return StreamDone(None, "".join(content), [], 0, 0), True
    if done is None:
        raise ModelError("the stream ended without a final chunk")
    return done, False

