"""What ``asyncfc batch`` shows and writes, all built from :class:`~asyncfc_cli.batch.RunReport`:

- progress on stderr while it runs: a Rich progress bar (done, failed,
  running, ETA) on an interactive terminal, one plain line per finished run
  anywhere else (CI logs, pipes), nothing with ``--quiet`` or ``--json``;
- ``results.jsonl`` in the output directory: one line per finished run,
  appended (and flushed) as it ends, so an interrupted batch leaves a record
  that ``--resume`` reads: runs recorded as passed are not run again;
- the summary table (per task, parameter row and mode: runs, passed,
  failed, unmet, median wall time and tokens, speedup over sync when sync
  ran too);
- ``--junit FILE``: JUnit XML, one test case per run;
- ``--json``: one object with every run.
"""

from __future__ import annotations

import errno
import json
import socket
import statistics
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from asyncfc_cli import safefiles
from asyncfc_cli.batch import (FAILED, INTERRUPTED, NOT_STARTED, PASSED, RESULTS_FILE, SKIPPED, TRACES_DIR, UNMET,
                               BatchOutcome, PlannedRun, RunReport)
from asyncfc_cli.output import printable
from asyncfc_cli.spec import SpecError

_STYLE = {PASSED: "green", FAILED: "red", UNMET: "yellow", INTERRUPTED: "yellow", SKIPPED: "dim"}


# --- results.jsonl and --resume --------------------------------------------------------------


MAX_RESULTS_BYTES = 256_000_000  # results.jsonl read back by --resume
MAX_SHOWN_PROBLEMS = 20  # skipped lines named one by one; beyond this only counted


