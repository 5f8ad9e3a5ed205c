"""What the loop knows about time: how long tools take, and what one more request costs.

Async mode decides, when a response ends with calls still running, whether
to hand the model pending handles at once or to hold the next request until
the calls finish (:class:`asyncfc_cli.futures.hold.LatencyHold`). A
handle costs nothing if the model has other work, but one more request if it
needs the value: at least a time to first token again (with the prefill of
the conversation). So the loop holds for a call only when it expects the
call to finish within that.

**How long a tool takes** (:class:`LatencyBook`), for a call already running
for ``e`` seconds: the median of ``d - e`` over the tool's known durations
``d > e`` (the remaining time of runs that lasted at least this long), so a
slow tail does not drag the estimate and a call already slower than every
known run counts as "not soon". Known durations are, newest first, those of
this run, then the ones remembered from earlier runs (the last
:data:`WINDOW` per tool, so a tool that changed is relearnt within a few
runs), and with none of those the tool's ``expected_latency`` from
agents.toml. Remembered durations live in the project's ``.asyncfc/latency.json``
(:func:`asyncfc_cli.project.latency_store`: next to the agents.toml in use,
wherever the run was started), keyed by tool name and a digest of its
definition (a changed definition starts over).

**What one more request costs** (:class:`RequestCost`): the latest measured
time to first token, which already includes the prefill of a conversation
that long. Before the first request has finished nothing is known and
nothing is held.

**The store** is a cache, and a file anyone may have put there: it is read
only if it is a regular file (not through a link, never a FIFO or a device)
of at most :data:`MAX_STORE_BYTES`, and a damaged one is ignored with one
warning on stderr. Runs that end at the same time (a batch, parallel CI
jobs) merge their durations into it under a lock (``latency.json.lock``,
``flock``) and replace it atomically, so none is lost; the merge runs in a
worker thread, so a lock held elsewhere never stalls the event loop. It
keeps at most :data:`MAX_TOOLS` tools, the most recently used.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import stat
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncfc_cli import project, safefiles

WINDOW = 16  # durations remembered per tool
DEFAULT_STORE = project.STORE  # in the project's directory: project.latency_store() is the path
MAX_STORE_BYTES = 4_000_000  # 1,000 tools of 16 durations take about 300 KB
MAX_TOOLS = 1000  # tools remembered; the least recently saved are forgotten first
MAX_KEY_CHARS = 512
# Seconds a save waits for other processes' merges before it gives up (its
# durations are then lost): merges take milliseconds, but a loaded machine can
# stall a holder for seconds. A cancelled run (Ctrl-C) waits less.
LOCK_WAIT = 10.0
LOCK_WAIT_CANCELLED = 0.5


def tool_key(tool: Any) -> str:
    """A tool's name and a digest of its definition: a changed tool is a new one."""
    from asyncfc_cli.trace import digest

    definition = {"kind": getattr(tool, "kind", ""), "source": getattr(tool, "source", ""),
                  "parameters": getattr(tool, "parameters", None)}
    return f"{tool.name}#{digest(definition)[:8]}"


