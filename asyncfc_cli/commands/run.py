"""``asyncfc run``: one agent on a task file (or, with ``--agent``, on a prompt).

The command reads the spec, opens the trace, shows progress, calls the
engine (:func:`asyncfc_cli.runner.execute`) and maps what came of the run to
output and an exit code. Human output goes to stderr; stdout holds only the
answer, or with ``--json`` one JSON object.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from asyncfc_cli.commands.common import Record, Replay, ReplayMatch, ReplaySpeed  # the cassette options
from asyncfc_cli.commands.common import (EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, ModeChoice, Verdict, complete_agent,
                                         complete_model, err, error_object, fail, judge, plural, sigterm_as_interrupt,
                                         spec_error_object, spec_fail, stdout_to_stderr)

MAX_PROMPT_BYTES = 10_000_000


def run(
    task: Annotated[str, typer.Argument(
        metavar="TASK|PROMPT", show_default=False,
        help="The task file (task.toml); with --agent, the prompt itself, or - to read it from stdin.")],
    agent: Annotated[Optional[str], typer.Option(
        "--agent", "-a", autocompletion=complete_agent, help="Run this agent of agents.toml on a prompt, without a task file: "
        'asyncfc run -a AGENT "prompt". A simulated agent has no plan then, and says so.')] = None,
    agents: Annotated[Optional[Path], typer.Option(
        "--agents", help="agents.toml to use (default: next to the task or in a parent directory, "
        "then the current directory; with --agent, the current directory or a parent).")] = None,
    model: Annotated[Optional[str], typer.Option(
        "--model", envvar="ASYNCFC_MODEL", autocompletion=complete_model, help='Override the agent\'s model: a [models] name, "sim", or any '
        "LiteLLM model string such as openai/gpt-4o-mini. sim:anthropic, sim:gemini, sim:responses "
        "(and sim:openai) serve the simulated model in that provider's wire format, reached through "
        "LiteLLM's adapter for it.")] = None,
    mode: Annotated[Optional[ModeChoice], typer.Option(
        "--mode", envvar="ASYNCFC_MODE", help="Execution mode: async (futures: tools run while the model "
        "decodes), parallel (calls of one message run together, the model waits) or sync (one call at "
        "a time). Default: the agent's mode, async unless set.")] = None,
    trace: Annotated[Optional[Path], typer.Option(
        "--trace", help="Where to write the JSONL trace (default <runs dir>/<run-id>.jsonl; the runs "
        "dir is $ASYNCFC_RUNS_DIR, else .asyncfc/runs next to the agents.toml in use).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    sets: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="<key=value>", help="Set a prompt parameter: --set key=value (repeatable).")] = None,
    timeout: Annotated[Optional[float], typer.Option(
        "--timeout", help="Seconds the whole run may take (overrides the agent's timeout).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    record: Record = None,
    replay: Replay = None,
    replay_speed: ReplaySpeed = "recorded",
    replay_match: ReplayMatch = "request",
    stream: Annotated[Optional[bool], typer.Option(
        "--stream/--no-stream", show_default=False, help="Write the answer to stdout as the model writes it "
        "(default: on when stdout is a terminal; never with --json). In async mode text appears once no "
        "outcome is unseen, so nothing shown is taken back.")] = None,
    continue_last: Annotated[bool, typer.Option(
        "-c", help='Continue the last run of this project: asyncfc run -c "next prompt" (its conversation, '
        "agent, model and mode).")] = False,
    continue_run: Annotated[Optional[str], typer.Option(
        "--continue", metavar="RUN_ID", help="Continue this run (an id from asyncfc trace list, or a trace "
        "file); outcomes its model never saw are delivered first.")] = None,
    mcp: Annotated[Optional[list[str]], typer.Option(
        "--mcp", metavar="<command line>", help='Add an MCP server\'s tools to the agent for this run: '
        '--mcp "mcp-server-git --repository ." (repeatable). Split as a POSIX shell splits words; leading '
        'NAME=value words are its environment; a lone http(s):// URL is a streamable HTTP server. '
        "A name clash with the agent's tools is an error. See docs/mcp.md.")] = None,
) -> None:
    """Run an agent on a task (or, with --agent, on a prompt) and print its answer.

    Progress goes to stderr, the answer to stdout (or, with --json, one object
    with status, answer, tool calls and timings, token usage, wall time and
    the trace path and the conversation as the model saw it; a spec error is
    an object too, with the error and its fix).
    """
    from asyncfc_cli.model import start_litellm_import

    start_litellm_import()  # seconds: overlapped with everything up to the first request
    from asyncfc_cli.trace import default_trace_path, new_run_id

    # Until the answer is printed, anything written to stdout (a python tool's
    # print(), a library's banner, a child process) goes to stderr instead:
    # stdout is the answer or the JSON object, nothing else.
    with stdout_to_stderr() as stdout_fd:
        run_spec, cassette = _prepare(task, agent, agents, model, mode.value if mode else None, sets, timeout,
                                      as_json, stdout_fd, (record, replay, replay_speed, replay_match),
                                      (continue_last, continue_run), mcp)
        if not quiet:
            for hint in run_spec.hints:
                err.print(f"[yellow]warning:[/] {escape(hint)}")
        run_id = new_run_id()
        trace_path = trace or default_trace_path(run_id, agents_path=run_spec.agents_path)
        on_tty = stdout_fd is not None and os.isatty(stdout_fd)
        streaming = not as_json and (stream if stream is not None else on_tty)
        started = _execute(run_spec, trace_path, run_id, as_json, quiet, stdout_fd, cassette, streaming)
        if started.answers is not None:
            started.answers.close()  # while its stdout descriptor is open
    if started.outcome is None:
        raise _interrupted(trace_path, started.writer, as_json)
    raise _report(run_spec, started, trace_path, as_json, quiet)


@dataclass
class _Started:
    """How far a run got."""

    writer: Any = None  # the trace's writer, once its header is written
    outcome: Any = None  # the run's RunOutcome; None if it was interrupted
    errors_shown: bool = False  # the progress lines printed the model's errors as they happened
    answers: Any = None  # the streamed answer's renderer (asyncfc_cli.answer_stream), with --stream


def _prepare(task: str, agent: str | None, agents: Path | None, model: str | None, mode: str | None,
             sets: list[str] | None, timeout: float | None, as_json: bool, stdout_fd: int | None,
             cassette_options: tuple[Any, ...], continuing: tuple[bool, str | None] = (False, None),
             mcp: list[str] | None = None) -> tuple[Any, Any]:
    """The run's spec and cassette plan (docs/cassettes.md), with the model's key
    checked (a replay needs none); a problem is exit 2 before anything runs."""
    from asyncfc_cli import cassette as cassettes, spec as spec_mod

    try:
        overrides = spec_mod.parse_set(sets or [])
        if continuing[0] or continuing[1] is not None:
            from asyncfc_cli.continuation import continued_run

            run_spec = continued_run(continuing[1], _prompt(task), agent, agents, model, mode, overrides, timeout)
        else:
            run_spec = _resolve(task, agent, agents, model, mode, overrides, timeout, cassette_options[1] is not None,
                                mcp)
        cassette = cassettes.for_run(run_spec, *cassette_options)
        if not run_spec.model.is_sim and cassette_options[1] is None:
            # A missing key fails here, once, before anything runs or is retried
            # (for known providers before LiteLLM's seconds of import, too).
            from asyncfc_cli import credentials
            from asyncfc_cli.model import import_litellm

            credentials.precheck(run_spec.model)
            credentials.resolve(run_spec.model, import_litellm())
    except spec_mod.SpecError as exc:
        raise spec_fail(exc, as_json, stdout_fd) from None
    return run_spec, cassette


def _resolve(target: str, agent: str | None, agents: Path | None, model: str | None, mode: str | None,
             overrides: dict[str, str], timeout: float | None, keyless: bool = False,
             mcp: list[str] | None = None) -> Any:
    """The run's spec: a task file, or with ``--agent`` a prompt (``-``: read from stdin);
    ``keyless``: it replays a cassette, so the model's key need not be set; ``mcp``: --mcp servers."""
    from asyncfc_cli import spec as spec_mod

    if agent is None:
        if target == "-" or not Path(target).exists():
            raise spec_mod.SpecError(target if target != "-" else None, "",
                                     "file not found" if target != "-" else "- (stdin) is a prompt, not a task",
                                     "check the path; to run a prompt without a task file, name an agent: "
                                     'asyncfc run -a AGENT "..." (asyncfc agents lists them)')
        return spec_mod.resolve_run(Path(target), agents_path=agents, model_override=model, mode_override=mode,
                                    overrides=overrides, timeout_override=timeout, keyless=keyless, mcp=mcp)
    if target != "-" and target.endswith(".toml") and Path(target).is_file():
        raise spec_mod.SpecError(None, "--agent", f"with --agent the argument is the prompt, but {target} is a file",
                                 "leave out --agent to run the task file (its agent is named in it)")
    prompt = _prompt(target)
    return spec_mod.resolve_prompt_run(prompt, agent, agents_path=agents, model_override=model, mode_override=mode,
                                       overrides=overrides, timeout_override=timeout, keyless=keyless, mcp=mcp)


