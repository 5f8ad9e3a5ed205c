"""Many runs in one process: ``asyncfc batch`` (and ``asyncfc bench bfcl --model``).

Every run of a batch is a task of one trio run. They share what is costly
to have twice: LiteLLM's import and the one asyncio thread that owns every
LiteLLM request (:class:`Shared`), and the per-model limits
(:mod:`asyncfc_cli.limits`). Each run keeps what must be its own: its trace
file, redactor, model client, tool sources and, for the simulated model,
its own server (:func:`asyncfc_cli.runner.run_spec`).

The pieces, from the bottom:

- :func:`in_one_trio_run`: a trio run with the shared parts, where Ctrl-C
  and SIGTERM cancel everything (every run records itself interrupted and
  closes its trace) instead of raising wherever the code happens to be;
- :func:`run_concurrently`: at most ``max_runs`` items at once, in order;
- :func:`plan_batch`: tasks × matrix rows × modes × repeats, each resolved
  (and so validated) before anything runs: a bad spec is exit 2 with nothing
  started; :func:`unstartable` finds the runs whose model's key is missing,
  reported as not started while the others run;
- :func:`run_planned`: one planned run to a :class:`RunReport`, the record
  every output is built from (progress, ``results.jsonl``, JUnit, JSON, the
  summary table); also what a Ray worker sends back (:mod:`asyncfc_cli.ray_batch`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import trio

from asyncfc_cli.limits import ModelLimits, model_key
from asyncfc_cli.modes import NAMES as MODES
from asyncfc_cli.spec import RunSpec, SpecError

NOT_STARTED = "not_started"  # the run_status of a run whose model could not be used (a missing key)
RESULTS_FILE = "results.jsonl"  # one line per finished run, appended as it ends (--resume reads it)
TRACES_DIR = "traces"
MAX_MATRIX_BYTES = 10_000_000

# What became of a run (passed, failed, ...) and its exit code: decided once, for
# `asyncfc run` and every run of a batch alike, by asyncfc_cli.verdict.
from asyncfc_cli.verdict import (EXIT_EXPECT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, FAILED,  # noqa: E402
                                 INTERRUPTED, PASSED, SKIPPED, UNMET)


# --- the shared parts and the trio run ----------------------------------------------------


@dataclass
class Shared:
    """What every run of the process shares: the asyncio thread LiteLLM runs on, and the limits."""

    loop_thread: Any  # asyncfc_cli.model.AsyncioThread
    limits: ModelLimits


def in_one_trio_run(main: Callable[[Shared], Awaitable[None]], max_per_model: int | None,
                    sim: bool = True) -> bool:
    """Run ``main(shared)`` in one trio run; True if Ctrl-C or SIGTERM interrupted it.

    The signal cancels ``main``: every run inside sees ``Cancelled``, records
    itself interrupted and closes its trace; then this returns. A second
    signal while that happens interrupts at once (``KeyboardInterrupt``).
    """
    from asyncfc_cli.model import AsyncioThread, import_litellm
    from asyncfc_cli.runner import register_sim_models, run_until_signal

    litellm = import_litellm()
    if sim:
        register_sim_models(litellm)
    with AsyncioThread() as loop_thread:
        shared = Shared(loop_thread, ModelLimits(max_per_model))
        return run_until_signal(lambda: main(shared))


async def run_concurrently(items: Iterable[Any], max_runs: int, one: Callable[[Any], Awaitable[None]]) -> None:
    """``one(item)`` for every item, at most ``max_runs`` at once, started in order.

    ``max_runs`` workers take the next item as they come free: no task is
    created for an item before it can start, so a batch of 10,000 runs holds
    ``max_runs`` tasks, not 10,000.
    """
    items = list(items)
    queue = iter(items)

    async def worker() -> None:
        for item in queue:  # one iterator shared by the workers: each takes the next item
            await one(item)

    async with trio.open_nursery() as nursery:
        for _ in range(max(1, min(max_runs, len(items)))):
            nursery.start_soon(worker)


# --- the plan ------------------------------------------------------------------------------


@dataclass
class PlannedRun:
    """One run of the batch: a task, a parameter row, a mode, a repeat."""

    index: int
    key: str  # stable across invocations (task, its content, params, mode, model, repeat): --resume's key
    task: Path
    params: dict[str, str]
    mode: str
    model: str
    repeat: int
    spec: RunSpec | None
    trace: Path
    # What a Ray worker needs to resolve the same spec on its side.
    agents: Path | None = None
    model_override: str | None = None
    timeout: float | None = None
    repeats: int = 1  # the batch's --repeat, for labels
    cassette: Any = None  # --record-dir / --replay-dir: this run's plan (asyncfc_cli.cassette)

    @property
    def label(self) -> str:
        """A short readable name: task stem, parameters, mode, repeat."""
        parts = [self.task.stem]
        if self.params:
            parts.append(" ".join(f"{k}={_short(v)}" for k, v in self.params.items()))
        parts.append(self.mode)
        if self.repeats > 1:
            parts.append(f"#{self.repeat}")
        return " ".join(parts)


def _short(value: str, limit: int = 24) -> str:
    value = " ".join(str(value).split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def read_matrix(path: Path) -> list[dict[str, str]]:
    """Parameter rows from ``--matrix``: JSONL (one object per line) or CSV (a header row).

    Values are prompt parameters, as ``--set`` gives them: text. In JSONL a
    number or boolean becomes its JSON text; ``null`` (or an empty CSV cell)
    keeps the task's own default for that row.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_MATRIX_BYTES + 1)
    except OSError as exc:
        raise SpecError(path, "", f"cannot read the matrix: {exc.strerror or exc}", "pass a readable --matrix FILE") from None
    if len(raw) > MAX_MATRIX_BYTES:
        raise SpecError(path, "", f"the matrix is larger than {MAX_MATRIX_BYTES // 1_000_000} MB",
                        "split it into several batches")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(path, "", f"not UTF-8 text (byte {exc.start + 1})", "save the matrix as UTF-8") from None
    rows = _jsonl_rows(path, text) if path.suffix.lower() in (".jsonl", ".ndjson", ".json") else _csv_rows(path, text)
    if not rows:
        raise SpecError(path, "", "the matrix has no rows", "add one row of parameters per run")
    return rows


