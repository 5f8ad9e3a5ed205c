"""What several commands share: the mode choice, and ``--json`` for errors.

Every outcome of a command with ``--json`` is one JSON object on stdout,
errors included: ``{"status", "exit_code", "error", "fix", ...}``, so a
script never has to parse stderr to learn why nothing ran.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from asyncfc_cli.modes import NAMES

# ``--mode``: typer shows the registry's modes as ``[sync|parallel|async]`` and completes them.
ModeChoice = Enum("ModeChoice", {name: name for name in NAMES}, type=str)


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
