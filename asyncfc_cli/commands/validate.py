"""``asyncfc validate``: check agents and task files without running an agent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from asyncfc_cli.commands.common import EXIT_OK, EXIT_USAGE, err


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
