"""Measures of sets of time intervals: the union's length, the overlaps of the
model's and the tools' intervals in one sweep, percentiles. Plain arithmetic
on (start, end) pairs, shared by the trace analysis (:mod:`asyncfc_cli.analysis`)
and the live view's running sums (:mod:`asyncfc_cli.livespans`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

Interval = tuple[float, float]


def clip_to(intervals: Iterable[Interval], lo: float, hi: float) -> list[Interval]:
    out = []
    for a, b in intervals:
        a, b = max(a, lo), min(b, hi)
        if b > a:
            out.append((a, b))
    return out


def union_length(intervals: Iterable[Interval]) -> float:
    """Measure of the union of intervals."""
    total, cur_a, cur_b = 0.0, None, None
    for a, b in sorted(intervals):
        if cur_b is None or a > cur_b:
            if cur_b is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_b is not None:
        total += cur_b - cur_a
    return total


def sweep(model: list[Interval], tools: list[Interval]) -> tuple[float, float, float]:
    """(model‖tool, tool‖tool, any two at once) measures, by one sweep over the boundaries."""
    points: list[tuple[float, int, int]] = []
    for a, b in model:
        points += [(a, 1, 0), (b, -1, 0)]
    for a, b in tools:
        points += [(a, 0, 1), (b, 0, -1)]
    points.sort(key=lambda p: p[0])
    m = n = 0
    sums = (0.0, 0.0, 0.0)
    prev = None
    for t, dm, dn in points:
        if prev is not None and t > prev:
            sums = overlap_step(sums, t - prev, m, n)
        m, n, prev = m + dm, n + dn, t
    return sums


def overlap_step(sums: tuple[float, float, float], length: float, m: int, n: int) -> tuple[float, float, float]:
    """The (model‖tool, tool‖tool, any two) sums after ``length`` seconds with ``m``
    model requests and ``n`` tools in flight: one step of the sweep, which the
    live view also takes, one event at a time."""
    mt, tt, anyo = sums
    return (mt + length if m and n else mt, tt + length if n >= 2 else tt, anyo + length if m + n >= 2 else anyo)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation between closest ranks."""
    if not values:
        return math.nan
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)
