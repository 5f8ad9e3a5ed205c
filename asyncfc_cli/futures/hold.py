"""Whether to hold the next request for calls about to finish: the hold policies.

A response ended with calls still running and no ``wait``: the model did not
say what it needs. A handle costs it one more request if it needs the value
(at least a time to first token: :class:`~asyncfc_cli.latency.RequestCost`);
holding costs it at most the hold if it had other work. A policy decides,
from what is known at that moment, which calls to hold for and for how long
at most (a :class:`Hold`); the scheduler does the waiting and tells the policy
how long it really held (:meth:`HoldPolicy.spent`).

``never``    handles at once;
``fixed``    every running call, up to a fixed number of seconds, every time
             (the benchmarks compare it);
``latency``  the loop's policy (:class:`LatencyHold`).

A replayed run holds by none of them: which outcomes reach the model with
each request was decided by the tools' timing when the run was recorded, and
the replay makes the same deliveries whatever the timing now
(:class:`Deliveries`, :class:`Script`; docs/cassettes.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from asyncfc_cli.latency import LatencyBook, RequestCost


@dataclass
class Hold:
    """One hold: the calls to wait for, and the longest wait."""

    targets: list[Any]  # CallRecords
    budget: float
    expected: float | None = None  # the longest known estimate among the targets (for the trace)


class HoldPolicy:
    """Never holds; the base of the others."""

    name = "never"

    def plan(self, pending: list[Any], now: float) -> Hold | None:
        """The hold for ``pending`` (calls not done, with ``tool`` and ``start``) at ``now``, or None."""
        return None

    def spent(self, seconds: float) -> None:
        """The scheduler held this long."""


@dataclass
class FixedHold(HoldPolicy):
    """Every running call, up to ``seconds``, every time: no estimate, no budget per run."""

    seconds: float
    name = "fixed"

    def plan(self, pending: list[Any], now: float) -> Hold | None:
        if not pending or self.seconds <= 0:
            return None
        return Hold(list(pending), float(self.seconds))


@dataclass
class LatencyHold(HoldPolicy):
    """Hold, never longer than the latest time to first token, for the calls
    expected to finish within it (:class:`LatencyBook`) and for calls nothing
    is known about yet; a call known to take longer gets its handle at once,
    since holding could not save the request.

    Holds add up, and a model that had other work loses each one, while
    latency estimates can be wrong: so a run holds for one time to first token
    in all (``held`` is what it has used). A run is then never slower than
    without holds by more than one time to first token (when the model's
    messages do not depend on whether a value came back held), and the first
    reads of a model that does not say what it needs cost no extra request.
    Before a first token was measured nothing is held.
    """

    latency: LatencyBook
    cost: RequestCost
    held: float = field(default=0.0)
    name = "latency"

    def plan(self, pending: list[Any], now: float) -> Hold | None:
        if not pending or not self.cost.ttft:
            return None
        budget = self.cost.ttft - self.held
        if budget <= 0:
            return None
        targets, estimates = [], []
        for record in pending:
            known = self.latency.durations(record.tool)
            if not known:
                targets.append(record)  # a tool nothing is known about: it may be quick
                continue
            elapsed = 0.0 if record.start is None else now - record.start
            expected = self.latency.remaining(record.tool, elapsed)
            if expected is not None and expected <= budget:
                targets.append(record)
                estimates.append(expected)
        if not targets:
            return None
        return Hold(targets, budget, max(estimates) if estimates else None)

    def spent(self, seconds: float) -> None:
        self.held += seconds


@dataclass
class Deliveries:
    """The outcomes that reached the model with one request, by the way they went:
    in their calls' own tool messages after the response before it (``result``),
    in each ``wait`` call of that response, in order (``waits``: one list per
    call, empty when it returned no value), and in the plain message just before
    the request (``message``). Future ids, in delivery order."""

    result: list[str] = field(default_factory=list)
    waits: list[list[str]] = field(default_factory=list)
    message: list[str] = field(default_factory=list)

    def as_record(self) -> dict[str, Any]:
        """As a cassette's request record carries it (empty ways left out)."""
        return {name: value for name, value in (("result", self.result), ("waits", self.waits),
                                                ("message", self.message)) if value}

    @classmethod
    def from_record(cls, value: dict[str, Any]) -> Deliveries:
        return cls(list(value.get("result", [])), [list(w) for w in value.get("waits", [])],
                   list(value.get("message", [])))

    def wait(self, index: int) -> set[str]:
        """What the ``index``-th wait call of the response returned."""
        return set(self.waits[index]) if index < len(self.waits) else set()


class Script:
    """Where a run's deliveries are written down or read back from: its cassette.

    The async scheduler asks it before each request. Recording, it is told what
    each request carries (:meth:`delivered`). Replaying, it says what the
    recorded request carried (:meth:`recorded`), and the scheduler makes exactly
    those deliveries: a call whose result went back in its own tool message is
    held until it is done, however long it takes now, and one that went back as
    a handle does so again even if it is done, so each request is the recorded
    one whatever the tools' speed. This base does neither: timing decides."""

    def recorded(self) -> Deliveries | None:
        """The deliveries the recording made with the next request; None: timing decides."""
        return None

    def delivered(self, deliveries: Deliveries) -> None:
        """The deliveries made with the request about to be sent."""


def hold_policy(hold: str | float, latency: LatencyBook, cost: RequestCost) -> HoldPolicy:
    """``"latency"``, ``"never"`` or a number of seconds (``AgentRun.hold``) as a policy."""
    if hold == "never":
        return HoldPolicy()
    if hold == "latency":
        return LatencyHold(latency, cost)
    if isinstance(hold, (int, float)) and not isinstance(hold, bool):
        return FixedHold(float(hold))
    raise ValueError(f"unknown hold policy {hold!r}: use 'latency', 'never' or a number of seconds")
