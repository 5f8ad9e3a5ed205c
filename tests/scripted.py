"""A model that says exactly what a test tells it to, in process (MockClock-friendly).

Each reply is a list of items: ``("call", name, arguments)`` (arguments a dict
or raw text), ``("text", "...")``, or ``("sleep", seconds)`` (decode time
before the next item). Calls get ids ``call_<n>`` unless an item gives its own
id as a fourth element. The last reply repeats. ``requests`` keeps what the
model was sent. It yields the same events as the LiteLLM bridge, so the agent
loop cannot tell the difference.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import trio

from asyncfc_cli.model import FirstToken, ModelEvent, StreamDone, TextDelta, ToolCallReady


class ScriptedModel:
    def __init__(self, replies: list[list[tuple]], chars_per_delta: int = 8) -> None:
        self.replies = replies
        self.requests: list[list[dict]] = []
        self.chars_per_delta = chars_per_delta
        self.closed_early = 0  # streams the loop stopped before their end

    async def stream(self, messages: list[dict], tools: list[dict]) -> AsyncIterator[ModelEvent]:
        self.requests.append(copy.deepcopy(messages))
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        calls: list[ToolCallReady] = []
        content: list[str] = []
        finished = False
        try:
            yield FirstToken()
            for item in reply:
                if item[0] == "sleep":
                    await trio.sleep(item[1])
                elif item[0] == "text":
                    text = item[1]
                    for i in range(0, len(text), self.chars_per_delta):
                        await trio.sleep(0.001)
                        content.append(text[i:i + self.chars_per_delta])
                        yield TextDelta(text[i:i + self.chars_per_delta])
                else:
                    _, name, args, *rest = item
                    raw = args if isinstance(args, str) else json.dumps(args)
                    call = ToolCallReady(len(calls), rest[0] if rest else f"call_{len(self.requests)}_{len(calls)}",
                                         name, raw)
                    calls.append(call)
                    yield call
            finished = True
            yield StreamDone("tool_calls" if calls else "stop", "".join(content), calls, 10, 10)
        finally:
            if not finished:
                self.closed_early += 1


def tool_contents(messages: list[dict]) -> list[Any]:
    """The tool messages' contents, parsed where they are JSON."""
    out = []
    for m in messages:
        if m.get("role") == "tool":
            try:
                out.append(json.loads(m["content"]))
            except ValueError:
                out.append(m["content"])
    return out
