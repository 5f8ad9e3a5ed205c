"""Tools that fail the ways real tools do, for the fault matrix."""

from __future__ import annotations

import time


def boom() -> str:
    """Raise an exception."""
    raise RuntimeError("the tool broke")


def unserializable() -> object:
    """Return something that is not JSON."""
    return object()


def huge(size: int = 200_000) -> str:
    """Return a very long text.

    Args:
        size: How many characters.
    """
    return "x" * size


def hang(seconds: float = 120) -> str:
    """Block far longer than the tool's timeout.

    Args:
        seconds: How long to block.
    """
    time.sleep(seconds)
    return "finished"


def echo(text: str) -> str:
    """Return the text.

    Args:
        text: Anything.
    """
    return text


async def slow_echo(text: str, delay: float = 0.3) -> str:
    """Return the text after a delay (so the caller gets a pending handle).

    Args:
        text: Anything.
        delay: Seconds before answering.
    """
    import trio

    await trio.sleep(delay)
    return text


async def slow_boom(delay: float = 0.3) -> str:
    """Fail after a delay.

    Args:
        delay: Seconds before failing.
    """
    import trio

    await trio.sleep(delay)
    raise RuntimeError("the tool broke")
