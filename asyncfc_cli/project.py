"""Where a project keeps asyncfc's state: its runs and what it learned of its tools.

A project is the directory of the agents.toml in use: the one a run found
(next to its task, in a parent directory, or named with ``--agents``), or,
for commands that run nothing (``asyncfc trace``), the one found from the
current directory upwards. Without an agents.toml the current directory is
the project. Runs started anywhere, from a subdirectory or from outside with
``--agents``, are recorded in the same ``<project>/.asyncfc/runs`` and learn
tool durations into the same ``<project>/.asyncfc/latency.json``, so
``asyncfc trace list`` at the project's root shows them all and the learned
latencies are not split. ``ASYNCFC_RUNS_DIR`` moves both (the store is
``latency.json`` in it).

Every reader and writer of these paths goes through this module; it is
light (no pydantic, no LiteLLM) because ``asyncfc trace`` starts fast.
"""

from __future__ import annotations

import os
from pathlib import Path

from asyncfc_cli import safefiles

STATE = Path(".asyncfc")
RUNS = STATE / "runs"
STORE = STATE / "latency.json"
RUNS_DIR_ENV = "ASYNCFC_RUNS_DIR"


def root(agents_path: Path | str | None = None, start: Path | None = None) -> Path:
    """The project's directory: that of ``agents_path``, else of the nearest
    agents.toml from ``start`` (the current directory) upwards, else ``start``."""
    if agents_path is not None:
        return Path(os.path.abspath(agents_path)).parent
    here = Path(os.path.abspath(start or Path.cwd()))
    for directory in (here, *here.parents):
        try:
            if (directory / "agents.toml").is_file():
                return directory
        except OSError:  # an unreadable parent: no project above it that we can use
            break
    return here


def runs_dir(agents_path: Path | str | None = None) -> Path:
    """Where runs are recorded: ``$ASYNCFC_RUNS_DIR``, else the project's ``.asyncfc/runs``."""
    chosen = os.environ.get(RUNS_DIR_ENV)
    return Path(chosen) if chosen else root(agents_path) / RUNS


def latency_store(agents_path: Path | str | None = None) -> Path:
    """The file of tool durations the project's runs learn (:mod:`asyncfc_cli.latency`):
    the project's ``.asyncfc/latency.json``, or ``latency.json`` in ``$ASYNCFC_RUNS_DIR``
    when that moves the runs (a read-only checkout, CI, tests: all state goes there)."""
    chosen = os.environ.get(RUNS_DIR_ENV)
    return Path(chosen) / "latency.json" if chosen else root(agents_path) / STORE


def make_state_dirs(path: Path) -> None:
    """Create the directories of ``path`` when it is in a project's ``.asyncfc``:
    no part of ``.asyncfc/...`` may be a link that leads out of the project
    (:func:`asyncfc_cli.safefiles.make_dirs`). Any other path is the user's,
    and its directories are made as they are."""
    parent = Path(os.path.abspath(path)).parent
    for depth in range(len(parent.parts) - 1):
        if parent.parts[-1 - depth] == STATE.name:
            base = Path(*parent.parts[: len(parent.parts) - 1 - depth])
            safefiles.make_dirs(base, Path(*parent.parts[len(parent.parts) - 1 - depth:]))
            return
    parent.mkdir(parents=True, exist_ok=True)
