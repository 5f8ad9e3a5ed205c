"""Noticing an ``async def`` tool that blocks the event loop.

An ``async def`` tool runs on trio's loop. If it makes a blocking call
(``time.sleep``, ``requests.get``, a long computation) nothing else runs
until it returns: not its timeout, not other calls, not Ctrl-C. asyncfc
cannot interrupt it (only the tool can give control back), but it can say
so, to the user while it happens and to the model afterwards:

* a trio instrument times every task step; a step of a task that is running
  an async tool and lasts :data:`BLOCK_THRESHOLD` seconds or more is a block,
  recorded in the trace as a ``tool_blocked`` event;
* a watchdog thread looks at the step in progress every 0.1 s and, once one
  has lasted :data:`WARN_AFTER` seconds, prints a warning on stderr naming
  the tool, while the loop is still blocked (the only moment it helps);
* the tool's runner asks :func:`blocked_for` when the tool returns: if the
  blocks added up to its timeout or more, the call fails with an error the
  model sees instead of a result its timeout should have prevented.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import trio

from asyncfc_cli.events import ToolBlocked
from asyncfc_cli.tools.core import CURRENT_CALL

BLOCK_THRESHOLD = 0.5  # seconds one step must take to count as blocking the loop
WARN_AFTER = 1.0  # seconds into a block before the user is warned



@dataclass
class _Running:
    tool: str
    call_id: str | None
    entered: float
    blocked: float = 0.0


@dataclass(eq=False)  # instruments are kept in a set: hash by identity
class LoopWatch(trio.abc.Instrument):
    emit: Callable[..., Any]
    warn: Callable[[str], None]
    running: dict[Any, _Running] = field(default_factory=dict)
    step: tuple[Any, float] | None = None  # read by the watchdog thread
    warned: Any = None

    def before_task_step(self, task: Any) -> None:
        self.step = (task, time.perf_counter())

    def after_task_step(self, task: Any) -> None:
        step, self.step = self.step, None
        if step is None:
            return
        if task in self.running:
            self._account(self.running[task], step[1])

    def _account(self, run: _Running, step_start: float) -> None:
        seconds = time.perf_counter() - max(step_start, run.entered)
        if seconds >= BLOCK_THRESHOLD:
            run.blocked += seconds
            self.emit(ToolBlocked(call_id=run.call_id, tool=run.tool, seconds=round(seconds, 3)))

    def check(self) -> None:
        """From the watchdog thread: warn once per step that blocks too long."""
        step = self.step
        if step is None or step is self.warned:
            return
        task, start = step
        run = self.running.get(task)
        seconds = time.perf_counter() - start
        if run is not None and seconds >= WARN_AFTER:
            self.warned = step
            self.warn(
                f"asyncfc: warning: tool {run.tool!r} has blocked the event loop for "
                f"{seconds:.1f}s: it is an async def making a blocking call (e.g. time.sleep). "
                "Its timeout, other calls and Ctrl-C wait until it gives control back. "
                "Fix: make it a plain def (it then runs in a thread) or await async I/O."
            )


# The current run's watch, set in the run's task (its tool tasks inherit it).
# Each run of a batch has its own instrument and marks only its own tasks.
_WATCH: ContextVar[LoopWatch | None] = ContextVar("asyncfc_loop_watch", default=None)


def _stderr(message: str) -> None:
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


@asynccontextmanager
async def watch(trace: Any, warn: Callable[[str], None] = _stderr) -> AsyncIterator[LoopWatch]:
    """Watch the loop for blocking async tools while the run lasts."""

    loop_watch = LoopWatch(trace.emit, warn)
    stop = threading.Event()

    def watchdog() -> None:
        while not stop.wait(0.1):
            loop_watch.check()

    thread = threading.Thread(target=watchdog, name="asyncfc-loop-watchdog", daemon=True)
    trio.lowlevel.add_instrument(loop_watch)
    reset = _WATCH.set(loop_watch)
    thread.start()
    try:
        yield loop_watch
    finally:
        stop.set()
        _WATCH.reset(reset)
        trio.lowlevel.remove_instrument(loop_watch)
        thread.join()


def enter(tool: str) -> object | None:
    """Mark the current task as running ``tool``; returns a handle for :func:`leave`."""
    loop_watch = _WATCH.get()
    if loop_watch is None:
        return None
    task = trio.lowlevel.current_task()
    loop_watch.running[task] = _Running(tool, CURRENT_CALL.get(), time.perf_counter())
    return (loop_watch, task)


def leave(handle: object | None) -> float:
    """Unmark; returns the seconds the tool blocked the loop meanwhile."""
    if handle is None:
        return 0.0
    loop_watch, task = handle  # type: ignore[misc]
    run = loop_watch.running.pop(task, None)
    if run is None:
        return 0.0
    # A tool that blocks and returns without a checkpoint does it all inside
    # the step still in progress: count that step up to now.
    step = loop_watch.step
    if step is not None and step[0] is task:
        loop_watch._account(run, step[1])
    return run.blocked
