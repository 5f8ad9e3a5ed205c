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
from asyncfc_cli.commands.common import ModeChoice
from asyncfc_cli.trace_cmd import trace_app  # reads trace files only: no LiteLLM

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_EXPECT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EXIT_CODES_HELP = """
Exit codes: 0 success; 1 the run failed (model error, max turns, timeout);
2 usage or spec error, or a missing or refused API key; 3 expectations in the
task not met; 130 interrupted.
"""

WARM_HELP = """
Commands that talk to a model start warm, from a resident worker that has
imported LiteLLM (asyncfc worker status); --cold anywhere on the command line,
or ASYNCFC_WARM=0, runs one in this process instead.
"""

app = typer.Typer(
    name="asyncfc",
    help="Run LLM agents with future-based asynchronous function calling.\n" + EXIT_CODES_HELP + WARM_HELP,
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (the shell asyncfc runs under)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
sim_app = typer.Typer(help="The embedded simulated model.", no_args_is_help=True)
app.add_typer(sim_app, name="sim")
from asyncfc_cli.bench.cli import bench_app  # noqa: E402  (light: typer only; litellm inside commands)

app.add_typer(bench_app, name="bench")
app.add_typer(trace_app, name="trace")
from asyncfc_cli.commands import init as init_cmd, inspect_cmds  # noqa: E402  (typer and rich only)

app.command("init")(init_cmd.init)
inspect_cmds.register(app)
from asyncfc_cli.commands.batch import BATCH_EXIT_CODES, batch  # noqa: E402  (light: typer only)

app.command("batch", epilog=BATCH_EXIT_CODES)(batch)
from asyncfc_cli.commands.worker import worker_app  # noqa: E402  (light: typer only)

app.add_typer(worker_app, name="worker")

# soft_wrap: a message is never broken at the console width, so a file path or
# key in an error stays greppable in CI logs (non-terminals get 80 columns).
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fail(message: str, code: int, as_json: dict[str, Any] | None = None, stdout_fd: int | None = None) -> typer.Exit:
    """Print an error (and, given ``as_json``, that object on stdout) and return the Exit to raise.

    ``stdout_fd``: the real stdout while file descriptor 1 points at stderr.
    """
    # A spec error may quote a value that came from the environment.
    from asyncfc_cli.redaction import Redactor, env_secrets

    redact = Redactor(env_secrets())
    err.print(f"[red]error:[/] {escape(redact.text(message))}")
    if as_json is not None:
        from asyncfc_cli.output import json_text

        text = json_text(redact.value(as_json), encoding=None) + "\n"
        try:
            # fd 1 points at stderr (see _stdout_to_stderr) only if sys.stdout is fd 1.
            redirected = stdout_fd is not None and sys.stdout.fileno() == 1
        except (OSError, ValueError, AttributeError):  # sys.stdout is not a file (e.g. captured)
            redirected = False
        if redirected:
            sys.stdout.flush()
            os.write(stdout_fd, text.encode(getattr(sys.stdout, "encoding", None) or "utf-8", "backslashreplace"))
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    return typer.Exit(code)


def _spec_fail(exc: Exception, as_json: bool, stdout_fd: int | None = None) -> typer.Exit:
    from asyncfc_cli.commands.common import spec_error_object

    return _fail(str(exc), EXIT_USAGE, spec_error_object(exc, EXIT_USAGE) if as_json else None, stdout_fd)


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
    task: Annotated[str, typer.Argument(
        metavar="TASK|PROMPT", show_default=False,
        help="The task file (task.toml); with --agent, the prompt itself, or - to read it from stdin.")],
    agent: Annotated[Optional[str], typer.Option(
        "--agent", "-a", help="Run this agent of agents.toml on a prompt, without a task file: "
        'asyncfc run -a AGENT "prompt". A simulated agent has no plan then, and says so.')] = None,
    agents: Annotated[Optional[Path], typer.Option(
        "--agents", help="agents.toml to use (default: next to the task or in a parent directory, "
        "then the current directory; with --agent, the current directory or a parent).")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", envvar="ASYNCFC_MODEL", help='Override the agent\'s model: a [models] name, "sim", or any '
        "LiteLLM model string such as openai/gpt-4o-mini. sim:anthropic, sim:gemini, sim:responses "
        "(and sim:openai) serve the simulated model in that provider's wire format, reached through "
        "LiteLLM's adapter for it.")] = None,
    mode: Annotated[Optional[ModeChoice], typer.Option(
        "--mode", envvar="ASYNCFC_MODE", help="Execution mode: async (futures: tools run while the model "
        "decodes), parallel (calls of one message run together, the model waits) or sync (one call at "
        "a time). Default: the agent's mode, async unless set.")] = None,
    trace: Annotated[Optional[Path], typer.Option(
        "--trace", help="Where to write the JSONL trace (default <runs dir>/<run-id>.jsonl; the runs "
        "dir is $ASYNCFC_RUNS_DIR, else .asyncfc/runs).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    sets: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Set a prompt parameter: --set key=value (repeatable).")] = None,
    timeout: Annotated[Optional[float], typer.Option(
        "--timeout", help="Seconds the whole run may take (overrides the agent's timeout).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    record: Annotated[Optional[Path], typer.Option(
        "--record", help="Record the model's streamed responses into this cassette (JSONL; no secret is "
        "written): replay it later with --replay, offline and without a key. See docs/cassettes.md.")] = None,
    replay: Annotated[Optional[Path], typer.Option(
        "--replay", help="Answer from this cassette instead of the model, through LiteLLM's real path: no key, no "
        "network. A request that differs from the recorded one stops the run (exit 2).")] = None,
    replay_speed: Annotated[str, typer.Option(
        "--replay-speed", help="recorded (each chunk at its recorded time), instant, or a factor (2: twice as "
        "fast).")] = "recorded",
    replay_match: Annotated[str, typer.Option(
        "--replay-match", help="request: each request must match the recorded one; sequence: serve the recorded "
        "responses in order, whatever was sent.")] = "request",
) -> None:
    """Run an agent on a task (or, with --agent, on a prompt) and print its answer.

    Progress goes to stderr, the answer to stdout (or, with --json, one object
    with status, answer, tool calls and timings, token usage, wall time and
    the trace path and the conversation as the model saw it; a spec error is
    an object too, with the error and its fix).
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
            run_spec = _resolve(task, agent, agents, model, mode.value if mode else None, overrides, timeout)
            from asyncfc_cli import cassette as cassettes

            cassette = cassettes.for_run(run_spec, record, replay, replay_speed, replay_match)
            if not run_spec.model.is_sim and replay is None:
                # A missing key fails here, once, before anything runs or is retried
                # (for known providers before LiteLLM's seconds of import, too).
                from asyncfc_cli import credentials
                from asyncfc_cli.model import import_litellm

                credentials.precheck(run_spec.model)
                credentials.resolve(run_spec.model, import_litellm())
        except spec_mod.SpecError as exc:
            raise _spec_fail(exc, as_json, stdout_fd) from None
        if not quiet:
            for hint in run_spec.hints:
                err.print(f"[yellow]warning:[/] {escape(hint)}")

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
                    from asyncfc_cli.commands.common import error_object

                    message = f"cannot write the trace to {trace_path}: {exc.strerror or exc}"
                    fix = "choose another path with --trace (or another runs dir with ASYNCFC_RUNS_DIR)"
                    raise _fail(f"{message}; {fix}", EXIT_USAGE,
                                error_object("usage_error", EXIT_USAGE, message, fix) if as_json else None,
                                stdout_fd) from None

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
                    outcome = runner.execute(run_spec, writer, sinks, run_id, cassette)
        except KeyboardInterrupt:
            pass
        except runner.ToolLoadError as exc:  # a tool source that could not start (e.g. an MCP server)
            from asyncfc_cli.commands.common import spec_error_object

            found = {**spec_error_object(spec_mod.tool_spec_error(exc, "", None), EXIT_USAGE),
                     "trace": str(trace_path)}
            raise _fail(str(exc), EXIT_USAGE, found if as_json else None, stdout_fd) from None
    if outcome is None:
        where = f"trace: {trace_path}" if writer is not None else "before the run started, no trace written"
        if as_json:
            print_json({"status": "interrupted", "exit_code": EXIT_INTERRUPTED,
                        "trace": str(trace_path) if writer is not None else None})
        err.print(f"[yellow]interrupted[/]; {escape(where)}")
        raise typer.Exit(EXIT_INTERRUPTED)

    result = outcome.result
    redact = outcome.redactor
    failures = unmet(run_spec.expect, result.answer, [c.tool for c in result.calls]) if result.status == "ok" else []
    code = EXIT_OK if result.status == "ok" else EXIT_FAILED
    if code == EXIT_OK and failures:
        code = EXIT_EXPECT
    if cassettes.failure_of(outcome):  # a replayed request that diverged: fix the cassette, not the run
        found = _json_report(run_spec, outcome, failures, EXIT_USAGE) if as_json else None
        message, found = cassettes.divergence(outcome, found)
        raise _fail(message, EXIT_USAGE, found)
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


def _resolve(target: str, agent: str | None, agents: Path | None, model: str | None, mode: str | None,
             overrides: dict[str, str], timeout: float | None) -> Any:
    """The run's spec: a task file, or with ``--agent`` a prompt (``-``: read from stdin)."""
    from asyncfc_cli import spec as spec_mod

    if agent is None:
        if target == "-" or not Path(target).exists():
            raise spec_mod.SpecError(target if target != "-" else None, "",
                                     "file not found" if target != "-" else "- (stdin) is a prompt, not a task",
                                     "check the path; to run a prompt without a task file, name an agent: "
                                     'asyncfc run -a AGENT "..." (asyncfc agents lists them)')
        return spec_mod.resolve_run(Path(target), agents_path=agents, model_override=model, mode_override=mode,
                                    overrides=overrides, timeout_override=timeout)
    if target != "-" and target.endswith(".toml") and Path(target).is_file():
        raise spec_mod.SpecError(None, "--agent", f"with --agent the argument is the prompt, but {target} is a file",
                                 "leave out --agent to run the task file (its agent is named in it)")
    prompt = _read_stdin_prompt() if target == "-" else target
    return spec_mod.resolve_prompt_run(prompt, agent, agents_path=agents, model_override=model, mode_override=mode,
                                       overrides=overrides, timeout_override=timeout)


