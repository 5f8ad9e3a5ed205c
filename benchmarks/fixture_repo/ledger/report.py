"""Plain-text reports over a ledger."""

from __future__ import annotations

from ledger.accounts import Ledger
from ledger.currency import Money


def balance_sheet(ledger: Ledger, currency: str = "EUR") -> str:
    """One line per account, converted to ``currency``, and a total."""
    lines = []
    total = Money(0, currency)
    for name, balance in ledger.trial_balance().items():
        converted = balance.to(currency)
        total = total + converted
        lines.append(f"{name:<12} {converted}")
    # TODO: group accounts by type (assets, liabilities, income, expenses)
    lines.append(f"{'total':<12} {total}")
    return "\n".join(lines)


def journal(ledger: Ledger) -> str:
    """Every transaction with its legs, in posting order."""
    out = []
    for memo, legs in ledger.journal:
        out.append(memo)
        for name, amount in legs:
            out.append(f"  {name:<10} {amount}")
    # TODO: page long journals instead of returning one string
    return "\n".join(out)