def _jsonl_rows(path: Path, text: str) -> list[dict[str, str]]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise SpecError(path, f"line {number}", f"not JSON ({str(exc).splitlines()[0][:100]})",
                            'write one JSON object per line, e.g. {"url": "https://example.org"}') from None
        if not isinstance(value, dict):
            raise SpecError(path, f"line {number}", f"a JSON {type(value).__name__}, not an object",
                            'write one JSON object per line, e.g. {"url": "https://example.org"}')
        row = {}
        for key, item in value.items():
            if item is None:
                continue
            if isinstance(item, (dict, list)):
                raise SpecError(path, f"line {number}: {key}", "a parameter is text, a number or a boolean",
                                "write the value as a string")
            row[key] = item if isinstance(item, str) else json.dumps(item)
        rows.append(row)
    return rows


def _csv_rows(path: Path, text: str) -> list[dict[str, str]]:
    try:
        reader = csv.reader(io.StringIO(text))
        lines = list(reader)
    except csv.Error as exc:
        raise SpecError(path, "", f"not CSV: {exc}", "write a header row of parameter names, then one row per run") from None
    if not lines:
        return []
    header = [h.strip() for h in lines[0]]
    if not all(header) or len(set(header)) != len(header):
        raise SpecError(path, "line 1", "the header needs unique, non-empty parameter names",
                        "write a header row such as: url,question")
    rows = []
    for number, cells in enumerate(lines[1:], 2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise SpecError(path, f"line {number}", f"{len(cells)} cells for {len(header)} columns",
                            "give every row one cell per column (quote cells that hold commas)")
        rows.append({k: v for k, v in zip(header, cells) if v != ""})
    return rows


def parse_modes(text: str | None) -> list[str | None]:
    """``--mode sync,async`` as a list; None: each agent's own mode."""
    if text is None:
        return [None]
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise SpecError(None, "--mode", f"{', '.join(map(repr, bad)) or 'nothing'} is not a mode",
                        f"use {', '.join(MODES)}, comma-separated (e.g. --mode sync,async)")
    return list(dict.fromkeys(modes))


def run_key(task: Path, digest: str, params: dict[str, str], mode: str, model: str, repeat: int) -> str:
    """A stable identity for a run: the same task content, row, mode, model and repeat
    give the same key in any later invocation (what ``--resume`` matches on)."""
    # The resolved path: tasks/x.toml and ./tasks/x.toml are the same task.
    text = json.dumps([str(Path(task).resolve()), digest, sorted(params.items()), mode, model, repeat])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def plan_batch(tasks: Sequence[Path], rows: Sequence[dict[str, str]] | None, modes: Sequence[str | None],
               out: Path, *, model: str | None = None, agents: Path | None = None, repeat: int = 1,
               timeout: float | None = None, matrix: Path | None = None, keyless: bool = False) -> list[PlannedRun]:
    """Every run, resolved: the first spec problem raises :class:`SpecError` before anything runs
    (``keyless``: the runs replay cassettes, so their model's key need not be set).

    Each task file is read and resolved (its agent, its tools built) once per
    mode, not once per row: a row only fills the prompt and the [sim] plan
    (:func:`asyncfc_cli.spec.resolve.spec_for`). Runs of one task and mode share
    its tools, as the repeats of one row always have: a tool's per-run state is
    opened inside each run. Duplicate rows are found with one dict, not a scan
    per row.
    """
    from asyncfc_cli.spec.resolve import prepare_task, spec_for

    if repeat < 1:
        raise SpecError(None, "--repeat", f"{repeat} runs of each", "use --repeat 1 or more")
    planned: list[PlannedRun] = []
    traces = out / TRACES_DIR
    seen_tasks: set[Path] = set()
    for task in tasks:
        if Path(task).resolve() in seen_tasks:
            raise SpecError(task, "", "this task is listed twice", "list each task once; --repeat K runs each K times")
        seen_tasks.add(Path(task).resolve())
    rows = list(rows or [{}])
    first_of: dict[frozenset[tuple[str, str]], int] = {}
    for number, row in enumerate(rows, 1):
        first = first_of.setdefault(frozenset(row.items()), number)
        if first != number:
            raise SpecError(matrix, f"row {number}", f"the same parameters as row {first}",
                            "remove the duplicate; --repeat K runs each row K times")
    for task in tasks:
        prepared: dict[str | None, Any] = {}
        for row_number, row in enumerate(rows, 1):
            for mode in modes:
                try:
                    if mode not in prepared:
                        prepared[mode] = prepare_task(Path(task), agents_path=agents, model_override=model,
                                                      mode_override=mode, timeout_override=timeout, keyless=keyless)
                    spec = spec_for(prepared[mode], row)
                except SpecError as exc:
                    if matrix is not None and exc.key == "--set":
                        # A matrix column the task's prompt does not have: say where it is.
                        raise SpecError(matrix, f"row {row_number}", exc.message, exc.fix) from None
                    raise
                for k in range(1, repeat + 1):
                    key = run_key(task, spec.digest, row, spec.agent.mode, spec.model.model, k)
                    name = _file_name(f"{task.stem}-{spec.agent.mode}-{key[:10]}")
                    planned.append(PlannedRun(len(planned), key, task, dict(row), spec.agent.mode,
                                              spec.model.model, k, spec, traces / f"{name}.jsonl", agents,
                                              model, timeout, repeat))
    return planned


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:120]


