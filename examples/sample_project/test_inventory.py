import pytest

from inventory import Inventory
from report import summary


def test_add_and_value():
    inv = Inventory()
    inv.add("apple", 0.5, 4)
    inv.add("pear", 1.25, 2)
    assert inv.total_value() == 4.5


def test_remove_too_many():
    inv = Inventory()
    inv.add("apple", 0.5, 1)
    with pytest.raises(ValueError):
        inv.remove("apple", 2)


def test_summary_lists_items():
    inv = Inventory()
    inv.add("apple", 0.5, 2)
    assert summary(inv).splitlines() == ["apple: 2 x 0.50", "total: 1.00"]
