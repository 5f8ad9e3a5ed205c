"""Per-model request limits shared by every run of a process (or a Ray cluster).

``asyncfc batch`` runs many agents at once against the same models. Two
limits hold per model, for all of them together:

- **concurrent requests**: at most ``max_requests`` streamed requests to one
  model are in flight at once (``--max-per-model``); a run whose agent
  wants to talk to the model waits its turn;
- **a shared cooldown on rate limits**: a 429 seen by any run pauses every
  run's next request to that model for a while (the ``Retry-After`` the
  provider sent, else 1 s doubling on each 429 that arrives after a
  cooldown ended, up to 60 s), so N runs do not each hammer a provider
  that already said "slow down" N times. The run that got the 429 retries
  with its own backoff too (``model.LiteLLMClient``); a successful request
  resets the doubling.

A model is identified by its LiteLLM model string and ``api_base``
(:func:`model_key`): every run of ``sim`` shares one limit, as every run of
``openai/gpt-4o-mini`` does.

The pieces stack: :class:`Cooldown` is the arithmetic (plain, no clock of
its own, also used by the Ray actor in :mod:`asyncfc_cli.ray_batch`);
:class:`ModelLimits` holds one semaphore and one cooldown per model for a
trio process; :class:`RunGate` is what one run's model client holds
(``LiteLLMClient(gate=...)``): each request attempt goes through
:meth:`RunGate.attempt`, and a wait longer than a millisecond is recorded in
the run's trace as a ``limit_wait`` event.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol


from asyncfc_cli.events import LimitWait
import trio

COOLDOWN_BASE = 1.0  # seconds of the first shared pause after a 429
COOLDOWN_CAP = 60.0  # longest pause, also the most a Retry-After header can ask for
RECORDED_WAIT = 0.001  # waits shorter than this are not worth a trace event


def model_key(model: str, api_base: str | None = None) -> str:
    """The identity limits are kept under: the model string, and its endpoint if one is set."""
    return f"{model} @ {api_base}" if api_base else model


def is_rate_limit(exc: BaseException) -> bool:
    """A 429 from the provider, as LiteLLM reports it (its RateLimitError, or a status code)."""
    return type(exc).__name__ == "RateLimitError" or getattr(exc, "status_code", None) == 429


def retry_after(exc: BaseException) -> float | None:
    """Seconds the provider asked for in a ``Retry-After`` header, if it sent one (capped)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "litellm_response_headers", None)
    try:
        value = headers.get("retry-after") if headers is not None else None
        seconds = float(value) if value is not None else None
    except (TypeError, ValueError, AttributeError):  # an HTTP date, or nothing usable
        return None
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, COOLDOWN_CAP)


@dataclass
class Cooldown:
    """When requests to one model may start again after a 429.

    ``until`` is a time on the caller's clock. A 429 that arrives while a
    cooldown is running came from a request that started before it: it
    extends nothing beyond the current step and does not escalate, so a
    burst of N concurrent 429s costs one pause, not N doublings.
    """

    base: float = COOLDOWN_BASE
    cap: float = COOLDOWN_CAP
    until: float = 0.0
    strikes: int = 0
    hits: int = 0  # every 429 seen, for reports

    def hit(self, now: float, asked: float | None = None) -> float:
        """Record a 429 at ``now``; returns the time requests may resume."""
        self.hits += 1
        if now >= self.until:
            self.strikes += 1
        delay = asked if asked is not None else min(self.cap, self.base * 2 ** (self.strikes - 1))
        self.until = max(self.until, now + delay)
        return self.until

    def ok(self) -> None:
        """A request succeeded: the next 429 starts again from ``base``."""
        self.strikes = 0


class RequestGate(Protocol):
    """What a model client asks before each request attempt (``LiteLLMClient(gate=...)``).

    ``attempt()`` is entered before a request is sent and left when its
    stream ends; an exception raised inside (a 429) is seen on the way out.
    """

    def attempt(self) -> Any: ...  # an async context manager


@dataclass
class _Model:
    slots: trio.Semaphore | None
    cooldown: Cooldown = field(default_factory=Cooldown)
    in_flight: int = 0
    peak: int = 0
    waited: float = 0.0


class ModelLimits:
    """Per-model limits for every run inside one trio run.

    ``max_requests``: concurrent requests per model (None: unlimited).
    """

    def __init__(self, max_requests: int | None = None, cooldown_base: float = COOLDOWN_BASE) -> None:
        if max_requests is not None and max_requests < 1:
            raise ValueError("max_requests must be at least 1")
        self.max_requests = max_requests
        self.cooldown_base = cooldown_base
        self._models: dict[str, _Model] = {}

    def _model(self, key: str) -> _Model:
        model = self._models.get(key)
        if model is None:
            slots = trio.Semaphore(self.max_requests) if self.max_requests else None
            model = self._models[key] = _Model(slots, Cooldown(base=self.cooldown_base))
        return model

    def gate(self, key: str, trace: Any = None) -> RunGate:
        """The gate one run's client uses for ``key``; waits go into ``trace`` (optional)."""
        return RunGate(self, key, trace)

    async def acquire(self, key: str) -> tuple[float, str]:
        """Wait for the model's cooldown and a free slot; returns (seconds waited, why)."""
        model = self._model(key)
        start = trio.current_time()
        reason = "concurrency"
        while True:
            until = model.cooldown.until
            if trio.current_time() < until:
                reason = "rate_limit"
                await trio.sleep_until(until)
            if model.slots is not None:
                await model.slots.acquire()
            if trio.current_time() < model.cooldown.until:
                # A 429 arrived while this request queued for a slot: wait it out too.
                if model.slots is not None:
                    model.slots.release()
                continue
            break
        model.in_flight += 1
        model.peak = max(model.peak, model.in_flight)
        waited = trio.current_time() - start
        model.waited += waited
        return waited, reason

    def release(self, key: str, error: BaseException | None) -> None:
        model = self._model(key)
        model.in_flight -= 1
        if model.slots is not None:
            model.slots.release()
        if error is None:
            model.cooldown.ok()
        elif is_rate_limit(error):
            model.cooldown.hit(trio.current_time(), retry_after(error))

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per model: the most requests seen in flight at once, 429s, seconds spent waiting."""
        return {key: {"peak_requests": m.peak, "rate_limits": m.cooldown.hits, "waited": round(m.waited, 3)}
                for key, m in self._models.items()}


class RunGate:
    """One run's gate onto :class:`ModelLimits` (see :class:`RequestGate`)."""

    def __init__(self, limits: ModelLimits, key: str, trace: Any = None) -> None:
        self.limits, self.key, self.trace = limits, key, trace

    @asynccontextmanager
    async def attempt(self) -> AsyncIterator[None]:
        waited, reason = await self.limits.acquire(self.key)
        record_wait(self.trace, waited, reason)
        error: BaseException | None = None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.limits.release(self.key, error)


def record_wait(trace: Any, waited: float, reason: str) -> None:
    """A ``limit_wait`` event for a wait worth recording, on the latest request of the run."""
    if trace is None or waited < RECORDED_WAIT:
        return
    trace.emit(LimitWait(request=trace.request, seconds=round(waited, 6), reason=reason))
