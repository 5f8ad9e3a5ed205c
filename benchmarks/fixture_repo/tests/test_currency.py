import pytest

from ledger.currency import Money


def test_add_same_currency():
    assert Money(150) + Money(250) == Money(400)


def test_add_other_currency_is_refused():
    with pytest.raises(ValueError, match="convert first"):
        Money(1, "USD") + Money(1, "EUR")


def test_unknown_currency():
    with pytest.raises(ValueError, match="unknown currency"):
        Money(1, "XYZ")


def test_conversion_round_trip_is_close():
    assert abs(Money(10000, "USD").to("GBP").to("USD").cents - 10000) <= 1


def test_str():
    assert str(Money(-1234, "CHF")) == "-12.34 CHF"
