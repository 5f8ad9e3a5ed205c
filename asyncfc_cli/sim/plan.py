"""The plan a simulated model follows, as written under ``[sim]`` in a task.

A plan is a list of tool-call steps and a final answer. Argument strings and
the answer are templates: ``{id}`` or ``{id.key.0}`` stands for the result of
an earlier step (or a part of it), ``{{`` and ``}}`` for literal braces. The
references, together with ``needs``, are what the model must have *seen*
before it can decode a step, so they define the plan's dataflow.
"""

from __future__ import annotations

import functools
import typing

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from asyncfc_cli.walk import strings

from .presets import PresetName
from .presets import apply as apply_preset

ID_PATTERN = r"[A-Za-z_][A-Za-z0-9_-]*"
_ID_RE = re.compile(ID_PATTERN)
# Templates are read by a scanner that jumps from brace to brace; each regex
# has one quantifier, so reading any template is linear in its length.
_BRACE = re.compile(r"[{}]")
_TO_BRACE = re.compile(r"[^{}]*")


@dataclass(frozen=True)
class Ref:
    """One ``{id.path}`` reference inside a template."""

    id: str
    path: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return ".".join((self.id, *self.path))


def parse_template(template: str) -> list[str | Ref]:
    """Split a template into literal text and references.

    A path segment is anything up to the next dot or closing brace, so dict
    keys with spaces or list indices both work without a quoting syntax.
    Raises ValueError for a lone brace, because a typo such as
    ``{count words}`` would otherwise silently reach the model as text.
    """
    parts: list[str | Ref] = []
    literal: list[str] = []
    i = 0
    while True:
        brace = _BRACE.search(template, i)
        if brace is None:
            literal.append(template[i:])
            break
        at = brace.start()
        literal.append(template[i:at])
        if template.startswith("{{", at) or template.startswith("}}", at):
            literal.append(template[at])
            i = at + 2
            continue
        if template[at] == "}":
            raise ValueError(f"lone '}}' at position {at} in {_shown(template)} (write }}}} for a literal brace)")
        ref = _ref_at(template, at + 1)
        if ref is None:
            raise ValueError(
                f"bad reference at position {at} in {_shown(template)}: expected "
                "{id} or {id.key} (write {{ for a literal brace)"
            )
        text = "".join(literal)
        if text:
            parts.append(text)
        literal = []
        parts.append(ref[0])
        i = ref[1]
    text = "".join(literal)
    if text:
        parts.append(text)
    return parts


def _ref_at(template: str, i: int) -> tuple[Ref, int] | None:
    """The reference ``id.a.b}`` starting at ``i`` (after its ``{``) and where it ends, or None."""
    name = _ID_RE.match(template, i)
    if name is None:
        return None
    close = _TO_BRACE.match(template, name.end()).end()
    if not template.startswith("}", close):
        return None
    path = template[name.end():close]
    if not path:
        return Ref(name.group()), close + 1
    segments = path[1:].split(".")
    if not path.startswith(".") or "" in segments:
        return None
    return Ref(name.group(), tuple(segments)), close + 1


def _shown(template: str, limit: int = 80) -> str:
    return repr(template) if len(template) <= limit else repr(template[:limit]) + f" (and {len(template) - limit} more characters)"


def template_refs(template: str) -> set[str]:
    """Step ids referenced by one template string."""
    return {p.id for p in parse_template(template) if isinstance(p, Ref)}


def value_refs(value: Any) -> set[str]:
    """Step ids referenced anywhere inside a JSON-like value."""
    return set().union(*(template_refs(text) for text in strings(value)))


class SimStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = ""
    think: int = Field(default=0, ge=0)
    tool: str = Field(min_length=1)
    args: dict[str, Any] = Field(default_factory=dict)
    needs: list[str] = Field(default_factory=list)

    @field_validator("args")
    @classmethod
    def _json_only(cls, args: dict[str, Any]) -> dict[str, Any]:
        # TOML also has dates and times, which a tool call cannot carry.
        try:
            json.dumps(args)
        except TypeError as exc:
            raise ValueError(f"args must be JSON values (strings, numbers, ...): {exc}") from None
        return args

    def refs(self) -> set[str]:
        return value_refs(self.args) | set(self.needs)

    def arg_refs(self) -> set[str]:
        """Steps whose values only flow into the arguments (forwardable as futures)."""
        return value_refs(self.args)


class SimFinal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    think: int = Field(default=0, ge=0)
    answer: str
    # Lets an answer wait for results it does not quote, e.g. a side effect.
    needs: list[str] = Field(default_factory=list)

    def refs(self) -> set[str]:
        return template_refs(self.answer) | set(self.needs)


