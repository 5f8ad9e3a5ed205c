"""``asyncfc batch``: many runs at once, for CI and evaluations (the engine is
:mod:`asyncfc_cli.batch`, the outputs :mod:`asyncfc_cli.batch_output`, Ray
:mod:`asyncfc_cli.ray_batch`)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from asyncfc_cli.commands.common import RecordDir, ReplayDir, ReplayMatch, ReplaySpeed  # the cassette options
from asyncfc_cli.commands.common import (EXIT_INTERRUPTED, EXIT_USAGE, MODES_METAVAR, err, sigterm_as_interrupt,
                                         spec_fail, stdout_to_stderr, write_stdout)

BATCH_EXIT_CODES = """
Exit codes: 0 every run passed; 1 a run failed (model error, max turns,
timeout, a trace the disk could not take); 3 every run succeeded but an expectation was not met; 2 a usage or
spec error (nothing ran), or a run that exits 2 (a missing or refused API key:
that run is reported as not started and the others still run; a tool server
that would not start); 130 interrupted (every run cancelled,
every trace closed). The first of 130, 2, 1, 3 that applies wins.
"""


def batch(
    tasks: Annotated[list[Path], typer.Argument(help="Task files (task.toml).", show_default=False)],
    matrix: Annotated[Optional[Path], typer.Option(
        "--matrix", help="Parameter rows: a JSONL file (one object per line) or a CSV file (a header row of "
        "parameter names). Every task runs once per row, the row's values set as with --set.")] = None,
    mode: Annotated[Optional[str], typer.Option(
        "--mode", metavar=MODES_METAVAR, help="Modes to run, comma-separated (e.g. sync,async): every task in each. Default: the "
        "agent's mode.")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", help='Override every agent\'s model: a [models] name, "sim" (or sim:P), or a LiteLLM '
        "model string.")] = None,
    agents: Annotated[Optional[Path], typer.Option(
        "--agents", help="agents.toml to use (default: found from each task, as asyncfc run does).")] = None,
    max_runs: Annotated[int, typer.Option(
        "--max-runs", min=1, help="Runs in progress at once.")] = 8,
    max_per_model: Annotated[int, typer.Option(
        "--max-per-model", min=1, help="Model requests in flight at once, per model, all runs together. A "
        "429 from a model also pauses every run's next request to it.")] = 10,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Directory for the traces (traces/) and results.jsonl "
        "(default .asyncfc/batch/<batch-id>).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with every run on stdout.")] = False,
    junit: Annotated[Optional[Path], typer.Option(
        "--junit", help="Write a JUnit XML report here (one test case per run).")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Skip the runs --out's results.jsonl records as passed (needs --out).")] = False,
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Run every combination this many times.")] = 1,
    timeout: Annotated[Optional[float], typer.Option(
        "--timeout", help="Seconds each run may take (overrides the agents' timeout).")] = None,
    ray: Annotated[Optional[str], typer.Option(
        "--ray", help="Run on a Ray cluster at this address (HOST:6379, ray://HOST:10001, or auto), or 'local' "
        "to start a Ray instance on this machine. The address must answer within $ASYNCFC_RAY_CONNECT_TIMEOUT "
        "seconds (default 5). Needs the ray extra: pip install 'asyncfc[ray]'.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    record_dir: RecordDir = None,
    replay_dir: ReplayDir = None,
    replay_speed: ReplaySpeed = "recorded",
    replay_match: ReplayMatch = "request",
) -> None:
    """Run every task x matrix row x mode x repeat concurrently, with shared per-model limits.

    Progress goes to stderr (a progress bar on a terminal, one line per finished
    run in CI and pipes), the summary table to stdout (with --json, one JSON
    object instead). Each run writes its own trace under --out.
    """
    from asyncfc_cli.model import start_litellm_import

    start_litellm_import()  # seconds: overlapped with reading and checking every spec
    from asyncfc_cli import batch as engine
    from asyncfc_cli import batch_output as output
    from asyncfc_cli import spec as spec_mod
    from asyncfc_cli.output import json_text
    from asyncfc_cli.timeline import live_allowed
    from asyncfc_cli.trace import new_run_id

    def usage_error(exc: spec_mod.SpecError, stdout_fd: int | None) -> typer.Exit:
        # The same message, exit code and --json object as every other command's spec error.
        return spec_fail(exc, as_json, stdout_fd)

    # Until the report is printed, anything written to stdout (a python tool's print(),
    # a library's banner) goes to stderr: stdout is the table or the JSON object.
    with stdout_to_stderr() as stdout_fd:
        with sigterm_as_interrupt():  # until the batch's own handler takes over
            try:
                if resume and out is None:
                    raise spec_mod.SpecError(None, "--resume", "--resume needs the --out directory of the batch "
                                             "to resume", "pass the same --out DIR as the first invocation")
                ray_backend = None
                if ray is not None:
                    from asyncfc_cli import ray_batch

                    ray_backend = ray_batch.backend(ray)  # SpecError with the install line when Ray is missing
                rows = engine.read_matrix(matrix) if matrix is not None else None
                modes = engine.parse_modes(mode)
                out_dir = out if out is not None else Path(".asyncfc") / "batch" / new_run_id()
                planned = engine.plan_batch(tasks, rows, modes, out_dir, model=model, agents=agents, repeat=repeat,
                                            timeout=timeout, matrix=matrix, keyless=replay_dir is not None)
                from asyncfc_cli import cassette as cassettes

                cassettes.for_batch(planned, record_dir, replay_dir, replay_speed, replay_match, ray)
                # A replay needs no key: no run is held back for one.
                blocked = engine.unstartable(planned) if replay_dir is None else {}
                if junit is not None:
                    from asyncfc_cli.trace import check_writable

                    try:
                        check_writable(junit)
                    except OSError as exc:
                        raise spec_mod.SpecError(None, "--junit", f"cannot write {junit}: {exc.strerror or exc}",
                                                 "choose a writable file") from None
                log = output.ResultsLog(out_dir, resume, own=out is None)
            except spec_mod.SpecError as exc:
                raise usage_error(exc, stdout_fd) from None

            for problem in log.problems:
                err.print(f"[yellow]warning:[/] {problem}", markup=True, highlight=False)
            done = log.resumable(planned)
            # A run whose model's key is missing is reported, with its task and
            # fix, as not started; the other runs still run.
            not_started = [engine.not_started_report(run, blocked[run.key]) for run in planned
                           if run.key in blocked and run.key not in done]
            runnable = [run for run in planned if run.key not in blocked or run.key in done]
            live = live_allowed(err.get(), quiet=quiet, as_json=as_json)
            progress = output.BatchProgress(err.get(), len(planned), live, quiet or as_json, resumed=len(done))
            if not (quiet or as_json):
                where = f" on Ray ({ray})" if ray else ""
                resumed = f", {len(done)} passed before (--resume)" if done else ""
                err.print(f"[bold]asyncfc batch[/]: {len(planned)} runs{resumed}, up to {max_runs} at once{where}; "
                          f"at most {max_per_model} requests per model", highlight=False)

            def finished(report: engine.RunReport) -> None:
                log.append(report)
                progress.finished(report)

            try:
                with progress:
                    for report in not_started:
                        finished(report)
                    if ray_backend is not None:
                        def ready(text: str) -> None:
                            if not (quiet or as_json):
                                err.print(text, markup=False, highlight=False)

                        outcome = ray_backend.run(runnable, max_runs, max_per_model, done, progress.started, finished,
                                                  ready)
                    else:
                        outcome = engine.run_local(runnable, max_runs, max_per_model, done, progress.started, finished)
            except spec_mod.SpecError as exc:  # Ray could not be reached or started: nothing ran
                log.discard()  # no results.jsonl that reads as a batch of no runs
                raise usage_error(exc, stdout_fd) from None
            finally:
                log.close()
            outcome.reports = engine.in_plan_order(planned, [*outcome.reports, *not_started])

        code = engine.exit_code(outcome)
        if junit is not None:
            command = " ".join(shlex.quote(a) for a in ["asyncfc", *sys.argv[1:]]) if sys.argv else "asyncfc batch"
            try:
                output.write_atomically(junit, output.junit_xml(outcome, command))
            except OSError as exc:
                err.print(f"[red]error:[/] cannot write the JUnit report to {junit}: {exc.strerror or exc}",
                          highlight=False)
                code = code or EXIT_USAGE
        if as_json:
            write_stdout(json_text(output.json_document(outcome, code, out_dir, junit)) + "\n", stdout_fd, "utf-8")
        else:
            if not quiet:
                err.print(output.summary_line(outcome, out_dir), highlight=False)
            _print_table(output.summary_table(output.summary_rows(outcome.reports)), stdout_fd)
    if code == EXIT_INTERRUPTED:
        err.print("[yellow]interrupted[/]: every run was cancelled and its trace closed; "
                  f"--resume --out {escape_path(out_dir)} runs the rest", highlight=False)
    raise typer.Exit(code)


def escape_path(path: Path) -> str:
    from rich.markup import escape

    return escape(shlex.quote(str(path)))


def _print_table(table: object, stdout_fd: int | None) -> None:
    import io

    from rich.console import Console

    buffer = io.StringIO()
    # A pipe or file gets a wide table rather than Rich's 80 columns.
    console = Console(file=buffer, width=160, highlight=False, color_system=None, soft_wrap=False)
    console.print(table)
    write_stdout(buffer.getvalue(), stdout_fd, "utf-8")
