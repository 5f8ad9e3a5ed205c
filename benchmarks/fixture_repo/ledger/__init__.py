"""A tiny double-entry ledger."""

from ledger.accounts import Account, Ledger
from ledger.currency import Money

__all__ = ["Account", "Ledger", "Money"]
