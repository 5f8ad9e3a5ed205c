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


@dataclass
class Conversation:
    """What the sim has learnt from the messages it was sent."""

    turn: int  # assistant messages so far
    issued: dict[str, list[str]]  # step id -> call ids, in issue order
    results: dict[str, Any]  # call id -> value
    # Async mode: call id -> future id from a pending handle, and values that
    # arrived for futures through wait results or delivery messages.
    futures: dict[str, str] = field(default_factory=dict)
    future_values: dict[str, Any] = field(default_factory=dict)
    answered_early: bool = False

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
        """The future id of the step's latest call, if the executor gave one."""
        calls = self.issued.get(step_id) or []
        return self.futures.get(calls[-1]) if calls else None


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
    except ValueError:
        return text


def read_conversation(plan: SimPlan, messages: list[dict]) -> Conversation:
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
                step_id = step_of_call(call_id, plan)
                if step_id is not None:
                    issued.setdefault(step_id, []).append(call_id)
                elif (call.get("function") or {}).get("name") == WAIT_TOOL:
                    waits.add(call_id)
        elif role == "tool":
            call_id = message.get("tool_call_id") or ""
            value = result_value(message.get("content"))
            if call_id in waits and isinstance(value, dict):
                _learn_futures(conv, value)
            elif step_of_call(call_id, plan) is not None:
                if _is_handle(value):
                    conv.futures[call_id] = value["future"]
                else:
                    conv.results[call_id] = value
        elif role == "user":
            text = message_text(message.get("content"))
            if text.startswith(DELIVERY_PREFIX):
                try:
                    _learn_futures(conv, json.loads(text[len(DELIVERY_PREFIX):].split("\n", 1)[0]))
                except ValueError:
                    pass
    return conv


def _is_handle(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"future", "status"} and value["status"] == "pending"


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

    ``forward`` (async mode) may return the text to write instead of a
    reference's value, e.g. ``"$f3.words"``; None means use the value.
    """
    if isinstance(value, dict):
        return {k: substitute(v, conv, forward) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, conv, forward) for v in value]
    if not isinstance(value, str):
        return value

    def fill(ref: Ref, as_text: bool) -> Any:
        text = forward(ref) if forward is not None else None
        if text is not None:
            return text
        found = resolve(ref, conv)
        return _as_text(found) if as_text else found

    parts = parse_template(value)
    # A string that is one reference and nothing else passes the value through
    # with its JSON type, the way a model would copy a number or a list.
    if len(parts) == 1 and isinstance(parts[0], Ref):
        return fill(parts[0], as_text=False)
    return "".join(p if isinstance(p, str) else fill(p, as_text=True) for p in parts)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


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

    When the request offers the futures ``wait`` tool the sim follows the
    futures protocol (see :func:`decide_async`); otherwise sync semantics:

    Steps go out in plan order; from the first step not yet issued, every
    step whose references are already known goes into this reply, up to the
    first one that still needs a result.
    """
    if any(_tool_name(t) == WAIT_TOOL for t in tools or ()):
        return decide_async(plan, messages)
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


def decide_async(plan: SimPlan, messages: list[dict]) -> Reply:
    """The next reply under the futures protocol.

    Like a model that was told about futures: it issues every step it can,
    passes ``$fN`` for values it only forwards, and calls ``wait`` for the
    futures whose values it must read before it can go on (``needs``, or
    the final answer's references). A step that depends on a call made in
    this same reply has no future id yet, so the reply ends there and the
    next request, after the handles, continues.
    """
    conv = read_conversation(plan, messages)
    rng = reply_rng(plan, conv.turn)
    misbehave = set(plan.misbehave)
    segments: list[Text | Call] = []
    blocking: set[str] = set()
    first_call = not conv.issued
    for step in plan.steps:
        if not _needs_reissue(step, conv):
            continue
        unreadable = {r for r in step.needs if not conv.known(r)}
        unforwardable = {r for r in step.arg_refs() if not conv.known(r) and conv.future_of(r) is None}
        if unreadable or unforwardable:
            blocking = unreadable | unforwardable
            break
        if step.think:
            segments.append(Text(think_text(step.think, rng), reasoning=True))
        call = _forwarding_call(step, conv, rng, misbehave, fresh=not conv.issued.get(step.id))
        if first_call and "malformed_json" in misbehave:
            call.arguments = call.arguments[:-1]  # the closing brace never came
        first_call = False
        segments.append(call)
    else:
        blocking = {r for r in plan.final.refs() if not conv.known(r)}
        if not segments and (not blocking or ("early_answer" in misbehave and not conv.answered_early)):
            return _final(plan, conv, rng)
    waitable = sorted({f for r in blocking if (f := conv.future_of(r))}, key=lambda f: int(f[1:]))
    if waitable and not any(isinstance(s, Call) and step_of_call(s.id, plan) in blocking for s in segments):
        segments.append(Call(f"wait_{rng.getrandbits(24):06x}", WAIT_TOOL,
                             json.dumps({"futures": waitable})))
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
                     misbehave: set[str], fresh: bool) -> Call:
    """A call whose unknown values are passed as future references."""
    state = {"spoiled": "unknown_future" not in misbehave or not fresh}

    def ref_text(ref: Ref) -> str | None:
        future = conv.future_of(ref.id)
        if future is None or (conv.known(ref.id) and "forward_failed" not in misbehave):
            return None
        if not state["spoiled"]:
            state["spoiled"] = True
            future = "f999"
        return "$" + ".".join((future, *ref.path))

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


def completion_tokens(reply: Reply) -> int:
    total = 0
    for segment in reply.segments:
        if isinstance(segment, Text):
            total += count_tokens(segment.text)
        else:
            total += count_tokens(segment.name) + count_tokens(segment.arguments)
    return total
