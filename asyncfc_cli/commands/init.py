"""``asyncfc init [DIR]``: scaffold a project that runs offline at once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from asyncfc_cli.commands.init_templates import FILES

EXIT_OK, EXIT_USAGE = 0, 2


def init(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Where to create the project (created if "
                                              "missing).")] = Path("."),
) -> None:
    """Create a project: agents.toml, tasks/hello.toml and tools/hello.py.

    The agents.toml defines the agent "hello" on the simulated model, with
    one Python tool (greet, in tools/hello.py) and one command tool
    (count_words: wc -w on a file inside the project). tasks/hello.toml is a
    task for it with a [sim] plan, so `asyncfc run tasks/hello.toml` works
    at once, offline. Existing files are never overwritten: if any of them
    exists, nothing is written (exit 2).
    """
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    targets = {directory / name: text for name, text in FILES.items()}
    existing = [path for path in targets if os.path.lexists(path)]
    if existing:
        err.print(f"[red]error:[/] {escape(', '.join(map(str, existing)))} already "
                  f"exist{'s' if len(existing) == 1 else ''}; nothing written\n"
                  "  fix: run asyncfc init in an empty directory, or name a new one: asyncfc init DIR")
        raise typer.Exit(EXIT_USAGE)
    written = []
    try:
        for path, text in targets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            # "x": a file that appeared since the check above is not overwritten either.
            with open(path, "x", encoding="utf-8") as f:
                f.write(text)
            written.append(path)
    except OSError as exc:
        err.print(f"[red]error:[/] cannot write {escape(str(exc.filename or directory))}: "
                  f"{escape(exc.strerror or str(exc))}"
                  + (f" (written before it: {escape(', '.join(map(str, written)))})" if written else ""))
        raise typer.Exit(EXIT_USAGE) from None
    for path in written:
        err.print(f"[green]created[/] {escape(str(path))}")
    where = "" if directory == Path(".") else f"cd {directory} && "
    err.print(f"\nnext: {escape(where)}asyncfc run tasks/hello.toml   (the simulated model: no key, no network)\n"
              '      asyncfc run -a hello "Say hi"   ·   asyncfc tools hello   ·   asyncfc --help')
    raise typer.Exit(EXIT_OK)