def _prompt(target: str) -> str:
    return _read_stdin_prompt() if target == "-" else target


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
        # echo and heredocs end the text with a line break that is no part of the prompt
        return data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise SpecError(None, "stdin", f"the prompt is not UTF-8 text (byte {exc.start + 1})",
                        "send UTF-8 text") from None


def _execute(run_spec: Any, trace_path: Path, run_id: str, as_json: bool, quiet: bool,
             stdout_fd: int | None, cassette: Any = None, streaming: bool = False) -> _Started:
    """Open the trace and run; Ctrl-C or SIGTERM at any moment leaves what got that far."""
    from asyncfc_cli import runner

    started = _Started()
    try:
        with sigterm_as_interrupt():  # until the run's own handler takes over
            started.writer = _open_trace(run_spec, trace_path, run_id, as_json, stdout_fd, cassette)
            sinks, display, started.errors_shown = _progress(run_spec, quiet, as_json)
            if streaming:
                from asyncfc_cli.answer_stream import AnswerStream

                started.answers = AnswerStream(stdout_fd, display)
                sinks.append(started.answers)
            # Leaving the display (also on Ctrl-C) draws the final frame and stops its thread.
            with display:
                started.outcome = runner.execute(run_spec, started.writer, sinks, run_id, cassette)
    except KeyboardInterrupt:
        pass
    except runner.ToolLoadError as exc:  # a tool source that could not start (e.g. an MCP server)
        from asyncfc_cli import spec as spec_mod
        found = {**spec_error_object(spec_mod.tool_spec_error(exc, "", None), EXIT_USAGE), "trace": str(trace_path)}
        message, fix = spec_mod.split_fix(str(exc))
        raise fail(message + (f"\n  fix: {fix}" if fix else ""), EXIT_USAGE, found if as_json else None,
                   stdout_fd) from None
    return started


