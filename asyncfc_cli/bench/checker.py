"""An AST-style checker: the calls a model made against BFCL's possible answers.

BFCL's ground truth for a single-turn entry is a list of calls, each
``{function: {param: [acceptable values...]}}``. A run is correct when its
calls can be paired one to one with the ground truth, in any order (parallel
calls have none), and every pair matches:

- the same function;
- no parameter the ground truth does not list;
- every listed parameter present, unless ``""`` is among its acceptable values
  (an optional parameter may be omitted);
- each value equal to one acceptable value: strings compared the way BFCL
  does (case, spaces and ``,./-_*^`` ignored), numbers by value (an integer
  is accepted for a number, a float is not accepted for an integer
  parameter), booleans only as booleans, lists element by element, and a
  nested dict key by key with its own acceptable values.

Too many or too few calls, a wrong function, a wrong value or an unexpected
parameter are all failures, each with a reason a person can read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

Call = tuple[str, Any]  # (BFCL function name, arguments as the model sent them)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""


_IGNORED = re.compile(r"[ ,./\-_*^]")


def normalize(text: str) -> str:
    return _IGNORED.sub("", text).lower().replace("'", '"')


def param_types(functions: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """function name -> top-level parameter -> BFCL type, for the integer/float rule."""
    out: dict[str, dict[str, str]] = {}
    for fn in functions:
        props = (fn.get("parameters") or {}).get("properties") or {}
        out[fn["name"]] = {p: str(v.get("type", "")) for p, v in props.items() if isinstance(v, dict)}
    return out


def same(value: Any, accepted: Any, type_: str = "") -> bool:
    """Whether ``value`` (from the model) equals one ground-truth value."""
    if isinstance(accepted, dict):
        return _same_dict(value, accepted)
    if isinstance(accepted, list):
        return (isinstance(value, list) and len(value) == len(accepted)
                and all(same(v, a) for v, a in zip(value, accepted)))
    if isinstance(accepted, bool):
        return isinstance(value, bool) and value == accepted
    if isinstance(accepted, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if type_ == "integer" and isinstance(value, float) and not isinstance(accepted, float):
            return False
        return value == accepted
    if isinstance(accepted, str):
        return isinstance(value, str) and normalize(value) == normalize(accepted)
    return value == accepted


def _same_dict(value: Any, accepted: dict[str, Any]) -> bool:
    if not isinstance(value, dict) or set(value) - set(accepted):
        return False
    for key, options in accepted.items():
        if not isinstance(options, list):  # a literal dict value, not a list of options
            if key not in value or not same(value[key], options):
                return False
        elif key not in value:
            if "" not in options:
                return False
        elif not acceptable(value[key], options):
            return False
    return True


def acceptable(value: Any, options: list[Any], type_: str = "") -> bool:
    return any(same(value, a, type_) for a in options if not (a == "" and value != ""))


def match_call(call: Call, expected: dict[str, dict[str, list[Any]]],
               types: dict[str, dict[str, str]] | None = None) -> str | None:
    """None if ``call`` matches the ground-truth call ``expected``, else why not."""
    (function, params), = expected.items()
    name, args = call
    if name != function:
        return f"called {name}, expected {function}"
    if not isinstance(args, dict):
        return f"{name}: arguments are not an object ({_short(args)})"
    unexpected = sorted(set(args) - set(params))
    if unexpected:
        return f"{name}: unexpected parameter {unexpected[0]!r}"
    kinds = (types or {}).get(function, {})
    for param, options in params.items():
        if param not in args:
            if "" not in options:
                return f"{name}: missing required parameter {param!r}"
            continue
        if not acceptable(args[param], options, kinds.get(param, "")):
            return f"{name}: {param}={_short(args[param])} is not one of {_short(options)}"
    return None


def check(calls: list[Call], ground_truth: list[dict[str, dict[str, list[Any]]]],
          functions: list[dict[str, Any]] | None = None) -> Verdict:
    """Compare every call made with the ground truth, in any order."""
    types = param_types(functions or [])
    if len(calls) != len(ground_truth):
        made = ", ".join(name for name, _ in calls) or "none"
        wanted = ", ".join(next(iter(g)) for g in ground_truth)
        return Verdict(False, f"expected {len(ground_truth)} call(s) ({wanted}), got {len(calls)} ({made})")
    reasons = [[match_call(c, g, types) for g in ground_truth] for c in calls]
    pairs = _perfect_matching([[r is None for r in row] for row in reasons])
    if pairs is not None:
        return Verdict(True)
    # Report the first call that matches nothing, against the most similar expectation;
    # else the first expected call nothing matches.
    for i, row in enumerate(reasons):
        if all(r is not None for r in row):
            same_name = [r for r, g in zip(row, ground_truth) if next(iter(g)) == calls[i][0]]
            return Verdict(False, (same_name or row)[0])
    for j, expected in enumerate(ground_truth):
        column = [row[j] for row in reasons]
        if all(r is not None for r in column):
            same_name = [r for r, c in zip(column, calls) if c[0] == next(iter(expected))]
            return Verdict(False, (same_name or column)[0])
    return Verdict(False, "the calls cannot be paired one to one with the ground truth")


def _perfect_matching(ok: list[list[bool]]) -> list[int] | None:
    """Assignment call -> expected index using every expected call once (Kuhn's algorithm)."""
    n = len(ok)
    owner = [-1] * n  # expected j -> call i

    def place(i: int, seen: set[int]) -> bool:
        for j in range(n):
            if ok[i][j] and j not in seen:
                seen.add(j)
                if owner[j] < 0 or place(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    for i in range(n):
        if not place(i, set()):
            return None
    result = [0] * n
    for j, i in enumerate(owner):
        result[i] = j
    return result


def ground_truth_calls(ground_truth: list[dict[str, dict[str, list[Any]]]]) -> list[Call]:
    """One concrete correct answer: the first acceptable value of every parameter
    (an optional one is given whenever it has a value; omitted when it only has ``""``)."""
    calls: list[Call] = []
    for expected in ground_truth:
        (function, params), = expected.items()
        calls.append((function, _first_values(params)))
    return calls


def _first_values(params: dict[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for param, options in params.items():
        if not isinstance(options, list):
            args[param] = options
            continue
        values = [o for o in options if o != ""]
        if values:
            args[param] = _concrete(values[0])
    return args


def _concrete(value: Any) -> Any:
    if isinstance(value, dict):
        return _first_values(value)
    if isinstance(value, list):
        return [_concrete(v) for v in value]
    return value


def _short(value: Any, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