Protocol = Literal["openai", "anthropic", "gemini", "responses"]
PROTOCOLS: tuple[str, ...] = typing.get_args(Protocol)  # the wire formats (sim/protocols/)
FaultKind = Literal["rate_limit", "overloaded", "server_error", "auth", "cut", "stream_error"]


class SimFault(BaseModel):
    """A wire fault the server injects into one request (``[[sim.faults]]``).

    ``rate_limit`` (429), ``overloaded`` (Anthropic's 529, 503 elsewhere),
    ``server_error`` (500) and ``auth`` (a rejected key) answer with the
    provider's error instead of a stream; ``cut`` closes the connection in
    the middle of the stream and ``stream_error`` sends the provider's error
    event there, after ``after_calls`` complete tool calls.
    """

    model_config = ConfigDict(extra="forbid")

    request: int = Field(ge=1, description="the Nth request the server receives, retries included")
    kind: FaultKind
    after_calls: int = Field(default=0, ge=0)


class SimPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A real engine's clock (sim/presets.py): fills ttft, prefill_tps, decode_tps
    # and prefix_cache where the table does not set them.
    preset: PresetName | None = None
    # The wire format the server speaks; --model sim:P and sim serve --protocol override it.
    protocol: Protocol = "openai"
    faults: list[SimFault] = Field(default_factory=list)

    decode_tps: float = Field(default=40.0, gt=0)
    ttft: float = Field(default=0.15, ge=0)
    prefill_tps: float = Field(default=4000.0, gt=0)
    jitter: float = Field(default=0.0, ge=0, le=1)
    seed: int = 0
    chunk_chars: int = Field(default=4, ge=1)
    # Charge prefill only for what an earlier request of the run did not
    # prefill, as servers with a prompt cache do (engine.PrefixCache).
    prefix_cache: bool = True
    # Ways real models break the futures protocol, for testing the executor:
    # early_answer, unknown_future, forward_failed, malformed_json.
    misbehave: list[Literal["early_answer", "unknown_future", "forward_failed", "malformed_json"]] = Field(
        default_factory=list)
    steps: list[SimStep] = Field(default_factory=list)
    final: SimFinal

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        return apply_preset(data)

    @model_validator(mode="after")
    def _check_dataflow(self) -> SimPlan:
        seen: list[str] = []
        for position, step in enumerate(self.steps, start=1):
            if not step.id:
                step.id = f"s{position}"
            if not _ID_RE.fullmatch(step.id):
                raise ValueError(
                    f"step {position}: id {step.id!r} must match {ID_PATTERN}"
                )
            if step.id in seen:
                raise ValueError(f"step {position}: duplicate id {step.id!r}")
            try:
                refs = step.refs()
            except ValueError as exc:
                raise ValueError(f"step {step.id!r}: {exc}") from None
            for ref in sorted(refs - set(seen)):
                raise ValueError(
                    f"step {step.id!r} references {ref!r}, which is not an earlier "
                    f"step; valid ids here: {_listing(seen)}"
                )
            seen.append(step.id)
        try:
            refs = self.final.refs()
        except ValueError as exc:
            raise ValueError(f"final: {exc}") from None
        for ref in sorted(refs - set(seen)):
            raise ValueError(
                f"final references {ref!r}, which is not a step; "
                f"valid ids: {_listing(seen)}"
            )
        return self

    def fault(self, request: int) -> SimFault | None:
        """The fault planned for the ``request``-th request, if any."""
        return next((f for f in self.faults if f.request == request), None)

    def step(self, step_id: str) -> SimStep | None:
        return self._by_id.get(step_id)

    @functools.cached_property
    def _by_id(self) -> dict[str, SimStep]:
        # Looked up once per message the sim reads: a scan made reading an
        # N-call conversation O(N^2) (0.9 s per run at 2,000 calls).
        return {s.id: s for s in self.steps}


def _listing(ids: list[str]) -> str:
    return ", ".join(ids) if ids else "(none)"


# What the simulated model says when it has no plan to follow (a prompt given
# on the command line, a task without [sim]): an answer, not an error, so an
# agent can be tried at once; and one that cannot pass for a real model's.
NO_PLAN_ANSWER = (
    "This is asyncfc's simulated model, not a real one: it follows the [sim] plan of a task, "
    "and this run has none, so this is all it says. For a real answer, choose a model with "
    "--model (e.g. --model openai/gpt-4o-mini)."
)


def no_plan() -> SimPlan:
    """The plan of a simulated run without one: answer :data:`NO_PLAN_ANSWER` at once
    (decoded fast: there is nothing to show but the answer)."""
    return SimPlan(decode_tps=200.0, final=SimFinal(answer=NO_PLAN_ANSWER))
