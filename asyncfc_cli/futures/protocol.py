"""The futures protocol's words: everything async mode puts in the conversation.

The instruction, the ``wait`` tool, a pending call's handle and the message
that delivers values resolved while the model decoded. Plain text and data
only (no trio, no tools): the spec and the mode registry read these names
without importing the scheduler, and the simulated model reads them to speak
the protocol as a real model is asked to (``asyncfc_cli/sim/engine.py``).
"""

from __future__ import annotations

import json
import re
from typing import Any

# The one name of the tool async mode adds; reserved in every mode (asyncfc_cli.modes).
WAIT_TOOL = "wait"

# Added to the system prompt in async mode only; agents.toml may replace it
# (``futures_instruction``). Kept short: every token of it is prefilled on
# every request. The simulated model reads it to learn the protocol, as a
# real model does (asyncfc_cli/sim/engine.py, ``Protocol``).
INSTRUCTION = (
    "Tools run in the background. Your calls are numbered f1, f2, ... in the order you make them "
    '(wait not counted); one still running returns {"future":"f3"}. Use a result in any call, even '
    'in the same message: "$f3" or "${f3.key}". To read results, call wait() for your message\'s '
    'calls or wait(futures=["f3"]); wait for all before you answer.'
)

WAIT_DESCRIPTION = "Results of futures (default: this message's calls)."
WAIT_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "futures": {"type": "array", "items": {"type": "string"}},
        "timeout": {"type": "number"},
    },
}

DELIVERY_PREFIX = "Futures resolved: "
FINISH_NOTE = "All futures have resolved. Confirm your final answer, or revise it with these results."


def instruction_for(override: str | None) -> str:
    """The instruction async mode adds to the system prompt: agents.toml's
    ``futures_instruction`` if set (an empty one removes it), else ours."""
    return INSTRUCTION if override is None else override


def handle(future_id: str) -> str:
    return json.dumps({"future": future_id}, separators=(",", ":"))


def delivery_message(values: dict[str, Any], finishing: bool = False) -> dict[str, Any]:
    """The plain message that carries values resolved while the model decoded."""
    text = DELIVERY_PREFIX + json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    if finishing:
        text += "\n" + FINISH_NOTE
    return {"role": "user", "content": text}


def parse_future_id(text: Any) -> str | None:
    """``f3``, ``$f3``, ``${f3}`` -> ``f3``; anything else -> None."""
    if not isinstance(text, str):
        return None
    m = re.fullmatch(r"\$?\{?(f\d+)\}?", text.strip())
    return m.group(1) if m else None
