"""What the loop knows about time: how long tools take, and what one more request costs.

Async mode decides, when a response ends with calls still running, whether
to hand the model pending handles at once or to hold the next request until
the calls finish (:meth:`asyncfc_cli.futures.AsyncScheduler._hold`). A
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
agents.toml. Remembered durations live in ``.asyncfc/latency.json``, keyed by
tool name and a digest of its definition (a changed definition starts over).

**What one more request costs** (:class:`RequestCost`): the latest measured
time to first token, which already includes the prefill of a conversation
that long. Before the first request has finished nothing is known and
nothing is held.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WINDOW = 16  # durations remembered per tool
DEFAULT_STORE = Path(".asyncfc") / "latency.json"


def tool_key(tool: Any) -> str:
    """A tool's name and a digest of its definition: a changed tool is a new one."""
    from asyncfc_cli.trace import digest

    definition = {"kind": getattr(tool, "kind", ""), "source": getattr(tool, "source", ""),
                  "parameters": getattr(tool, "parameters", None)}
    return f"{tool.name}#{digest(definition)[:8]}"


@dataclass
class LatencyBook:
    """Known tool durations: this run's, then remembered ones, then configured ones."""

    store: Path | None = None  # None: nothing is read or written (benchmarks, tests)
    configured: dict[str, float] = field(default_factory=dict)  # tool name -> expected_latency
    keys: dict[str, str] = field(default_factory=dict)  # tool name -> tool_key
    remembered: dict[str, list[float]] = field(default_factory=dict)  # tool_key -> durations, oldest first
    observed: dict[str, list[float]] = field(default_factory=dict)  # tool name -> this run's durations

    @classmethod
    def for_tools(cls, tools: dict[str, Any], store: Path | None = None) -> LatencyBook:
        book = cls(store=store)
        for name, tool in tools.items():
            book.keys[name] = tool_key(tool)
            expected = getattr(tool, "expected_latency", None)
            if expected is not None:
                book.configured[name] = float(expected)
        if store is not None:
            book.remembered = _load(store)
        return book

    def observe(self, tool: str, seconds: float) -> None:
        if seconds >= 0:
            self.observed.setdefault(tool, []).append(seconds)

    def durations(self, tool: str) -> list[float]:
        here = self.observed.get(tool, [])
        before = self.remembered.get(self.keys.get(tool, tool), [])
        known = (here + before[::-1])[:WINDOW]
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
        with what other runs wrote meanwhile)."""
        if not self.observed:
            return
        for tool, seconds in self.observed.items():
            key = self.keys.get(tool, tool)
            self.remembered[key] = (self.remembered.get(key, []) + seconds)[-WINDOW:]
        observed, self.observed = self.observed, {}
        if self.store is None:
            return
        try:
            remembered = _load(self.store)
            for tool, seconds in observed.items():
                key = self.keys.get(tool, tool)
                remembered[key] = (remembered.get(key, []) + seconds)[-WINDOW:]
            _write(self.store, remembered)
        except OSError:
            pass  # a cache we cannot write costs only a later guess


def _load(path: Path) -> dict[str, list[float]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[str, list[float]] = {}
    for key, values in data.items():
        if isinstance(key, str) and isinstance(values, list):
            good = [float(v) for v in values
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e9]
            if good:
                out[key] = good[-WINDOW:]
    return out


def _write(path: Path, data: dict[str, list[float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomic: concurrent runs never read half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".latency-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({k: [round(v, 6) for v in vs] for k, vs in data.items()}, out)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@dataclass
class RequestCost:
    """What one more model request costs, from the requests measured so far."""

    ttft: float | None = None  # of the latest request: includes the prefill of the conversation so far

    def observe(self, ttft: float | None) -> None:
        if ttft is not None:
            self.ttft = ttft

