"""The ideal bound: the shortest end-to-end time any executor could reach on a plan.

A plan fixes what the model decodes and what each call depends on. With
``d = 1/decode_tps`` seconds per token and ``R = ttft + P0/prefill_tps``
seconds per model request (``P0`` the first request's prompt tokens: a lower
bound for every later request, whose prompt only grows), the ideal schedule
is the longest path through this graph:

- one request starts the run: the first token comes at ``R``;
- decode is one chain, in plan order: step ``s`` takes
  ``(think_s + 1 + ceil(args_s / chunk_chars)) * d`` (its thinking, the call
  header, the argument fragments, exactly as the model streams them), and the
  answer takes ``(think_f + ceil(answer / 4)) * d``;
- a tool starts when its call is decoded, its forwarded inputs (references)
  have finished, and, for an ``ordered`` tool, the previous ordered call has
  finished; it runs for its latency ``L_s``;
- reading a value is a barrier: in the chat-completions protocol a model sees
  a result only at the start of a request, so a step that *needs* results
  not read before starts at ``max(end of the decode so far, their finish) + R``,
  and that request carries every result finished by then (later steps needing
  them pay no second barrier);
- the answer reads every result (the finish rule: no mode answers before
  every call has finished), so it starts at
  ``max(end of decode, every finish) + R``.

Two lower bounds fall out of the same recursion and are reported beside it:
the **decode chain** (every tool instant: requests and tokens only) and the
**tool chain** (decoding free: only latencies along dependencies, ordering
and read barriers). ``ideal >= max(decode chain, tool chain)``; the gap is
where they cannot overlap. Efficiency of a mode is ``ideal / measured``.

The bound is greedy about barriers (a request goes out as soon as the values a
step needs are there); a schedule that waits to batch more reads into one
request can, on unusual plans, beat it slightly: an efficiency above 1 would
show that.

What the bound leaves out on purpose, because it is the protocol's cost and
the benchmarks must show it: the futures instruction and ``wait`` schema in
every prompt, pending handles, ``wait`` calls, and the extra request a model
needs to learn a future's id before it can forward it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from asyncfc_cli.sim.plan import SimPlan


@dataclass(frozen=True)
class Ideal:
    total: float
    decode_chain: float
    tool_chain: float
    requests: int  # model requests the ideal schedule makes

    def as_dict(self) -> dict[str, float | int]:
        return {"total": round(self.total, 6), "decode_chain": round(self.decode_chain, 6),
                "tool_chain": round(self.tool_chain, 6), "requests": self.requests}


def ideal_bound(
    plan: SimPlan,
    latency: dict[str, float],
    call_chars: dict[str, int],
    answer_chars: int,
    prompt_tokens: int,
    ordered_tools: set[str] = frozenset(),
) -> Ideal:
    """The bound for ``plan`` (see the module docstring for the derivation).

    Args:
        latency: seconds per step id.
        call_chars: length of each step's argument JSON as the model writes it.
        answer_chars: length of the final answer.
        prompt_tokens: tokens of the first request's prompt (tools, system, user).
        ordered_tools: tool names declared ``ordered``.
    """
    first = plan.ttft + prompt_tokens / plan.prefill_tps
    # With the server's prompt cache a later request prefills only what is
    # new, at least nothing: its bound is the base time to first token.
    later = plan.ttft if plan.prefix_cache else first
    per_token = 1.0 / plan.decode_tps
    total, requests = _schedule(plan, latency, call_chars, answer_chars, ordered_tools, first, later, per_token)
    decode, _ = _schedule(plan, {k: 0.0 for k in latency}, call_chars, answer_chars, ordered_tools,
                          first, later, per_token)
    tools, _ = _schedule(plan, latency, call_chars, answer_chars, ordered_tools, 0.0, 0.0, 0.0)
    return Ideal(total, decode, tools, requests)


def _schedule(plan: SimPlan, latency: dict[str, float], call_chars: dict[str, int], answer_chars: int,
              ordered_tools: set[str], first: float, request: float, per_token: float) -> tuple[float, int]:
    now = first  # the first token of the first request
    requests = 1
    finish: dict[str, float] = {}
    seen: set[str] = set()
    last_ordered = 0.0
    for step in plan.steps:
        reads = set(step.needs) - seen
        if reads:
            start = max(now, *(finish[r] for r in reads))
            seen |= {s for s, end in finish.items() if end <= start}  # a request carries every result so far
            now = start + request
            requests += 1
        tokens = step.think + 1 + math.ceil(call_chars.get(step.id, 0) / plan.chunk_chars)
        now += tokens * per_token
        start = max([now, *(finish[r] for r in step.arg_refs())])
        if step.tool in ordered_tools:
            start = max(start, last_ordered)
        finish[step.id] = start + latency.get(step.id, 0.0)
        if step.tool in ordered_tools:
            last_ordered = finish[step.id]
    if finish:
        now = max(now, *finish.values()) + request
        requests += 1
    now += (plan.final.think + math.ceil(answer_chars / 4)) * per_token
    return now, requests
