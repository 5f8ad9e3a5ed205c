"""A reply as a timed stream of neutral events, before any wire format.

``render`` says *what* the simulated model streams and *when*: the response
begins after the time to first token, then text pieces, tool-call headers
and argument fragments at the decode rate, each call's end, and the finish.
Each protocol in :mod:`asyncfc_cli.sim.protocols` encodes these events in
its provider's own format (an OpenAI chunk, an Anthropic
``content_block_delta``, a whole Gemini ``functionCall`` part, ...), so the
timing and the content are the same on every wire.

The stream interleaves text and tool calls in plan order (think text, call,
think text, call, ...): that is how decode time between calls is simulated.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from .engine import Call, Reply, Text, completion_tokens
from .plan import SimPlan


@dataclass(frozen=True)
class Begin:
    """The response starts: the time to first token has passed."""

    prompt_tokens: int = 0


@dataclass(frozen=True)
class TextPiece:
    text: str
    reasoning: bool = False  # thinking, streamed apart from the answer
    tokens: int = 1  # decode tokens it stands for (usage that splits thinking out)


@dataclass(frozen=True)
class CallBegin:
    index: int  # position among this reply's calls
    id: str
    name: str


@dataclass(frozen=True)
class ArgsPiece:
    index: int
    text: str


@dataclass(frozen=True)
class CallEnd:
    index: int
    id: str
    name: str
    arguments: str  # the whole argument text, for formats that send a call in one piece


@dataclass(frozen=True)
class Finish:
    reason: str  # "tool_calls" or "stop", as the engine decided
    prompt_tokens: int
    completion_tokens: int


StreamEvent = Begin | TextPiece | CallBegin | ArgsPiece | CallEnd | Finish


def _jittered(delay: float, plan: SimPlan, rng: random.Random) -> float:
    if not plan.jitter or delay <= 0:
        return delay
    return max(0.0, delay * (1.0 + plan.jitter * rng.uniform(-1.0, 1.0)))


def render(
    reply: Reply, plan: SimPlan, prompt_tokens: int, rng: random.Random, prefill_tokens: int | None = None
) -> Iterator[tuple[float, StreamEvent]]:
    """Timed stream of ``reply``: ``(delay_before, event)`` pairs.

    ``prompt_tokens`` is what usage reports; ``prefill_tokens`` what the
    first token waits for (the prompt minus what the server's prompt cache
    holds: :func:`asyncfc_cli.sim.engine.prefill_tokens`; default: all of it).

    The delay is slept *before* the event is sent. One token of decode time
    per text piece (four characters), per call header and per argument
    fragment of ``plan.chunk_chars`` characters.
    """
    token = 1.0 / plan.decode_tps
    first = plan.ttft + (prompt_tokens if prefill_tokens is None else prefill_tokens) / plan.prefill_tps
    yield _jittered(first, plan, rng), Begin(prompt_tokens)
    index = 0
    previous = None
    for segment in reply.segments:
        if isinstance(segment, Text):
            for piece, tokens in _content_pieces(segment.text, previous):
                yield _jittered(tokens * token, plan, rng), TextPiece(piece, segment.reasoning, tokens)
                previous = piece
            continue
        assert isinstance(segment, Call)
        previous = None
        yield _jittered(token, plan, rng), CallBegin(index, segment.id, segment.name)
        step = plan.chunk_chars
        for start in range(0, len(segment.arguments), step):
            yield _jittered(token, plan, rng), ArgsPiece(index, segment.arguments[start:start + step])
        yield 0.0, CallEnd(index, segment.id, segment.name, segment.arguments)
        index += 1
    yield 0.0, Finish(reply.finish_reason, prompt_tokens, completion_tokens(reply))


def _content_pieces(text: str, previous: str | None) -> Iterator[tuple[str, int]]:
    """One token (four characters) per piece, never the same piece twice running.

    litellm aborts a stream after 100 identical consecutive content deltas
    (``REPEATED_STREAMING_CHUNK_LIMIT``), which an answer holding a long run
    of one character would hit. A repeat is glued to the next token instead,
    so the text and its decode time stay exact.
    """
    pieces = [text[i:i + 4] for i in range(0, len(text), 4)]
    i = 0
    while i < len(pieces):
        if pieces[i] == previous and i + 1 < len(pieces):
            piece, tokens = pieces[i] + pieces[i + 1], 2
        else:
            piece, tokens = pieces[i], 1
        yield piece, tokens
        previous = piece
        i += tokens
