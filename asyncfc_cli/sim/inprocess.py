"""The simulated model without HTTP: the same decisions and timing, in trio.

For tests that need exact time (trio's ``MockClock``) and thousands of runs:
it implements :class:`asyncfc_cli.model.ModelClient` by sleeping the render
delays with ``trio.sleep`` and feeding the chunks through the same
:class:`~asyncfc_cli.model.ToolCallAssembler` the LiteLLM bridge uses. The
HTTP server stays the main path; this is the seam for property tests.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator

import trio

from asyncfc_cli.model import FirstToken, ModelEvent, StreamDone, TextDelta, ToolCallAssembler
from asyncfc_cli.sim import engine
from asyncfc_cli.sim.plan import SimPlan


class InProcessSim:
    """A ModelClient that is the simulated model, running in the caller's trio loop."""

    def __init__(self, plan: SimPlan) -> None:
        self.plan = plan
        self.requests: list[list[dict]] = []  # what it was sent, for tests
        self.cache = engine.PrefixCache()

    async def stream(self, messages: list[dict], tools: list[dict]) -> AsyncIterator[ModelEvent]:
        messages = copy.deepcopy(messages)
        self.requests.append(messages)
        reply = engine.decide(self.plan, messages, tools)
        prompt = engine.prompt_tokens(messages, tools)
        rng = engine.timing_rng(self.plan, engine.assistant_turns(messages))
        assembler = ToolCallAssembler()
        content: list[str] = []
        first = True
        finish = None
        prefill = engine.prefill_tokens(self.plan, self.cache, messages, tools)
        for delay, choice in engine.render(reply, self.plan, prefill, rng):
            if delay > 0:
                await trio.sleep(delay)
            delta = choice["delta"]
            text, fragments = delta.get("content"), delta.get("tool_calls") or []
            if first and (text or fragments or delta.get("reasoning_content")):
                first = False
                yield FirstToken()
            if text:
                content.append(text)
                yield TextDelta(text)
            for call in assembler.feed(fragments, text):
                yield call
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
                for call in assembler.finish():
                    yield call
        yield StreamDone(finish, "".join(content), list(assembler.done), prompt,
                         engine.completion_tokens(reply))
