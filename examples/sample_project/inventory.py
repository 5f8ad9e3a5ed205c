"""A tiny inventory module: the code the inspector agent examines."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Item:
    name: str
    price: float
    quantity: int = 0

    def value(self) -> float:
        return self.price * self.quantity


@dataclass
class Inventory:
    items: dict[str, Item] = field(default_factory=dict)

    def add(self, name: str, price: float, quantity: int = 1) -> Item:
        # TODO: reject negative quantities
        item = self.items.get(name)
        if item is None:
            item = self.items[name] = Item(name, price, 0)
        item.quantity += quantity
        return item

    def remove(self, name: str, quantity: int = 1) -> None:
        item = self.items[name]
        if quantity > item.quantity:
            raise ValueError(f"only {item.quantity} of {name} left")
        item.quantity -= quantity

    def total_value(self) -> float:
        return sum(item.value() for item in self.items.values())
