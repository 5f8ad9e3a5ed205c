"""Run cases in every mode and turn the runs into figures.

Three transports, one code path (:func:`asyncfc_cli.agent.run_agent`):

``mock``  the simulated model in process under trio's ``MockClock``: model and
          tool time are exact and cost no wall time (thousands of runs in seconds);
``real``  the same in process on the real clock;
``http``  the simulated model behind its local HTTP server, reached through
          LiteLLM and the asyncio bridge (:class:`~asyncfc_cli.model.LiteLLMClient`),
          exactly as ``asyncfc run`` does: the numbers include the real bridge.

A real model (``asyncfc bench bfcl --model M``) uses the ``http`` path
without a plan.

**Executor overhead per call** is measured with the real clock even under
``MockClock``: a trace sink stamps events with ``time.perf_counter`` and every
tool is wrapped to stamp its entry and exit. A call's overhead is the time
from the moment the executor was free to start it (its arguments complete in
async mode, plus its inputs and ordered predecessor resolved; the end of the
model's message in parallel mode; the previous call's end in sync mode), or
from the previous call's dispatch if that came later (calls released together
are dispatched one at a time, and each is charged only its own share), to the
tool's first line; plus the time from the tool's return to its result being
available (future resolved, or ``tool_end``).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing

from asyncfc_cli.agent import AgentRun, agent_settings, run_agent
from asyncfc_cli.analysis import build_run
from asyncfc_cli.bench.ideal import Ideal, ideal_bound
from asyncfc_cli.bench.workloads import Case, by_step
from asyncfc_cli.futures import WAIT_TOOL
from asyncfc_cli.modes import NAMES as MODES
from asyncfc_cli.trace import Trace


# --- probes -----------------------------------------------------------------------------


class Probe:
    """Real-clock stamps of trace events and tool entry/exit, for executor overhead."""

    _KEYS = {"call_ready": "call_id", "tool_begin": "call_id", "tool_end": "call_id",
             "model_end": "request", "future_resolved": "future", "future_created": "future"}

    def __init__(self) -> None:
        self.real: dict[tuple[str, Any], float] = {}
        self.entry: dict[str, float] = {}
        self.exit: dict[str, float] = {}
        self.created: list[dict[str, Any]] = []
        self._task_call: dict[Any, str] = {}
        self._ended: dict[str, trio.Event] = {}
        # Run-clock (trio) figures for experiments that predict latency (experiments.py).
        self.began: dict[str, tuple[str, float]] = {}  # call id -> (tool, trio time)
        self.latencies: dict[str, list[float]] = {}  # tool -> observed durations
        self.ttfts: list[float] = []
        self.token_times: list[float] = []
        self._request_began: dict[Any, float] = {}
        self._first_token: dict[Any, float] = {}

    def sink(self, event: dict[str, Any]) -> None:
        now = time.perf_counter()
        self._observe(event)
        key_name = self._KEYS.get(event["type"])
        if key_name is None:
            return
        self.real[(event["type"], event.get(key_name))] = now
        if event["type"] == "tool_begin":
            # The tool runs in the task that emitted tool_begin (run_call).
            self._task_call[trio.lowlevel.current_task()] = event["call_id"]
        elif event["type"] == "tool_end":
            self._ended.setdefault(event["call_id"], trio.Event()).set()
        elif event["type"] == "future_created":
            self.created.append(event)

    def _observe(self, event: dict[str, Any]) -> None:
        kind, clock = event["type"], trio.current_time()
        if kind == "tool_begin":
            self.began[event["call_id"]] = (event["tool"], clock)
        elif kind == "tool_end" and event["call_id"] in self.began:
            tool, start = self.began[event["call_id"]]
            self.latencies.setdefault(tool, []).append(clock - start)
        elif kind == "model_begin":
            self._request_began[event["request"]] = clock
        elif kind == "model_first_token" and event["request"] in self._request_began:
            self._first_token[event["request"]] = clock
            self.ttfts.append(clock - self._request_began[event["request"]])
        elif kind == "model_end" and event.get("tokens_out") and event["request"] in self._first_token:
            self.token_times.append((clock - self._first_token[event["request"]]) / event["tokens_out"])

    async def ended(self, call_ids: list[str]) -> None:
        """Return once every one of these calls has finished."""
        for call_id in call_ids:
            await self._ended.setdefault(call_id, trio.Event()).wait()

    def wrap(self, tool: Any) -> Any:
        inner = tool.runner

        async def runner(args: dict[str, Any]) -> Any:
            call_id = self._task_call.get(trio.lowlevel.current_task(), "?")
            self.entry[call_id] = time.perf_counter()
            try:
                return await inner(args)
            finally:
                self.exit[call_id] = time.perf_counter()

        return dataclasses.replace(tool, runner=runner)

    def overheads(self, mode: str, calls: list[Any], ordered: set[str]) -> list[tuple[str, float]]:
        """(call id, seconds of executor overhead) for each call that ran (see the module docstring)."""
        out: list[tuple[str, float]] = []
        future_of = {e["call_id"]: e for e in self.created}
        previous_ordered: dict[str, str] = {}
        last = None
        for event in self.created:
            if event["tool"] in ordered:
                if last is not None:
                    previous_ordered[event["future"]] = last
                last = event["future"]
        previous_in_request: dict[str, str] = {}
        by_request: dict[int, str] = {}
        for call in calls:
            if call.request in by_request:
                previous_in_request[call.call_id] = by_request[call.request]
            by_request[call.request] = call.call_id
        entries = sorted(self.entry.values())
        for call in calls:
            cid = call.call_id
            if cid not in self.entry or cid not in self.exit:
                continue
            if mode == "async":
                created = future_of.get(cid)
                if created is None:
                    continue
                ready = [self.real.get(("call_ready", cid))]
                ready += [self.real.get(("future_resolved", d)) for d in created.get("deps", [])]
                if created["future"] in previous_ordered:
                    ready.append(self.real.get(("future_resolved", previous_ordered[created["future"]])))
                done = self.real.get(("future_resolved", created["future"]))
            else:
                ready = [self.real.get(("model_end", call.request))]
                if mode == "sync" and cid in previous_in_request:
                    ready.append(self.real.get(("tool_end", previous_in_request[cid])))
                done = self.real.get(("tool_end", cid))
            if done is None or any(r is None for r in ready):
                continue
            # Calls released together are dispatched one after another: each is
            # charged from the later of its release and the previous dispatch.
            at = bisect.bisect_left(entries, self.entry[cid])
            start = max([*ready, *entries[at - 1:at]])
            out.append((cid, max(0.0, self.entry[cid] - start) + max(0.0, done - self.exit[cid])))
        return out

    def durations(self) -> dict[str, float]:
        return {cid: self.exit[cid] - self.entry[cid] for cid in self.entry if cid in self.exit}


# --- one run ----------------------------------------------------------------------------


@dataclass
class RunRecord:
    case: str
    mode: str
    status: str
    wall: float
    requests: int
    tokens_in: int
    tokens_out: int
    answer: str | None
    error: str | None
    calls: list[Any]
    events: list[dict[str, Any]]
    overhead: list[float]
    durations: dict[str, float]  # call id -> real seconds inside the tool
    overhead_last: list[float] = field(default_factory=list)  # calls whose arguments completed last in a response
    state: Any = None
    correct: bool | None = None
    reason: str = ""

    @property
    def first_prompt_tokens(self) -> int:
        first = next((m for m in build_run(self.events).models if m.request == 1), None)
        return (first.tokens_in or 0) if first is not None else 0

    def overlap(self) -> float:
        """Share of tool time during which the model was streaming a response."""
        return overlap_share(self.events)


def overlap_share(events: list[dict[str, Any]]) -> float:
    """Share of tool time during which a model request was in flight.

    Read through the typed trace events (:func:`asyncfc_cli.analysis.build_run`),
    the same spans ``asyncfc trace`` shows; calls that never ended count
    for nothing.
    """
    run = build_run(events)
    model = [(m.start, m.end) for m in run.models if m.end is not None]
    tools = [(s.start, s.end) for s in run.tools if s.start is not None and s.end is not None]
    total = sum(b - a for a, b in tools)
    if total <= 0:
        return 0.0
    covered = 0.0
    for a, b in tools:
        for m0, m1 in model:
            covered += max(0.0, min(b, m1) - max(a, m0))
    return covered / total


class Transport:
    """How a run reaches the simulated model. ``name`` goes into reports."""

    name = "?"
    clock = "real"

    def client(self, case: Case) -> Any:
        raise NotImplementedError

    def run_trio(self, main: Callable[[], Any]) -> None:
        trio.run(main)


class InProcess(Transport):
    def __init__(self, mock: bool = True) -> None:
        self.mock = mock
        self.name = "in-process, MockClock" if mock else "in-process, real clock"
        self.clock = "mock" if mock else "real"

    def client(self, case: Case) -> Any:
        from asyncfc_cli.sim.inprocess import InProcessSim

        return InProcessSim(case.plan)

    def run_trio(self, main: Callable[[], Any]) -> None:
        if self.mock:
            trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
        else:
            trio.run(main)


class Http(Transport):
    """The simulated model's HTTP server through LiteLLM, or any LiteLLM model (``config``)."""

    def __init__(self, client: Any, server: Any = None, label: str = "") -> None:
        self._client, self.server = client, server
        self.name = label or ("HTTP sim via LiteLLM" if server is not None else "LiteLLM")

    def client(self, case: Case) -> Any:
        if self.server is not None:
            self.server.plan = case.plan
        return self._client


