import pytest

from ledger import Ledger, Money


@pytest.fixture
def ledger():
    book = Ledger()
    book.open("cash")
    book.open("bank")
    book.open("travel", "USD")
    return book


def test_transfer_moves_money(ledger):
    ledger.transfer("withdrawal", "bank", "cash", Money(5000))
    assert ledger.accounts["cash"].balance == Money(5000)
    assert ledger.accounts["bank"].balance == Money(-5000)


def test_unbalanced_transaction_is_refused(ledger):
    with pytest.raises(ValueError, match="unbalanced"):
        ledger.post("oops", [("cash", Money(100)), ("bank", Money(-99))])


def test_currency_mismatch_is_refused(ledger):
    with pytest.raises(ValueError, match="holds USD"):
        ledger.transfer("fx", "bank", "travel", Money(100))


def test_duplicate_account(ledger):
    with pytest.raises(KeyError):
        ledger.open("cash")


def test_trial_balance_sums_to_zero(ledger):
    ledger.transfer("a", "bank", "cash", Money(700))
    ledger.transfer("b", "cash", "bank", Money(200))
    assert sum(m.cents for m in ledger.trial_balance().values()) == 0
