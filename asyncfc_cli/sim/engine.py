"""Decision logic of the simulated model; no I/O.

``decide`` looks at the conversation it is sent, the way a model does, and
picks its next step from the plan. :mod:`asyncfc_cli.sim.render` turns that
reply into timed neutral stream events, and each protocol in
:mod:`asyncfc_cli.sim.protocols` puts them on its wire (what LiteLLM does
with each is written down there).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from asyncfc_cli.futures import DELIVERY_PREFIX, WAIT_TOOL
from asyncfc_cli.output import without_surrogates
from asyncfc_cli.references import escape as escape_reference_text
from asyncfc_cli.walk import map_strings

from .plan import Ref, SimPlan, SimStep, parse_template

FinishReason = Literal["tool_calls", "stop"]

CALL_PREFIX = "call_"


def count_tokens(text: str) -> int:
    """The sim's tokenizer: one token per four characters, at least one."""
    if not text:
        return 0
    return max(1, math.ceil(len(text) / 4))


@dataclass
class Text:
    text: str
    # Thinking streams as ``reasoning_content`` (as reasoning models do): it
    # costs decode time and tokens but stays out of the message content, so
    # the final answer is only the answer.
    reasoning: bool = False


@dataclass
class Call:
    id: str
    name: str
    arguments: str


@dataclass
class Reply:
    segments: list[Text | Call] = field(default_factory=list)
    finish_reason: FinishReason = "stop"

    @property
    def content(self) -> str | None:
        texts = [s.text for s in self.segments if isinstance(s, Text) and not s.reasoning]
        return "".join(texts) if texts else None

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return [
            {
                "id": s.id,
                "type": "function",
                "function": {"name": s.name, "arguments": s.arguments},
            }
            for s in self.segments
            if isinstance(s, Call)
        ]

    @property
    def calls(self) -> list[Call]:
        return [s for s in self.segments if isinstance(s, Call)]


# --- reading the conversation ----------------------------------------------


@dataclass(frozen=True)
class Protocol:
    """What the sim was told about futures, read from the request like a model reads it.

    ``futures``: it was told about futures (a system message that mentions
    them) and has the ``wait`` tool. ``numbered``: its calls are numbered in
    the order it makes them, so it knows a call's id before the reply.
    ``same_message``: it may use a future in the message that makes the call.
    A user's own ``futures_instruction`` that says less gets a sim that does
    less: it learns ids from handles and forwards only in a later message.
    """

    futures: bool = False
    numbered: bool = False
    same_message: bool = False
    wait_before_answer: bool = False
    wait_own_message: bool = False  # wait() with no ids reads the calls of its own message


def read_protocol(messages: list[dict], tools: list[dict] | None) -> Protocol:
    has_wait = any(_tool_name(t) == WAIT_TOOL for t in tools or ())
    system = " ".join(message_text(m.get("content")) for m in messages if m.get("role") == "system").lower()
    if not has_wait:
        return Protocol()
    numbered = "numbered f1" in system
    return Protocol(
        futures=True,
        numbered=numbered,
        same_message=numbered and "same message" in system,
        wait_before_answer="before you answer" in system,
        wait_own_message="wait() for your message" in system,
    )


@dataclass
class Conversation:
    """What the sim has learnt from the messages it was sent."""

    turn: int  # assistant messages so far
    issued: dict[str, list[str]]  # step id -> call ids, in issue order
    results: dict[str, Any]  # call id -> value
    # Async mode: call id -> future id (from the numbering, or from a pending
    # handle), and values that arrived through wait results or deliveries.
    futures: dict[str, str] = field(default_factory=dict)
    future_values: dict[str, Any] = field(default_factory=dict)
    answered_early: bool = False
    calls_made: int = 0  # numbered calls so far (wait excluded)

    def _value_of_call(self, call_id: str) -> Any:
        if call_id in self.results:
            return self.results[call_id]
        future = self.futures.get(call_id)
        if future is not None and future in self.future_values:
            return self.future_values[future]
        raise KeyError(call_id)

    def known(self, step_id: str) -> bool:
        try:
            self.value(step_id)
        except KeyError:
            return False
        return True

    def value(self, step_id: str) -> Any:
        # A step issued again (to fix a mistake) supersedes its earlier call:
        # only the latest call's outcome counts, even while it is pending.
        calls = self.issued.get(step_id)
        if not calls:
            raise KeyError(step_id)
        return self._value_of_call(calls[-1])

    def future_of(self, step_id: str) -> str | None:
        """The future id of the step's latest call, if known."""
        calls = self.issued.get(step_id) or []
        return self.futures.get(calls[-1]) if calls else None

    def unseen_futures(self) -> list[str]:
        """Futures of calls made whose outcome the sim has not read."""
        return [f for call_id, f in self.futures.items()
                if call_id not in self.results and f not in self.future_values]


