from ledger import Ledger, Money
from ledger.report import balance_sheet, journal


def make():
    book = Ledger()
    book.open("cash")
    book.open("bank")
    book.transfer("withdrawal", "bank", "cash", Money(2500))
    return book


def test_balance_sheet_has_a_total():
    sheet = balance_sheet(make())
    assert sheet.splitlines()[-1].split() == ["total", "0.00", "EUR"]


def test_balance_sheet_in_dollars():
    assert "USD" in balance_sheet(make(), "USD")


def test_journal_lists_legs():
    assert journal(make()).splitlines() == ["withdrawal", "  bank       -25.00 EUR", "  cash       25.00 EUR"]
