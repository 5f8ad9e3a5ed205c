"""Seeded latency distributions for benchmark tools.

Written as ``KIND:ARGS``: ``const:0.5``, ``uniform:0.1,1.5``,
``lognormal:0.5,0.6`` (median seconds, sigma of the log), ``exp:0.4``
(mean seconds); a bare number is ``const``. A call's latency is drawn from a
generator seeded with the run's seed and the call's identity, so the same
call always takes the same time in every mode, and the ideal bound can be
computed before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from typing import Any

KINDS = ("const", "uniform", "lognormal", "exp")


@dataclass(frozen=True)
class Latency:
    kind: str
    a: float
    b: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Latency:
        """Parse ``KIND:ARGS``; raises ValueError with the accepted forms."""
        text = text.strip()
        kind, _, args = text.partition(":")
        if not args:
            kind, args = "const", text
        try:
            numbers = [float(x) for x in args.split(",") if x.strip()]
        except ValueError:
            numbers = []
        want = {"const": 1, "uniform": 2, "lognormal": 2, "exp": 1}.get(kind)
        if want is None or len(numbers) != want or any(n < 0 or not math.isfinite(n) for n in numbers):
            raise ValueError(
                f"bad latency {text!r}: expected const:S, uniform:MIN,MAX, lognormal:MEDIAN,SIGMA "
                "or exp:MEAN (seconds, non-negative)"
            )
        if kind == "uniform" and numbers[0] > numbers[1]:
            raise ValueError(f"bad latency {text!r}: uniform needs MIN <= MAX")
        return cls(kind, numbers[0], numbers[1] if want == 2 else 0.0)

    def __str__(self) -> str:
        return f"{self.kind}:{self.a:g}" + (f",{self.b:g}" if self.kind in ("uniform", "lognormal") else "")

    def sample(self, rng: random.Random) -> float:
        if self.kind == "const":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        if self.kind == "lognormal":
            return self.a * math.exp(rng.gauss(0.0, self.b)) if self.a > 0 else 0.0
        return rng.expovariate(1.0 / self.a) if self.a > 0 else 0.0

    def draw(self, seed: int, *identity: Any) -> float:
        """The latency of the call named by ``identity`` in the run seeded ``seed``."""
        return round(self.sample(seeded(seed, *identity)), 6)


def seeded(seed: int, *identity: Any) -> random.Random:
    """A generator that depends only on the seed and the identity (stable across processes)."""
    text = json.dumps([seed, *identity], sort_keys=True, ensure_ascii=False, default=str)
    return random.Random(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))
