"""Every outcome reaches the model exactly once, and an answer only counts once it has seen them all.

An outcome reaches the model one way (``CallRecord.delivered``): ``result``,
its call's own tool message; ``wait``, a ``wait`` result; ``message``, the
plain message before the next request that carries what resolved while the
model decoded. The finish rule: an answer given while an outcome is unseen
is not accepted; the outcomes are awaited and delivered and the model asked
again, to confirm or revise it, or, when it was cut short while streaming
(:meth:`Delivery.wants_cut`), to answer with everything in view.
"""

from __future__ import annotations

import json
import math
from typing import Any

import trio

from asyncfc_cli.events import Delivery as DeliveryEvent, FinishHeld, WaitBegin, WaitEnd
from asyncfc_cli.executor import CallRecord
from asyncfc_cli.futures.hold import Deliveries
from asyncfc_cli.futures.protocol import delivery_message, parse_future_id
from asyncfc_cli.futures.table import FutureTable
from asyncfc_cli.trace import Trace

# An answer that starts while outcomes are still unseen is cut short once it
# has this many characters and no tool call: long enough that it is not a
# sentence announcing a call (which a cut would only delay), short enough to
# save most of a long answer's decode.
CUT_AFTER_CHARS = 160


class Delivery:
    """How the outcomes of one run's futures (``table``) reach the model."""

    def __init__(self, table: FutureTable, trace: Trace) -> None:
        self.table, self.trace = table, trace
        self.finishing = False  # the model's held answer is in the conversation
        self.sent = Deliveries()  # what the next request carries (a cassette records it: futures.hold.Script)

    def mark(self, records: list[CallRecord], via: str) -> None:
        for record in records:
            record.delivered = via
        futures = [r.future for r in records]
        if via == "wait":
            if not self.sent.waits:
                self.sent.waits.append([])
            self.sent.waits[-1].extend(futures)  # the list serve_wait opened for its call
        else:
            getattr(self.sent, via).extend(futures)
        if records:
            self.trace.emit(DeliveryEvent(futures=[r.future for r in records], via=via))

    def outstanding(self) -> list[str]:
        """Futures whose outcome the model has not seen."""
        return [r.future for r in self.table.records if not r.delivered]

    def all_seen(self) -> bool:
        """The model has seen every outcome: an answer now is accepted as it is."""
        return all(r.delivered for r in self.table.records)

    def wants_cut(self, chars: int, calls: int) -> bool:
        """An answer (no call) of at least :data:`CUT_AFTER_CHARS` while an outcome
        is unseen, finished or not: the finish rule would not accept it."""
        return calls == 0 and chars >= CUT_AFTER_CHARS and any(not r.delivered for r in self.table.records)

    def take_sent(self) -> Deliveries:
        """What the request about to be sent carries; the next one starts empty."""
        sent, self.sent = self.sent, Deliveries()
        return sent

    def before_request(self, messages: list[dict[str, Any]], recorded: Deliveries | None = None) -> None:
        """What resolved since the last request, as one plain message (with the
        finish note when the model's answer was held). Replaying (``recorded``):
        what the recorded request's message carried, and nothing else."""
        ready = [r for r in self.table.records if r.done and not r.delivered
                 and (recorded is None or r.future in recorded.message)]
        if ready or self.finishing:
            self.mark(ready, "message")
            messages.append(delivery_message({r.future: r.outcome() for r in ready}, finishing=self.finishing))
            self.finishing = False

    async def accept_answer(self, cut: bool) -> bool:
        """The finish rule: True once the model has seen every outcome; else
        wait for them all (the next request delivers them) and return False."""
        outstanding = self.outstanding()
        if not outstanding:
            return True
        self.trace.emit(FinishHeld(outstanding=outstanding, cut=cut))
        for record in self.table.records:
            await record.resolved.wait()
        self.finishing = not cut
        return False

    async def serve_wait(self, call: CallRecord, siblings: list[CallRecord] = (),
                         given: list[CallRecord] = (), recorded: set[str] | None = None) -> str:
        """One ``wait`` call: block on the chosen futures, return their outcomes.

        ``wait()`` without ``futures`` waits for the other calls of its own
        message (``siblings``): the cheapest way to say "I need these".
        Futures whose result goes back in their own tool message of the same
        response (``given``) are left out: the model reads them there.
        Replaying (``recorded``: the futures this wait returned when the run
        was recorded): those are waited for, whatever the timeout, and the
        others named are pending, done or not."""
        self.sent.waits.append([])

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
        by_id = self.table.by_id
        ids = [parse_future_id(r) for r in raw_ids]
        found = list(dict.fromkeys(by_id[i] for i in ids if i in by_id))
        self.trace.emit(WaitBegin(call_id=call.call_id, futures=[f.future for f in found], timeout=timeout))
        with trio.move_on_after(math.inf if timeout is None else timeout):
            for record in found:
                await record.resolved.wait()
        for record in found if recorded is not None else ():
            if record.future in recorded:
                await record.resolved.wait()
        out: dict[str, Any] = {}
        pending: list[str] = []
        fresh: list[CallRecord] = []
        for raw, fid in zip(raw_ids, ids):
            record = by_id.get(fid) if fid else None
            if record is None:
                out[str(raw)] = {"error": f"unknown future {raw!r}; issued so far: {self.table.issued()}"}
            elif record in fresh or record.future in pending or record in given:
                continue  # named twice, or its value is in its own message
            elif not record.done or (recorded is not None and not record.delivered
                                     and record.future not in recorded):
                pending.append(record.future)
            elif record.delivered:
                out[record.future] = {"note": f"already delivered ({record.delivered})"}
            else:
                out[record.future] = record.outcome()
                fresh.append(record)
        self.mark(fresh, "wait")
        if pending:
            out["pending"] = pending
        self.trace.emit(WaitEnd(call_id=call.call_id, ready=[r.future for r in fresh], pending=pending))
        return json.dumps(out, ensure_ascii=False)