@contextmanager
def http_transport(model: str | None = None, api_base: str | None = None, api_key: str | None = None,
                   params: dict[str, Any] | None = None, first_plan: Any = None,
                   timeout: float = 120.0) -> Iterator[Http]:
    """An :class:`Http` transport: the simulated model's server (``model`` None or "sim"),
    or the LiteLLM model ``model``. Imports litellm (seconds), so only commands that need it call this."""
    from asyncfc_cli.model import AsyncioThread, LiteLLMClient, ModelConfig, import_litellm
    from asyncfc_cli.runner import sim_config

    import_litellm()
    with AsyncioThread() as loop_thread:
        if model in (None, "sim"):
            from asyncfc_cli.sim.server import SimServer

            with SimServer(first_plan) as server:
                config = sim_config(server, retries=0, stream_timeout=timeout)
                yield Http(LiteLLMClient(config, loop_thread), server)
            return
        config = ModelConfig(model=model, api_base=api_base or None, api_key=api_key or None,
                             params=dict(params or {}), retries=3, stream_timeout=timeout)
        yield Http(LiteLLMClient(config, loop_thread), None, label=f"LiteLLM {model}")


def run_case(case: Case, mode: str, transport: Transport, timeout: float = 600.0, max_turns: int = 0,
             wrap_client: Callable[[Any, Probe], Any] | None = None, **run_options: Any) -> RunRecord:
    """One run of ``case`` in ``mode``; never raises for a failed run (status says it).

    ``wrap_client`` may wrap the model client; ``run_options`` set fields of the
    :class:`AgentRun` (the hold policy, the futures instruction, a latency
    book shared across runs: experiments, see ``experiments.py``)."""
    out: dict[str, RunRecord] = {}

    async def main() -> None:
        out["record"] = await run_case_in(case, mode, transport.client(case), timeout, max_turns, wrap_client,
                                          **run_options)

    transport.run_trio(main)
    return out["record"]


