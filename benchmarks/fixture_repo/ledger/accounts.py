"""Accounts and a ledger of balanced transactions."""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger.currency import Money


@dataclass
class Account:
    name: str
    currency: str = "EUR"
    entries: list[tuple[str, Money]] = field(default_factory=list)

    @property
    def balance(self) -> Money:
        total = Money(0, self.currency)
        for _, amount in self.entries:
            total = total + amount
        return total


class Ledger:
    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.journal: list[tuple[str, list[tuple[str, Money]]]] = []

    def open(self, name: str, currency: str = "EUR") -> Account:
        if name in self.accounts:
            raise KeyError(f"account {name!r} already exists")
        self.accounts[name] = Account(name, currency)
        return self.accounts[name]

    def post(self, memo: str, legs: list[tuple[str, Money]]) -> None:
        """Post a transaction; its legs must sum to zero in each currency."""
        if len(legs) < 2:
            raise ValueError("a transaction needs at least two legs")
        sums: dict[str, int] = {}
        for name, amount in legs:
            if name not in self.accounts:
                raise KeyError(f"no account {name!r}")
            if self.accounts[name].currency != amount.currency:
                raise ValueError(f"{name} holds {self.accounts[name].currency}, not {amount.currency}")
            sums[amount.currency] = sums.get(amount.currency, 0) + amount.cents
        if any(sums.values()):
            raise ValueError(f"unbalanced transaction {memo!r}: {sums}")
        for name, amount in legs:
            self.accounts[name].entries.append((memo, amount))
        self.journal.append((memo, legs))

    def transfer(self, memo: str, source: str, target: str, amount: Money) -> None:
        self.post(memo, [(source, -amount), (target, amount)])

    def trial_balance(self) -> dict[str, Money]:
        return {name: account.balance for name, account in sorted(self.accounts.items())}
