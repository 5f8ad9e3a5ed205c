"""Tools for the hostile-argument tests: they return what they are given."""

from __future__ import annotations


def echo(text: str) -> str:
    """Return the text.

    Args:
        text: Anything.
    """
    return text


def listing() -> dict:
    """Return an object holding a list of three items."""
    return {"items": ["a", "b", "c"]}
