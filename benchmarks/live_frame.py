"""What one frame of the live view costs as a run grows (asyncfc_cli/livespans.py).

    python benchmarks/live_frame.py

Runs of 10, 1,000 and 10,000 tool calls (a tenth as many model requests;
calls failing, timing out, pending and running) are fed to the live sink as
`asyncfc run` feeds it; then 50 frames are drawn at 120x30, as Rich's
refresh thread draws them ten times a second. Prints the time to take the
events in (once per event, not per frame) and the median time per frame.
The tests count the work (tests/test_timeline_live.py); this measures it.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_timeline_live import busy_run  # noqa: E402  (the tests' run, so both measure the same)

from asyncfc_cli.timeline import LiveTimeline  # noqa: E402


def measure(calls: int) -> tuple[float, float]:
    events = busy_run(calls, max(calls // 10, 1))
    sink = LiveTimeline(Console(file=io.StringIO(), width=120, height=30))
    started = time.perf_counter()
    for ev in events:
        sink(ev)
    taken = time.perf_counter() - started
    console = Console(file=io.StringIO(), width=120, height=30, color_system="truecolor")
    times = []
    for _ in range(50):
        t0 = time.perf_counter()
        console.print(sink.renderable())
        times.append(time.perf_counter() - t0)
    return taken, statistics.median(times)


def main() -> None:
    print(f"{'calls':>7} {'events in (once)':>17} {'per frame (median)':>19}")
    for calls in (10, 1_000, 10_000):
        taken, frame = measure(calls)
        print(f"{calls:>7} {taken * 1000:>14.1f} ms {frame * 1000:>16.2f} ms")


if __name__ == "__main__":
    main()
