"""What ``asyncfc trace list`` reads of each run and how its rows fit a width.

A trace's header and its last event are read without the whole file (a run
may have written gigabytes); a row's time is the instant of its run id; task
paths are shortened, never split. The command itself, and its narrow layout,
are in :mod:`asyncfc_cli.commands.trace`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def read_header(path: Path):
    """The header of a trace file (its first non-blank line), or None."""
    return head_and_tail(path, tail=False)[0]


def head_and_tail(path: Path, tail: bool = True):
    """The header and the last valid event, without reading the whole file.

    Both are typed events (:mod:`asyncfc_cli.events`), or None where the
    file has none: what cannot be read is simply not listed.
    """
    from asyncfc_cli.events import Header, loads, parse_event

    def parse(line: bytes):
        try:
            return parse_event(loads(line.decode("utf-8")))
        except (ValueError, RecursionError):  # not UTF-8, not JSON, not an event (EventError)
            return None

    try:
        with open(path, "rb") as f:
            first = f.readline(1 << 20)
            while first and not first.strip():  # traces before strict JSONL opened with a blank line
                first = f.readline(1 << 20)
            lines: list[bytes] = []
            if tail:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(size - 65536, 0))
                lines = f.read().split(b"\n")
    except OSError:
        return None, None
    header = parse(first)
    if not isinstance(header, Header):
        return None, None
    last = None
    for line in reversed(lines):
        last = parse(line) if line.strip() else None
        if last is not None:
            break
    return header, last


def list_entry(path: Path) -> dict[str, Any] | None:
    from asyncfc_cli.events import Summary

    header, last = head_and_tail(path)
    if header is None:
        return None
    finished = isinstance(last, Summary)
    # The run's span on the trace's clock, as `asyncfc trace` measures it (the
    # summary's own wall is the same figure; older traces left the start-up out of it).
    wall = (last.t - header.t) if last is not None else 0.0
    return {"path": str(path), "run_id": header.run_id, "started_at": header.started_at,
            "task": header.task, "agent": header.agent, "model": header.model,
            "mode": header.mode, "status": last.status if finished else "unfinished",
            "wall": round(max(wall, 0.0), 6), "requests": last.requests if finished else None,
            "tool_calls": last.tool_calls if finished else None}


def local_time(stamp: Any) -> str:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(stamp)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except (ValueError, OverflowError, OSError):  # not a date, or one out of the local clock's range
        return str(stamp or "?")


def fit_tasks(rows: list[dict[str, Any]], columns: tuple[str, ...], width: int) -> bool:
    """Shorten the task cells to their file names when the full paths leave the
    model less than a readable width. True if the tasks then fit whole (a file
    name is not split over lines); below that (about 65 columns), False: the
    runs are listed two lines each (:func:`asyncfc_cli.commands.trace._print_narrow`)."""
    fixed = sum(max(len(r[c] if c != "status" else r[c][0]) for r in rows) for c in columns
                if c not in ("task", "model"))
    room = width - fixed - 2 * (len(columns) - 1) - min(16, max(len(r["model"]) for r in rows))
    if max(len(r["task"]) for r in rows) <= room:
        return True
    names = [os.path.basename(r["task"]) or r["task"] for r in rows]
    # the model may fold down to 8 columns to keep the file names whole
    if max(map(len, names)) > room + min(16, max(len(r["model"]) for r in rows)) - 8:
        return False  # too narrow even for that
    for row, name in zip(rows, names):
        row["task"] = name
    return True


def run_started(entry: dict[str, Any]) -> Any:
    """When a run started: the instant of its id, which the header's ``started_at``
    also is (:func:`asyncfc_cli.trace.header_fields`); older traces took that
    seconds later, so the id is read first. A run id not made by asyncfc: the header's."""
    from asyncfc_cli.trace import run_id_time

    stamp = run_id_time(entry["run_id"])
    return stamp.isoformat() if stamp is not None else entry["started_at"]


def short_task(task: Any) -> str:
    """A task path relative to the current directory when it is inside it."""
    text = str(task or "?")
    try:
        if os.path.isabs(text) and Path(text).is_relative_to(Path.cwd()):
            return os.path.relpath(text)
    except (OSError, ValueError):
        pass
    return text
