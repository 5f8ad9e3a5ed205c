"""The ``asyncfc`` command line.

Each command is thin: it parses options, calls the engine, and maps the
outcome to output and an exit code. Human output goes to stderr; stdout
holds only the answer, or with ``--json`` one JSON object.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from asyncfc_cli import __version__
from asyncfc_cli.trace_cmd import trace_app  # reads trace files only: no LiteLLM

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_EXPECT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EXIT_CODES_HELP = """
Exit codes: 0 success; 1 the run failed (model error, max turns, timeout);
2 usage or spec error, or a missing or refused API key; 3 expectations in the
task not met; 130 interrupted.
"""

app = typer.Typer(
    name="asyncfc",
    help="Run LLM agents with future-based asynchronous function calling.\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
sim_app = typer.Typer(help="The embedded simulated model.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")
from asyncfc_cli.bench.cli import bench_app  # noqa: E402  (light: typer only; litellm inside commands)

app.add_typer(bench_app, name="bench")
app.add_typer(trace_app, name="trace")
from asyncfc_cli.commands.batch import BATCH_EXIT_CODES, batch  # noqa: E402  (light: typer only)

app.command("batch", epilog=BATCH_EXIT_CODES)(batch)

# soft_wrap: a message is never broken at the console width, so a file path or
# key in an error stays greppable in CI logs (non-terminals get 80 columns).
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str, code: int) -> typer.Exit:
    # A spec error may quote a value that came from the environment.
    from asyncfc_cli.redaction import Redactor, env_secrets

    err.print(f"[red]error:[/] {escape(Redactor(env_secrets()).text(message))}")
    return typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        print(f"asyncfc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    from asyncfc_cli.output import configure_streams

    # Text from models, tools and files may not encode (a lone surrogate, a
    # Latin-1 terminal): written as escapes, never a UnicodeEncodeError.
    configure_streams()


@app.command()
def run(
    task: Annotated[Path, typer.Argument(help="The task file (task.toml).", show_default=False)],
    agents: Annotated[Optional[Path], typer.Option(
        "--agents", help="agents.toml to use (default: next to the task or in a parent directory, "
        "then the current directory).")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", help='Override the agent\'s model: a [models] name, "sim", or any LiteLLM '
        "model string such as openai/gpt-4o-mini. sim:anthropic, sim:gemini, sim:responses "
        "(and sim:openai) serve the simulated model in that provider's wire format, reached "
        "through LiteLLM's adapter for it.")] = None,
    mode: Annotated[Optional[str], typer.Option(
        "--mode", help="Execution mode: async (futures: tools run while the model decodes), "
        "parallel (calls of one message run together, the model waits) or sync (one call at a "
        "time). Default: the agent's mode, async unless set.")] = None,
    trace: Annotated[Optional[Path], typer.Option(
        "--trace", help="Where to write the JSONL trace (default .asyncfc/runs/<run-id>.jsonl).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    sets: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Set a prompt parameter: --set key=value (repeatable).")] = None,
    timeout: Annotated[Optional[float], typer.Option(
        "--timeout", help="Seconds the whole run may take (overrides the agent's timeout).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
) -> None:
    """Run an agent on a task and print its answer.

    Progress goes to stderr, the answer to stdout (or, with --json, one object
    with status, answer, tool calls and timings, token usage, wall time and
    the trace path and the conversation as the model saw it).
    """
    from asyncfc_cli.model import start_litellm_import

    start_litellm_import()  # seconds: overlapped with everything up to the first request
    from asyncfc_cli import runner, spec as spec_mod
    from asyncfc_cli.expectations import unmet
    from asyncfc_cli.output import answer_text, print_json, printable
    from asyncfc_cli.trace import check_writable, default_trace_path, new_run_id

    # Until the answer is printed, anything written to stdout (a python tool's
    # print(), a library's banner, a child process) goes to stderr instead:
    # stdout is the answer or the JSON object, nothing else.
    with _stdout_to_stderr() as stdout_fd:
        try:
            overrides = spec_mod.parse_set(sets or [])
            run_spec = spec_mod.resolve_run(task, agents_path=agents, model_override=model,
                                            mode_override=mode, overrides=overrides, timeout_override=timeout)
            if not run_spec.model.is_sim:
                # A missing key fails here, once, before anything runs or is retried.
                from asyncfc_cli import credentials
                from asyncfc_cli.model import import_litellm

                credentials.resolve(run_spec.model, import_litellm())
        except spec_mod.SpecError as exc:
            if as_json:
                _print_json({"status": "error", "exit_code": EXIT_USAGE, "error": exc.message,
                             "where": ": ".join(str(p) for p in (exc.file, exc.key) if p), "fix": exc.fix},
                            stdout_fd)
            raise _fail(str(exc), EXIT_USAGE) from None

        run_id = new_run_id()
        trace_path = trace or default_trace_path(run_id)
        outcome = writer = None
        try:
            with _sigterm_as_interrupt():  # until the run's own handler takes over
                try:
                    check_writable(trace_path)  # a bad path fails at once
                    # Seconds of import before the trace exists: a signal now leaves no trace,
                    # and from the header on (written when the file opens) a readable one.
                    runner.import_litellm()
                    writer = runner.open_trace_file(trace_path, run_spec, run_id)
                except OSError as exc:
                    raise _fail(f"cannot write the trace to {trace_path}: {exc.strerror or exc}; "
                                "choose another path with --trace", EXIT_USAGE) from None

                sinks = []
                display: Any = nullcontext()
                errors_shown = False
                if not quiet and not as_json:
                    from asyncfc_cli.progress import progress_sink

                    err.print(f"[bold]asyncfc[/] {escape(run_spec.agent_name)} · model "
                              f"{escape(_model_label(run_spec.model))} · mode {run_spec.agent.mode}",
                              highlight=False)
                    # A live timeline on a terminal, plain lines anywhere else (CI logs, pipes).
                    sink = progress_sink(err)
                    sinks.append(sink)
                    if hasattr(sink, "__enter__"):
                        display = sink
                    else:
                        errors_shown = True  # the plain lines print a model error as it happens
                # Leaving the display (also on Ctrl-C) draws the final frame and stops its thread.
                with display:
                    outcome = runner.execute(run_spec, writer, sinks, run_id)
        except KeyboardInterrupt:
            pass
        except runner.ToolLoadError as exc:  # a tool source that could not start (e.g. an MCP server)
            raise _fail(str(exc), EXIT_USAGE) from None
    if outcome is None:
        where = f"trace: {trace_path}" if writer is not None else "before the run started, no trace written"
        if as_json:
            print_json({"status": "interrupted", "trace": str(trace_path) if writer is not None else None})
        err.print(f"[yellow]interrupted[/]; {escape(where)}")
        raise typer.Exit(EXIT_INTERRUPTED)

    result = outcome.result
    redact = outcome.redactor
    failures = unmet(run_spec.expect, result.answer, [c.tool for c in result.calls]) if result.status == "ok" else []
    code = EXIT_OK if result.status == "ok" else EXIT_FAILED
    if code == EXIT_OK and failures:
        code = EXIT_EXPECT
    if outcome.credentials_failure:
        # A key the endpoint refused (or never got) is a setup problem, like a bad spec.
        from asyncfc_cli.credentials import fix_line

        code, fix = EXIT_USAGE, fix_line(outcome.key_hint)
        if as_json:
            print_json(redact.value({**_json_report(run_spec, outcome, failures, code), "fix": fix}))
        else:
            shown = "the model endpoint refused the request's key (above)" if errors_shown else outcome.credentials_failure
            err.print(f"[red]error:[/] {escape(printable(redact.text(shown)))}\n  fix: {escape(fix)}")
            err.print(f"[dim]trace: {outcome.trace_path}[/]")
        raise typer.Exit(code)
    if as_json:
        print_json(redact.value(_json_report(run_spec, outcome, failures, code)))
    else:
        if result.answer is not None:
            print(answer_text(redact.text(result.answer)))
        if not quiet or result.status != "ok" or failures:
            _print_footer(result, [redact.text(f) for f in failures], trace_path, redact)
    raise typer.Exit(code)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, for the duration.

    Without it a SIGTERM during the seconds of start-up would end the
    process on the spot; with it, start-up is interrupted like by Ctrl-C
    (the run itself installs its own handler, which cancels cleanly).
    """
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _stdout_to_stderr() -> Iterator[int | None]:
    """Point file descriptor 1 at stderr for the duration (fd level, so child
    processes and C code are covered too); a no-op if either is unusable.
    Yields a descriptor of the real stdout (None if nothing was redirected)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
    except (OSError, ValueError):
        yield None
        return
    try:
        yield saved
    finally:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 1)
        os.close(saved)


def _print_footer(result: Any, failures: list[str], trace_path: Path, redact: Any) -> None:
    from asyncfc_cli.output import printable

    if result.status == "ok":
        err.print(f"[green]done[/] in {result.wall:.2f}s · {len(result.calls)} tool calls · "
                  f"{result.requests} model requests · tokens {result.tokens_in} in / {result.tokens_out} out")
    else:
        err.print(f"[red]{result.status}[/]: {escape(printable(redact.text(result.error or '')))}")
    for failure in failures:
        err.print(f"[red]expectation not met:[/] {escape(failure)}")
    err.print(f"[dim]trace: {trace_path}[/]")


def _model_label(model: Any) -> str:
    """The LiteLLM model string, with the [models] alias it was chosen by, if any."""
    return model.model if model.name == model.model else f"{model.model} ({model.name})"


def _print_json(obj: dict[str, Any], stdout_fd: int | None) -> None:
    """Print ``obj`` on the real stdout, also while fd 1 points at stderr (see _stdout_to_stderr)."""
    from asyncfc_cli.output import json_text
    from asyncfc_cli.redaction import Redactor, env_secrets

    # A spec error may quote a value that came from the environment.
    data = json_text(Redactor(env_secrets()).value(obj)) + "\n"
    try:
        redirected = stdout_fd is not None and sys.stdout.fileno() == 1
    except (OSError, ValueError, AttributeError):  # sys.stdout is not a file (e.g. captured)
        redirected = False
    if not redirected:
        print(data, end="", flush=True)
        return
    sys.stdout.flush()
    os.write(stdout_fd, data.encode())


def _json_report(run_spec: Any, outcome: Any, failures: list[str], code: int) -> dict[str, Any]:
    result = outcome.result
    header = next((e for e in outcome.trace.events if e.get("type") == "header"), {})
    return {
        "status": result.status,
        "exit_code": code,
        "answer": result.answer,
        "error": result.error,
        "task": str(run_spec.task_path),
        "agent": run_spec.agent_name,
        # The LiteLLM model string (sim or sim:P for the simulated one), not a [models] alias.
        "model": header.get("model", run_spec.model.model),
        "model_alias": header.get("model_alias", run_spec.model.name),
        "litellm_model": header.get("litellm_model"),
        "provider": header.get("provider"),
        "mode": run_spec.agent.mode,
        "wall": round(result.wall, 6),
        "turns": result.turns,
        "usage": {"requests": result.requests, "tokens_in": result.tokens_in, "tokens_out": result.tokens_out},
        "tool_calls": [
            {
                "id": c.call_id,
                "tool": c.tool,
                "arguments": c.arguments if c.arguments is not None else c.raw_arguments,
                "status": c.status,
                "error": c.error,
                "start": None if c.start is None else round(c.start, 6),
                "end": None if c.end is None else round(c.end, 6),
                "duration": None if c.duration is None else round(c.duration, 6),
            }
            for c in result.calls
        ],
        "expectations": {"met": not failures, "failures": failures},
        "trace": str(outcome.trace_path),
        # The whole conversation as the model saw it: handles, deliveries, waits.
        "messages": result.messages,
    }


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="agents.toml and task files to check.", show_default=False)],
) -> None:
    """Check agents and task files without running an agent (exit 2 on a bad file).

    MCP servers are started (within their startup_timeout) to check their tools.
    """
    from asyncfc_cli import spec as spec_mod

    bad = 0
    for path in files:
        try:
            summary = spec_mod.validate_file(path)
            err.print(f"[green]ok[/] {escape(str(path))}: {escape(summary)}")
        except spec_mod.SpecError as exc:
            bad += 1
            err.print(f"[red]error:[/] {escape(str(exc))}")
    raise typer.Exit(EXIT_USAGE if bad else EXIT_OK)


@sim_app.command("serve")
def sim_serve(
    task: Annotated[Path, typer.Argument(help="A task file whose [sim] plan the model follows.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 8765,
    protocol: Annotated[Optional[str], typer.Option(
        "--protocol", help="Wire format: openai (chat completions), anthropic (Messages), gemini "
        "(generateContent) or responses (OpenAI Responses). Default: the plan's [sim] protocol, "
        "openai unless set.")] = None,
) -> None:
    """Serve the simulated model on 127.0.0.1, in one provider's wire format.

    Prints the base URL and the LiteLLM model string that reach it; any
    client of that provider's API can use it (model name and key: anything).
    """
    from asyncfc_cli import spec as spec_mod
    from asyncfc_cli.sim.server import SimServer

    try:
        task_spec = spec_mod.load_task(task)
        if task_spec.sim is None:
            raise spec_mod.SpecError(task, "sim", "this task has no [sim] plan", "add a [sim] section")
        plan = spec_mod.load_sim_plan(task_spec.sim, task)
        from asyncfc_cli.sim.plan import PROTOCOLS

        if protocol is not None and protocol not in PROTOCOLS:
            raise spec_mod.SpecError(None, "--protocol", f"unknown protocol {protocol!r}",
                                     "use one of: " + ", ".join(PROTOCOLS))
    except spec_mod.SpecError as exc:
        raise _fail(str(exc), EXIT_USAGE) from None
    try:
        server = SimServer(plan, port=port, protocol=protocol)
    except OSError as exc:
        raise _fail(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}; choose another --port",
                    EXIT_USAGE) from None
    with server:
        err.print(f"simulated model ({server.protocol} format) at {server.base_url}; "
                  f"LiteLLM model string {server.litellm_model} (model name: anything; api key: anything). "
                  "Ctrl-C stops.")
        try:
            while True:
                import time

                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def main() -> None:
    import asyncfc_cli

    asyncfc_cli.OWN_PROCESS = True
    code = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:  # Ctrl-C outside a run (e.g. during startup)
        code = EXIT_INTERRUPTED
    # Everything the command owns is closed by now (trace, servers, threads of
    # the run). Tearing down the interpreter after importing LiteLLM's
    # thousands of modules takes about a second for nothing: flush and leave.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
