"""A small soak through the real HTTP path (benchmarks/soak.py runs the big one)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))

import soak  # noqa: E402


def test_two_hundred_calls_with_failures_and_timeouts_lose_nothing():
    report = soak.soak(calls=200, runs=2, seed=5)
    for run in report["runs"]:
        assert run["problems"] == []
        assert run["calls"] == 200
        assert run["statuses"].get("error", 0) > 0 and run["statuses"].get("timeout", 0) > 0
        assert run["requests"] >= 9  # the calls really span many turns
    assert report["threads_left"] == []
    assert report["children_after"] == []
