"""One run from a validated spec: trace file, model endpoint, agent loop.

This is the seam between the CLI and the engine. It starts the simulated
model's server when the agent uses it, opens the asyncio thread that owns
LiteLLM's requests, and makes sure all of it is gone when the run ends,
however it ends.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from asyncfc_cli.events import Header, Retry, Summary, field_names
from asyncfc_cli import credentials, interrupts, modes, project
from asyncfc_cli.agent import AgentRun, RunResult, run_agent
from asyncfc_cli.latency import LatencyBook
from asyncfc_cli.model import AsyncioThread, LiteLLMClient, ModelConfig, import_litellm
from asyncfc_cli.redaction import Redactor, run_secrets
from asyncfc_cli.spec import RunSpec
from asyncfc_cli.tools import ToolLoadError, open_tools  # noqa: F401  (ToolLoadError: the CLI catches runner.ToolLoadError)
from asyncfc_cli.trace import Sink, Trace, TraceWriter, header_fields, new_run_id


@dataclass
class RunOutcome:
    result: RunResult
    trace_path: Path
    run_id: str
    trace: Trace
    redactor: Redactor  # every secret the run knew: the CLI's outputs go through it too
    # Set when a request failed on its key (missing or refused): the CLI
    # exits 2 with a fix line, not 1.
    credentials_failure: str | None = None
    key_hint: str = ""
    cassette: Any = None  # the run's cassette session (asyncfc_cli.cassette), if it recorded or replayed


def open_trace_file(path: Path, spec: RunSpec | None = None, run_id: str | None = None,
                    cassette: Any = None) -> TraceWriter:
    """Open the trace before anything runs, so a bad path fails early.

    With ``spec``, the header line is written (and flushed) at once: a full
    disk fails here too, and a run stopped at any later moment of its
    start (Ctrl-C, SIGTERM, SIGKILL) leaves a trace that reads. The header
    :func:`execute` emits is then not written again.
    """
    writer = TraceWriter(path)
    if spec is not None:
        header = run_header(spec, run_id or new_run_id(), cassette)
        redact = spec_redactor(spec).value  # the task label may be a prompt, and a prompt may hold a key
        writer.write_header(Header(t=header.t, **{name: redact(getattr(header, name)) for name in field_names(Header)}))
    return writer


def spec_redactor(spec: RunSpec) -> Redactor:
    """Every secret a run of ``spec`` can know: the model's, the environment's, the
    tool sources' (MCP headers...)."""
    return Redactor(run_secrets(spec.model, {**spec.tools, **{f"source {s.name}": s for s in spec.tool_sources}}))


def run_header(spec: RunSpec, run_id: str, cassette: Any = None) -> Header:
    """The header of a run of ``spec`` (``cassette``: the run's CassettePlan, if it records or replays)."""
    return header_fields(
        run_id,
        task=spec.task_name,
        agent=spec.agent_name,
        **model_identity(spec),
        mode=spec.agent.mode,
        spec_digest=spec.digest,
        tools=sorted(spec.tools),
        tool_kinds={src.name: src.kind for src in spec.tool_sources},
        cassette=cassette.header() if cassette is not None else None,
        continues=spec.history.run_id if spec.history is not None else None,
    )


_registered: list[bool] = []


def register_sim_models(litellm: Any) -> None:
    """Tell LiteLLM what the simulated model is on each route, as its model map
    does for a real model: chat, tools and system messages (without this the
    Gemini route folds the system prompt into the user turn), no cost.
    Once per process: it takes a noticeable fraction of a second."""
    if _registered:
        return
    _registered.append(True)
    from asyncfc_cli.sim.protocols import NAMES, get_format

    info = {"mode": "chat", "max_input_tokens": 1_000_000, "max_output_tokens": 65_536, "max_tokens": 65_536,
            "input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "cache_creation_input_token_cost": 0.0,
            "cache_read_input_token_cost": 0.0, "supports_function_calling": True,
            "supports_parallel_function_calling": True, "supports_system_messages": True,
            "supports_tool_choice": True}
    entries = {}
    for name in NAMES:
        wire = get_format(name)
        provider = wire.litellm_prefix.split("/", 1)[0]
        entries[f"{provider}/{wire.litellm_model.rsplit('/', 1)[-1]}"] = {**info, "litellm_provider": provider}
    litellm.register_model(entries)