MAX_PROMPT_BYTES = 10_000_000


def _read_stdin_prompt() -> str:
    """The prompt from stdin (``asyncfc run -a AGENT -``), bounded like spec files."""
    from asyncfc_cli.spec import SpecError

    if sys.stdin is None:
        raise SpecError(None, "stdin", "there is no stdin to read the prompt from", 'pass the prompt as the argument')
    if sys.stdin.isatty():
        err.print("[dim]reading the prompt from stdin; end it with Ctrl-D[/]")
    data = sys.stdin.buffer.read(MAX_PROMPT_BYTES + 1)
    if len(data) > MAX_PROMPT_BYTES:
        raise SpecError(None, "stdin", f"the prompt is larger than {MAX_PROMPT_BYTES // 1_000_000} MB",
                        "pass a shorter prompt")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(None, "stdin", f"the prompt is not UTF-8 text (byte {exc.start + 1})",
                        "send UTF-8 text") from None


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
        from asyncfc_cli.commands.common import plural

        err.print(f"[green]done[/] in {result.wall:.2f}s · {plural(len(result.calls), 'tool call')} · "
                  f"{plural(result.requests, 'model request')} · tokens {result.tokens_in} in / {result.tokens_out} out")
    else:
        err.print(f"[red]{result.status}[/]: {escape(printable(redact.text(result.error or '')))}")
    for failure in failures:
        err.print(f"[red]expectation not met:[/] {escape(failure)}")
    err.print(f"[dim]trace: {trace_path}[/]")


