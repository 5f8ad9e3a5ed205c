"""Tools for the real-model tests. Each execution is appended to the file named
by REAL_MODEL_TOOL_LOG, so a test can count how often each call really ran;
none raises on odd input (a 135M model writes odd input): a bad value is a
result the model reads."""

from __future__ import annotations

import json
import os


def _log(tool: str, args: dict) -> None:
    path = os.environ.get("REAL_MODEL_TOOL_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"tool": tool, "args": args}, default=repr) + "\n")


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def add(a: float, b: float) -> float | str:
    """Add two numbers.

    Args:
        a: The first number.
        b: The second number.
    """
    _log("add", {"a": a, "b": b})
    x, y = _number(a), _number(b)
    return "error: a and b must be numbers" if x is None or y is None else x + y


def multiply(a: float, b: float) -> float | str:
    """Multiply two numbers.

    Args:
        a: The first number.
        b: The second number.
    """
    _log("multiply", {"a": a, "b": b})
    x, y = _number(a), _number(b)
    return "error: a and b must be numbers" if x is None or y is None else x * y


def read_note(name: str) -> str:
    """Read one of the notes by its name.

    Args:
        name: The note's name, e.g. "shopping".
    """
    _log("read_note", {"name": name})
    notes = {"shopping": "milk, eggs, bread", "todo": "call Ada; fix the bike"}
    return notes.get(str(name).strip().lower(), f"no note called {name!r}; notes: shopping, todo")