def sim_config(server: Any, retries: int, stream_timeout: float, eager: bool | None = None) -> ModelConfig:
    """The LiteLLM configuration that reaches a running SimServer through its
    provider's adapter; ``eager`` as ``eager_input_streaming`` (None: on for Anthropic)."""
    register_sim_models(import_litellm())
    return ModelConfig(model=server.litellm_model, api_base=server.base_url, api_key=credentials.SIM_KEY,
                       retries=retries, stream_timeout=stream_timeout,
                       eager_input_streaming=server.protocol == "anthropic" if eager is None else eager)


@contextmanager
def model_endpoint(spec: RunSpec) -> Iterator[ModelConfig]:
    """The LiteLLM configuration for the run's model, serving the simulated one if needed."""
    m = spec.model
    if m.is_sim:
        from asyncfc_cli.sim.server import SimServer

        with SimServer(spec.sim_plan, protocol=m.sim_protocol) as server:
            # The simulated model is reached like the provider it imitates: a
            # local OpenAI-compatible server, or Anthropic/Gemini/Responses
            # through LiteLLM's adapter for that provider.
            yield sim_config(server, m.retries, m.request_timeout, m.eager_input_streaming)
        return
    keys = credentials.resolve(m, import_litellm())
    eager = m.eager_input_streaming if m.eager_input_streaming is not None else keys.provider == "anthropic"
    yield ModelConfig(model=m.model, api_base=m.api_base, api_key=keys.api_key, params=dict(m.params),
                      retries=m.retries, stream_timeout=m.request_timeout, eager_input_streaming=eager,
                      key_hint=keys.hint, alias=m.name)


def model_identity(spec: RunSpec) -> dict[str, str]:
    """What the trace header and ``--json`` say about the model: the LiteLLM
    model string (``sim:P`` for the simulated one) rather than a [models]
    alias, the alias, the string LiteLLM is called with, and its provider."""
    m = spec.model
    if m.is_sim:
        from asyncfc_cli.sim.protocols import get_format

        protocol = m.sim_protocol or (spec.sim_plan.protocol if spec.sim_plan is not None else "openai")
        return {"model": m.model, "model_alias": m.name, "provider": "asyncfc.sim",
                "litellm_model": get_format(protocol).litellm_model}
    try:
        provider = str(import_litellm().get_llm_provider(model=m.model, api_base=m.api_base)[1])
    except Exception:  # an unknown provider was refused before the run; be safe anyway
        provider = ""
    return {"model": m.model, "model_alias": m.name, "litellm_model": m.model, "provider": provider}


def agent_run(spec: RunSpec, tools: dict | None = None,
              latency_store: Path | None | str = "project") -> AgentRun:
    """The loop's view of a spec: its validated agent as it is, with ``tools`` as
    the run opened them (default: the spec's); tool durations are remembered in
    ``latency_store`` across runs (default: the project's, see asyncfc_cli/project.py;
    None: only this run's are known)."""
    tools = spec.tools if tools is None else tools
    if latency_store == "project":
        latency_store = project.latency_store(spec.agents_path)
    return AgentRun(prompt=spec.prompt, tools=tools, agent=spec.agent,
                    latency=LatencyBook.for_tools(tools, latency_store), history=spec.history)


def execute(spec: RunSpec, writer: TraceWriter, sinks: list[Sink] = (), run_id: str | None = None,
            cassette: Any = None) -> RunOutcome:
    """Run the task to completion in a fresh trio run; the trace is closed afterwards.

    ``KeyboardInterrupt`` (and SIGTERM, turned into one) propagates after the
    trace has been closed with status ``interrupted``.
    """
    run_id = run_id or new_run_id()
    litellm = import_litellm()  # seconds of import: before the run's clock starts
    if spec.model.is_sim:
        register_sim_models(litellm)
    outcome: list[RunOutcome] = []
    try:
        with AsyncioThread() as loop_thread:

            async def main() -> None:
                outcome.append(await run_spec(spec, writer, sinks, run_id, loop_thread, cassette=cassette))

            run_until_signal(main)
    finally:
        writer.close()
    if not outcome or outcome[0].result.status == "interrupted":
        raise KeyboardInterrupt
    return outcome[0]


