"""Deterministic async tools for the futures property tests (MockClock-friendly)."""

from __future__ import annotations

from typing import Any

import trio

# run id -> keys in the order ordered tools actually ran / any tool ran
LOG: dict[str, list[str]] = {}


async def work(run: str, key: str, latency: float, inputs: list[Any] | None = None) -> dict:
    """Sleep, then return the key and the inputs it was given.

    Args:
        run: Which run's log to write.
        key: Name of this call.
        latency: Seconds of simulated work.
        inputs: Values from earlier calls.
    """
    await trio.sleep(latency)
    LOG.setdefault(run, []).append(key)
    return {"key": key, "inputs": inputs or []}


async def record(run: str, key: str, latency: float, inputs: list[Any] | None = None) -> dict:
    """An ordered side effect: append the key to the run's log after a delay.

    Args:
        run: Which run's log to write.
        key: Name of this call.
        latency: Seconds before the write happens.
        inputs: Values from earlier calls.
    """
    await trio.sleep(latency)
    LOG.setdefault(run, []).append(key)
    return {"key": key, "written": True, "inputs": inputs or []}


async def fail(run: str, key: str, latency: float, inputs: list[Any] | None = None) -> dict:
    """Sleep, then fail.

    Args:
        run: Which run's log to write.
        key: Name of this call.
        latency: Seconds before the failure.
        inputs: Values from earlier calls.
    """
    await trio.sleep(latency)
    LOG.setdefault(run, []).append(key)
    raise ValueError(f"{key} failed on purpose")
