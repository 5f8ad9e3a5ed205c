"""One run from a validated spec: trace file, model endpoint, agent loop.

This is the seam between the CLI and the engine. It starts the simulated
model's server when the agent uses it, opens the asyncio thread that owns
LiteLLM's requests, and makes sure all of it is gone when the run ends,
however it ends.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from asyncfc_cli.agent import AgentRun, RunResult, run_agent
from asyncfc_cli.latency import DEFAULT_STORE, LatencyBook
from asyncfc_cli.model import AsyncioThread, LiteLLMClient, ModelConfig, import_litellm
from asyncfc_cli.redaction import Redactor, run_secrets
from asyncfc_cli.spec import RunSpec
from asyncfc_cli.trace import Sink, Trace, TraceWriter, header_fields, new_run_id

SIM_MODEL_NAME = "openai/asyncfc-sim"


@dataclass
class RunOutcome:
    result: RunResult
    trace_path: Path
    run_id: str
    trace: Trace
    redactor: Redactor  # every secret the run knew: the CLI's outputs go through it too


def open_trace_file(path: Path, spec: RunSpec | None = None, run_id: str | None = None) -> TraceWriter:
    """Open the trace before anything runs, so a bad path fails early.

    With ``spec``, the header line is written (and flushed) at once: a full
    disk fails here too, and a run stopped at any later moment of its
    start (Ctrl-C, SIGTERM, SIGKILL) leaves a trace that reads. The header
    :func:`execute` emits is then not written again.
    """
    writer = TraceWriter(path)
    if spec is not None:
        writer.write_header({"type": "header", "t": 0.0, **run_header(spec, run_id or new_run_id())})
    return writer


def run_header(spec: RunSpec, run_id: str) -> dict:
    """The header's fields for a run of ``spec``."""
    return header_fields(
        run_id,
        task=spec.task_name,
        agent=spec.agent_name,
        model=spec.model.name,
        litellm_model=SIM_MODEL_NAME if spec.model.is_sim else spec.model.model,
        mode=spec.agent.mode,
        spec_digest=spec.digest,
        tools=sorted(spec.tools),
    )


@contextmanager
def model_endpoint(spec: RunSpec) -> Iterator[ModelConfig]:
    """The LiteLLM configuration for the run's model, serving the simulated one if needed."""
    m = spec.model
    if m.is_sim:
        from asyncfc_cli.sim.server import SimServer

        with SimServer(spec.sim_plan) as server:
            # The simulated model is reached like any local OpenAI-compatible server.
            yield ModelConfig(model=SIM_MODEL_NAME, api_base=server.base_url, api_key="sim-no-key",
                              retries=m.retries, stream_timeout=m.request_timeout)
        return
    yield ModelConfig(model=m.model, api_base=m.api_base, api_key=m.api_key, params=dict(m.params),
                      retries=m.retries, stream_timeout=m.request_timeout)


def agent_run(spec: RunSpec, latency_store: Path | None = DEFAULT_STORE) -> AgentRun:
    """The loop's view of a spec; tool durations are remembered in ``latency_store``
    across runs (None: only this run's are known)."""
    return AgentRun(
        prompt=spec.prompt,
        instructions=spec.agent.instructions,
        tools=spec.tools,
        mode=spec.agent.mode,
        max_turns=spec.agent.max_turns,
        timeout=spec.agent.timeout,
        max_concurrency=spec.agent.max_concurrency,
        futures_instruction=spec.agent.futures_instruction,
        max_result_chars=spec.agent.max_result_chars,
        latency=LatencyBook.for_tools(spec.tools, latency_store),
    )


def execute(spec: RunSpec, writer: TraceWriter, sinks: list[Sink] = (), run_id: str | None = None) -> RunOutcome:
    """Run the task to completion in a fresh trio run; the trace is closed afterwards.

    ``KeyboardInterrupt`` (and SIGTERM, turned into one) propagates after the
    trace has been closed with status ``interrupted``.
    """
    run_id = run_id or new_run_id()
    import_litellm()  # seconds of import: before the run's clock starts
    redactor = Redactor(run_secrets(spec.model, spec.tools))
    trace = Trace(redactor=redactor)
    trace.sinks.append(writer)
    trace.sinks.extend(sinks)
    outcome: list[RunOutcome] = []
    try:
        with ExitStack() as stack:
            config = stack.enter_context(model_endpoint(spec))
            loop_thread = stack.enter_context(AsyncioThread())
            trace.emit("header", **run_header(spec, run_id))

            def on_retry(attempt: int, error: str) -> None:
                # Retries happen inside one model turn: the latest request's.
                request = next((e["request"] for e in reversed(trace.events) if e["type"] == "model_begin"), None)
                trace.emit("retry", request=request, attempt=attempt, error=error)

            client = LiteLLMClient(config, loop_thread, on_retry=on_retry, redactor=redactor)

            interrupted: list[int] = []

            async def main() -> None:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_signals_to_cancel, nursery.cancel_scope, interrupted)
                    result = await run_agent(agent_run(spec), client, trace)
                    outcome.append(RunOutcome(result, writer.path, run_id, trace, redactor))
                    nursery.cancel_scope.cancel()

            try:
                trio.run(main)
            except BaseExceptionGroup as group:
                # Nurseries wrap Ctrl-C; callers should see the plain interrupt.
                if group.subgroup(KeyboardInterrupt) is not None:
                    raise KeyboardInterrupt from None
                raise
    finally:
        writer.close()
    if not outcome or outcome[0].result.status == "interrupted":
        raise KeyboardInterrupt
    return outcome[0]


async def _signals_to_cancel(scope: trio.CancelScope, interrupted: list[int]) -> None:
    """Ctrl-C and SIGTERM cancel the run: every task sees ``Cancelled`` at a
    checkpoint, tools are recorded as cancelled and the trace is closed.

    Without this, trio raises ``KeyboardInterrupt`` wherever the code happens
    to be, possibly inside a tool, skipping its bookkeeping. A second signal
    while shutting down interrupts at once.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if interrupted:
                raise KeyboardInterrupt
            interrupted.append(signum)
            scope.cancel()
