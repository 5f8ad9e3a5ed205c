"""Tools whose output is not Unicode (tests/test_surrogates.py)."""

from __future__ import annotations


def echo(text: str) -> str:
    """Return the text.

    Args:
        text: Anything.
    """
    return text


def bytes_out() -> str:
    """Return text decoded from bytes that are not UTF-8, as a program's output may be."""
    return b"caf\xe9 \xff".decode("utf-8", "surrogateescape")
