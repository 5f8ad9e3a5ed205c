"""``asyncfc validate``: check agents and task files without running an agent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from asyncfc_cli.commands.common import EXIT_OK, EXIT_USAGE, err, plural


def validate(
    files: Annotated[Optional[list[Path]], typer.Argument(
        help="agents.toml and task files to check. Default: the project found from the current directory "
        "(the nearest agents.toml upward, as tools, agents and models find it) and every task in its tasks/.",
        show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object: status, exit_code and "
                                          "each file's result (error and fix, hints).")] = False,
) -> None:
    """Check agents and task files without running an agent (exit 2 if any is bad).

    MCP servers are started (within their startup_timeout) to check their
    tools. Also prints hints: likely mistakes that load fine but would fail
    when called, such as an async tool written for asyncio without
    async_backend = "asyncio". With no file: the project found from the
    current directory, its agents.toml and the tasks in its tasks/, and a
    summary line.
    """
    from asyncfc_cli import spec as spec_mod
    from asyncfc_cli.commands.common import spec_error_object, spec_fail

    project = None
    if not files:
        try:
            agents_file, tasks = spec_mod.project_files(Path.cwd())
        except spec_mod.SpecError as exc:
            raise spec_fail(exc, as_json) from None
        project = agents_file.parent
        files = [_shown(path) for path in (agents_file, *tasks)]
        err.print(f"project {escape(str(_shown(project)))}: {escape(str(files[0]))} and "
                  f"{plural(len(tasks), 'task')}")
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
    if project is not None:
        err.print(f"{'[red]' if bad else '[green]'}{plural(len(files), 'file')}: {len(files) - bad} ok, "
                  f"{bad} with errors[/]")
    if as_json:
        from asyncfc_cli.output import print_json

        document = {"status": "spec_error" if bad else "ok", "exit_code": code, "files": results}
        if project is not None:
            document["project"] = str(project)
        print_json(document)
    raise typer.Exit(code)


def _shown(path: Path) -> Path:
    """``path`` relative to the current directory when it is inside it, as a user would type it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()) or Path(".")
    except ValueError:
        return path
