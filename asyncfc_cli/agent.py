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
from asyncfc_cli.events import (CallReady, Conversation, ModelBegin, ModelEnd, ModelFirstToken, ModelProgress,
                                ModelText, Summary)
from asyncfc_cli.executor import CallRecord, Limits, Scheduler, parse_arguments
from asyncfc_cli.latency import LatencyBook, RequestCost
from asyncfc_cli.spec.schema import AgentSpec
from asyncfc_cli.model import Decoding, FirstToken, ModelClient, ModelError, StreamDone, TextDelta, ToolCallReady
from asyncfc_cli.trace import Trace, digest

# How a run ended; the CLI maps these to exit codes.
OK, ERROR, MAX_TURNS, TIMEOUT, INTERRUPTED = "ok", "error", "max_turns", "timeout", "interrupted"


@dataclass
class AgentRun:
    """What the loop runs: a prompt, the opened tools and the agent's validated
    settings (mode, max_turns, timeout, ...), read from the spec itself rather
    than copied out of it field by field."""

    prompt: str
    tools: dict[str, Any]  # name -> Tool
    agent: AgentSpec  # validated ([agents.NAME], or built by a benchmark or a test)
    latency: LatencyBook | None = None  # what is known of tool durations (async holds); None: nothing
    hold: str | float = "latency"  # async: the hold policy (futures.hold.hold_policy); benchmarks vary it
    cassette: Any = None  # the run's cassette session: async mode's deliveries follow it (futures.hold.Script)
    # ``asyncfc run --continue``: the conversation so far (asyncfc_cli.continuation.History); None: a new one
    history: Any = None

    @property
    def instructions(self) -> str:
        return self.agent.instructions

    @property
    def mode(self) -> str:  # a name in asyncfc_cli.modes.MODES
        return self.agent.mode

    @property
    def max_turns(self) -> int:
        return self.agent.max_turns

    @property
    def timeout(self) -> float | None:
        return self.agent.timeout

    @property
    def max_concurrency(self) -> int:
        return self.agent.max_concurrency

    @property
    def futures_instruction(self) -> str | None:  # None: the mode's own (async: futures.INSTRUCTION)
        return self.agent.futures_instruction

    @property
    def max_result_chars(self) -> int | None:  # longest tool result text the model is shown
        return self.agent.max_result_chars


def agent_settings(**fields: Any) -> AgentSpec:
    """Agent settings validated as ``[agents.NAME]`` is, for a run no agents.toml
    describes (benchmarks, tests); unset fields take the spec's defaults."""
    return AgentSpec(model=fields.pop("model", "sim"), **fields)


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
    """The system prompt (the agent's instructions, then what its mode adds) and the prompt;
    continuing a conversation, the conversation so far and the prompt."""
    if run.history is not None:
        return [*run.history.messages, {"role": "user", "content": run.prompt}]
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
    if run.history is not None:
        scheduler.add_earlier(run.history.futures)
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
        from asyncfc_cli.continuation import conversation_fields

        trace.emit(Conversation(**conversation_fields(result.messages, result.calls)))
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
                done, cut, text = await _model_turn(client, messages, schemas, trace, result, scheduler, cost)
                if cut:
                    # An answer begun too early, stopped: the model never sees it.
                    await scheduler.accept_answer(cut=True)
                    continue
                messages.append(assistant_message(done))
                if done.tool_calls:
                    messages.extend(await scheduler.after_response())
                    continue
                if await scheduler.accept_answer(cut=False):
                    text.finish(accepted=True)
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
) -> tuple[StreamDone, bool, TextRelease]:
    """One streamed request; returns its final chunk, whether it was cut short, and its text's release."""
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
    text = TextRelease(trace, request)
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
                    text.release(scheduler.text_is_final(calls))
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
                    text.add(event.text, text.final or scheduler.text_is_final(calls))
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
        return StreamDone(None, "".join(content), [], 0, 0), True, text
    if done is None:
        raise ModelError("the stream ended without a final chunk")
    text.finish()
    return done, False, text


class TextRelease:
    """A response's text, handed to live renderers (``ModelText`` events) only
    once nothing can take it back.

    The scheduler says when that is (:meth:`Scheduler.text_is_final`): at
    once in sync and parallel mode; in async mode once no outcome is unseen
    or the response has made a call, since an answer begun while an outcome
    is unseen may be cut short or held by the finish rule. Text held until
    then is released when it becomes final, or never. Every secret reaches
    one event whole, so the trace's redaction masks it: an end that could
    begin a secret waits for the next piece, or the end of the response.
    """

    def __init__(self, trace: Trace, request: int) -> None:
        self.trace, self.request = trace, request
        self.pending = ""  # text not handed out yet
        self.final = False

    def add(self, text: str, final: bool) -> None:
        self.pending += text
        self.release(final)

    def release(self, final: bool, end: bool = False) -> None:
        self.final = self.final or final
        if not self.final or not self.pending:
            return
        redactor = self.trace.redactor
        cut = len(self.pending) - (0 if end else redactor.open_tail(self.pending))
        spans = redactor.spans(self.pending) if redactor else []
        while True:  # never between the halves of a secret
            crossing = [start for start, stop in spans if start < cut < stop]
            if not crossing:
                break
            cut = min(crossing)
        if cut:
            out, self.pending = self.pending[:cut], self.pending[cut:]
            self.trace.emit(ModelText(request=self.request, text=out))

    def finish(self, accepted: bool = False) -> None:
        """The response ended (``accepted``: and the finish rule took it as the answer)."""
        self.release(accepted, end=True)

