"""Amounts of money in integer cents, one currency per amount."""

from __future__ import annotations

from dataclasses import dataclass

RATES_TO_EUR = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17, "CHF": 1.04}


@dataclass(frozen=True)
class Money:
    cents: int
    currency: str = "EUR"

    def __post_init__(self) -> None:
        if self.currency not in RATES_TO_EUR:
            raise ValueError(f"unknown currency {self.currency!r}")

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(f"cannot add {other.currency} to {self.currency}; convert first")
        return Money(self.cents + other.cents, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.cents, self.currency)

    def to(self, currency: str) -> Money:
        # TODO: rates are fixed; read them from a source with a date
        eur = self.cents * RATES_TO_EUR[self.currency]
        return Money(round(eur / RATES_TO_EUR[currency]), currency)

    def __str__(self) -> str:
        return f"{self.cents / 100:.2f} {self.currency}"