async def run_case_in(case: Case, mode: str, client: Any, timeout: float = 600.0, max_turns: int = 0,
                      wrap_client: Callable[[Any, Probe], Any] | None = None, **run_options: Any) -> RunRecord:
    """:func:`run_case` inside the caller's trio run, with ``client`` as the model
    (many at once: ``asyncfc bench bfcl --model``, through :mod:`asyncfc_cli.batch`)."""
    probe = Probe()
    setup = case.setup()
    tools = {name: probe.wrap(tool) for name, tool in setup.tools.items()}
    ordered = {name for name, tool in tools.items() if tool.ordered}
    trace = Trace(clock=trio.current_time)
    trace.sinks.append(probe.sink)
    run_fields = {k: run_options.pop(k) for k in ("latency", "hold") if k in run_options}
    run = AgentRun(prompt=case.prompt, tools=tools, **run_fields, agent=agent_settings(
        instructions=case.instructions, mode=mode, max_turns=max_turns or 2 * len(case.plan.steps) + 12,
        timeout=timeout, max_concurrency=case.max_concurrency, **run_options))
    if wrap_client is not None:
        client = wrap_client(client, probe)
    result = await run_agent(run, client, trace)
    events = trace.events
    overheads = probe.overheads(mode, result.calls, ordered)
    last_ready: dict[Any, str] = {}
    for event in events:
        if event["type"] == "call_ready" and event["tool"] != WAIT_TOOL:  # a wait is not a tool call
            last_ready[event["request"]] = event["call_id"]
    last = set(last_ready.values())
    return RunRecord(
        case=case.id, mode=mode, status=result.status, wall=result.wall, requests=result.requests,
        tokens_in=result.tokens_in, tokens_out=result.tokens_out, answer=result.answer, error=result.error,
        calls=result.calls, events=events, overhead=[o for _, o in overheads],
        overhead_last=[o for cid, o in overheads if cid in last], durations=probe.durations(), state=setup.state,
    )