def unstartable(planned: Iterable[PlannedRun]) -> dict[str, SpecError]:
    """The runs whose model cannot be used (a hosted model's key is missing), by
    run key, with the error ``asyncfc run`` would stop on: those runs are
    reported as not started, the others still run (decided once per model)."""
    from asyncfc_cli import credentials
    from asyncfc_cli.model import import_litellm

    found: dict[str, SpecError] = {}
    by_model: dict[str, SpecError | None] = {}
    planned = [run for run in planned if run.spec is not None and not run.spec.model.is_sim]
    # The missing keys of known providers first: no LiteLLM import for them.
    for run in planned:
        try:
            credentials.precheck(run.spec.model)
        except SpecError as exc:
            found[run.key] = exc
    for run in planned:
        if run.key in found:
            continue
        m = run.spec.model
        key = model_key(m.model, m.api_base) + (m.key_env or "") + ("k" if m.api_key else "")
        if key not in by_model:
            try:
                credentials.resolve(m, import_litellm())
                by_model[key] = None
            except SpecError as exc:
                by_model[key] = exc
        if by_model[key] is not None:
            found[run.key] = by_model[key]
    return found


# --- one run's report ----------------------------------------------------------------------


@dataclass
class RunReport:
    """What a run came to: every output of a batch is built from these (plain data,
    JSON-able, and what a Ray worker sends back)."""

    key: str
    label: str
    task: str
    params: dict[str, str]
    mode: str
    model: str
    repeat: int
    status: str  # passed | failed | unmet | interrupted | skipped
    run_status: str | None = None  # the agent loop's: ok | error | max_turns | timeout | interrupted
    exit_code: int | None = None  # what `asyncfc run` would have exited with
    wall: float = 0.0
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    tool_calls: int = 0
    answer: str | None = None
    error: str | None = None
    failures: list[str] = field(default_factory=list)  # expectations not met
    tool_errors: list[str] = field(default_factory=list)  # the failed calls, "tool: error" (tool_errors())
    expectations: int = 0  # how many the task checks (JUnit assertions)
    trace: str | None = None
    fix: str | None = None  # a refused key: how to fix it
    resumed: bool = False  # passed in an earlier invocation (--resume), not run again
    started: float | None = None  # seconds from the batch's start
    ended: float | None = None
    cassette: str | None = None  # the run's cassette (--record-dir / --replay-dir)
    recorded: bool = False
    replayed: bool = False  # the model's answers came from the cassette, not the model

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunReport:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def base_report(run: PlannedRun, status: str) -> RunReport:
    return RunReport(key=run.key, label=run.label, task=str(run.task), params=dict(run.params), mode=run.mode,
                     model=run.model, repeat=run.repeat, status=status, trace=str(run.trace),
                     expectations=expectation_count(run.spec))