_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_once(message: str) -> None:
    """A warning on stderr, once per process: the store is one file for every
    run of a batch, so its problem is said once, not once per run."""
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    from asyncfc_cli.output import printable

    try:
        print(f"asyncfc: warning: {printable(message)}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


@dataclass
class LatencyBook:
    """Known tool durations: this run's, then remembered ones, then configured ones."""

    store: Path | None = None  # None: nothing is read or written (benchmarks, tests)
    configured: dict[str, float] = field(default_factory=dict)  # tool name -> expected_latency
    keys: dict[str, str] = field(default_factory=dict)  # tool name -> tool_key
    remembered: dict[str, list[float]] = field(default_factory=dict)  # tool_key -> durations, oldest first
    observed: dict[str, list[float]] = field(default_factory=dict)  # tool name -> this run's durations, oldest first
    warn: Callable[[str], None] = field(default=warn_once, repr=False)

    @classmethod
    def for_tools(cls, tools: dict[str, Any], store: Path | None = None,
                  warn: Callable[[str], None] = warn_once) -> LatencyBook:
        book = cls(store=store, warn=warn)
        for name, tool in tools.items():
            book.keys[name] = tool_key(tool)
            expected = getattr(tool, "expected_latency", None)
            if expected is not None:
                book.configured[name] = float(expected)
        if store is not None:
            # Never blocks: a regular file of bounded size, or nothing (read_regular).
            book.remembered, problem = load_store(store)
            if problem:
                book.warn(f"tool durations of earlier runs ignored: {problem}")
        return book

    def observe(self, tool: str, seconds: float) -> None:
        if seconds >= 0 and math.isfinite(seconds):
            self.observed.setdefault(tool, []).append(seconds)

    def durations(self, tool: str) -> list[float]:
        """At most :data:`WINDOW` known durations of ``tool``, newest first."""
        here = self.observed.get(tool, [])
        before = self.remembered.get(self.keys.get(tool, tool), [])
        known = (here[::-1] + before[::-1])[:WINDOW]
        if not known and tool in self.configured:
            known = [self.configured[tool]]
        return known

    def remaining(self, tool: str, elapsed: float) -> float | None:
        """Expected seconds left for a call running for ``elapsed``; None: unknown or not soon."""
        longer = [d - elapsed for d in self.durations(tool) if d > elapsed]
        if not longer:
            # Every known run had ended by now (or none is known): this one is
            # slower than usual, or a new tool. Either way, not "about to finish".
            return None if self.durations(tool) == [] or elapsed > 0 else 0.0
        return statistics.median(longer)

    def save(self) -> None:
        """Remember this run's durations for the next runs: in memory (a book
        shared by several runs, as the benchmarks do) and in ``store`` (merged
        with what other runs wrote meanwhile). Blocks while another process
        merges (at most :data:`LOCK_WAIT`): from trio, use :meth:`save_async`."""
        observed = self._remember()
        if observed and self.store is not None:
            self._merge(observed, LOCK_WAIT)

    async def save_async(self) -> None:
        """:meth:`save` with the store's merge in a worker thread; shielded, so a
        cancelled run still saves what it measured (waiting for the lock at most
        :data:`LOCK_WAIT_CANCELLED` then, so Ctrl-C is not held up)."""
        import trio

        observed = self._remember()
        if observed and self.store is not None:
            cancelled = trio.current_effective_deadline() == -math.inf
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._merge, observed, LOCK_WAIT_CANCELLED if cancelled else LOCK_WAIT)

    def _remember(self) -> dict[str, list[float]]:
        """This run's durations into memory, by tool key; the observations are cleared."""
        by_key: dict[str, list[float]] = {}
        for tool, seconds in self.observed.items():
            key = self.keys.get(tool, tool)
            by_key[key] = by_key.get(key, []) + seconds
            self.remembered[key] = (self.remembered.get(key, []) + seconds)[-WINDOW:]
        self.observed = {}
        return by_key

    def _merge(self, observed: dict[str, list[float]], wait: float) -> None:
        store = Path(self.store)
        try:
            # .asyncfc is asyncfc's: no link on the way may lead out of the project.
            project.make_state_dirs(store)
            with _locked(store.with_name(store.name + ".lock"), wait) as locked:
                if not locked:
                    self.warn(f"{store} is locked by another process for over {wait:g}s; "
                              "this run's tool durations are not saved")
                    return
                remembered, problem = load_store(store)
                if problem:
                    self.warn(f"tool durations of earlier runs ignored: {problem}")
                for key, seconds in observed.items():
                    # Popped and put back: the most recently saved tools come last.
                    remembered[key] = (remembered.pop(key, []) + seconds)[-WINDOW:]
                for key in list(remembered)[: max(0, len(remembered) - MAX_TOOLS)]:
                    del remembered[key]
                safefiles.write_atomically(store, json.dumps(
                    {k: [round(v, 6) for v in vs] for k, vs in remembered.items()}), own=True)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                # A read-only checkout is normal (silent); anything else is worth a line.
                self.warn(f"tool durations not saved to {store}: {_reason(exc)}")


class _locked:
    """An exclusive ``flock`` on ``path`` (created if missing, never through a
    link), waiting at most ``wait`` seconds; the context value says if it was got."""

    def __init__(self, path: Path, wait: float) -> None:
        self.path, self.wait, self.fd = path, wait, -1

    def __enter__(self) -> bool:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
        mode = os.fstat(self.fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(self.fd)
            raise OSError(errno.EINVAL, f"{self.path} is {safefiles.kind(mode)}, not a regular file", str(self.path))
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # releases the lock


def _reason(exc: OSError) -> str:
    """An OSError as one phrase that names its file."""
    text = str(exc.strerror or exc)
    return text if not exc.filename or str(exc.filename) in text else f"{exc.filename}: {text}"


def load_store(path: Path) -> tuple[dict[str, list[float]], str | None]:
    """The durations in a store, and what was wrong with it (None: nothing, or
    no store yet). Entries that are not a tool's durations are left out."""
    try:
        raw = safefiles.read_regular(path, MAX_STORE_BYTES)
    except FileNotFoundError:
        return {}, None
    except OSError as exc:  # a link, a FIFO, a device, too large, unreadable
        return {}, _reason(exc)
    try:
        data = json.loads(raw)
    except RecursionError:
        return {}, f"{path}: JSON nested too deeply"
    except ValueError:  # not JSON, not UTF-8
        return {}, f"{path}: not JSON"
    if not isinstance(data, dict):
        return {}, f"{path}: not a JSON object"
    out: dict[str, list[float]] = {}
    bad = 0
    for key, values in data.items():
        good = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
                and 0 <= v < 1e9] if isinstance(values, list) else []
        if good and len(key) <= MAX_KEY_CHARS:
            out[key] = good[-WINDOW:]
        if not isinstance(values, list) or len(good) != len(values) or len(key) > MAX_KEY_CHARS:
            bad += 1
    for key in list(out)[: max(0, len(out) - MAX_TOOLS)]:
        del out[key]
    return out, f"{path}: {bad} entries that are not durations" if bad else None


@dataclass
class RequestCost:
    """What one more model request costs, from the requests measured so far."""

    ttft: float | None = None  # of the latest request: includes the prefill of the conversation so far

    def observe(self, ttft: float | None) -> None:
        if ttft is not None:
            self.ttft = ttft

