"""Python tools for tests/test_isolation.py: they take a while, then answer with
their tag (or fail with it), in a worker thread or on trio's loop."""

from __future__ import annotations

import time

import trio


def hold(seconds: float, tag: str) -> str:
    """Block a worker thread for a while, then return the tag.

    Args:
        seconds: How long to block.
        tag: What to return.
    """
    time.sleep(seconds)
    return f"{tag}@hold"


async def rest(seconds: float, tag: str) -> str:
    """Sleep on the loop for a while, then return the tag.

    Args:
        seconds: How long to sleep.
        tag: What to return.
    """
    await trio.sleep(seconds)
    return f"{tag}@rest"


def boom(seconds: float, tag: str) -> str:
    """Block a while, then fail with the tag.

    Args:
        seconds: How long to block.
        tag: The error message.
    """
    time.sleep(seconds)
    raise RuntimeError(f"boom {tag}")
