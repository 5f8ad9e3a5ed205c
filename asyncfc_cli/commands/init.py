"""``asyncfc init [DIR]``: scaffold a project that runs offline at once."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from asyncfc_cli.commands.init_templates import FILES
from asyncfc_cli.safefiles import inside, write_new

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
    exists, or tasks/ or tools/ is a link that leads out of DIR (or nowhere),
    nothing is written (exit 2). A failure while writing removes what was
    written: the project is written whole or not at all.
    """
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    problems = check_targets(directory)
    if problems:
        for problem in problems:
            err.print(f"[red]error:[/] {escape(problem)}")
        err.print("nothing written\n  fix: run asyncfc init in an empty directory, or name a new one: "
                  "asyncfc init DIR (or remove what is named above)")
        raise typer.Exit(EXIT_USAGE)
    try:
        written = write_project(directory)
    except OSError as exc:
        err.print(f"[red]error:[/] cannot write {escape(str(exc.filename or directory))}: "
                  f"{escape(exc.strerror or str(exc))}; nothing written\n"
                  "  fix: make the directory writable, or name another one: asyncfc init DIR")
        raise typer.Exit(EXIT_USAGE) from None
    for path in written:
        err.print(f"[green]created[/] {escape(str(path))}")
    where = "" if directory == Path(".") else f"cd {directory} && "
    err.print(f"\nnext: {escape(where)}asyncfc run tasks/hello.toml   (the simulated model: no key, no network)\n"
              '      asyncfc run -a hello "Say hi"   ·   asyncfc tools hello   ·   asyncfc --help')
    raise typer.Exit(EXIT_OK)


def check_targets(directory: Path) -> list[str]:
    """Everything that would stop ``asyncfc init`` from writing the whole
    project, found before anything is written: a file that already exists
    (a link too, even a dangling one), a directory on the way that is not one,
    a link that leads out of ``directory`` or nowhere."""
    problems: list[str] = []
    existing = []
    if os.path.lexists(directory) and not directory.is_dir():
        return [f"{directory} exists and is not a directory"]
    for name in FILES:
        path = directory / name
        parent = directory
        for part in Path(name).parts[:-1]:
            parent = parent / part
            problem = _dir_problem(parent, directory)
            if problem and problem not in problems:
                problems.append(problem)
        if os.path.lexists(path):
            existing.append(path)
    if existing:
        problems.append(f"{', '.join(map(str, existing))} already exist{'s' if len(existing) == 1 else ''}")
    return problems


def _dir_problem(path: Path, root: Path) -> str | None:
    """Why ``path`` (a directory of the project) cannot hold the project's files, or None."""
    if not os.path.lexists(path):
        return None
    if os.path.islink(path):
        target = os.readlink(path)
        if not os.path.exists(path):
            return f"{path} is a symbolic link to {target}, which does not exist"
        if not inside(path, root):
            return f"{path} is a symbolic link to {target}, outside {root}"
    if not path.is_dir():
        return f"{path} exists and is not a directory"
    return None


def write_project(directory: Path) -> list[Path]:
    """Write every file of the project, or nothing: on any failure what was
    written (files and directories) is removed again and the error raised."""
    created_dirs: list[Path] = []
    written: list[Path] = []
    try:
        missing = [p for p in (directory, *directory.parents) if not os.path.lexists(p)]
        directory.mkdir(parents=True, exist_ok=True)
        created_dirs.extend(reversed(missing))
        for name, text in FILES.items():
            path = directory / name
            parent = directory
            for part in Path(name).parts[:-1]:
                parent = parent / part
                if not os.path.lexists(parent):
                    os.mkdir(parent)
                    created_dirs.append(parent)
                elif problem := _dir_problem(parent, directory):  # it changed since the check
                    raise OSError(errno.ELOOP, problem, str(parent))
            # Exclusive, never through a link: a file that appeared since the check is not overwritten.
            write_new(path, text)
            written.append(path)
    except BaseException:
        for path in reversed(written):
            _quietly(os.unlink, path)
        for path in reversed(created_dirs):
            _quietly(os.rmdir, path)
        raise
    return written


def _quietly(action, path: Path) -> None:
    try:
        action(path)
    except OSError:
        pass
