"""The futures protocol of async mode, in one place.

What the model sees (docs/futures.md has a real transcript):

- a started call's tool message is a handle, ``{"future": "f3", "status": "pending"}``,
  or the result itself when the call finished before the next request went out;
- ``"$f3"`` in any argument (a whole value, inside a string, nested in lists or
  objects; ``"$f3.key.0"`` picks a part) is a dataflow edge: the call waits for
  f3 and runs with its value substituted;
- the extra tool ``wait(futures=[...], timeout=...)`` returns chosen values;
- values that resolve while the model decodes come with the next request as
  one plain user message;
- every value reaches the model exactly once, and an answer given while a
  future is unresolved or undelivered is held until the model has seen it all.

This module holds the wording, the reference syntax and the future records;
:mod:`asyncfc_cli.executor` runs the calls.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import trio

WAIT_TOOL = "wait"

# Added to the system prompt in async mode only; agents.toml may replace it
# (``futures_instruction``). Kept short: every token of it is prefilled on
# every request. Its size is documented in docs/futures.md.
INSTRUCTION = (
    'Tool calls run asynchronously and may return a handle {"future":"f1","status":"pending"}. '
    'Keep going: make independent calls at once, and pass "$f1" (or "$f1.key") as an argument '
    "to forward a result. Call wait(futures=[\"f1\"]) only when you must read a value. "
    "Results that arrive are sent to you in a message. Answer once you have every result you need."
)

WAIT_SCHEMA: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": WAIT_TOOL,
        "description": "Block until futures resolve; returns their values.",
        "parameters": {
            "type": "object",
            "properties": {
                "futures": {"type": "array", "items": {"type": "string"}, "description": 'ids, e.g. ["f1"]'},
                "timeout": {"type": "number", "description": "max seconds; then returns what is ready"},
            },
            "required": ["futures"],
        },
    },
}

DELIVERY_PREFIX = "Futures resolved: "
FINISH_NOTE = "All futures have resolved. Confirm your final answer, or revise it with these results."

_REF = re.compile(r"\$(f\d+)((?:\.[A-Za-z0-9_-]+)*)")


def handle(future_id: str) -> str:
    return json.dumps({"future": future_id, "status": "pending"}, separators=(",", ":"))


def delivery_message(values: dict[str, Any], finishing: bool = False) -> dict[str, Any]:
    """The plain message that carries values resolved while the model decoded."""
    text = DELIVERY_PREFIX + json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    if finishing:
        text += "\n" + FINISH_NOTE
    return {"role": "user", "content": text}


@dataclass(frozen=True)
class Reference:
    future: str
    path: tuple[str, ...] = ()


def find_references(value: Any) -> list[Reference]:
    """Every future reference in a JSON value, in order of appearance."""
    if isinstance(value, str):
        return [Reference(m.group(1), _split_path(m.group(2))) for m in _REF.finditer(value)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in find_references(v)]
    if isinstance(value, list):
        return [r for v in value for r in find_references(v)]
    return []


def _split_path(text: str) -> tuple[str, ...]:
    return tuple(p for p in text.split(".") if p)


class PathError(Exception):
    pass


def pick(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.lstrip("-").isdigit() and -len(value) <= int(key) < len(value):
            value = value[int(key)]
        else:
            raise PathError(f"has no part {key!r}")
    return value


def substitute(value: Any, values: dict[str, Any]) -> Any:
    """Replace references with resolved values; a whole-string reference keeps its JSON type."""
    if isinstance(value, dict):
        return {k: substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    if not isinstance(value, str):
        return value
    whole = _REF.fullmatch(value)
    if whole:
        return pick(values[whole.group(1)], _split_path(whole.group(2)))

    def text(m: re.Match[str]) -> str:
        part = pick(values[m.group(1)], _split_path(m.group(2)))
        return part if isinstance(part, str) else json.dumps(part, ensure_ascii=False)

    return _REF.sub(text, value)


@dataclass
class Future:
    """One async call: its id, inputs, state and outcome."""

    id: str
    call_id: str
    tool: str
    deps: list[str]
    state: str = "pending"  # pending -> waiting -> running -> ok | error | timeout | cancelled
    value: Any = None
    error: str | None = None
    delivered: str | None = None  # how the model got the outcome: result | wait | message
    resolved: trio.Event = field(default_factory=trio.Event)
    record: Any = None  # the executor's CallRecord

    @property
    def done(self) -> bool:
        return self.resolved.is_set()

    def outcome(self) -> Any:
        """What the model is shown for this future."""
        if self.state == "ok":
            return self.record.shown_value() if self.record is not None else self.value
        return {"error": self.error or self.state}


def parse_future_id(text: Any) -> str | None:
    if not isinstance(text, str):
        return None
    m = re.fullmatch(r"\$?(f\d+)", text.strip())
    return m.group(1) if m else None