def _open_trace(run_spec: Any, trace_path: Path, run_id: str, as_json: bool, stdout_fd: int | None,
                cassette: Any = None) -> Any:
    """The trace's writer, its header written: an unwritable path is exit 2 before the run."""
    from asyncfc_cli import runner
    from asyncfc_cli.trace import check_writable

    try:
        check_writable(trace_path)  # a bad path fails at once
        # Seconds of import before the trace exists: a signal now leaves no trace,
        # and from the header on (written when the file opens) a readable one.
        runner.import_litellm()
        return runner.open_trace_file(trace_path, run_spec, run_id, cassette)
    except OSError as exc:
        message = f"cannot write the trace to {trace_path}: {exc.strerror or exc}"
        fix = "choose another path with --trace (or another runs dir with ASYNCFC_RUNS_DIR)"
        raise fail(f"{message}; {fix}", EXIT_USAGE,
                   error_object("usage_error", EXIT_USAGE, message, fix) if as_json else None, stdout_fd) from None


def _progress(run_spec: Any, quiet: bool, as_json: bool) -> tuple[list[Any], Any, bool]:
    """The run's progress sinks, the display to hold open while it runs, and
    whether the progress lines print a model error as it happens."""
    if quiet or as_json:
        return [], nullcontext(), False
    from asyncfc_cli.progress import progress_sink

    err.print(f"[bold]asyncfc[/] {escape(run_spec.agent_name)} · model "
              f"{escape(_model_label(run_spec.model))} · mode {run_spec.agent.mode}", highlight=False)
    # A live timeline on a terminal, plain lines anywhere else (CI logs, pipes).
    sink = progress_sink(err.get())
    if hasattr(sink, "__enter__"):
        return [sink], sink, False
    return [sink], nullcontext(), True  # the plain lines print a model error as it happens


