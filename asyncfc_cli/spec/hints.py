"""Likely mistakes in tools that load fine but would fail when called."""

from __future__ import annotations

import types
from typing import Any


_ASYNCIO_ONLY = ("asyncio", "aiohttp", "aiofiles", "asyncpg", "aiosqlite", "aioredis", "uvloop", "motor")


def tool_hints(tools: dict[str, Any], raw_tables: dict[str, Any]) -> list[str]:
    """Likely mistakes in tools that load fine but would fail when called.

    Today one: an ``async def`` Python tool written for asyncio, left on the
    default ``async_backend = "trio"``. It passes every check, then every
    call fails (and the model, not the run, sees the failure), so
    ``validate``, ``run`` and ``tools`` say so before it runs.
    """
    hints = []
    for name, tool in tools.items():
        raw = raw_tables.get(name)
        if getattr(tool, "kind", None) != "python" or not isinstance(raw, dict):
            continue
        if raw.get("async_backend", "trio") != "trio":
            continue
        used = _asyncio_use(_loaded_callable(str(getattr(tool, "source", ""))))
        if used:
            hints.append(f"tool {name!r} is an async function that uses {used} (asyncio), but async tools "
                         f'run on trio unless told otherwise, so every call would fail. Fix: add '
                         f'async_backend = "asyncio" to [tools.{name}]')
    return hints


def _loaded_callable(source: str) -> Any:
    """The function behind ``module:attr`` if its module is already imported (building
    the tool imported it), else None: hints never import anything themselves."""
    import sys

    module_name, sep, attrs = source.partition(":")
    obj = sys.modules.get(module_name) if sep else None
    for attr in attrs.split(".") if obj is not None else ():
        obj = getattr(obj, attr, None)
    return obj


def _asyncio_use(func: Any) -> str | None:
    """The first asyncio-only name an ``async def`` refers to, or None."""
    import functools
    import inspect

    while isinstance(func, functools.partial):
        func = func.func
    try:
        func = inspect.unwrap(func)  # through functools.wraps decorators, to the code that runs
    except ValueError:  # a __wrapped__ cycle
        return None
    if not inspect.iscoroutinefunction(func) or not hasattr(func, "__code__"):
        return None
    names, codes = [], [func.__code__]
    while codes:  # nested functions and comprehensions have their own code objects
        code = codes.pop()
        names.extend(code.co_names)
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    for name in names:
        value = func.__globals__.get(name)
        owner = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if isinstance(owner, str) and owner.split(".")[0] in _ASYNCIO_ONLY:
            return name
    return None

