"""The one stream decoder: chat-completion chunks in, model events out.

LiteLLM turns every provider's stream (OpenAI chat completions, Anthropic
Messages, Gemini, OpenAI Responses, ...) into OpenAI-style chunks, each in
its own way: Anthropic's tool calls arrive as a header plus
``input_json_delta`` fragments indexed by tool, Gemini's whole in one
fragment, the Responses API's as a header plus argument deltas, with the
finish reason and the usage on chunks of their own. :class:`StreamDecoder`
reads any of them and emits the events the agent loop consumes
(:class:`FirstToken`, :class:`TextDelta`, :class:`Decoding`,
:class:`ToolCallReady` as soon as a call is complete, :class:`StreamDone`).

Every path uses it: the LiteLLM bridge (:mod:`asyncfc_cli.model`), the
in-process simulated model of the MockClock tests
(:mod:`asyncfc_cli.sim.inprocess`) and the benchmarks' instant model
(:mod:`asyncfc_cli.bench.overhead`). tests/test_decoding.py runs it on chunk
sequences recorded from LiteLLM for each provider.

The cost is linear in the size of the stream: a call's argument text is
scanned once, fragment by fragment, to tell when its JSON object closes, and
parsed once at that moment (a 10 MB argument in 64-byte fragments: one parse,
not 160,000).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The deepest nesting of arrays and objects a call's arguments may have. No
# tool needs more; deeper values would reach Python's recursion limit in the
# JSON decoder or a walk over them (and a hostile model can send 100,000
# levels), so such a call fails with a message of its own.
MAX_DEPTH = 100

# --- events a model stream produces -------------------------------------------------


@dataclass(frozen=True)
class FirstToken:
    """The first content or tool-call byte arrived (time to first token ends)."""


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Decoding:
    """Progress: streamed chunks so far (about one token each), a few times a second."""

    chunks: int


@dataclass(frozen=True)
class ToolCallReady:
    """A streamed tool call whose arguments are complete."""

    index: int
    id: str
    name: str
    arguments: str  # raw JSON text as the model wrote it; may be malformed
    # How deep its arrays and objects nest, as the stream's scanner counted
    # (None: not counted, e.g. a call made in process).
    depth: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class StreamDone:
    finish_reason: str | None
    content: str
    tool_calls: list[ToolCallReady]
    prompt_tokens: int
    completion_tokens: int


ModelEvent = FirstToken | TextDelta | Decoding | ToolCallReady | StreamDone

PROGRESS_INTERVAL = 0.25  # seconds between Decoding events: enough for a 10 Hz display


def _carries(fragment: Any) -> bool:
    """A tool-call fragment with something in it (an id, a name or argument text)."""
    fn = get(fragment, "function")
    return bool(get(fragment, "id") or (fn is not None and (get(fn, "name") or get(fn, "arguments"))))


def get(obj: Any, key: str) -> Any:
    """A field of a chunk part, whether LiteLLM handed over an object or a dict."""
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


# --- a JSON object's end, found in one pass ----------------------------------------



class ObjectScanner:
    """Tells, fragment by fragment, when streamed text has closed its top-level JSON value.

    Tracks nesting depth and string/escape state across fragments, so each
    character is looked at once. ``closed`` turns true at the first point
    where a value that began with ``{`` or ``[`` is balanced again; nothing
    after that can make the text valid JSON, so it is checked once, then.
    ``deepest`` is the deepest nesting seen up to there: the depth of the
    value when the text is valid JSON.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.deepest = 0
        self.started = False
        self.closed = False
        self._in_string = False
        self._escaped = False

    def feed(self, text: str) -> bool:
        """Scan ``text``; True if the top-level value closed inside it."""
        if self.closed:
            return False
        if not self.started:
            stripped = text.lstrip()
            if not stripped:
                return False
            if stripped[0] not in "{[":
                self.closed = True  # not an object or array: never "complete" by this rule
                return False
            self.started = True
        in_string, escaped, depth, deepest = self._in_string, self._escaped, self.depth, self.deepest
        # Inside a string, jumps from quote to quote (long strings and runs of
        # backslashes cost no Python step per character); outside, reads
        # character by character up to the next string.
        i, n = 0, len(text)
        while i < n:
            if in_string:
                if escaped:  # the character after a backslash that ended the last fragment
                    escaped, i = False, i + 1
                    continue
                quote = text.find('"', i)
                if quote < 0:
                    # The string goes on into the next fragment: an odd run of
                    # backslashes at the end escapes its first character.
                    rest = text[i:]
                    escaped = (len(rest) - len(rest.rstrip("\\"))) % 2 == 1
                    break
                # An odd run of backslashes before the quote escapes it (one
                # backslash, the common case, is told without counting).
                in_string = quote > i and text[quote - 1] == "\\"
                if in_string and quote - 1 > i and text[quote - 2] == "\\":
                    before = text[i:quote]
                    in_string = (len(before) - len(before.rstrip("\\"))) % 2 == 1
                i = quote + 1
                continue
            for j in range(i, n):
                ch = text[j]
                if ch == '"':
                    in_string, i = True, j + 1
                    break
                if ch in "{[":
                    depth += 1
                    if depth > deepest:
                        deepest = depth
                elif ch in "}]":
                    depth -= 1
                    if depth == 0:
                        self.closed = True
                        self.depth, self.deepest, self._in_string, self._escaped = depth, deepest, in_string, escaped
                        return True
            else:
                break
        self.depth, self.deepest, self._in_string, self._escaped = depth, deepest, in_string, escaped
        return False


def nesting_depth(text: str) -> int:
    """How deep the JSON value at the start of ``text`` nests its arrays and objects (one pass)."""
    scanner = ObjectScanner()
    scanner.feed(text)
    return scanner.deepest


# --- streamed tool-call assembly ----------------------------------------------------


@dataclass
class _Partial:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    scanner: ObjectScanner = field(default_factory=ObjectScanner)


class ToolCallAssembler:
    """Rebuilds tool calls from OpenAI-style delta fragments.

    ``id`` and ``name`` come only on a call's first fragment (Gemini's calls
    are one fragment holding everything); later fragments carry ``index`` and
    argument text. A call is complete, and reported at once, at the first of:

    - its arguments close a JSON object (nothing valid can follow it);
    - a higher index begins, or content arrives after it;
    - the finish reason arrives.

    The first rule matters when a model thinks between calls: the index rule
    alone would hold a finished call until the next call's header, after the
    thinking, and the tool would start that much later.
    """

    def __init__(self) -> None:
        self._open: dict[int, _Partial] = {}
        self._closed: set[int] = set()
        self._alias: dict[int, int] = {}  # index as sent -> slot, for reused indices
        self._next_slot = 0  # one past the highest slot used
        self.done: list[ToolCallReady] = []

    def feed(self, fragments: list[Any], text: str | None = None) -> list[ToolCallReady]:
        ready: list[ToolCallReady] = []
        if text:
            ready.extend(self.finish())
        for frag in fragments:
            sent = get(frag, "index")
            index = sent
            if index is None:
                index = max(self._open, default=len(self.done))
            index = self._alias.get(index, index)
            new_id = get(frag, "id")
            taken = index in self._closed or (index in self._open and self._open[index].id not in ("", new_id))
            if new_id and taken:
                # A new call reusing an index (some servers send none, and
                # LiteLLM fills in 0 for all): give it the next free slot.
                slot = self._next_slot
                self._alias[sent if sent is not None else index] = slot
                index = slot
            elif index in self._closed:
                continue  # e.g. whitespace after a complete object, or Anthropic's "{}" at block stop
            for lower in sorted(i for i in self._open if i < index):
                ready.append(self._close(lower))
            self._next_slot = max(self._next_slot, index + 1)
            part = self._open.setdefault(index, _Partial())
            if new_id:
                part.id = new_id
            fn = get(frag, "function")
            if fn is not None:
                if get(fn, "name"):
                    part.name = get(fn, "name")
                piece = get(fn, "arguments")
                if piece:
                    part.arguments.append(piece)
                    # Too deep is complete too: it fails as such, without a parse.
                    if part.scanner.feed(piece) and part.name and (
                            part.scanner.deepest > MAX_DEPTH or _is_object("".join(part.arguments))):
                        ready.append(self._close(index))
        return ready

    def finish(self) -> list[ToolCallReady]:
        return [self._close(i) for i in sorted(self._open)]

    def _close(self, index: int) -> ToolCallReady:
        part = self._open.pop(index)
        self._closed.add(index)
        call = ToolCallReady(
            index=index,
            id=part.id or f"call_{index}",
            name=part.name,
            arguments="".join(part.arguments),
            depth=part.scanner.deepest,
        )
        self.done.append(call)
        return call


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


# --- chunks to events ---------------------------------------------------------------


class StreamDecoder:
    """Reads one response's chunks, in order, and emits its model events.

    ``clock`` (seconds, any origin) paces :class:`Decoding` events; without
    one there are none. After each :meth:`feed`, ``progressed`` says whether
    the chunk moved the response on (text, thinking, a call fragment with
    something in it, the first finish reason): empty deltas, keep-alives and
    repeated usage do not, so a stream of them can be timed out as silence.
    ``carried`` says whether the response held anything at all.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock
        self._next_progress = clock() + PROGRESS_INTERVAL if clock else 0.0
        self.assembler = ToolCallAssembler()
        self._content: list[str] = []
        self.finish_reason: str | None = None
        self._usage: Any = None
        self._first = True
        self.chunks = 0
        self.progressed = False
        self.carried = False  # anything at all but a finish reason: text, thinking, a call, usage

    def feed(self, chunk: Any) -> list[ModelEvent]:
        events: list[ModelEvent] = []
        self.progressed = False
        if get(chunk, "usage"):
            self._usage = get(chunk, "usage")
            self.carried = True  # but not progress: a server can repeat it forever
        for choice in get(chunk, "choices") or []:
            delta = get(choice, "delta")
            text = get(delta, "content") if delta is not None else None
            fragments = (get(delta, "tool_calls") if delta is not None else None) or []
            thinking = get(delta, "reasoning_content") if delta is not None else None
            if text or thinking or any(_carries(f) for f in fragments):
                self.progressed = self.carried = True
            if text or fragments or thinking:
                self.chunks += 1
                if self._first:
                    self._first = False
                    events.append(FirstToken())
                elif self._clock is not None and self._clock() >= self._next_progress:
                    self._next_progress = self._clock() + PROGRESS_INTERVAL
                    events.append(Decoding(self.chunks))
            if text:
                self._content.append(text)
                events.append(TextDelta(text))
            events.extend(self.assembler.feed(fragments, text))
            if get(choice, "finish_reason"):
                self.progressed = self.progressed or self.finish_reason is None  # the first one only
                self.finish_reason = get(choice, "finish_reason")
                events.extend(self.assembler.finish())
        return events

    def end(self) -> list[ModelEvent]:
        """The stream is over: calls still open, then :class:`StreamDone`."""
        events: list[ModelEvent] = list(self.assembler.finish())
        usage = self._usage
        events.append(StreamDone(
            finish_reason=self.finish_reason,
            content="".join(self._content),
            tool_calls=list(self.assembler.done),
            prompt_tokens=int(get(usage, "prompt_tokens") or 0) if usage else 0,
            completion_tokens=int(get(usage, "completion_tokens") or 0) if usage else 0,
        ))
        return events