def _model_label(model: Any) -> str:
    """The LiteLLM model string, with the [models] alias it was chosen by, if any."""
    return model.model if model.name == model.model else f"{model.model} ({model.name})"


def _interrupted(trace_path: Path, writer: Any, as_json: bool) -> typer.Exit:
    """Exit 130, saying where the trace is (``writer`` None: the run stopped before it was written)."""
    from asyncfc_cli.output import print_json
    from asyncfc_cli.verdict import trace_failure

    written = writer is not None
    where = f"trace: {trace_path}" if written else "before the run started, no trace written"
    if as_json:
        print_json({"status": "interrupted", "exit_code": EXIT_INTERRUPTED,
                    "trace": str(trace_path) if written else None})
    if written and writer.failed is not None:
        err.print(f"[red]error:[/] {escape(trace_failure(trace_path, writer.failed))}")
    err.print(f"[yellow]interrupted[/]; {escape(where)}")
    return typer.Exit(EXIT_INTERRUPTED)


def _report(run_spec: Any, started: _Started, trace_path: Path, as_json: bool, quiet: bool) -> typer.Exit:
    """Print what came of the run (answer and footer, or the JSON object) and return its Exit."""
    from asyncfc_cli.output import answer_text, print_json, printable

    outcome = started.outcome
    trace_failed = started.writer.failed  # the disk filled up mid-run: the verdict says so
    verdict = judge(outcome, run_spec.expect, trace_failed)
    from asyncfc_cli import cassette as cassettes

    if cassettes.failure_of(outcome):  # a replayed request that diverged: fix the cassette, not the run
        found = _json_report(run_spec, outcome, verdict) if as_json else None
        message, found = cassettes.divergence(outcome, found)
        if found is not None:
            found["exit_code"] = EXIT_USAGE
        return fail(message, EXIT_USAGE, found)
    if as_json:
        report = _json_report(run_spec, outcome, verdict)
        if trace_failed is not None or cassettes.write_failure(outcome):
            report["error"] = verdict.error
        print_json(outcome.redactor.value({**report, "fix": verdict.fix} if verdict.fix else report))
    elif outcome.credentials_failure:
        # A key the endpoint refused (or never got) is a setup problem, like a bad spec.
        shown = "the model endpoint refused the request's key (above)" if started.errors_shown else verdict.error
        err.print(f"[red]error:[/] {escape(printable(shown or ''))}\n  fix: {escape(verdict.fix or '')}")
        err.print(f"[dim]trace: {outcome.trace_path}[/]")
    else:
        streamed = started.answers
        if verdict.answer is not None and not (streamed is not None and streamed.shown(verdict.answer)):
            print(answer_text(verdict.answer))
        if not quiet or verdict.exit_code != EXIT_OK:
            _print_footer(outcome.result, verdict, trace_path)
    return typer.Exit(verdict.exit_code)


def _print_footer(result: Any, verdict: Verdict, trace_path: Path) -> None:
    from asyncfc_cli.output import printable

    if verdict.run_status == "ok":
        err.print(f"[green]done[/] in {result.wall:.2f}s · {plural(len(result.calls), 'tool call')} · "
                  f"{plural(result.requests, 'model request')} · tokens {result.tokens_in} in / {result.tokens_out} out")
    else:
        err.print(f"[red]{verdict.run_status}[/]: {escape(printable(verdict.error or ''))}")
    for failure in verdict.failures:
        err.print(f"[red]expectation not met:[/] {escape(failure)}")
    if verdict.fix:
        err.print(f"  fix: {escape(verdict.fix)}")
    err.print(f"[dim]trace: {trace_path}[/]")


def _json_report(run_spec: Any, outcome: Any, verdict: Verdict) -> dict[str, Any]:
    """The ``--json`` object of a finished run (the caller masks its secrets)."""
    from asyncfc_cli import cassette as cassettes

    result = outcome.result
    header = outcome.trace.header or {}  # the model's identity, as the run wrote it
    return {
        "status": verdict.run_status,
        "exit_code": verdict.exit_code,
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
        "expectations": {"met": not verdict.failures, "failures": verdict.failures},
        "trace": str(outcome.trace_path),
        # cassette, recorded, replayed (as batch --json has them), replay_speed, replay_match
        **cassettes.in_report(outcome),
        # The whole conversation as the model saw it: handles, deliveries, waits.
        "messages": result.messages,
    }