class ResultsLog:
    """``results.jsonl`` in the batch's output directory.

    Without ``resume`` the file starts empty; with it, the runs it records as
    passed (the last line for a key wins) are :attr:`passed`, and new lines
    are appended after the old ones. A line that is not a report (cut by a
    kill, edited by hand, any JSON at all) is skipped with a warning in
    :attr:`problems`, and kept in the file.

    ``own``: ``out`` is asyncfc's choice (the default ``.asyncfc/batch/ID``)
    rather than the user's, so no link on its way may lead out of the
    current directory. Either way ``traces/`` in it must not, and the file is
    created afresh (:func:`asyncfc_cli.safefiles.create`): a link planted at
    ``results.jsonl`` is replaced, never written through. Raises
    :class:`~asyncfc_cli.spec.SpecError` (exit 2, nothing run) if it cannot.
    """

    def __init__(self, out: Path, resume: bool, own: bool = False) -> None:
        self.path = out / RESULTS_FILE
        self.passed: dict[str, RunReport] = {}
        self.problems: list[str] = []
        self._fresh = not resume
        self._made = [d for d in (out, out / TRACES_DIR) if not d.exists()]  # what discard() may remove
        try:
            safefiles.make_dirs(Path("."), out / TRACES_DIR) if own else safefiles.make_dirs(out, TRACES_DIR)
            before = self._read() if resume else b""
            self._file = safefiles.create(self.path, before, own=True)
        except OSError as exc:
            where = exc.filename or out
            fix = ("choose a writable --out directory" if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
                   else f"remove or replace {where}, or choose another --out directory")
            reason = str(exc.strerror or exc)
            reason = reason if str(where) in reason else f"{where}: {reason}"
            raise SpecError(None, "--out", f"cannot use {out}: {reason}", fix) from None

    def _read(self) -> bytes:
        """The old file's bytes (kept), with :attr:`passed` and :attr:`problems` read from them."""
        try:
            raw = safefiles.read_regular(self.path, MAX_RESULTS_BYTES)
        except FileNotFoundError:
            return b""
        last: dict[str, RunReport] = {}
        skipped = 0
        for number, line in enumerate(raw.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                report = report_from_line(line)
            except ValueError as exc:
                skipped += 1
                if skipped <= MAX_SHOWN_PROBLEMS:
                    self.problems.append(f"{self.path}: line {number} skipped ({exc})")
                continue
            last[report.key] = report
        if skipped > MAX_SHOWN_PROBLEMS:
            self.problems.append(f"{self.path}: {skipped - MAX_SHOWN_PROBLEMS} more lines skipped")
        for key, report in last.items():
            if report.status == PASSED:
                report.resumed = True
                self.passed[key] = report
        # New lines start on a line of their own, after a line a kill cut short.
        return raw if not raw or raw.endswith(b"\n") else raw + b"\n"

    def resumable(self, planned: Iterable[PlannedRun]) -> dict[str, RunReport]:
        """The passed runs that are part of this batch's plan (one set lookup per run)."""
        keys = {run.key for run in planned}
        return {key: report for key, report in self.passed.items() if key in keys}

    def append(self, report: RunReport) -> None:
        try:
            self._file.write(json.dumps(report.as_dict(), ensure_ascii=True) + "\n")
            self._file.flush()
        except (OSError, ValueError) as exc:
            self.problems.append(f"{self.path}: cannot record {report.label}: {exc}")

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass

    def discard(self) -> None:
        """The batch could not start (Ray unreachable): remove the file this invocation
        created, and the directories it made if still empty, so no results.jsonl says
        "no runs" about a batch that never ran. A resumed file is kept as it was read
        (plus any not-started lines, which are true)."""
        self.close()
        if not self._fresh:
            return
        try:
            self.path.unlink()
        except OSError:
            pass
        for directory in reversed(self._made):  # traces/ first, then the directory that held it
            try:
                directory.rmdir()
            except OSError:
                pass


# What each field of a results.jsonl line may hold: (types, required). Every
# field of RunReport is here (a test checks), so none is read unchecked.
_TEXT, _OPT_TEXT = ((str,), True), ((str, type(None)), False)
_COUNT = ((int,), False)
_REPORT_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "key": _TEXT, "label": _TEXT, "task": _TEXT, "params": ((dict,), True), "mode": _TEXT, "model": _TEXT,
    "repeat": ((int,), True), "status": _TEXT, "run_status": _OPT_TEXT, "exit_code": ((int, type(None)), False),
    "wall": ((int, float), False), "requests": _COUNT, "tokens_in": _COUNT, "tokens_out": _COUNT,
    "tool_calls": _COUNT, "answer": _OPT_TEXT, "error": _OPT_TEXT, "failures": ((list,), False),
    "tool_errors": ((list,), False),
    "expectations": _COUNT, "trace": _OPT_TEXT, "fix": _OPT_TEXT, "resumed": ((bool,), False),
    "started": ((int, float, type(None)), False), "ended": ((int, float, type(None)), False),
    "cassette": _OPT_TEXT, "recorded": ((bool,), False), "replayed": ((bool,), False),
}
_STATUSES = (PASSED, FAILED, UNMET, INTERRUPTED, SKIPPED)
_MAX_NUMBER = 1e15