async def run_spec(spec: RunSpec, writer: TraceWriter, sinks: Iterable[Sink], run_id: str,
                   loop_thread: AsyncioThread, limits: Any = None, cassette: Any = None) -> RunOutcome:
    """One run of ``spec`` inside the caller's trio run: the core :func:`execute`
    and ``asyncfc batch`` share.

    Many runs may share ``loop_thread`` (one asyncio thread owns every LiteLLM
    request of the process) and LiteLLM's import; each run has its own trace,
    redactor, model client, tool sources and, for the simulated model, its own
    server (a plan's faults and prompt cache count that run's requests only).
    ``limits`` (:class:`asyncfc_cli.limits.ModelLimits`, or the Ray batch's) gives
    the run's client a gate it asks before each request attempt: limits shared
    with the caller's other runs of the same model. The writer is
    closed when this returns or raises; cancellation from the caller
    propagates after the trace got its summary (status ``interrupted``).
    ``cassette`` (:class:`asyncfc_cli.cassette.session.CassettePlan`): record the
    model's responses, or replay them in place of the model.
    """
    redactor = spec_redactor(spec)
    trace = Trace(redactor=redactor)
    trace.sinks.append(writer)
    trace.sinks.extend(sinks)
    session = None
    try:
        session = cassette.start(spec, redactor) if cassette is not None else None
        # At the run's zero, as in the file: the model's server starting is start-up.
        trace.emit(run_header(spec, run_id, cassette))
        async with _serving(spec, session) as config:

            def on_retry(attempt: int, error: str) -> None:
                # Retries happen inside one model turn: the latest request's.
                trace.emit(Retry(request=trace.request, attempt=attempt, error=error))

            gate = None
            if limits is not None:
                from asyncfc_cli.limits import model_key

                gate = limits.gate(model_key(spec.model.model, spec.model.api_base), trace)
            client = LiteLLMClient(config, loop_thread, on_retry=on_retry, redactor=redactor, gate=gate,
                                   cassette=session)
            # Tool resources (processes, servers) live exactly as long as the run.
            opened = False
            try:
                async with open_tools(spec.tool_sources, trace, reserved=modes.RESERVED_TOOL_NAMES) as tools:
                    opened = True
                    run = agent_run(spec, tools)
                    run.cassette = session
                    result = await run_agent(run, client, trace)
            except ToolLoadError as exc:
                if not opened:  # the run ends before its first request: its trace says why
                    trace.emit(Summary(status="error", turns=0, requests=0, tool_calls=0, error=str(exc)))
                raise
            return RunOutcome(result, writer.path, run_id, trace, redactor, client.credentials_failure,
                              config.key_hint, session)
    finally:
        writer.close()
        if session is not None:
            session.close()


@asynccontextmanager
async def _serving(spec: RunSpec, cassette: Any = None) -> AsyncIterator[ModelConfig]:
    """:func:`model_endpoint` inside trio: starting the simulated server is a bind and a
    thread, but stopping it joins threads, so it happens off the event loop (other runs
    of a batch keep going), shielded so a cancelled run still stops its server."""
    with ExitStack() as stack:
        replaying = cassette is not None and cassette.replaying
        config = stack.enter_context(cassette.endpoint(spec) if replaying else model_endpoint(spec))
        try:
            yield config
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(stack.close)


def run_until_signal(body: Callable[[], Awaitable[None]]) -> bool:
    """Run ``body`` in a fresh trio run where Ctrl-C and SIGTERM cancel it
    (:func:`_signals_to_cancel`); True if a signal came. What ``body`` runs
    sees ``Cancelled``, records itself interrupted and closes its trace.

    Nurseries wrap errors in groups; callers see the plain interrupt, or the
    one error that ended the run (a tool source that could not open, the
    model's endpoint refusing a key), not the group.
    """
    interrupted: list[int] = []

    async def root() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_signals_to_cancel, nursery.cancel_scope, interrupted)
            if interrupts.take():  # a start-up Ctrl-C Python dropped: honoured now that it can be
                interrupted.append(signal.SIGINT)
                nursery.cancel_scope.cancel()
            await body()
            nursery.cancel_scope.cancel()

    try:
        trio.run(root)
    except BaseExceptionGroup as group:
        if group.subgroup(KeyboardInterrupt) is not None:
            raise KeyboardInterrupt from None
        raise _first_leaf(group) from None
    return bool(interrupted)


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


def _first_leaf(group: BaseException) -> BaseException:
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group