def expectation_count(spec: RunSpec | None) -> int:
    if spec is None:
        return 0
    e = spec.expect
    return len(e.contains) + len(e.not_contains) + (e.matches is not None) + len(e.tools_called)


def report_from_outcome(run: PlannedRun, outcome: Any, trace_failed: OSError | None = None) -> RunReport:
    """A finished run's report, with every secret the run knew masked; ``trace_failed``:
    the error that stopped its trace mid-run (``TraceWriter.failed``), if one did."""
    from asyncfc_cli.verdict import judge

    verdict = judge(outcome, run.spec.expect, trace_failed)
    result = outcome.result
    report = base_report(run, verdict.status)
    report.run_status, report.exit_code, report.fix = verdict.run_status, verdict.exit_code, verdict.fix
    report.wall = round(result.wall, 6)
    report.requests, report.tokens_in, report.tokens_out = result.requests, result.tokens_in, result.tokens_out
    report.tool_calls = len(result.calls)
    report.answer, report.error, report.failures = verdict.answer, verdict.error, verdict.failures
    report.tool_errors = tool_errors(result.calls, outcome.redactor)
    report.trace = str(outcome.trace_path)
    from asyncfc_cli.cassette import note_in_report

    note_in_report(report, outcome, run.cassette)
    return report


MAX_TOOL_ERRORS = 5  # failed calls listed in a run's report; beyond this only counted
TOOL_ERROR_CHARS = 300  # of each one's error, after its secrets are masked


def tool_errors(calls: Iterable[Any], redactor: Any) -> list[str]:
    """What the run's failed calls (error, timeout) said, as ``tool: error`` lines: often
    why an expectation was not met. Each is redacted whole, then cut and made
    printable (a cut first could leave half a secret unmasked); at most
    :data:`MAX_TOOL_ERRORS`, then how many more."""
    from asyncfc_cli.output import label

    failed = [c for c in calls if c.status in ("error", "timeout")]
    lines = [label(redactor.text(f"{c.tool}: {c.error or c.status}"), TOOL_ERROR_CHARS)
             for c in failed[:MAX_TOOL_ERRORS]]
    if len(failed) > MAX_TOOL_ERRORS:
        lines.append(f"... and {len(failed) - MAX_TOOL_ERRORS} more failed calls (see the trace)")
    return lines


def not_started_report(run: PlannedRun, exc: SpecError) -> RunReport:
    """A run that could not start (its model's key is missing): failed, exit 2
    as ``asyncfc run`` would, the reason and its fix named, no trace."""
    where = f"{exc.key}: " if exc.key else ""
    report = failed_report(run, f"not started: {where}{exc.message}", EXIT_USAGE)
    report.run_status, report.trace = NOT_STARTED, None
    report.fix = exc.fix
    return report


def failed_report(run: PlannedRun, message: str, exit_code: int = 1) -> RunReport:
    """A run that could not run (a tool server that would not start, an internal error)."""
    from asyncfc_cli.redaction import Redactor, env_secrets

    report = base_report(run, FAILED)
    report.run_status, report.exit_code = "error", exit_code
    report.error = Redactor(env_secrets()).text(message)
    return report


