"""The run's futures: ids, what each call reads, cycles, and arrival.

Calls are numbered ``f1``, ``f2``, ... in the order they are issued across
the whole run (``wait`` calls are not numbered). A call's references
(:mod:`asyncfc_cli.references`) are its dependencies; a reference to a call
not issued yet is allowed while the response that holds it is streaming (the
call may come later in the same message) and fails when the response ends
without it. ``ordered`` tools are chained in issue order.
"""

from __future__ import annotations

import re

import trio

from asyncfc_cli.executor import CallRecord
from asyncfc_cli.references import PathError, Reference, scan, substitute

_CANONICAL_ID = re.compile(r"f[1-9]\d*")


class FutureTable:
    """Every future of one run, by id, in issue order."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []  # issued calls, in issue order
        self.by_id: dict[str, CallRecord] = {}
        self._appeared: dict[str, trio.Event] = {}  # future id -> set once issued (or never will be)
        self._never: dict[str, str] = {}  # future id -> why it will never be issued
        self._forward: set[str] = set()  # ids referenced before they were issued, in this response
        # ... in any response: only such a call can close a cycle (see check_references).
        self._read_early: set[str] = set()
        self._last_ordered: CallRecord | None = None

    def issue(self, record: CallRecord, ordered: bool) -> tuple[list[Reference], str | None, CallRecord | None]:
        """Number a call and record what it reads.

        Returns its references, what is wrong with them as far as is known now
        (None: nothing; a call that already failed is not judged again), and,
        for an ``ordered`` tool, the previous ordered call it must follow."""
        record.future = f"f{len(self.by_id) + 1}"
        self.records.append(record)
        refs, problems = scan(record.arguments) if record.arguments is not None else ([], [])
        record.deps = list(dict.fromkeys(r.future for r in refs))
        early = [d for d in record.deps if d not in self.by_id]
        self._forward.update(early)
        self._read_early.update(early)
        error = None
        if record.status != "error":
            error = problems[0] if problems else self.check_references(record, refs)
        after = None
        if ordered:
            after, self._last_ordered = self._last_ordered, record
        self.by_id[record.future] = record
        if record.future in self._appeared:
            self._appeared[record.future].set()
        return refs, error, after

    def add_earlier(self, futures: list[dict]) -> None:
        """Futures of the runs a continued conversation had (``{"future", "tool",
        "status", "value", "error"}``, in issue order, checked by the caller):
        resolved and seen, so new calls number on from them and may still read them."""
        for item in futures:
            record = CallRecord("", item["tool"], "", 0, status=item["status"], value=item.get("value"),
                                error=item.get("error"), future=item["future"], delivered="earlier")
            record.resolved.set()
            self.by_id[record.future] = record

    def unchain(self, record: CallRecord, after: CallRecord | None) -> None:
        """``record`` failed without running: the ordered chain goes on from ``after``."""
        if self._last_ordered is record:
            self._last_ordered = after

    def check_references(self, record: CallRecord, refs: list[Reference]) -> str | None:
        """What is wrong with a call's references as far as is known now, or None.

        References to calls not made yet are fine here: they may come later in
        the same response (checked when they appear, or when it ends)."""
        fid = record.future
        for ref in refs:
            if ref.future == fid:
                return f"${fid} refers to this call itself: a call cannot use its own result"
            if not _CANONICAL_ID.fullmatch(ref.future):
                return f"unknown future ${ref.future}: future ids are f1, f2, ... (issued so far: {self.issued()})"
            dep = self.by_id.get(ref.future)
            if dep is not None and ref.tool and dep.tool != ref.tool:
                return f"{ref.text} names a call of {ref.tool}, but {ref.future} is a call of {dep.tool}"
        # A cycle through this call ends with a reference to it made before it
        # was issued: without one there is nothing to walk (a long chain of
        # calls each reading the one before would otherwise walk it all each time).
        for dep_id in record.deps if fid in self._read_early else ():
            cycle = self.path_to(dep_id, fid, [fid])
            if cycle:
                return f"cyclic reference {' -> '.join(cycle)}: no call can start"
        return None

    def path_to(self, start: str, target: str, path: list[str]) -> list[str] | None:
        """A chain of references from ``start`` to ``target`` (a cycle once ``target`` issues).

        Depth first, iterative (no recursion limit) and in time linear in the
        references walked: each step keeps a pointer to the step that reached
        it, and the chain is rebuilt once, when ``target`` is found."""
        seen: set[str] = set()
        steps: list[tuple[str, int]] = [(start, -1)]  # (future id, index of the step that reached it)
        stack = [0]
        while stack:
            index = stack.pop()
            current = steps[index][0]
            if current == target:
                trail = []
                while index >= 0:
                    node, index = steps[index]
                    trail.append(node)
                return [*path, *reversed(trail)]
            if current in seen or current not in self.by_id:
                continue
            seen.add(current)
            for dep in self.by_id[current].deps:
                steps.append((dep, index))
                stack.append(len(steps) - 1)
        return None

    def issued(self) -> str:
        n = len(self.by_id)
        return "none" if n == 0 else "f1" if n == 1 else f"f1..f{n}"

    async def arrival(self, future_id: str) -> None:
        """Return once ``future_id`` is resolved, or known never to be issued."""
        while future_id not in self.by_id and future_id not in self._never:
            await self._appeared.setdefault(future_id, trio.Event()).wait()
        if future_id in self.by_id:
            await self.by_id[future_id].resolved.wait()

    def bind_inputs(self, record: CallRecord, refs: list[Reference]) -> None:
        """Once every input has arrived: substitute their values into the
        arguments, or fail the call (an input never issued, of another tool
        than its reference says, or failed)."""
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

    def close_response(self) -> None:
        """The response ended: references to calls it never made fail now."""
        for future_id in self._forward - self.by_id.keys():
            self._never[future_id] = (f"no call {future_id} was made (the response ended; "
                                      f"calls so far: {self.issued()})")
            self._appeared.setdefault(future_id, trio.Event()).set()
        self._forward.clear()