def _model_label(model: Any) -> str:
    """The LiteLLM model string, with the [models] alias it was chosen by, if any."""
    return model.model if model.name == model.model else f"{model.model} ({model.name})"


def _json_report(run_spec: Any, outcome: Any, failures: list[str], code: int) -> dict[str, Any]:
    result = outcome.result
    header = next((e for e in outcome.trace.events if e.get("type") == "header"), {})
    return {
        "status": result.status,
        "exit_code": code,
        "answer": result.answer,
        "error": result.error,
        "task": run_spec.task_name,
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
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object: status, exit_code and "
                                          "each file's result (error and fix, hints).")] = False,
) -> None:
    """Check agents and task files without running an agent (exit 2 if any is bad).

    MCP servers are started (within their startup_timeout) to check their
    tools. Also prints hints: likely mistakes that load fine but would fail
    when called, such as an async tool written for asyncio without
    async_backend = "asyncio".
    """
    from asyncfc_cli import spec as spec_mod
    from asyncfc_cli.commands.common import spec_error_object

    bad = 0
    results = []
    for path in files:
        hints: list[str] = []
        try:
            summary = spec_mod.validate_file(path, hints)
            err.print(f"[green]ok[/] {escape(str(path))}: {escape(summary)}")
            results.append({"path": str(path), "ok": True, "summary": summary, "hints": hints})
        except spec_mod.SpecError as exc:
            bad += 1
            err.print(f"[red]error:[/] {escape(str(exc))}")
            found = spec_error_object(exc, EXIT_USAGE)
            results.append({"path": str(path), "ok": False, "error": found["error"], "fix": found["fix"],
                            "hints": hints})
        for hint in hints:
            err.print(f"[yellow]hint:[/] {escape(hint)}")
    code = EXIT_USAGE if bad else EXIT_OK
    if as_json:
        from asyncfc_cli.output import print_json

        print_json({"status": "spec_error" if bad else "ok", "exit_code": code, "files": results})
    raise typer.Exit(code)


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


