"""Checking a run against the task's ``[expect]`` table (exit code 3 when unmet)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from asyncfc_cli.spec import Expectations


def unmet(expect: Expectations, answer: str | None, tools_called: Iterable[str]) -> list[str]:
    """Every expectation the run missed, as one readable line each."""
    text = answer or ""
    failures = [f"answer does not contain {s!r}" for s in expect.contains if s not in text]
    failures += [f"answer contains {s!r}" for s in expect.not_contains if s in text]
    if expect.matches is not None and not re.search(expect.matches, text):
        failures.append(f"answer does not match /{expect.matches}/")
    called = set(tools_called)
    failures += [f"tool {name!r} was never called" for name in expect.tools_called if name not in called]
    return failures
