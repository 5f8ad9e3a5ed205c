"""How a model used the futures protocol in an async run, read from its trace events.

A model built for the protocol (the simulated one) references results it only
forwards, waits for what it reads and answers after it has seen every
outcome. A real model may do none of that: this counts, per run, what it did,
so ``asyncfc bench bfcl --model M`` can show it next to accuracy.

- ``calls``: tool calls it made (``wait`` not counted).
- ``refs``: ``$fN`` references it wrote in arguments (each a dataflow edge).
- ``bad_refs``: calls refused for a reference that could not work: malformed
  text (``$f1`` inside text, an unterminated ``${``), an id never issued or
  that names the call itself or a later call never made (a miscount), a path
  into the result that is not there, or an id whose tool is not the one named.
- ``waits`` / ``bad_waits``: ``wait`` calls, and those refused (bad arguments,
  no futures to wait for).
- ``early_answers``: answers it gave while outcomes were still unseen (the
  finish rule held them and asked again: one request each).
- ``handles``: calls that came back as ``{"future": ...}`` handles, the
  outcome delivered later (by a ``wait`` or a delivery message).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from asyncfc_cli.futures.protocol import WAIT_TOOL as WAIT

# The executor's words for a reference that could not work (asyncfc_cli/futures/table.py,
# asyncfc_cli/references.py); a failed dependency is not the model's reference error.
_REFERENCE_ERRORS = ("malformed reference", "ambiguous reference", "unknown future", "refers to this call itself",
                     "cyclic reference", "names a call of", "bad reference in arguments", "no call f")

FIELDS = ("calls", "refs", "bad_refs", "waits", "bad_waits", "early_answers", "handles")


def protocol_use(events: Iterable[dict[str, Any]]) -> dict[str, int]:
    """The counts for one run, from its trace events."""
    out = dict.fromkeys(FIELDS, 0)
    events = list(events)
    for event in events:
        kind = event.get("type")
        if kind == "future_created":
            out["calls"] += 1
            out["refs"] += len(event.get("deps") or ())
        elif kind == "tool_end" and event.get("tool") != WAIT:
            error = str(event.get("error") or "")
            if event.get("status") == "error" and any(marker in error for marker in _REFERENCE_ERRORS):
                out["bad_refs"] += 1
        elif kind == "finish_held":
            out["early_answers"] += 1
    waits = [e for e in events if e.get("type") == "call_ready" and e.get("tool") == WAIT]
    out["waits"] = len(waits)
    # A wait that is served begins waiting; one refused (bad arguments, nothing to wait for) never does.
    served = {e.get("call_id") for e in events if e.get("type") == "wait_begin"}
    out["bad_waits"] = sum(1 for w in waits if w.get("call_id") not in served)
    delivered_at_once = set()
    for event in events:
        if event.get("type") == "delivery" and event.get("via") == "result":
            delivered_at_once.update(event.get("futures") or ())
    created = {e.get("future") for e in events if e.get("type") == "future_created"}
    out["handles"] = len(created - delivered_at_once)
    return out


def total(rows: Iterable[dict[str, int]]) -> dict[str, int]:
    out = dict.fromkeys(FIELDS, 0)
    for row in rows:
        for key in FIELDS:
            out[key] += row.get(key, 0)
    return out
