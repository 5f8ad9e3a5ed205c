"""The futures protocol of async mode, in one place: what the model is told,
and the scheduler that keeps those promises.

What the model sees (docs/futures.md has a real transcript):

- its calls are numbered ``f1``, ``f2``, ... in the order it makes them,
  across the whole conversation (``wait`` calls are not counted), so it knows
  a call's id before any reply: it can use a future in the same message;
- a call that is still running comes back as a handle, ``{"future":"f3"}``;
  one that already finished comes back as its result;
- ``"$f3"`` / ``"${f3.key}"`` in an argument is a dataflow edge (grammar in
  :mod:`asyncfc_cli.references`): the call waits for f3 and runs with its
  value; a reference to a call later in the same message waits for it to
  appear, and fails when the message ends without it;
- ``wait(futures=[...], timeout=...)`` returns chosen values; values that
  resolve while the model decodes come with the next request as one plain
  user message;
- every outcome reaches the model exactly once (its own tool message, a
  ``wait`` result, or a delivery), and an answer is accepted only when the
  model has seen every outcome.

:class:`AsyncScheduler` is the async mode of the agent loop
(:class:`asyncfc_cli.executor.Scheduler`): it starts each call as a future
the moment its arguments are complete in the stream, serves ``wait``, decides
between a handle and a short hold when a response ends
(:mod:`asyncfc_cli.latency`), delivers outcomes, and applies the finish rule.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from asyncfc_cli.executor import CallRecord, Limits, Scheduler, begin, finish, new_record, run_call
from asyncfc_cli.latency import LatencyBook, RequestCost
from asyncfc_cli.model import StreamDone, ToolCallReady
from asyncfc_cli.references import PathError, Reference, scan, substitute
from asyncfc_cli.trace import Trace

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

# An answer that starts while outcomes are still unseen is cut short once it
# has this many characters and no tool call: long enough that it is not a
# sentence announcing a call (which a cut would only delay), short enough to
# save most of a long answer's decode.
CUT_AFTER_CHARS = 160

_CANONICAL_ID = re.compile(r"f[1-9]\d*")


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


def wait_tool() -> Any:
    """``wait`` as an ordinary tool: its schema is generated and sent like any other."""
    from asyncfc_cli.tools import Tool

    async def never(_args: dict[str, Any]) -> Any:  # served by AsyncScheduler, never run as a call
        raise RuntimeError("wait is served by the async scheduler")

    return Tool(name=WAIT_TOOL, description=WAIT_DESCRIPTION, parameters=WAIT_PARAMETERS, kind="builtin",
                runner=never, source="asyncfc")


class AsyncScheduler(Scheduler):
    """Async mode: every call is a future that starts the moment it is ready.

    Calls run as tasks in the run's nursery (:meth:`running`), so leaving the
    run cancels them. A call waits inside its task for the futures it
    references and, for ``ordered`` tools, for the previous ordered call.
    """

    def __init__(self, tools: dict[str, Any], limits: Limits, trace: Trace,
                 latency: LatencyBook | None = None, cost: RequestCost | None = None,
                 instruction: str | None = None, hold: str | float = "latency") -> None:
        super().__init__(tools, limits, trace)
        # "latency": the policy of _hold; "never": handles at once; a number:
        # hold every running call up to that many seconds (benchmarks compare them).
        self.hold = hold
        self.instruction = instruction_for(instruction)
        # The one default of the book: what the tools declare (expected_latency), nothing remembered.
        self.latency = latency if latency is not None else LatencyBook.for_tools(tools)
        self.cost = cost or RequestCost()
        self.by_id: dict[str, CallRecord] = {}
        self._nursery: trio.Nursery | None = None
        self._appeared: dict[str, trio.Event] = {}  # future id -> set once issued (or never will be)
        self._never: dict[str, str] = {}  # future id -> why it will never be issued
        self._forward: set[str] = set()  # ids referenced before they were issued, in this response
        self._last_ordered: CallRecord | None = None
        self._finishing = False  # the model's held answer is in the conversation
        # Holding can cost a model that had other work to do: a run holds for
        # one time to first token in all (see _hold).
        self._held = 0.0

    def extra_tools(self) -> list[Any]:
        return [wait_tool()]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                yield
            finally:
                nursery.cancel_scope.cancel()

    # -- issuing ---------------------------------------------------------------------

    def on_call_ready(self, call: ToolCallReady, request: int) -> None:
        record = new_record(call, request, self.limits.max_result_chars)
        self._response.append(record)
        if call.name == WAIT_TOOL:
            return  # served when the response ends; not a future, not numbered
        record.future = f"f{len(self.by_id) + 1}"
        self.records.append(record)
        refs, problems = scan(record.arguments) if record.arguments is not None else ([], [])
        record.deps = list(dict.fromkeys(r.future for r in refs))
        self._forward.update(d for d in record.deps if d not in self.by_id)
        error = problems[0] if problems and record.status != "error" else None
        if error is None and record.status != "error":
            error = self._check_references(record, refs)
        after: CallRecord | None = None
        tool = self.tools.get(call.name)
        if tool is not None and getattr(tool, "ordered", False):
            after, self._last_ordered = self._last_ordered, record
        self.by_id[record.future] = record
        self.trace.emit("future_created", future=record.future, call_id=call.id, tool=call.name,
                        deps=record.deps, request=request,
                        ordered_after=after.future if after is not None else None)
        if record.future in self._appeared:
            self._appeared[record.future].set()
        if error is not None:
            record.status, record.error = "error", error
        if record.status == "error":
            # Malformed arguments or a bad reference: resolved on the spot, so
            # the model reads the error in this call's own tool message.
            begin(record, self.trace, {"future": record.future, "deps": record.deps})
            finish(record, self.trace)
            self._resolve(record)
            if after is not None or self._last_ordered is record:
                self._last_ordered = after  # nothing ran: the chain goes on from the previous call
            return
        assert self._nursery is not None, "on_call_ready outside running()"
        self._nursery.start_soon(self._run, record, after, refs)

    def _check_references(self, record: CallRecord, refs: list[Reference]) -> str | None:
        """What is wrong with a call's references as far as is known now, or None.

        References to calls not made yet are fine here: they may come later in
        the same response (checked when they appear, or when it ends)."""
        fid = record.future
        for ref in refs:
            if ref.future == fid:
                return f"${fid} refers to this call itself: a call cannot use its own result"
            if not _CANONICAL_ID.fullmatch(ref.future):
                return f"unknown future ${ref.future}: future ids are f1, f2, ... (issued so far: {self._issued()})"
            dep = self.by_id.get(ref.future)
            if dep is not None and ref.tool and dep.tool != ref.tool:
                return f"{ref.text} names a call of {ref.tool}, but {ref.future} is a call of {dep.tool}"
        for dep_id in record.deps:
            cycle = self._path_to(dep_id, fid, [fid])
            if cycle:
                return f"cyclic reference {' -> '.join(cycle)}: no call can start"
        return None

    def _path_to(self, start: str, target: str, path: list[str]) -> list[str] | None:
        """A chain of references from ``start`` to ``target`` (a cycle once ``target`` issues)."""
        seen: set[str] = set()
        stack = [(start, [*path, start])]
        while stack:
            current, trail = stack.pop()
            if current == target:
                return trail
            if current in seen or current not in self.by_id:
                continue
            seen.add(current)
            stack.extend((d, [*trail, d]) for d in self.by_id[current].deps)
        return None

    def _issued(self) -> str:
        n = len(self.by_id)
        return "none" if n == 0 else "f1" if n == 1 else f"f1..f{n}"

    async def _run(self, record: CallRecord, after: CallRecord | None, refs: list[Reference]) -> None:
        try:
            if record.deps:
                record.status = "waiting"
                for dep in record.deps:
                    await self._arrival(dep)
            # Even with no reference, escaped text loses its backslash here.
            self._bind_inputs(record, refs)
            if after is not None:
                await after.resolved.wait()
            if record.status == "waiting":
                record.status = "pending"
            await run_call(record, self.tools, self.limits, self.trace, future=record.future, deps=record.deps)
        except BaseException:
            if not record.done and record.status in ("pending", "waiting", "running"):
                record.status, record.error = "cancelled", "cancelled: the run ended before the call finished"
            raise
        finally:
            self._resolve(record)

    async def _arrival(self, future_id: str) -> None:
        """Return once ``future_id`` is resolved, or known never to be issued."""
        while future_id not in self.by_id and future_id not in self._never:
            await self._appeared.setdefault(future_id, trio.Event()).wait()
        if future_id in self.by_id:
            await self.by_id[future_id].resolved.wait()

    def _bind_inputs(self, record: CallRecord, refs: list[Reference]) -> None:
        for ref in refs:
            if ref.future in self._never:
                record.status, record.error = "error", f"unknown future ${ref.future}: {self._never[ref.future]}"
                return
            dep = self.by_id[ref.future]
            if ref.tool and dep.tool != ref.tool:
                record.status = "error"
                record.error = f"{ref.text} names a call of {ref.tool}, but {ref.future} is a call of {dep.tool}"
                return
        for dep_id in record.deps:
            dep = self.by_id[dep_id]
            if dep.status != "ok":
                record.status = "error"
                record.error = f"dependency ${dep.future} ({dep.tool}) failed: {dep.error or dep.status}"
                return
        try:
            record.arguments = substitute(record.arguments, {d: self.by_id[d].value for d in record.deps})
        except PathError as exc:
            record.status, record.error = "error", f"bad reference in arguments: {exc}"

    def _resolve(self, record: CallRecord) -> None:
        if record.done:
            return
        record.resolved.set()
        self.trace.emit("future_resolved", future=record.future, status=record.status)
        if record.status in ("ok", "timeout") and record.duration is not None:
            self.latency.observe(record.tool, record.duration)

    def _close_response(self) -> None:
        """The response ended: references to calls it never made fail now."""
        for future_id in self._forward - self.by_id.keys():
            self._never[future_id] = (f"no call {future_id} was made (the response ended; "
                                      f"calls so far: {self._issued()})")
            self._appeared.setdefault(future_id, trio.Event()).set()
        self._forward.clear()

    # -- what the model sees --------------------------------------------------------

    def wants_cut(self, chars: int, calls: int) -> bool:
        return calls == 0 and chars >= CUT_AFTER_CHARS and any(not r.delivered for r in self.records)

    async def after_response(self, done: StreamDone, request: int) -> list[dict[str, Any]]:
        # Calls that completed at the very end of the stream get to start first.
        await trio.lowlevel.checkpoint()
        response = self.take_response()
        self._close_response()
        calls = [r for r in response if r.future is not None]
        waits = [r for r in response if r.future is None]
        # Results already there go back in their calls' own messages...
        given = [r for r in calls if r.done and not r.delivered]
        self._mark(given, "result")
        # ...then each wait blocks on what the model asked for...
        replies = {id(w): await self._serve_wait(w, calls, given) for w in waits}
        if not waits:
            # ...or, when the model did not say what it needs, a short hold
            # for calls about to finish, so a value it needs does not cost it
            # a wait request.
            await self._hold(calls)
            late = [r for r in calls if r.done and not r.delivered]
            self._mark(late, "result")
            given += late
        messages = []
        for record in response:
            if record.future is None:
                content = replies[id(record)]
            elif record in given:
                content = record.content()
            else:
                content = handle(record.future)
            messages.append({"role": "tool", "tool_call_id": record.call_id, "content": content})
        return messages

    async def _hold(self, records: list[CallRecord]) -> None:
        """Hold the next request, at most one time to first token, for calls that may finish within it.

        The model ended its message without saying what it needs. A handle
        costs it one more request if it needs the value (at least a time to
        first token: :class:`RequestCost`); holding costs it at most the hold
        if it had other work. So the loop holds, never longer than the latest
        time to first token, for the calls expected to finish within it
        (:class:`LatencyBook`) and for calls it knows nothing about yet; a
        call known to take longer gets its handle at once, since holding
        could not save the request.

        Holds add up, and a model that had other work loses each one, while
        latency estimates can be wrong: so a run holds for one time to first
        token in all. A run is then never slower than without holds by more
        than one time to first token (when the model's messages do not depend
        on whether a value came back held), and the first reads of a model
        that does not say what it needs cost no extra request.
        """
        pending = [r for r in records if not r.done]
        if self.hold == "never" or not pending:
            return
        fixed = not isinstance(self.hold, str)
        if fixed:
            budget = float(self.hold)
        else:
            ttft = self.cost.ttft
            if not ttft:
                return
            budget = ttft - self._held
        if budget <= 0:
            return
        now = self.trace.now()
        expected: dict[int, float | None] = {}
        targets = pending if fixed else []
        for r in [] if fixed else pending:
            known = self.latency.durations(r.tool)
            e = self.latency.remaining(r.tool, 0.0 if r.start is None else now - r.start) if known else None
            expected[id(r)] = e
            if not known or (e is not None and e <= budget):
                targets.append(r)
        if not targets:
            return
        with trio.move_on_after(budget):
            for record in targets:
                await record.resolved.wait()
        self._held += self.trace.now() - now
        known_e = [e for r in targets if (e := expected.get(id(r))) is not None]
        self.trace.emit("hold", futures=[r.future for r in targets],
                        expected=round(max(known_e), 6) if known_e else None,
                        held=round(self.trace.now() - now, 6), budget=round(budget, 6))

    async def _serve_wait(self, call: CallRecord, siblings: list[CallRecord] = (),
                          given: list[CallRecord] = ()) -> str:
        """One ``wait`` call: block on the chosen futures, return their outcomes.

        ``wait()`` without ``futures`` waits for the other calls of its own
        message (``siblings``): the cheapest way to say "I need these".
        Futures whose result goes back in their own tool message of the same
        response (``given``) are left out: the model reads them there."""
        def error(message: str) -> str:
            return json.dumps({"error": f"wait: {message}"}, ensure_ascii=False)

        if call.status == "error":
            return error(call.error or "bad arguments")
        args = call.arguments
        raw_ids = args.get("futures")
        if raw_ids is None:
            if not siblings:
                return json.dumps({"error": "wait() with no futures waits for the other calls of its message, "
                                            'and this message has none: name them, wait(futures=["f1"])'})
            raw_ids = [r.future for r in siblings]
        if isinstance(raw_ids, str):
            raw_ids = [raw_ids]
        if not isinstance(raw_ids, list) or not raw_ids:
            return json.dumps({"error": 'wait needs futures=["f1", ...]: the ids of the calls to wait for'})
        timeout = args.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not math.isfinite(timeout) or timeout < 0):
            return error("timeout must be a finite, non-negative number of seconds")
        ids = [parse_future_id(r) for r in raw_ids]
        found = list(dict.fromkeys(self.by_id[i] for i in ids if i in self.by_id))
        self.trace.emit("wait_begin", call_id=call.call_id, futures=[f.future for f in found], timeout=timeout)
        with trio.move_on_after(math.inf if timeout is None else timeout):
            for record in found:
                await record.resolved.wait()
        out: dict[str, Any] = {}
        pending: list[str] = []
        fresh: list[CallRecord] = []
        for raw, fid in zip(raw_ids, ids):
            record = self.by_id.get(fid) if fid else None
            if record is None:
                out[str(raw)] = {"error": f"unknown future {raw!r}; issued so far: {self._issued()}"}
            elif record in fresh or record.future in pending or record in given:
                continue  # named twice, or its value is in its own message
            elif not record.done:
                pending.append(record.future)
            elif record.delivered:
                out[record.future] = {"note": f"already delivered ({record.delivered})"}
            else:
                out[record.future] = record.outcome()
                fresh.append(record)
        self._mark(fresh, "wait")
        if pending:
            out["pending"] = pending
        self.trace.emit("wait_end", call_id=call.call_id, ready=[r.future for r in fresh], pending=pending)
        return json.dumps(out, ensure_ascii=False)

    def before_request(self, messages: list[dict[str, Any]]) -> None:
        ready = [r for r in self.records if r.done and not r.delivered]
        if ready or self._finishing:
            self._mark(ready, "message")
            messages.append(delivery_message({r.future: r.outcome() for r in ready}, finishing=self._finishing))
            self._finishing = False

    def outstanding(self) -> list[str]:
        """Futures whose outcome the model has not seen."""
        return [r.future for r in self.records if not r.delivered]

    async def accept_answer(self, done: StreamDone, cut: bool, messages: list[dict[str, Any]]) -> bool:
        """The finish rule: an answer is accepted only once the model has seen every outcome.

        Otherwise the outcomes are awaited and delivered and the model asked
        again: to confirm or revise the answer it gave, or, when its answer
        was cut short (:meth:`wants_cut`), to answer with everything in view.
        """
        outstanding = self.outstanding()
        if not outstanding:
            return True
        self.trace.emit("finish_held", outstanding=outstanding, cut=cut)
        for record in self.records:
            await record.resolved.wait()
        self._finishing = not cut
        return False

    def _mark(self, records: list[CallRecord], via: str) -> None:
        for record in records:
            record.delivered = via
        if records:
            self.trace.emit("delivery", futures=[r.future for r in records], via=via)