def report_from_line(line: bytes | str) -> RunReport:
    """One line of ``results.jsonl`` as a :class:`RunReport`, every field checked.

    ``ValueError`` says why it is not a report: not UTF-8 or not JSON, nested
    too deeply, not an object, a field missing or of the wrong type (a bool
    is not a number; numbers are finite and non-negative), an unknown status.
    Fields a later version may add are ignored.
    """
    try:
        data = json.loads(line)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a number too long to convert
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"not JSON: {text[:100]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {_json_type(data)}, not a report object")
    values: dict[str, Any] = {}
    for name, (types, required) in _REPORT_FIELDS.items():
        if name not in data:
            if required:
                raise ValueError(f"no {name!r}")
            continue
        value = data[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(f"{name!r} is a JSON {_json_type(value)}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not 0 <= value < _MAX_NUMBER:
            raise ValueError(f"{name!r} is {value!r}, not a finite non-negative number")
        values[name] = value
    if not values["key"]:
        raise ValueError("'key' is empty")
    if values["status"] not in _STATUSES:
        raise ValueError(f"'status' is not one of {', '.join(_STATUSES)}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in values["params"].items()):
        raise ValueError("'params' is not an object of texts")
    for name in ("failures", "tool_errors"):
        if not all(isinstance(f, str) for f in values.get(name, [])):
            raise ValueError(f"{name!r} is not a list of texts")
    return RunReport(**values)


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


# --- progress --------------------------------------------------------------------------------


class BatchProgress:
    """Progress on stderr: a Rich bar when ``live`` (an interactive terminal), else one
    line per finished run; ``quiet``: nothing. A context manager (the bar's refresh
    thread lives exactly as long as the ``with``)."""

    def __init__(self, console: Console, total: int, live: bool, quiet: bool = False, resumed: int = 0) -> None:
        self.console, self.total, self.live, self.quiet = console, total, live and not quiet, quiet
        self.done = resumed
        self.failed = 0
        self.running = 0
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> BatchProgress:
        if self.live:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                      console=self.console)
            self._progress.__enter__()
            self._task = self._progress.add_task(self._description(), total=self.total, completed=self.done)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=self._description())
            self._progress.__exit__(None, None, None)

    def _description(self) -> str:
        failed = f" · [red]failed {self.failed}[/]" if self.failed else ""
        return f"done {self.done}{failed} · running {self.running}"

    def started(self, run: PlannedRun) -> None:
        self.running += 1
        if self._progress is not None:
            self._progress.update(self._task, description=self._description())

    def finished(self, report: RunReport) -> None:
        self.running = max(0, self.running - 1)
        self.done += 1
        if report.status != PASSED:
            self.failed += 1
        if self.quiet:
            return
        line = run_line(report, self.done, self.total)
        if self._progress is not None:
            # Passed runs only move the bar; the others are printed above it.
            if report.status != PASSED:
                self._progress.console.print(line, highlight=False)
            self._progress.update(self._task, completed=self.done, description=self._description())
        else:
            self.console.print(line, highlight=False)


def run_line(report: RunReport, done: int, total: int) -> str:
    """One run, as a progress line (markup; the text parts escaped)."""
    width = len(str(total))
    style = _STYLE.get(report.status, "")
    head = f"[dim][{done:>{width}}/{total}][/] [{style}]{report.status:<11}[/] {_text(report.label, 80)}"
    if report.status in (PASSED, FAILED, UNMET) and report.run_status != NOT_STARTED:
        head += (f" [dim]{report.wall:.2f}s · {report.requests} requests · tokens "
                 f"{report.tokens_in}/{report.tokens_out}[/]")
    lines = [head]
    if report.error and report.status != PASSED:
        lines.append(f"    {_text(report.error, 300)}")
    if report.fix:
        lines.append(f"    fix: {_text(report.fix)}")
    lines += [f"    expectation not met: {_text(f, 300)}" for f in report.failures]
    if report.status != PASSED:  # the calls that failed: often why the expectation was not met
        lines += [f"    tool error: {_text(e, 300)}" for e in report.tool_errors]
    if report.status in (FAILED, UNMET, INTERRUPTED) and report.trace:
        lines.append(f"    [dim]trace: {_text(report.trace)}[/]")
    return "\n".join(lines)


def _text(value: str, limit: int | None = None) -> str:
    shown = printable(value)
    if limit is not None and len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return escape(shown)


# --- summary -------------------------------------------------------------------------------


def counts(reports: Iterable[RunReport]) -> dict[str, int]:
    out = {s: 0 for s in (PASSED, FAILED, UNMET, INTERRUPTED, SKIPPED)}
    resumed = 0
    for r in reports:
        out[r.status] = out.get(r.status, 0) + 1
        resumed += r.resumed
    return {"runs": sum(out.values()), **out, "resumed": resumed}


def summary_rows(reports: list[RunReport]) -> list[dict[str, Any]]:
    """Per task, parameter row and mode: counts, median wall and tokens, speedup over sync."""
    groups: dict[tuple[str, str, str], list[RunReport]] = {}
    for r in reports:
        params = json.dumps(r.params, sort_keys=True, ensure_ascii=False)
        groups.setdefault((r.task, params, r.mode), []).append(r)

    def median_wall(rs: list[RunReport]) -> float | None:
        walls = [r.wall for r in rs if r.run_status == "ok" and r.wall > 0]
        return statistics.median(walls) if walls else None

    rows = []
    for (task, params, mode), rs in groups.items():
        ran = [r for r in rs if r.run_status not in (None, NOT_STARTED)]
        wall = median_wall(rs)
        sync = median_wall(groups.get((task, params, "sync"), []))
        rows.append({
            "task": task, "params": json.loads(params), "mode": mode, "runs": len(rs),
            "passed": sum(r.status == PASSED for r in rs), "failed": sum(r.status == FAILED for r in rs),
            "unmet": sum(r.status == UNMET for r in rs),
            "interrupted": sum(r.status in (INTERRUPTED, SKIPPED) for r in rs),
            "wall_median": None if wall is None else round(wall, 4),
            "tokens_in_median": statistics.median(r.tokens_in for r in ran) if ran else None,
            "tokens_out_median": statistics.median(r.tokens_out for r in ran) if ran else None,
            "speedup_vs_sync": round(sync / wall, 3) if sync and wall and mode != "sync" else None,
        })
    return rows


def summary_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="asyncfc batch", title_justify="left")
    for name, justify in (("task", "left"), ("params", "left"), ("mode", "left"), ("runs", "right"),
                          ("passed", "right"), ("failed", "right"), ("unmet", "right"), ("wall (median)", "right"),
                          ("tokens in/out", "right"), ("vs sync", "right")):
        table.add_column(name, justify=justify)
    for row in rows:
        status = "green" if row["passed"] == row["runs"] else "red" if row["failed"] or row["interrupted"] else "yellow"
        params = " ".join(f"{k}={v}" for k, v in row["params"].items())
        tokens = "" if row["tokens_in_median"] is None else f"{row['tokens_in_median']:g}/{row['tokens_out_median']:g}"
        table.add_row(
            escape(printable(row["task"])), escape(printable(params)[:60]), row["mode"], str(row["runs"]),
            f"[{status}]{row['passed']}[/]", str(row["failed"] + row["interrupted"]) if row["failed"] or row["interrupted"] else "0",
            str(row["unmet"]), "" if row["wall_median"] is None else f"{row['wall_median']:.2f}s", tokens,
            "" if row["speedup_vs_sync"] is None else f"{row['speedup_vs_sync']:.2f}×")
    return table