def step_of_call(call_id: str, plan: SimPlan) -> str | None:
    """The plan step a tool-call id names, if the sim issued it."""
    if not call_id.startswith(CALL_PREFIX) or "_" not in call_id[len(CALL_PREFIX):]:
        return None
    step_id = call_id[len(CALL_PREFIX):].rsplit("_", 1)[0]
    return step_id if plan.step(step_id) is not None else None


def message_text(content: Any) -> str:
    """Text of a message content, which may be a string or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") if isinstance(p, dict) else str(p) for p in content
        )
    return str(content)


def result_value(content: Any) -> Any:
    text = message_text(content)
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # a tool may print JSON nested 100,000 deep: text, then
        return text


def read_conversation(plan: SimPlan, messages: list[dict], protocol: Protocol = Protocol()) -> Conversation:
    issued: dict[str, list[str]] = {}
    conv = Conversation(turn=assistant_turns(messages), issued=issued, results={})
    waits: set[str] = set()
    for message in messages:
        role = message.get("role")
        if role == "assistant":
            if not message.get("tool_calls"):
                conv.answered_early = True
            for call in message.get("tool_calls") or ():
                call_id = call.get("id") or ""
                if (call.get("function") or {}).get("name") == WAIT_TOOL:
                    waits.add(call_id)
                    continue
                conv.calls_made += 1
                if protocol.numbered:
                    conv.futures[call_id] = f"f{conv.calls_made}"
                step_id = step_of_call(call_id, plan)
                if step_id is not None:
                    issued.setdefault(step_id, []).append(call_id)
        elif role == "tool":
            call_id = message.get("tool_call_id") or ""
            value = result_value(message.get("content"))
            if call_id in waits and isinstance(value, dict):
                _learn_futures(conv, value)
            elif step_of_call(call_id, plan) is not None or call_id in conv.futures:
                # (a call of no step: one an earlier run's plan made, in a continued conversation)
                if protocol.futures and _is_handle(value):
                    conv.futures[call_id] = value["future"]
                else:
                    conv.results[call_id] = value
        elif role == "user":
            text = message_text(message.get("content"))
            if text.startswith(DELIVERY_PREFIX):
                try:
                    _learn_futures(conv, json.loads(text[len(DELIVERY_PREFIX):].split("\n", 1)[0]))
                except (ValueError, RecursionError):
                    pass
    return conv


def _is_handle(value: Any) -> bool:
    # {"future": "f3"}, or the older {"future": "f3", "status": "pending"}.
    return (isinstance(value, dict) and isinstance(value.get("future"), str)
            and set(value) <= {"future", "status"} and value.get("status", "pending") == "pending")


def _learn_futures(conv: Conversation, values: Any) -> None:
    if not isinstance(values, dict):
        return
    for key, value in values.items():
        if key == "pending" or (isinstance(value, dict) and set(value) == {"note"}):
            continue
        conv.future_values[key] = value


# --- substitution ----------------------------------------------------------


class _Missing(Exception):
    pass


def resolve(ref: Ref, conv: Conversation) -> Any:
    try:
        value = conv.value(ref.id)
        for key in ref.path:
            value = _index(value, key)
        return value
    except (_Missing, KeyError):
        return f"<missing {ref.text}>"


def _index(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        if key in value:
            return value[key]
        raise _Missing
    if isinstance(value, list):
        try:
            return value[int(key)]
        except (ValueError, IndexError):
            raise _Missing from None
    raise _Missing


def substitute(value: Any, conv: Conversation, forward: Callable[[Ref], str | None] | None = None) -> Any:
    """Fill references in a JSON-like value with the results the sim has seen.

    ``forward`` (async mode) may name the future to pass instead of a
    reference's value, e.g. ``"f3.words"``; None means use the value. Under
    the futures protocol every other piece of text is escaped
    (:func:`asyncfc_cli.references.escape`), so a value or a literal that
    happens to read like a reference reaches the tool as it is.
    """
    if isinstance(value, dict):
        return {k: substitute(v, conv, forward) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, conv, forward) for v in value]
    if not isinstance(value, str):
        return value
    def name(ref: Ref) -> str | None:
        return forward(ref) if forward is not None else None

    parts = parse_template(value)
    # A string that is one reference and nothing else passes the value through
    # with its JSON type, the way a model would copy a number or a list.
    if len(parts) == 1 and isinstance(parts[0], Ref):
        future = name(parts[0])
        if future is not None:
            return "$" + future
        found = resolve(parts[0], conv)
        # A tool's value may nest deeper than the stack allows: walked without recursion.
        return map_strings(found, escape_reference_text) if forward is not None else found
    # Literal text (with the values known) and the futures passed, in order.
    pieces: list[tuple[bool, str]] = []
    for part in parts:
        future = name(part) if isinstance(part, Ref) else None
        if future is not None:
            pieces.append((True, "${" + future + "}"))
        else:
            text = part if isinstance(part, str) else _as_text(resolve(part, conv))
            if pieces and not pieces[-1][0]:
                pieces[-1] = (False, pieces[-1][1] + text)
            else:
                pieces.append((False, text))
    if forward is None:
        return "".join(text for _, text in pieces)
    out = []
    for i, (is_ref, text) in enumerate(pieces):
        then_ref = i + 1 < len(pieces) and pieces[i + 1][0]
        out.append(text if is_ref else escape_reference_text(text, then_reference=then_ref))
    return "".join(out)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except RecursionError:  # a tool's value nested past the stack: what a model would shorten
        return "<a value nested too deeply to write out>"


# --- think text ------------------------------------------------------------

_OPENERS = ["Checking", "Reading", "Comparing", "Collecting", "Looking at", "Weighing"]
_OBJECTS = [
    "the inputs", "the results so far", "the arguments", "what is known",
    "the request", "the remaining steps", "the plan", "the values",
]
_LINKS = ["before", "ahead of", "to prepare", "while planning", "in order to set up"]
_TARGETS = ["the next call", "the answer", "the following step", "what comes next"]
# One word of each length 1..10, so any short remainder can be filled exactly.
_BY_LENGTH = ["", "a", "ok", "now", "next", "check", "inputs", "results",
              "argument", "carefully", "everything"]


def _sentence(rng: random.Random) -> str:
    return (
        f"{rng.choice(_OPENERS)} {rng.choice(_OBJECTS)} "
        f"{rng.choice(_LINKS)} {rng.choice(_TARGETS)}."
    )


def _exact_sentence(length: int, rng: random.Random) -> str:
    """A sentence of exactly ``length`` characters (length >= 1)."""
    words: list[str] = []
    remaining = length
    while remaining > len(_BY_LENGTH):
        word = rng.choice(_BY_LENGTH[3:9])
        words.append(word)
        remaining -= len(word) + 1
    words.append(_BY_LENGTH[remaining - 1])
    text = " ".join(words) + "."
    return text[0].upper() + text[1:] if text[0] != "." else text


def think_text(tokens: int, rng: random.Random) -> str:
    """Filler prose of exactly ``tokens`` tokens, ending in a newline."""
    if tokens <= 0:
        return ""
    target = 4 * tokens - 1  # the newline takes the last character
    text = ""
    while True:
        sentence = _sentence(rng)
        candidate = f"{text} {sentence}" if text else sentence
        if len(candidate) > target:
            break
        text = candidate
    remaining = target - len(text)
    if remaining >= 3 and text:
        text += " " + _exact_sentence(remaining - 1, rng)
    elif remaining >= 1 and not text:
        text = _exact_sentence(remaining, rng)
    else:
        text += " " * remaining
    return text + "\n"


# --- the decision ----------------------------------------------------------


def assistant_turns(messages: list[dict]) -> int:
    return sum(1 for m in messages if m.get("role") == "assistant")


def reply_rng(plan: SimPlan, turn: int) -> random.Random:
    """Seeded per turn so a replayed conversation gets the same reply."""
    return random.Random(f"{plan.seed}:{turn}")


def timing_rng(plan: SimPlan, turn: int) -> random.Random:
    # Separate from reply_rng so jitter does not echo the think-text choices.
    return random.Random(f"{plan.seed}:{turn}:timing")


def decide(plan: SimPlan, messages: list[dict], tools: list[dict] | None = None) -> Reply:
    """The model's next reply to ``messages``.

    When the request tells it about futures (the instruction in the system
    message, and the ``wait`` tool) the sim follows the futures protocol as
    far as it was told (see :class:`Protocol` and :func:`decide_async`);
    otherwise sync semantics:

    Steps go out in plan order; from the first step not yet issued, every
    step whose references are already known goes into this reply, up to the
    first one that still needs a result.

    What it writes is text a model can send: a lone surrogate its plan picked
    up (an environment variable's bytes that are not UTF-8) goes out as
    U+FFFD, as any UTF-8 stream would carry it.
    """
    return _sendable(_decide(plan, messages, tools))


def _sendable(reply: Reply) -> Reply:
    for segment in reply.segments:
        if isinstance(segment, Text):
            segment.text = without_surrogates(segment.text)
        else:
            segment.name, segment.arguments = without_surrogates([segment.name, segment.arguments])
    return reply


def _decide(plan: SimPlan, messages: list[dict], tools: list[dict] | None) -> Reply:
    protocol = read_protocol(messages, tools)
    if protocol.futures:
        return decide_async(plan, messages, protocol)
    conv = read_conversation(plan, messages)
    rng = reply_rng(plan, conv.turn)
    ready = _ready_steps(plan, conv)
    if ready:
        segments: list[Text | Call] = []
        for step in ready:
            if step.think:
                segments.append(Text(think_text(step.think, rng), reasoning=True))
            segments.append(_call(step, conv, rng))
        return Reply(segments, "tool_calls")
    blocked = [s for s in plan.steps if s.id not in conv.issued]
    needed = blocked[0].refs() if blocked else plan.final.refs()
    missing = sorted(r for r in needed if not conv.known(r))
    if missing:
        return Reply([Text(_missing_text(missing, conv))], "stop")
    segments = []
    if plan.final.think:
        segments.append(Text(think_text(plan.final.think, rng), reasoning=True))
    segments.append(Text(_as_text(substitute(plan.final.answer, conv))))
    return Reply(segments, "stop")


def _tool_name(tool: Any) -> str | None:
    if isinstance(tool, dict):
        return (tool.get("function") or {}).get("name") or tool.get("name")
    return None


# Errors the executor reports for the model's own protocol mistakes; the sim
# fixes its call and issues it again, once, as a real model would.
_OWN_MISTAKES = ("unknown future", "not valid JSON")


def _needs_reissue(step: SimStep, conv: Conversation) -> bool:
    calls = conv.issued.get(step.id) or []
    if not calls:
        return True
    if len(calls) >= 2:
        return False
    try:
        value = conv._value_of_call(calls[-1])
    except KeyError:
        return False
    error = value.get("error") if isinstance(value, dict) else None
    return isinstance(error, str) and any(m in error for m in _OWN_MISTAKES)


def decide_async(plan: SimPlan, messages: list[dict], protocol: Protocol | None = None) -> Reply:
    """The next reply under the futures protocol.

    Like a model that was told about futures: it issues every step it can,
    passes ``$fN`` for values it only forwards, and calls ``wait`` for the
    futures whose values it must read before it can go on (``needs``, or the
    final answer's references; and every future it has not seen, before it
    answers, when told to). With numbered ids and same-message use it knows
    the id of a call it makes in this reply, so it forwards it and waits on
    it in the same reply; otherwise a step that depends on a call of this
    reply ends the reply, and the next one continues after the handles.
    """
    protocol = protocol or Protocol(futures=True)
    conv = read_conversation(plan, messages, protocol)
    rng = reply_rng(plan, conv.turn)
    misbehave = set(plan.misbehave)
    segments: list[Text | Call] = []
    blocking: set[str] = set()
    here: dict[str, str] = {}  # step id -> future id, for calls made in this reply
    next_id = conv.calls_made + 1
    first_call = not conv.issued
    answering = False
    for step in plan.steps:
        if not _needs_reissue(step, conv):
            continue
        unreadable = {r for r in step.needs if not conv.known(r)}
        unforwardable = {r for r in step.arg_refs()
                         if not conv.known(r) and conv.future_of(r) is None and r not in here}
        if unreadable or unforwardable:
            blocking = unreadable | unforwardable
            break
        if step.think:
            segments.append(Text(think_text(step.think, rng), reasoning=True))
        call = _forwarding_call(step, conv, rng, misbehave, fresh=not conv.issued.get(step.id), here=here)
        if first_call and "malformed_json" in misbehave:
            call.arguments = call.arguments[:-1]  # the closing brace never came
        first_call = False
        segments.append(call)
        if protocol.same_message:
            here[step.id] = f"f{next_id}"
        next_id += 1
    else:
        blocking = {r for r in plan.final.refs() if not conv.known(r)}
        answering = True
        if not segments and (not blocking or ("early_answer" in misbehave and not conv.answered_early)):
            if not (protocol.wait_before_answer and conv.unseen_futures()) or "early_answer" in misbehave:
                return _final(plan, conv, rng)
    def future(step_id: str) -> str | None:
        return here.get(step_id) or conv.future_of(step_id)

    waitable = {f for r in blocking if (f := future(r))}
    if answering and "early_answer" in misbehave and not conv.answered_early:
        waitable = set()  # it will answer next, without reading what it needs
    elif answering and protocol.wait_before_answer:
        waitable |= set(conv.unseen_futures()) | set(here.values())
    can_wait_here = protocol.same_message or not any(
        isinstance(s, Call) and step_of_call(s.id, plan) in blocking for s in segments)
    if waitable and can_wait_here:
        ids = sorted(waitable, key=lambda f: int(f[1:]))
        # wait() is shortest when what it needs is exactly this message's calls.
        own = protocol.wait_own_message and set(ids) == set(here.values())
        segments.append(Call(f"wait_{rng.getrandbits(24):06x}", WAIT_TOOL, "{}" if own else json.dumps({"futures": ids})))
    if segments:
        return Reply(segments, "tool_calls")
    missing = sorted(blocking)
    return Reply([Text(_missing_text(missing, conv))], "stop")


def _final(plan: SimPlan, conv: Conversation, rng: random.Random) -> Reply:
    segments: list[Text | Call] = []
    if plan.final.think:
        segments.append(Text(think_text(plan.final.think, rng), reasoning=True))
    segments.append(Text(_as_text(substitute(plan.final.answer, conv))))
    return Reply(segments, "stop")


def _forwarding_call(step: SimStep, conv: Conversation, rng: random.Random,
                     misbehave: set[str], fresh: bool, here: dict[str, str] | None = None) -> Call:
    """A call whose unknown values are passed as future references."""
    state = {"spoiled": "unknown_future" not in misbehave or not fresh}
    here = here or {}

    def ref_text(ref: Ref) -> str | None:
        future = here.get(ref.id) or conv.future_of(ref.id)
        if future is None or (conv.known(ref.id) and "forward_failed" not in misbehave):
            return None
        if not state["spoiled"]:
            state["spoiled"] = True
            future = "f999"
        return ".".join((future, *ref.path))

    return _call(step, conv, rng, forward=ref_text)


def _ready_steps(plan: SimPlan, conv: Conversation) -> list[SimStep]:
    ready: list[SimStep] = []
    remaining = [s for s in plan.steps if s.id not in conv.issued]
    for step in remaining:
        if not all(conv.known(r) for r in step.refs()):
            break
        ready.append(step)
    return ready


def _call(step: SimStep, conv: Conversation, rng: random.Random,
          forward: Callable[[Ref], str | None] | None = None) -> Call:
    call_id = f"{CALL_PREFIX}{step.id}_{rng.getrandbits(24):06x}"
    args = substitute(step.args, conv, forward)
    return Call(call_id, step.tool, json.dumps(args, ensure_ascii=False))


def _missing_text(missing: list[str], conv: Conversation) -> str:
    described = []
    for step_id in missing:
        call_ids = conv.issued.get(step_id)
        described.append(f"{step_id} ({', '.join(call_ids)})" if call_ids else step_id)
    return (
        "I cannot continue yet: I have not seen the results of "
        + ", ".join(described)
        + ". Send a tool message for each of my tool calls."
    )


# --- token accounting ------------------------------------------------------


def prompt_tokens(messages: list[dict], tools: list[dict] | None) -> int:
    total = 0
    for message in messages:
        total += count_tokens(message_text(message.get("content")))
        for call in message.get("tool_calls") or ():
            total += count_tokens((call.get("function") or {}).get("arguments") or "")
    if tools:
        total += count_tokens(json.dumps(tools))
    return total


def prompt_segments(messages: list[dict], tools: list[dict] | None) -> list[tuple[str, int]]:
    """A prompt as (digest, tokens) pieces in the order a server lays it out:
    the tool schemas first, then each message."""
    import hashlib

    pieces: list[tuple[str, int]] = []
    if tools:
        text = json.dumps(tools)
        pieces.append((hashlib.sha256(text.encode()).hexdigest(), count_tokens(text)))
    for message in messages:
        text = json.dumps(message, sort_keys=True, default=str)
        tokens = count_tokens(message_text(message.get("content")))
        for call in message.get("tool_calls") or ():
            tokens += count_tokens((call.get("function") or {}).get("arguments") or "")
        pieces.append((hashlib.sha256(text.encode()).hexdigest(), tokens))
    return pieces


class PrefixCache:
    """The server's prompt cache: tokens of a prompt's longest prefix already
    prefilled by an earlier request are not prefilled again.

    Servers do this (vLLM's automatic prefix caching, on by default; the
    llama.cpp server's prompt cache; hosted APIs' prompt caching), so a
    conversation's next request costs the base time to first token plus the
    prefill of what is new. The cache starts empty for every run: the first
    request pays its whole prompt. Granularity is a whole message (real
    caches use blocks of 16-ish tokens), so a changed message is prefilled
    again in full.
    """

    def __init__(self, limit: int = 64) -> None:
        self._seen: list[list[str]] = []
        self._limit = limit

    def prefill_tokens(self, messages: list[dict], tools: list[dict] | None) -> int:
        """Tokens this prompt must prefill (the whole prompt minus its cached prefix); remembers it."""
        pieces = prompt_segments(messages, tools)
        keys = [k for k, _ in pieces]
        shared = max((_common(keys, seen) for seen in self._seen), default=0)
        self._seen.append(keys)
        del self._seen[:-self._limit]
        return sum(tokens for _, tokens in pieces[shared:])


def _common(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def prefill_tokens(plan: SimPlan, cache: PrefixCache | None, messages: list[dict], tools: list[dict] | None) -> int:
    """What the next request prefills: its whole prompt, or with the plan's
    ``prefix_cache`` only what an earlier request of the run did not."""
    if plan.prefix_cache and cache is not None:
        return cache.prefill_tokens(messages, tools)
    return prompt_tokens(messages, tools)


def completion_tokens(reply: Reply) -> int:
    total = 0
    for segment in reply.segments:
        if isinstance(segment, Text):
            total += count_tokens(segment.text)
        else:
            total += count_tokens(segment.name) + count_tokens(segment.arguments)
    return total
