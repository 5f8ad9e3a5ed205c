"""Async mode's scheduler: the parts of the futures package put together.

:class:`AsyncScheduler` is the async mode of the agent loop
(:class:`asyncfc_cli.executor.Scheduler`): it starts each call as a future
the moment its arguments are complete in the stream (numbered and checked by
the :class:`~asyncfc_cli.futures.table.FutureTable`), serves ``wait`` and
delivers outcomes (:class:`~asyncfc_cli.futures.delivery.Delivery`, which
also keeps the finish rule), and, when a response ends with calls still
running and no ``wait``, asks its :class:`~asyncfc_cli.futures.hold.HoldPolicy`
whether to hold the next request for a moment. A replayed run's deliveries
follow the recording instead of the clock (:class:`~asyncfc_cli.futures.hold.Script`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from asyncfc_cli.events import FutureCreated, FutureResolved, Hold
from asyncfc_cli.executor import CallRecord, Limits, Scheduler, begin, finish, new_record, run_call
from asyncfc_cli.futures.delivery import Delivery
from asyncfc_cli.futures.hold import HoldPolicy, Script
from asyncfc_cli.futures.protocol import WAIT_TOOL, handle
from asyncfc_cli.futures.table import FutureTable
from asyncfc_cli.latency import LatencyBook
from asyncfc_cli.model import ToolCallReady
from asyncfc_cli.references import Reference
from asyncfc_cli.trace import Trace


class AsyncScheduler(Scheduler):
    """Async mode: every call is a future that starts the moment it is ready.

    Calls run as tasks in the run's nursery (:meth:`running`), so leaving the
    run cancels them. A call waits inside its task for the futures it
    references and, for ``ordered`` tools, for the previous ordered call.
    ``latency`` learns every call's duration (for this run's holds and, saved,
    for later runs'); ``hold`` defaults to never holding. ``script``: the run's
    cassette, told what each request carries, or saying what it must carry.
    """

    def __init__(self, tools: dict[str, Any], limits: Limits, trace: Trace,
                 latency: LatencyBook, hold: HoldPolicy | None = None,
                 script: Script | None = None) -> None:
        super().__init__(tools, limits, trace)
        self.latency = latency  # its default is the mode's (asyncfc_cli.modes), the one place that gives it
        self.hold = hold or HoldPolicy()
        self.script = script or Script()
        self.table = FutureTable()
        self.records = self.table.records
        self.delivery = Delivery(self.table, trace)
        self._nursery: trio.Nursery | None = None

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
        tool = self.tools.get(call.name)
        refs, error, after = self.table.issue(record, ordered=tool is not None and getattr(tool, "ordered", False))
        self.trace.emit(FutureCreated(future=record.future, call_id=call.id, tool=call.name, deps=record.deps,
                                      request=request, ordered_after=after.future if after is not None else None))
        if error is not None:
            record.status, record.error = "error", error
        if record.status == "error":
            # Malformed arguments or a bad reference: resolved on the spot, so
            # the model reads the error in this call's own tool message.
            begin(record, self.trace, {"future": record.future, "deps": record.deps})
            finish(record, self.trace)
            self._resolve(record)
            self.table.unchain(record, after)
            return
        assert self._nursery is not None, "on_call_ready outside running()"
        self._nursery.start_soon(self._run, record, after, refs)

    async def _run(self, record: CallRecord, after: CallRecord | None, refs: list[Reference]) -> None:
        try:
            if record.deps:
                record.status = "waiting"
                for dep in record.deps:
                    await self.table.arrival(dep)
            # Even with no reference, escaped text loses its backslash here.
            self.table.bind_inputs(record, refs)
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

    def _resolve(self, record: CallRecord) -> None:
        if record.done:
            return
        record.resolved.set()
        self.trace.emit(FutureResolved(future=record.future, status=record.status))
        if record.status in ("ok", "timeout") and record.duration is not None:
            self.latency.observe(record.tool, record.duration)

    # -- what the model sees --------------------------------------------------------

    def wants_cut(self, chars: int, calls: int) -> bool:
        return self.delivery.wants_cut(chars, calls)

    def text_is_final(self, calls: int) -> bool:
        # An answer is cut or held only while an outcome is unseen; text of a
        # response with a call is never an answer.
        return calls > 0 or self.delivery.all_seen()

    def add_earlier(self, futures: list[dict[str, Any]]) -> None:
        self.table.add_earlier(futures)

    def before_request(self, messages: list[dict[str, Any]]) -> None:
        self.delivery.before_request(messages, self.script.recorded())
        self.script.delivered(self.delivery.take_sent())

    async def accept_answer(self, cut: bool) -> bool:
        return await self.delivery.accept_answer(cut)

    async def after_response(self) -> list[dict[str, Any]]:
        # Calls that completed at the very end of the stream get to start first.
        await trio.lowlevel.checkpoint()
        response = self.take_response()
        self.table.close_response()
        calls = [r for r in response if r.future is not None]
        waits = [r for r in response if r.future is None]
        recorded = self.script.recorded()  # replaying: what the recorded next request carried
        # Results already there go back in their calls' own messages...
        if recorded is None:
            given = [r for r in calls if r.done and not r.delivered]
        else:
            given = [r for r in calls if r.future in recorded.result and not r.delivered]
            for record in given:
                await record.resolved.wait()
        self.delivery.mark(given, "result")
        # ...then each wait blocks on what the model asked for...
        replies = {id(w): await self.delivery.serve_wait(w, calls, given, None if recorded is None else
                                                         recorded.wait(index))
                   for index, w in enumerate(waits)}
        if recorded is not None:
            # The recorded request's message carried these: they are ready when it is built.
            for record in self.table.records:
                if record.future in recorded.message and not record.delivered:
                    await record.resolved.wait()
        elif not waits:
            # ...or, when the model did not say what it needs, a short hold
            # for calls about to finish, so a value it needs does not cost it
            # a wait request.
            await self._hold(calls)
            late = [r for r in calls if r.done and not r.delivered]
            self.delivery.mark(late, "result")
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
        """Hold the next request as the policy says, for the calls it names."""
        pending = [r for r in records if not r.done]
        if not pending:
            return
        now = self.trace.now()
        hold = self.hold.plan(pending, now)
        if hold is None:
            return
        with trio.move_on_after(hold.budget):
            for record in hold.targets:
                await record.resolved.wait()
        held = self.trace.now() - now
        self.hold.spent(held)
        self.trace.emit(Hold(futures=[r.future for r in hold.targets],
                             expected=round(hold.expected, 6) if hold.expected is not None else None,
                             held=round(held, 6), budget=round(hold.budget, 6)))
