"""The ``asyncfc`` command line: the typer app, assembled from :mod:`asyncfc_cli.commands`.

Every command lives in its own module there (``run``, ``batch``, ``validate``,
``init``, ``tools``/``agents``/``models``, ``sim``, ``bench``, ``trace``,
``worker``); this module only registers them, in the order
``asyncfc --help`` lists them, and runs the app. Human output goes to
stderr; stdout holds only the answer, or with ``--json`` one JSON object.
Nothing imported here imports LiteLLM: ``--help`` is instant.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Annotated, Any

import typer
import typer.main
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperArgument, TyperGroup, TyperOption

from asyncfc_cli import __version__
from asyncfc_cli.commands import init as init_cmd, inspect_cmds
from asyncfc_cli.commands.batch import BATCH_EXIT_CODES, batch
from asyncfc_cli.commands.bench import bench_app
from asyncfc_cli.commands.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, err, usage_fail
from asyncfc_cli.commands.run import run
from asyncfc_cli.commands.sim import sim_app
from asyncfc_cli.commands.trace import trace_app
from asyncfc_cli.commands.validate import validate
from asyncfc_cli.commands.worker import worker_app

EXIT_CODES_HELP = """
Exit codes: 0 success; 1 the run failed (model error, max turns, timeout, a
trace the disk could not take); 2 usage or spec error, or a missing or refused API key; 3 expectations in the
task not met; 130 interrupted.
"""

WARM_HELP = """
Commands that talk to a model start warm, from a resident worker that has
imported LiteLLM (asyncfc worker status); --cold anywhere on the command line,
or ASYNCFC_WARM=0, runs one in this process instead.
"""

def _plain_type(label: str) -> str:
    """typer's value label without Python's types: ``<list[Path]>`` -> ``<path>``
    (a repeated option or a list argument says so itself), ``<int range>`` -> ``<int>``
    (the range is in the help's brackets)."""
    label = re.sub(r"list\[(.*)\]", r"\1", label)
    return re.sub(r"\bPath\b", "path", label.replace(" range>", ">"))


class _Option(TyperOption):
    def display_type(self, ctx: Any) -> str:
        return _plain_type(super().display_type(ctx))


class _Argument(TyperArgument):
    """An argument named in capitals (``TASKS...``), as usage lines name them."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar or self.name.upper()

    def _rich_display_name(self) -> str:
        return self.display_name_raw + ("..." if self.nargs != 1 else "")

    def _usage_display_name(self) -> str:
        name = self._rich_display_name()
        return name if self.required else f"[{name}]"

    def display_type(self, ctx: Any) -> str:
        return _plain_type(super().display_type(ctx))


def _plain_params(command: Any) -> None:
    """Every parameter of ``command`` and the commands below it shown as :class:`_Option`/:class:`_Argument`.

    typer builds the parameters itself, so their help and usage forms are set
    here, once for every command, rather than in each declaration.
    """
    for param in command.params:
        if type(param) is TyperOption:
            param.__class__ = _Option
        elif type(param) is TyperArgument:
            param.__class__ = _Argument
    for sub in getattr(command, "commands", {}).values():
        _plain_params(sub)


class AsyncfcGroup(TyperGroup):
    """The root command: click's usage errors of every command, read as asyncfc errors.

    Parsing the root's options happens in :meth:`make_context`; resolving,
    parsing and running a command (of any group below) inside :meth:`invoke`.
    A usage error in either becomes ``error:``/``fix:`` lines, exit 2, and under
    ``--json`` the ``usage_error`` object (commands/common.py ``usage_fail``).
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        _plain_params(self)  # before help, parsing or completion reads them
        return super().main(*args, **kwargs)

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        argv = list(args)
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except NoArgsIsHelpError:  # bare ``asyncfc``: the help, as click shows it
            raise
        except UsageError as exc:
            raise usage_fail(exc, argv) from None
        ctx.meta["asyncfc.argv"] = argv
        return ctx

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except NoArgsIsHelpError:
            raise
        except UsageError as exc:
            raise usage_fail(exc, ctx.meta.get("asyncfc.argv", [])) from None


app = typer.Typer(
    name="asyncfc",
    cls=AsyncfcGroup,
    help="Run LLM agents with future-based asynchronous function calling.\n" + EXIT_CODES_HELP + WARM_HELP,
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (the shell asyncfc runs under)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# --help lists the commands in this order (then the command groups below).
app.command("run")(run)
app.command("batch", epilog=BATCH_EXIT_CODES)(batch)
app.command("validate")(validate)
app.command("init")(init_cmd.init)
inspect_cmds.register(app)
app.add_typer(sim_app, name="sim")
app.add_typer(bench_app, name="bench")
app.add_typer(trace_app, name="trace")
app.add_typer(worker_app, name="worker")


_command: list[Any] = []


def command() -> Any:
    """The app's click command tree, built once per process.

    typer builds it from the declarations on every call of ``app()``, a
    quarter of a second on a loaded machine; a warm worker builds it before it
    forks (warm/worker.py ``warm_up``), so a warm command starts with it built.
    The tree holds declarations only: what a command reads from its process
    (environment, working directory, terminal) is read when it parses and runs.
    """
    if not _command:
        built = typer.main.get_command(app)
        _plain_params(built)
        _command.append(built)
    return _command[0]


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


def _dispatch(args: list[str] | None = None) -> int:
    """Run the app and return its exit code.

    Usage errors are reported by :class:`AsyncfcGroup`, as an exit code. The
    program is always called ``asyncfc`` (also as ``python -m
    asyncfc_cli.cli``): help, and the completion variable ``_ASYNCFC_COMPLETE``.
    """
    try:
        result = command().main(args=args, prog_name="asyncfc", standalone_mode=False)
    except typer.TyperException as exc:  # another of click's errors (e.g. bare ``asyncfc``: the help)
        exc.show()  # type: ignore[attr-defined]
        return getattr(exc, "exit_code", EXIT_FAILED)
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
