"""Walks over JSON-like values that came from outside (a model, a tool, a file).

Such a value may nest as deep as its writer likes, so nothing here recurses:
each walk keeps its own stack, and a value nested 100,000 levels deep is no
different from a flat one but for its size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


def map_strings(value: Any, fn: Callable[[str], Any], keys: Callable[[str], str] | None = None) -> Any:
    """A copy of ``value`` with every string ``s`` (dict values and list items)
    replaced by ``fn(s)``, and every string dict key by ``keys(key)`` if given.

    Dicts and lists are copied, anything else is kept as it is. Strings are
    visited in document order, so the first failure ``fn`` raises is the one
    a reader would meet first.
    """
    if isinstance(value, str):
        return fn(value)
    if not isinstance(value, (dict, list)):
        return value
    root: list[Any] = [None]
    # (value to copy, the container its copy goes into, and where)
    stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]
    while stack:
        item, parent, slot = stack.pop()
        if isinstance(item, dict):
            copy: Any = {}
            pending = []
            for k, v in item.items():
                if keys is not None and isinstance(k, str):
                    k = keys(k)
                copy[k] = None  # the key's place, so the copy keeps the order
                pending.append((v, copy, k))
            stack.extend(reversed(pending))
        elif isinstance(item, list):
            copy = [None] * len(item)
            stack.extend(reversed([(v, copy, n) for n, v in enumerate(item)]))
        elif isinstance(item, str):
            copy = fn(item)
        else:
            copy = item
        parent[slot] = copy
    return root[0]


def strings(value: Any) -> Iterator[str]:
    """Every string inside ``value`` (dict values and list items), in document order."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