def summary_line(outcome: BatchOutcome, out: Path) -> str:
    c = counts(outcome.reports)
    parts = [f"{c['runs']} runs", f"[green]{c[PASSED]} passed[/]"]
    for key, style in ((FAILED, "red"), (UNMET, "yellow"), (INTERRUPTED, "yellow"), (SKIPPED, "dim")):
        if c[key]:
            parts.append(f"[{style}]{c[key]} {'not started' if key == SKIPPED else key}[/]")
    if c["resumed"]:
        parts.append(f"{c['resumed']} passed before (--resume)")
    parts.append(f"{outcome.wall:.2f}s")
    return "batch: " + " · ".join(parts) + f"\n[dim]traces and results.jsonl in {escape(str(out))}[/]"


# --- --json --------------------------------------------------------------------------------


def json_document(outcome: BatchOutcome, code: int, out: Path, junit: Path | None) -> dict[str, Any]:
    c = counts(outcome.reports)
    status = {0: "passed", 1: "failed", 2: "error", 3: "unmet", 130: "interrupted"}.get(code, "failed")
    return {
        "status": status, "exit_code": code, "counts": c, "wall": round(outcome.wall, 6), "out": str(out),
        "results": str(out / RESULTS_FILE), "junit": None if junit is None else str(junit),
        "limits": outcome.limits, "summary": summary_rows(outcome.reports),
        "runs": [r.as_dict() for r in outcome.reports],
    }


# --- --junit -------------------------------------------------------------------------------