def _dispatch(args: list[str] | None = None) -> int:
    """Run the app and return its exit code.

    Usage errors (an unknown option, a missing argument, a value not among
    the choices) exit 2 with typer's message on stderr and, when the
    command line has ``--json``, a JSON object on stdout like every other
    outcome. The program is always called ``asyncfc`` (also as ``python -m
    asyncfc_cli.cli``): help, and the completion variable ``_ASYNCFC_COMPLETE``.
    """
    try:
        result = app(args=args, prog_name="asyncfc", standalone_mode=False)
    except typer.TyperException as exc:  # click's usage errors
        exc.show()  # type: ignore[attr-defined]
        code = getattr(exc, "exit_code", EXIT_USAGE)
        argv = sys.argv[1:] if args is None else args
        if "--json" in argv and code == EXIT_USAGE:
            from asyncfc_cli.commands.common import error_object
            from asyncfc_cli.output import print_json

            command = next((a for a in argv if not a.startswith("-")), "")
            print_json(error_object("usage_error", code, exc.format_message(),  # type: ignore[attr-defined]
                                    f"asyncfc {command} --help lists the arguments and options".replace("  ", " ")))
        return code
    except typer.Abort:
        err.print("Aborted!")
        return EXIT_FAILED
    return result if isinstance(result, int) else EXIT_OK


def main(exit_with: Any = os._exit) -> None:
    """``exit_with(code)`` ends the process (a warm child also reports the code: warm/child.py)."""
    import asyncfc_cli

    asyncfc_cli.OWN_PROCESS = True
    code = 0
    try:
        code = _dispatch()
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
    exit_with(code)


if __name__ == "__main__":
    main()
