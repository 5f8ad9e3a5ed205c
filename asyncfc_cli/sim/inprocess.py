"""The simulated model without HTTP: the same decisions and timing, in trio.

For tests that need exact time (trio's ``MockClock``) and thousands of runs:
it implements :class:`asyncfc_cli.model.ModelClient` by sleeping the render
delays with ``trio.sleep``, encoding each event as the OpenAI chat chunks the
HTTP server would send, and reading them with the same
:class:`~asyncfc_cli.decoding.StreamDecoder` the LiteLLM bridge uses. The
HTTP server stays the main path; this is the seam for property tests.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator

import trio

from asyncfc_cli.decoding import ModelEvent, StreamDecoder
from asyncfc_cli.sim import engine
from asyncfc_cli.sim.plan import SimPlan
from asyncfc_cli.sim.protocols import Request
from asyncfc_cli.sim.protocols.openai import ChatEncoder
from asyncfc_cli.sim.render import render


def chat_encoder(messages: list[dict], tools: list[dict]) -> ChatEncoder:
    """An encoder of OpenAI chat chunks (with the usage chunk) for one in-process reply."""
    request = Request(messages=messages, tools=tools, stream=True, model="sim", include_usage=True)
    return ChatEncoder(request, "chatcmpl-inprocess", 0)


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
        encoder = chat_encoder(messages, tools)
        decoder = StreamDecoder(clock=trio.current_time)
        prefill = engine.prefill_tokens(self.plan, self.cache, messages, tools)
        for delay, event in render(reply, self.plan, prompt, rng, prefill):
            if delay > 0:
                await trio.sleep(delay)
            for chunk in encoder.chunks(event):
                for model_event in decoder.feed(chunk):
                    yield model_event
        for model_event in decoder.end():
            yield model_event