def xml_text(value: Any, limit: int | None = None) -> str:
    """Text XML 1.0 can hold: characters it forbids (control characters, lone
    surrogates, U+FFFE/U+FFFF) become visible escapes, so a hostile answer or
    error can never make the report unreadable."""
    text = str(value)
    if limit is not None and len(text) > limit:
        text = text[:limit] + f"… ({len(text) - limit} more characters)"
    out = []
    for ch in text:
        code = ord(ch)
        if code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF:
            out.append(ch)
        else:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def junit_xml(outcome: BatchOutcome, command: str = "asyncfc batch") -> str:
    """JUnit XML: a ``testsuites`` with one ``testsuite`` per task and one ``testcase`` per run.

    A passed run is a plain test case; unmet expectations are a ``failure``
    (type ``expectation``, one line per unmet expectation); a run that failed
    (model error, timeout, max turns, a refused key) is an ``error`` whose type
    is the run's status; an interrupted or never-started run is ``skipped``.
    ``assertions`` is the number of expectations the task checks; ``time`` the
    run's wall time; ``system-out`` the answer and the trace's path.
    """
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    host = xml_text(socket.gethostname())
    c = counts(outcome.reports)
    root = ET.Element("testsuites", name=xml_text(command), tests=str(c["runs"]), failures=str(c[UNMET]),
                      errors=str(c[FAILED]), skipped=str(c[INTERRUPTED] + c[SKIPPED]), time=f"{outcome.wall:.3f}")
    suites: dict[str, list[RunReport]] = {}
    for r in outcome.reports:
        suites.setdefault(r.task, []).append(r)
    for task, reports in suites.items():
        sc = counts(reports)
        suite = ET.SubElement(root, "testsuite", name=xml_text(task), tests=str(sc["runs"]),
                              failures=str(sc[UNMET]), errors=str(sc[FAILED]),
                              skipped=str(sc[INTERRUPTED] + sc[SKIPPED]),
                              time=f"{sum(r.wall for r in reports):.3f}", timestamp=stamp, hostname=host)
        props = ET.SubElement(suite, "properties")
        for name, value in (("models", sorted({r.model for r in reports})),
                            ("modes", sorted({r.mode for r in reports}))):
            ET.SubElement(props, "property", name=name, value=xml_text(", ".join(value)))
        for r in reports:
            case = ET.SubElement(suite, "testcase", name=xml_text(r.label), classname=xml_text(Path(task).stem),
                                 time=f"{r.wall:.3f}", assertions=str(r.expectations), file=xml_text(task))
            if r.status == UNMET:
                failure = ET.SubElement(case, "failure", type="expectation",
                                        message=xml_text("; ".join(r.failures), 1000))
                failure.text = xml_text("\n".join([*(f"expectation not met: {f}" for f in r.failures),
                                                   *(f"tool error: {e}" for e in r.tool_errors)]), 20_000)
            elif r.status == FAILED:
                message = r.error or r.run_status or "failed"
                error = ET.SubElement(case, "error", type=xml_text(r.run_status or "error"),
                                      message=xml_text(message, 1000))
                error.text = xml_text("\n".join([message, *([f"fix: {r.fix}"] if r.fix else []),
                                                 *(f"tool error: {e}" for e in r.tool_errors)]), 20_000)
            elif r.status in (INTERRUPTED, SKIPPED):
                ET.SubElement(case, "skipped", message=xml_text(r.error or r.status, 1000))
            out = []
            if r.answer is not None:
                out.append(f"answer: {r.answer}")
            if r.trace:
                out.append(f"trace: {r.trace}")
            if r.resumed:
                out.append("passed in an earlier invocation (--resume); not run again")
            if r.cassette:
                out.append(f"{'replayed from' if r.replayed else 'recorded to'} the cassette {r.cassette}")
            if out:
                ET.SubElement(case, "system-out").text = xml_text("\n".join(out), 20_000)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a reader never sees half
    a report and a link planted at ``path`` is replaced, never written through."""
    path.parent.mkdir(parents=True, exist_ok=True)
    safefiles.write_atomically(path, text)
