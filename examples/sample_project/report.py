"""Formatting an inventory for people."""

from __future__ import annotations

from inventory import Inventory


def summary(inv: Inventory) -> str:
    # TODO: sort by value instead of by name
    lines = [f"{item.name}: {item.quantity} x {item.price:.2f}" for item in sorted(inv.items.values(), key=lambda i: i.name)]
    lines.append(f"total: {inv.total_value():.2f}")
    return "\n".join(lines)