def ideal_for(case: Case, sync: RunRecord) -> Ideal:
    """The case's ideal bound, with argument sizes and the first prompt from the sync run,
    and latencies from the case (seeded) or, for real processes, as measured in sync."""
    steps = by_step(sync.calls, case.plan)
    if case.latency is not None:
        latency = dict(case.latency)
    else:
        latency = {sid: sync.durations.get(call.call_id, call.duration or 0.0) for sid, call in steps.items()}
    chars = {sid: len(call.raw_arguments) for sid, call in steps.items()}
    ordered = {name for name, tool in case.setup().tools.items() if tool.ordered}
    return ideal_bound(case.plan, latency, chars, len(sync.answer or ""), sync.first_prompt_tokens, ordered)


# --- many runs --------------------------------------------------------------------------


@dataclass
class CaseResult:
    case: Case
    runs: dict[str, RunRecord]
    ideal: Ideal | None


@dataclass
class WorkloadResult:
    name: str
    transport: str
    clock: str
    cases: list[CaseResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_workload(name: str, cases: list[Case], transport: Transport, modes: tuple[str, ...] = MODES,
                 repeat: int = 1, progress: Callable[[str], None] | None = None,
                 timeout: float = 600.0) -> WorkloadResult:
    """Every case in every mode (sync first: it is the reference), ``repeat`` times."""
    out = WorkloadResult(name, transport.name, transport.clock)
    for case in cases:
        for r in range(repeat):
            runs: dict[str, RunRecord] = {}
            for mode in modes:
                runs[mode] = run_case(case, mode, transport, timeout=timeout)
            reference = runs.get("sync")
            for record in runs.values():
                if record.status != "ok":
                    record.correct, record.reason = False, record.error or record.status
                else:
                    check = case.check or _same_answer_and_calls
                    record.correct, record.reason = check(record, reference)
            ideal = ideal_for(case, reference) if reference is not None and reference.status == "ok" else None
            out.cases.append(CaseResult(case if repeat == 1 else dataclasses.replace(case, id=f"{case.id}#{r + 1}"),
                                        runs, ideal))
            if progress:
                walls = " ".join(f"{m} {rec.wall:.2f}s" for m, rec in runs.items())
                progress(f"{name}: {case.id} {walls}")
    return out


def _same_answer_and_calls(record: RunRecord, sync: RunRecord | None) -> tuple[bool, str]:
    if sync is None or record is sync:
        return True, ""
    if record.answer != sync.answer:
        return False, "answer differs from sync"
    ran = sorted((c.tool, _canon(c.arguments)) for c in record.calls if c.status == "ok")
    ref = sorted((c.tool, _canon(c.arguments)) for c in sync.calls if c.status == "ok")
    return (ran == ref), ("" if ran == ref else "executed calls differ from sync")


def _canon(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)


# --- figures ----------------------------------------------------------------------------


def stats(values: list[float]) -> dict[str, float] | None:
    """Median and spread (10th-90th percentile, min, max) of a sample."""
    values = sorted(v for v in values if v is not None and math.isfinite(v))
    if not values:
        return None
    return {"median": statistics.median(values), "p10": _quantile(values, 0.1), "p90": _quantile(values, 0.9),
            "min": values[0], "max": values[-1], "n": len(values)}


def _quantile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    pos = q * (len(values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def summarize(result: WorkloadResult) -> dict[str, Any]:
    """Per mode: end-to-end time, speedup over sync, ideal, efficiency, tokens, overhead, correctness."""
    modes: dict[str, Any] = {}
    names = [m for m in MODES if any(m in c.runs for c in result.cases)]
    ideals = [c.ideal.total for c in result.cases if c.ideal is not None]
    for mode in names:
        recs = [(c, c.runs[mode]) for c in result.cases if mode in c.runs]
        ok = [(c, r) for c, r in recs if r.status == "ok"]
        speedups = [c.runs["sync"].wall / r.wall for c, r in ok if "sync" in c.runs and r.wall > 0]
        ideal_speedups = [c.runs["sync"].wall / c.ideal.total for c, r in ok
                          if c.ideal is not None and "sync" in c.runs and c.ideal.total > 0]
        efficiency = [c.ideal.total / r.wall for c, r in ok if c.ideal is not None and r.wall > 0]
        overhead = [o for _, r in ok for o in r.overhead]
        extra_in = [r.tokens_in - c.runs["sync"].tokens_in for c, r in ok if "sync" in c.runs]
        extra_out = [r.tokens_out - c.runs["sync"].tokens_out for c, r in ok if "sync" in c.runs]
        extra_req = [r.requests - c.runs["sync"].requests for c, r in ok if "sync" in c.runs]
        modes[mode] = {
            "runs": len(recs),
            "ok": len(ok),
            "correct": sum(1 for _, r in recs if r.correct),
            "wall": stats([r.wall for _, r in ok]),
            "speedup": stats(speedups),
            "ideal_speedup": stats(ideal_speedups),
            "efficiency": stats(efficiency),
            "requests": stats([r.requests for _, r in ok]),
            "tokens_in": stats([r.tokens_in for _, r in ok]),
            "tokens_out": stats([r.tokens_out for _, r in ok]),
            "extra_vs_sync": {"requests": stats(extra_req), "tokens_in": stats(extra_in), "tokens_out": stats(extra_out)},
            "overhead_ms": stats([o * 1000 for o in overhead]),
            # Calls whose arguments completed last in their response start only once the
            # loop yields, after building the next request: shown apart.
            "overhead_last_in_response_ms": stats([o * 1000 for _, r in ok for o in r.overhead_last]),
            "overlap": stats([r.overlap() for _, r in ok]),
            "failures": [f"{c.case.id}: {r.reason}" for c, r in recs if not r.correct][:5],
        }
    return {
        "workload": result.name,
        "transport": result.transport,
        "clock": result.clock,
        "cases": len(result.cases),
        "ideal": stats(ideals),
        "decode_chain": stats([c.ideal.decode_chain for c in result.cases if c.ideal is not None]),
        "tool_chain": stats([c.ideal.tool_chain for c in result.cases if c.ideal is not None]),
        "modes": modes,
        "notes": result.notes,
    }


def case_rows(result: WorkloadResult) -> list[dict[str, Any]]:
    """One JSON row per case and mode, for --json consumers."""
    rows = []
    for c in result.cases:
        for mode, r in c.runs.items():
            rows.append({
                "case": c.case.id, "mode": mode, "status": r.status, "wall": round(r.wall, 6),
                "requests": r.requests, "tokens_in": r.tokens_in, "tokens_out": r.tokens_out,
                "correct": r.correct, "reason": r.reason or None,
                "ideal": c.ideal.as_dict() if c.ideal else None,
                "overhead_ms_median": round(statistics.median(r.overhead) * 1000, 4) if r.overhead else None,
                "overlap": round(r.overlap(), 4),
            })
    return rows