async def run_planned(run: PlannedRun, shared: Shared, clock_zero: float = 0.0) -> RunReport:
    """One planned run inside the batch's trio run, to its report.

    A failure of the run (a model error, a tool server that would not start)
    is in the report; only cancellation (Ctrl-C) propagates, after the trace
    was closed with status ``interrupted``, however the run's nurseries
    grouped it (:func:`is_interruption`).
    """
    from asyncfc_cli import runner
    from asyncfc_cli.tools import ToolLoadError
    from asyncfc_cli.trace import new_run_id

    started = time.monotonic() - clock_zero
    run_id = new_run_id()
    try:
        writer = runner.open_trace_file(run.trace, run.spec, run_id, run.cassette)
    except OSError as exc:
        report = failed_report(run, f"cannot write the trace to {run.trace}: {exc.strerror or exc}", 2)
        report.trace = None
        return report
    try:
        outcome = await runner.run_spec(run.spec, writer, [], run_id, shared.loop_thread, limits=shared.limits,
                                        cassette=run.cassette)
    except (ToolLoadError, SpecError) as exc:
        report = failed_report(run, str(exc), 2)
    except BaseException as exc:  # noqa: BLE001 - one run's bug must not end the other runs
        if is_interruption(exc):
            raise
        report = failed_report(run, f"internal error: {type(exc).__name__}: {exc}")
    else:
        report = report_from_outcome(run, outcome, writer.failed)
    report.started, report.ended = round(started, 6), round(time.monotonic() - clock_zero, 6)
    return report


def is_interruption(exc: BaseException) -> bool:
    """Whether ``exc`` is, or holds at any depth of exception groups, a
    cancellation or a Ctrl-C: what a run that was stopped from outside raises
    (async mode's nurseries wrap ``Cancelled`` in groups, sync mode does not).
    Walked without recursion: the nesting is whatever the run's code made."""
    pending = [exc]
    while pending:
        current = pending.pop()
        if isinstance(current, (trio.Cancelled, KeyboardInterrupt)):
            return True
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
    return False


def interrupted_report(run: PlannedRun, started: float | None = None) -> RunReport:
    report = base_report(run, INTERRUPTED)
    report.run_status, report.exit_code, report.error = "interrupted", EXIT_INTERRUPTED, "interrupted"
    report.started = started
    return report


def skipped_report(run: PlannedRun) -> RunReport:
    """A run the batch never started (it was interrupted first)."""
    report = base_report(run, SKIPPED)
    report.error, report.trace = "not started: the batch was interrupted", None
    return report


# --- the whole batch, in this process ------------------------------------------------------


@dataclass
class BatchOutcome:
    reports: list[RunReport]  # in plan order, one per planned run
    interrupted: bool
    wall: float
    limits: dict[str, Any] = field(default_factory=dict)


def exit_code(outcome: BatchOutcome) -> int:
    """130 interrupted; 2 a key refused; 1 any run failed; 3 any expectation unmet; 0 all passed."""
    statuses = {r.status for r in outcome.reports}
    if outcome.interrupted or INTERRUPTED in statuses:
        return EXIT_INTERRUPTED
    if any(r.exit_code == EXIT_USAGE for r in outcome.reports):
        return EXIT_USAGE
    if FAILED in statuses:
        return EXIT_FAILED
    if UNMET in statuses:
        return EXIT_EXPECT
    return 0


def in_plan_order(planned: Sequence[PlannedRun], reports: Iterable[RunReport]) -> list[RunReport]:
    """``reports`` (one per planned run, from several sources) in the plan's order."""
    by_key = {report.key: report for report in reports}
    return [by_key[run.key] for run in planned if run.key in by_key]


def run_local(planned: Sequence[PlannedRun], max_runs: int, max_per_model: int | None,
              done: dict[str, RunReport], on_start: Callable[[PlannedRun], None] = lambda run: None,
              on_done: Callable[[RunReport], None] = lambda report: None) -> BatchOutcome:
    """Every planned run not already in ``done`` (resumed), concurrently, in this process."""
    zero = time.monotonic()
    reports: dict[str, RunReport] = dict(done)
    started: dict[str, float] = {}
    todo = [run for run in planned if run.key not in done]

    async def main(shared: Shared) -> None:
        nonlocal zero
        zero = time.monotonic()  # runs' start and end times count from here, after LiteLLM's import

        async def one(run: PlannedRun) -> None:
            started[run.key] = round(time.monotonic() - zero, 6)
            on_start(run)
            try:
                report = await run_planned(run, shared, zero)
            except BaseException:  # run_planned lets only an interruption out (is_interruption)
                report = interrupted_report(run, started[run.key])
                reports[run.key] = report
                on_done(report)
                raise
            reports[run.key] = report
            on_done(report)

        await run_concurrently(todo, max_runs, one)

    limits: dict[str, Any] = {}

    async def with_stats(shared: Shared) -> None:
        try:
            await main(shared)
        finally:
            limits.update(shared.limits.stats())

    interrupted = in_one_trio_run(with_stats, max_per_model, sim=any(r.spec and r.spec.model.is_sim for r in todo))
    out = [reports.get(run.key) or skipped_report(run) for run in planned]
    return BatchOutcome(out, interrupted, time.monotonic() - zero, limits)
