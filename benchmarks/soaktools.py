"""Tools for the soak (benchmarks/soak.py): quick, failing and hanging work."""

from __future__ import annotations

import trio


async def work(key: str, latency: float) -> dict:
    """Sleep, then return the key.

    Args:
        key: Name of this call.
        latency: Seconds of simulated work.
    """
    await trio.sleep(latency)
    return {"key": key}


async def fail(key: str, latency: float) -> dict:
    """Sleep, then fail.

    Args:
        key: Name of this call.
        latency: Seconds before failing.
    """
    await trio.sleep(latency)
    raise RuntimeError(f"{key} failed on purpose")


async def hang(key: str) -> dict:
    """Hang until the tool's timeout cancels it.

    Args:
        key: Name of this call.
    """
    await trio.sleep(3600)
    return {"key": key}
