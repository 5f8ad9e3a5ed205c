"""Tools for the foundation tests (tests/data/agents.toml): they sleep, fail
or echo on purpose, so tests can see timing, errors and arguments."""

from __future__ import annotations

import os
import time

import trio


def sleep_for(seconds: float) -> float:
    """Block for a while in a worker thread, then return how long it slept.

    Args:
        seconds: How long to sleep.
    """
    time.sleep(seconds)
    return seconds


async def nap(seconds: float) -> float:
    """Sleep without a thread (trio), then return how long it slept.

    Args:
        seconds: How long to sleep.
    """
    await trio.sleep(seconds)
    return seconds


def boom(message: str = "kaboom") -> str:
    """Always fail.

    Args:
        message: The error message.
    """
    raise RuntimeError(message)


def echo(text: str) -> str:
    """Return the text unchanged.

    Args:
        text: Anything.
    """
    return text


def chatty(text: str) -> str:
    """Write to stdout the way careless tools do, then return the text.

    Args:
        text: Anything.
    """
    print("chatty: print() noise")
    os.write(1, b"chatty: fd 1 noise\n")
    return text
