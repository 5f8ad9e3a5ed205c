"""What several commands share: the mode choice, ``--json`` for errors, and
the I/O discipline of a command that runs an agent.

Every outcome of a command with ``--json`` is one JSON object on stdout,
errors included: ``{"status", "exit_code", "error", "fix", ...}``, so a
script never has to parse stderr to learn why nothing ran. Human output
goes to stderr (:data:`err`); while a run is in progress file descriptor 1
points at stderr too (:func:`stdout_to_stderr`), so stdout holds only the
answer, the table or the JSON object.

What came of a run (status, exit code, redacted texts) is decided by
:func:`asyncfc_cli.verdict.judge`, for ``run`` and ``batch`` alike; it lives
in the engine because the batch engine and its Ray workers judge each run
where it ran, and the engine never imports the commands.

Imports nothing heavy: ``asyncfc --help`` loads this module.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from asyncfc_cli.modes import NAMES
from asyncfc_cli.verdict import (EXIT_EXPECT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK,  # noqa: F401  (for commands)
                                 EXIT_USAGE, Verdict, judge)



class ProcessConsole:
    """A Rich console made on first use by the process that uses it.

    A warm worker imports the commands before it forks (docs/warm-start.md);
    a console made then would keep the worker's idea of the terminal (none:
    no colour, no live view) in every command it serves. Attribute access goes
    to the process's console; :meth:`get` gives the console itself where Rich
    wants a real one (a live display).
    """

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._made: tuple[int, Console] | None = None

    def get(self) -> Console:
        pid = os.getpid()
        if self._made is None or self._made[0] != pid:
            self._made = (pid, Console(**self._options))
        return self._made[1]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


# soft_wrap: a message is never broken at the console width, so a file path or
# key in an error stays greppable in CI logs (non-terminals get 80 columns).
err = ProcessConsole(stderr=True, highlight=False, soft_wrap=True)


# ``--mode``: typer shows the registry's modes as ``[sync|parallel|async]`` and completes them.
ModeChoice = Enum("ModeChoice", {name: name for name in NAMES}, type=str)


# The cassette options (docs/cassettes.md): ``run`` records or replays one
# cassette, ``batch`` one per run in a directory; both stream a replay the
# same way and match its requests the same way.
Record = Annotated[Optional[Path], typer.Option(
    "--record", help="Record the model's streamed responses into this cassette (JSONL; no secret is "
    "written): replay it later with --replay, offline and without a key. See docs/cassettes.md.")]
Replay = Annotated[Optional[Path], typer.Option(
    "--replay", help="Answer from this cassette instead of the model, through LiteLLM's real path: no key, no "
    "network. A request that differs from the recorded one stops the run (exit 2).")]
RecordDir = Annotated[Optional[Path], typer.Option(
    "--record-dir", help="Record every run's model responses into a cassette in this directory (one per "
    "run, named by the run's key); replay them with --replay-dir. See docs/cassettes.md.")]
ReplayDir = Annotated[Optional[Path], typer.Option(
    "--replay-dir", help="Answer every run from its cassette in this directory instead of the model: no key, "
    "no network. A run whose requests differ from its cassette's exits 2.")]
ReplaySpeed = Annotated[str, typer.Option(
    "--replay-speed", help="How a replayed cassette streams: recorded (each chunk at its recorded time), instant, "
    "or a factor (2: twice as fast).")]
ReplayMatch = Annotated[str, typer.Option(
    "--replay-match", help="request: each replayed request must match the recorded one; sequence: serve the "
    "recorded responses in order, whatever was sent.")]
# ``batch --mode``: a comma-separated list of them.
MODES_METAVAR = "<" + "|".join(NAMES) + ">[,...]"


def error_object(status: str, code: int, message: str, fix: str = "", **extra: Any) -> dict[str, Any]:
    """The ``--json`` object of an outcome where the command did not do its work."""
    return {"status": status, "exit_code": code, "error": message, "fix": fix or None, **extra}


def spec_error_object(exc: Any, code: int) -> dict[str, Any]:
    """A :class:`~asyncfc_cli.spec.SpecError` as a ``--json`` object: where, what and the fix apart."""
    where = ": ".join(str(p) for p in (exc.file, exc.key) if p)
    message = f"{where}: {exc.message}" if where else exc.message
    return error_object("spec_error", code, message, exc.fix,
                        file=None if exc.file is None else str(exc.file), key=exc.key or None)


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 tool call``, ``2 tool calls``: a count with its noun agreeing."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def fail(message: str, code: int, as_json: dict[str, Any] | None = None, stdout_fd: int | None = None) -> typer.Exit:
    """Print an error (and, given ``as_json``, that object on stdout) and return the Exit to raise.

    ``stdout_fd``: the real stdout while file descriptor 1 points at stderr
    (:func:`stdout_to_stderr`).
    """
    # A spec error may quote a value that came from the environment.
    from asyncfc_cli.redaction import Redactor, env_secrets

    redact = Redactor(env_secrets())
    err.print(f"[red]error:[/] {escape(redact.text(message))}")
    if as_json is not None:
        from asyncfc_cli.output import json_text

        write_stdout(json_text(redact.value(as_json), encoding=None) + "\n", stdout_fd)
    return typer.Exit(code)


def spec_fail(exc: Exception, as_json: bool, stdout_fd: int | None = None) -> typer.Exit:
    """A :class:`~asyncfc_cli.spec.SpecError`: its message, exit 2, and with ``--json`` its object."""
    return fail(str(exc), EXIT_USAGE, spec_error_object(exc, EXIT_USAGE) if as_json else None, stdout_fd)


def write_stdout(text: str, stdout_fd: int | None, encoding: str | None = None) -> None:
    """Write ``text`` to the real stdout, also while fd 1 points at stderr.

    ``encoding``: how to encode it for the redirected descriptor (default:
    ``sys.stdout``'s); what it cannot encode is written as escapes.
    """
    try:
        # fd 1 points at stderr (see stdout_to_stderr) only if sys.stdout is fd 1.
        redirected = stdout_fd is not None and sys.stdout.fileno() == 1
    except (OSError, ValueError, AttributeError):  # sys.stdout is not a file (e.g. captured in tests)
        redirected = False
    if not redirected:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    sys.stdout.flush()
    data = text.encode(encoding or getattr(sys.stdout, "encoding", None) or "utf-8", "backslashreplace")
    while data:
        data = data[os.write(stdout_fd, data):]


@contextmanager
def stdout_to_stderr() -> Iterator[int | None]:
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


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
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


def usage_error_parts(exc: Any) -> tuple[str, str]:
    """What a click usage error says, as asyncfc says errors: the message and its fix.

    The environment variable behind an option is named only when the bad
    value came from it (click names it whenever the option has one); a
    value not among the choices lists them in the fix.
    """
    from typer._click.core import ParameterSource
    from typer._click.exceptions import BadParameter, MissingParameter

    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "asyncfc"
    help_fix = f"{command} --help lists the arguments and options"
    param = getattr(exc, "param", None)
    if not isinstance(exc, BadParameter) or isinstance(exc, MissingParameter) or param is None:
        message = exc.format_message()
        if isinstance(exc, MissingParameter) and param is not None and not param.opts[0].startswith("-"):
            name = param.metavar or param.name.upper()
            return f"missing argument {name}", f"give the {name} argument ({help_fix})"
        return message[:1].lower() + message[1:], help_fix
    # pydantic's prefix on a validator's message (typer checks values with pydantic)
    reason = exc.message.removeprefix("Value error, ")
    reason = reason[:1].lower() + reason[1:]
    name = param.opts[0] if param.opts else (param.metavar or param.name.upper())
    envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
    from_env = ctx is not None and ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT
    choices = [str(getattr(c, "value", c)) for c in (param.type_descriptor.choices or ())] \
        if param.type_descriptor.is_choice else []
    fix = f"use one of: {', '.join(choices)} ({help_fix})" if choices else help_fix
    if from_env and envvars:
        where = " or ".join(envvars)
        return (f"{where} (the environment variable behind {name}): {reason}",
                f"set {where} to a valid value or unset it; {fix}")
    return f"{name}: {reason}", fix


def usage_fail(exc: Any, argv: list[str]) -> typer.Exit:
    """A usage error as every asyncfc error: ``error:`` and ``fix:`` lines, exit 2,
    and with ``--json`` on the command line the ``usage_error`` object on stdout."""
    message, fix = usage_error_parts(exc)
    as_json = "--json" in argv[:argv.index("--")] if "--" in argv else "--json" in argv
    return fail(f"{message}\n  fix: {fix}", EXIT_USAGE,
                error_object("usage_error", EXIT_USAGE, message, fix) if as_json else None)


def _project_tables(ctx: Any) -> dict[str, Any]:
    """The agents.toml a command would use (``--agents``, else the current directory's or a
    parent's), read for shell completion: nothing on any problem, a completion never fails."""
    from pathlib import Path

    from asyncfc_cli.spec.load import find_agents_upward, read_toml

    try:
        explicit = (ctx.params or {}).get("agents")
        path = Path(explicit) if explicit else find_agents_upward(Path.cwd())
        return read_toml(path) if path is not None and path.is_file() else {}
    except Exception:  # noqa: BLE001 - a broken agents.toml has no names to offer; validate says why
        return {}


def _names(table: Any, incomplete: str) -> list[str]:
    return [name for name in (table if isinstance(table, dict) else {}) if name.startswith(incomplete)]


def complete_model(ctx: typer.Context, incomplete: str) -> list[str]:
    """``--model``: the project's [models] names, then ``sim``."""
    names = _names(_project_tables(ctx).get("models"), incomplete)
    return names + [name for name in ("sim",) if name.startswith(incomplete) and name not in names]


def complete_agent(ctx: typer.Context, incomplete: str) -> list[str]:
    """``--agent``: the project's agent names."""
    return _names(_project_tables(ctx).get("agents"), incomplete)
