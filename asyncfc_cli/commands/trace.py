"""``asyncfc trace``: view, list, compare and export recorded runs.

``asyncfc trace [FILE|latest|RUN_ID]`` is short for ``asyncfc trace show
...``. Everything here reads trace files only (never LiteLLM), so the
commands start fast. Data goes to stdout, messages to stderr.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from enum import Enum
from pathlib import Path
from stat import S_ISREG
from typing import Annotated, Any, Optional

import click
import typer
from typer.core import TyperGroup

# Reading the runs and fitting their rows: asyncfc_cli/commands/trace_list.py.
from asyncfc_cli.commands.trace_list import (fit_tasks as _fit_tasks, list_entry, local_time as _local_time,
                                             read_header, run_started as _run_started, short_task as _short_task)

EXIT_USAGE = 2


class _ShowByDefault(TyperGroup):
    """``asyncfc trace FILE`` runs ``show FILE``: anything that is not a
    subcommand (a path, ``latest``, an option) goes to ``show``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["show", *args]
        return super().parse_args(ctx, args)


class ExportChoice(str, Enum):
    """``--export``: shown and completed as ``[chrome|otel]`` (asyncfc_cli.exporters.FORMATS)."""

    chrome = "chrome"
    otel = "otel"


trace_app = typer.Typer(
    cls=_ShowByDefault,
    help="View, list, compare and export run traces (.asyncfc/runs/*.jsonl).\n\n"
    "asyncfc trace [FILE|latest|RUN_ID] is short for asyncfc trace show.",
    rich_markup_mode=None,
    add_completion=False,
)


def _err():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _out(width: Optional[int] = None, svg: Optional[Path] = None):
    from rich.console import Console

    return Console(highlight=False, width=width, record=svg is not None)


def _save_svg(console: Any, svg: Optional[Path], title: str) -> None:
    if svg is None:
        return
    from asyncfc_cli.output import printable

    text = console.export_svg(title=printable(title))
    try:
        from asyncfc_cli.safefiles import write_atomically

        # backslashreplace: the picture may show a lone surrogate from a trace.
        write_atomically(svg, text.encode("utf-8", "backslashreplace"))
    except OSError as exc:
        raise _fail(f"cannot write {svg}: {exc.strerror or exc}") from None
    _err().print(f"saved {svg}")


class _Failure(typer.Exit):
    """An error already printed on stderr; :func:`_json_errors` also prints it as JSON."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code)
        self.message = message


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    from rich.markup import escape

    from asyncfc_cli.output import printable

    # Messages may quote a file's content: shown escaped, one line per line.
    text = "\n".join(printable(line) for line in message.split("\n"))
    _err().print(f"[red]error:[/] {escape(text)}")
    return _Failure(code, message)


def _json_errors(command: Any) -> Any:
    """With ``--json``, a command's error is also one JSON object on stdout, like its result."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except _Failure as exc:
            if kwargs.get("as_json"):
                from asyncfc_cli.commands.common import error_object
                from asyncfc_cli.output import print_json

                print_json(error_object("usage_error", exc.exit_code, exc.message,
                                        "asyncfc trace list shows the recorded runs; asyncfc trace -h the options"))
            raise

    return run


def _runs_dir(directory: Optional[Path]) -> Path:
    from asyncfc_cli.trace import runs_dir

    return directory or runs_dir()


def _exists(path: Path, kind: str = "file") -> bool:
    """``path.is_file()`` / ``is_dir()``, False (not an exception) for a name
    the system refuses, e.g. one too long."""
    try:
        return path.is_file() if kind == "file" else path.is_dir()
    except (OSError, ValueError):
        return False


def recent_traces(directory: Path) -> list[Path]:
    """Trace files in ``directory``, newest first (by modification time)."""
    if not _exists(directory, "dir"):
        return []
    stamped = []
    try:
        found = list(directory.glob("*.jsonl"))
    except OSError:  # unreadable directory
        return []
    for path in found:
        try:
            info = path.stat()
        except OSError:  # removed while listing
            continue
        if S_ISREG(info.st_mode):  # a FIFO named x.jsonl would block the read of its header
            stamped.append(((info.st_mtime, path.name), path))
    return [path for _, path in sorted(stamped, key=lambda item: item[0], reverse=True)]


def resolve(target: str, directory: Optional[Path] = None) -> Path:
    """A trace path from ``latest``, a file path, or a run id in the runs directory.

    ``latest`` is the newest file that starts with a header: a file left
    empty or unreadable (a disk that filled up, a copy in progress) is
    passed over with a note, so ``latest`` always finds the last run that
    recorded anything.
    """
    runs = _runs_dir(directory)
    if target == "latest":
        found = recent_traces(runs)
        if not found:
            raise _fail(f"no traces in {runs}; run a task first (asyncfc run TASK) or name a trace file")
        for path in found:
            if read_header(path) is not None:
                if path != found[0]:
                    skipped = found[: found.index(path)]
                    _err().print(f"[yellow]note:[/] skipped {len(skipped)} newer file(s) without a trace header, "
                                 f"e.g. {_shown_path(skipped[0])}")
                return path
        raise _fail(f"no readable traces in {runs} ({len(found)} file(s) without a trace header)")
    path = Path(target)
    if _exists(path):
        return path
    for candidate in (runs / target, runs / f"{target}.jsonl"):
        if _exists(candidate):
            return candidate
    matches = _by_prefix(target, runs)
    if len(matches) == 1:
        return matches[0]
    if matches:
        shown = ", ".join(_shown_path(Path(m.stem)) for m in matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise _fail(f"{target} is the start of {len(matches)} run ids in {runs}: {shown}; give more of the id")
    raise _fail(f"no trace at {target}; asyncfc trace list shows the runs in {runs}")


def _by_prefix(target: str, runs: Path) -> list[Path]:
    """Traces in ``runs`` whose run id starts with ``target``, or whose last
    part (after the last ``-``: the random part) does, newest first."""
    if not target or "/" in target or target in (".", ".."):
        return []
    return [p for p in recent_traces(runs)
            if p.stem.startswith(target) or p.stem.rpartition("-")[2].startswith(target)]


def _shown_path(path: Path) -> str:
    from asyncfc_cli.output import printable

    return printable(str(path))


MAX_SHOWN_PROBLEMS = 10


def _load(path: Path):
    """Read a trace; lines that were skipped are listed on stderr (never fatal)."""
    from asyncfc_cli.trace import TraceError, read_trace

    try:
        data = read_trace(path)
    except TraceError as exc:
        raise _fail(str(exc)) from None
    if data.problems:
        from rich.markup import escape

        from asyncfc_cli.output import printable

        err = _err()
        err.print(f"[yellow]warning:[/] {escape(_shown_path(path))}: skipped {len(data.problems)} line(s) "
                  "that are not valid trace events:")
        for problem in data.problems[:MAX_SHOWN_PROBLEMS]:
            err.print(f"  {escape(printable(problem))}")
        if len(data.problems) > MAX_SHOWN_PROBLEMS:
            err.print(f"  ... {len(data.problems) - MAX_SHOWN_PROBLEMS} more (asyncfc trace FILE --json lists them all)")
    return data


def _describe(data: Any, run: Any) -> dict[str, Any]:
    h = data.header
    return {"path": str(data.path), "run_id": h.run_id, "task": h.task, "agent": h.agent,
            "model": h.model, "mode": h.mode, "started_at": h.started_at, "cassette": h.cassette,
            "tool_names": run.tool_names,
            "setup": [{"name": s.name, "kind": s.kind, "start": round(s.start - run.start, 6),
                       "end": round(s.end - run.start, 6), "seconds": round(s.end - s.start, 6), "tools": s.tools}
                      for s in run.setup],
            "truncated": data.truncated, "problems": data.problems}


# --- show ---------------------------------------------------------------------------------------


@trace_app.command("show")
@_json_errors
def show(
    target: Annotated[str, typer.Argument(help="A trace file, a run id (or its start, or the start of "
                                          "its part after the last -), or latest.")] = "latest",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    export: Annotated[Optional[ExportChoice], typer.Option(
        "--export", help="Write the trace as chrome (Chrome trace-event JSON for Perfetto and chrome://tracing) "
        "or otel (OTLP/JSON spans, OpenTelemetry GenAI conventions).", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option(
        "-o", "--output", help="File for --export (default: stdout).")] = None,
    width: Annotated[Optional[int], typer.Option("--width", min=20, max=1000, help="Render at this many columns (20-1000).")] = None,
    svg: Annotated[Optional[Path], typer.Option(
        "--svg", help="Also save what is printed as an SVG picture (Rich's export).", show_default=False)] = None,
    directory: Annotated[Optional[Path], typer.Option(
        "--dir", envvar="ASYNCFC_RUNS_DIR", help="Where runs are recorded (default: .asyncfc/runs next to the project's agents.toml, found from the current directory up).")] = None,
) -> None:
    """Show a run: its timeline and a summary table (or export it)."""
    from asyncfc_cli import analysis

    path = resolve(target, directory)
    data = _load(path)
    run = analysis.run_from_trace(data)
    if export is not None:
        from asyncfc_cli import exporters

        export = export.value
        if export not in exporters.FORMATS:
            raise _fail(f"--export {export}: choose one of {', '.join(exporters.FORMATS)}")
        from asyncfc_cli.output import json_text

        document = exporters.export(run, export)
        if output is None or str(output) == "-":
            print(json_text(document, encoding=None))
        else:
            try:
                from asyncfc_cli.safefiles import write_atomically

                write_atomically(output, json_text(document, "utf-8") + "\n")
            except OSError as exc:
                raise _fail(f"cannot write {output}: {exc.strerror or exc}") from None
            hint = "open it in https://ui.perfetto.dev or chrome://tracing" if export == "chrome" else \
                "send it to an OTLP/HTTP collector: POST to /v1/traces with Content-Type: application/json"
            _err().print(f"wrote {export} trace to {output} ({hint})")
        return
    metrics = analysis.compute(run)
    if as_json:
        from asyncfc_cli.output import print_json

        print_json({**_describe(data, run), **metrics.as_dict()})
        return
    from asyncfc_cli.timeline import Timeline

    console = _out(width, svg)
    console.print(Timeline.from_trace(data, title=_title(data, path)))
    for table in (summary_table(metrics, run), requests_table(run) if run.models else None,
                  tools_table(metrics) if run.tools else None):
        if table is not None:
            console.print()
            console.print(table)
    _save_svg(console, svg, f"asyncfc trace {target}")
    if data.truncated:
        _err().print(f"[yellow]note:[/] the trace ends without a summary (the run was killed or is still "
                     "running); open spans are marked unfinished")


def _title(data: Any, path: Path) -> str:
    h = data.header
    status = data.summary.status if data.summary else "unfinished"
    return (f"{h.task or '?'} · agent {h.agent or '?'} · model {h.model or '?'} · "
            f"mode {h.mode or '?'} · {status}{_cassette_note(h)} · {path}")


def _cassette_note(header: Any) -> str:
    """A replayed (or recorded) run says so in its title: its model's answers came from a cassette."""
    from asyncfc_cli.output import printable

    cassette = header.cassette or {}
    if cassette.get("replayed"):
        return f" · replayed from {printable(cassette['replayed'])} ({printable(cassette.get('speed', '?'))} speed)"
    if cassette.get("recorded"):
        return f" · recorded to {printable(cassette['recorded'])}"
    return ""


def _s(x: float) -> str:
    from asyncfc_cli.timeline import fmt_seconds

    return fmt_seconds(x)


def _pct(part: float, whole: float) -> str:
    return f"{part / whole * 100:.0f}% of wall" if whole > 0 and not math.isnan(part) else ""


def _x(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.2f}×"


def _chain(names: list[str], keep: int = 8) -> str:
    from asyncfc_cli.output import label

    if len(names) > keep:
        names = [*names[:3], f"… {len(names) - keep + 1} more …", *names[-(keep - 4):]]
    return " → ".join(label(name) for name in names)


def _startup_note(run: Any) -> str:
    """What the start-up was: each tool source that started, with its time and tools."""
    from asyncfc_cli.commands.common import plural

    if run is None or not run.setup:
        return "before the first request"
    return ", ".join(f"{_label(s.name)} ({_label(s.kind)}) {_s(s.end - s.start)}, {plural(len(s.tools), 'tool')}"
                     for s in run.setup[:5]) + (f", … {len(run.setup) - 5} more" if len(run.setup) > 5 else "")


def summary_rows(m: Any, run: Any = None) -> list[tuple[str, str, str]]:
    """(metric, value, note) rows shared by ``show`` and ``compare``."""
    from asyncfc_cli.commands.common import plural

    return [
        ("wall", _s(m.wall), _label(m.status) if m.finished else "unfinished"),
        ("start-up", _s(m.startup), _startup_note(run)),
        ("model time", _s(m.model_time), f"{plural(m.requests, 'request')}, ttft {_s(m.ttft_total)}"),
        ("tool time", _s(m.tool_time), f"{plural(m.tool_calls, 'call')}, summed"),
        ("model blocked", _s(m.blocked), _pct(m.blocked, m.wall)),
        ("overlap", _s(m.overlap), f"model‖tool {_s(m.overlap_model_tool)}, tool‖tool {_s(m.overlap_tool_tool)}"),
        ("critical path", _s(m.critical_path), _chain(m.critical_chain)),
        ("sequential-equivalent", _s(m.sequential), "model time + tool time"),
        ("achieved speedup", _x(m.speedup), "sequential-equivalent / (wall - start-up)"),
        ("ideal speedup", _x(m.ideal_speedup), "sequential-equivalent / critical path"),
        ("tokens in / out", f"{m.tokens_in} / {m.tokens_out}", ""),
    ]


def _label(value: Any) -> str:
    """Text from a trace, for a table cell: printable, cut before the table lays it out, never Rich markup."""
    from rich.markup import escape

    from asyncfc_cli.output import label

    return escape(label(value))


def summary_table(m: Any, run: Any = None):
    from rich.table import Table

    table = Table(title="summary", title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    table.add_column("", style="dim", overflow="fold")
    for row in summary_rows(m, run):
        table.add_row(*row)
    return table


def requests_table(run: Any):
    from rich.table import Table

    table = Table(title="model requests", title_justify="left", box=None, pad_edge=False)
    for name in ("#", "start", "ttft", "decode", "tokens in", "tokens out", "calls", "status"):
        table.add_column(name, justify="right" if name not in ("status",) else "left")
    for m in run.models:
        stop = m.stop(run.end)
        decode = stop - m.first_token if m.first_token is not None else None
        table.add_row(str(m.request), _s(m.start - run.start), _s(m.ttft) if m.ttft is not None else "-",
                      _s(decode) if decode is not None else "-",
                      "-" if m.tokens_in is None else str(m.tokens_in),
                      "-" if m.tokens_out is None else str(m.tokens_out),
                      "-" if m.tool_calls is None else str(m.tool_calls),
                      _label(m.status) if m.status else "unfinished")
    return table


def tools_table(m: Any):
    from rich.table import Table

    table = Table(title="tools", title_justify="left", box=None, pad_edge=False)
    for name in ("tool", "calls", "ok", "failed", "p50", "p90", "p99", "max"):
        table.add_column(name, justify="left" if name == "tool" else "right")
    for name, s in sorted(m.per_tool.items()):
        failed = f"{s.failed}" + (f" (+{s.unfinished} unfinished)" if s.unfinished else "")
        table.add_row(_label(name), str(s.count), str(s.ok), failed, _s(s.p50), _s(s.p90), _s(s.p99), _s(s.max))
    return table


# --- list ----------------------------------------------------------------------------------------

@trace_app.command("list")
def list_runs(
    limit: Annotated[int, typer.Option("--limit", "-n", min=0, help="How many runs to show (0: all).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    directory: Annotated[Optional[Path], typer.Option(
        "--dir", envvar="ASYNCFC_RUNS_DIR", help="Where runs are recorded (default: .asyncfc/runs next to the project's agents.toml, found from the current directory up).")] = None,
) -> None:
    """List recent runs, newest first: time, task, model, mode, status, wall time."""
    runs = _runs_dir(directory)
    found = recent_traces(runs)
    entries = [e for e in (list_entry(p) for p in (found[:limit] if limit else found)) if e]
    if as_json:
        from asyncfc_cli.output import print_json

        for entry in entries:
            print_json(entry)
        return
    if not entries:
        _err().print(f"no runs recorded in {runs} (asyncfc run TASK records one)")
        return
    from rich.table import Table

    # Readable at 80 columns: the run id (what `asyncfc trace` takes), the
    # task's file name and the short columns are never broken; when the task's
    # directories do not fit, only its file name is shown, and the model folds
    # onto more lines. The local time needs room the run id (which starts with
    # the UTC time) already gives, so it shows from 100.
    console = _out()
    columns = ("time", "run", "task", "model", "mode", "status", "wall")[0 if console.width >= 100 else 1:]
    styles = {"ok": "green", "unfinished": "yellow", "interrupted": "yellow"}
    rows = [{"time": _label(_local_time(_run_started(e))), "run": _label(Path(e["path"]).stem),
             "task": _label(_short_task(e["task"])), "model": _label(e["model"]), "mode": _label(e["mode"]),
             "status": (str(e["status"]), styles.get(str(e["status"]), "red")),
             "wall": _s(e["wall"]) + ("+" if e["status"] == "unfinished" else "")} for e in entries]
    if not _fit_tasks(rows, columns, console.width):
        _print_narrow(console, entries, styles)
        return
    table = Table(box=None, pad_edge=False)
    for name in columns:
        folds = name == "model"
        table.add_column(name, justify="right" if name == "wall" else "left", no_wrap=not folds,
                         overflow="fold" if folds else "ellipsis", ratio=1 if folds else None,
                         min_width=max(len(r[name]) for r in rows) if name == "task" else None)
    for row in rows:
        status, style = row["status"]
        cells = {**row, "status": f"[{style}]{_label(status)}[/]"}
        table.add_row(*(cells[name] for name in columns))
    console.print(table)


def _print_narrow(console: Any, entries: list[dict[str, Any]], styles: dict[str, str]) -> None:
    """Too narrow for a run a line (below about 65 columns): two lines a run, the run
    id with its status and wall, then the task's file name, model and mode. A word
    is never split over lines: what does not fit ends in "…"."""
    from rich.text import Text

    from asyncfc_cli.output import label

    width = max(console.width, 20)
    for e in entries:
        status = str(e["status"])
        wall = _s(e["wall"]) + ("+" if status == "unfinished" else "")
        head = Text.assemble(label(Path(e["path"]).stem), "  ", (label(status), styles.get(status, "red")), "  ", wall)
        task = _short_task(e["task"])
        task = os.path.basename(task) or task
        # Lines break between the pieces (never inside one); only a piece longer
        # than a whole line is cut, with "…".
        lines: list[Text] = [head]
        current: Text | None = None
        for piece, style in ((label(task, 1000), ""), (label(e["model"], 1000), "dim"), (label(e["mode"]), "dim")):
            if current is not None and len(current) + 3 + len(piece) <= width:
                current.append(" · ", style="dim")
                current.append(piece, style=style)
                continue
            current = Text("  ")
            cut = Text(piece, style=style)
            cut.truncate(width - 2, overflow="ellipsis")
            current.append_text(cut)
            lines.append(current)
        for part in lines:
            part.truncate(width, overflow="ellipsis")
            console.print(part, no_wrap=True, overflow="ellipsis", soft_wrap=False)


# --- compare -----------------------------------------------------------------------------------


@trace_app.command("compare")
@_json_errors
def compare(
    a: Annotated[str, typer.Argument(help="The baseline run (trace file, run id, or latest).")],
    b: Annotated[str, typer.Argument(help="The run to compare with it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print both summaries and the speedup as JSON.")] = False,
    width: Annotated[Optional[int], typer.Option("--width", min=20, max=1000, help="Render at this many columns (20-1000).")] = None,
    svg: Annotated[Optional[Path], typer.Option(
        "--svg", help="Also save what is printed as an SVG picture (Rich's export).", show_default=False)] = None,
    directory: Annotated[Optional[Path], typer.Option(
        "--dir", envvar="ASYNCFC_RUNS_DIR", help="Where runs are recorded (default: .asyncfc/runs next to the project's agents.toml, found from the current directory up).")] = None,
) -> None:
    """Compare two runs: both timelines on one time scale, the summaries side by side, and B's speedup.

    Typically the same task in sync (A) and async (B) mode. The speedup is
    A's wall time / B's wall time.
    """
    from asyncfc_cli import analysis

    data_a, data_b = _load(resolve(a, directory)), _load(resolve(b, directory))
    run_a, run_b = analysis.run_from_trace(data_a), analysis.run_from_trace(data_b)
    m_a, m_b = analysis.compute(run_a), analysis.compute(run_b)
    speedup = m_a.wall / m_b.wall if m_a.wall > 0 and m_b.wall > 0 else math.nan
    if not 0 < speedup < math.inf:  # walls of 1e-300 s and 1 s (a hostile trace) over- or underflow
        speedup = math.nan
    warnings = []
    if data_a.header.task != data_b.header.task:
        from asyncfc_cli.output import label

        # A speedup between two different jobs measures the jobs, not the modes.
        warnings.append(f"A and B are runs of different tasks (A: {label(data_a.header.task or '?')}; "
                        f"B: {label(data_b.header.task or '?')}), so the speedup compares different work")
    for warning in warnings:
        from rich.markup import escape

        from asyncfc_cli.output import printable

        _err().print(f"[yellow]warning:[/] {escape(printable(warning))}")
    if as_json:
        from asyncfc_cli.output import print_json

        print_json({"a": {**_describe(data_a, run_a), **m_a.as_dict()}, "b": {**_describe(data_b, run_b), **m_b.as_dict()},
                    "speedup": None if math.isnan(speedup) else round(speedup, 6), "warnings": warnings})
        return
    from rich.table import Table

    from asyncfc_cli.timeline import Timeline

    console = _out(width, svg)
    axis = max(m_a.wall, m_b.wall, 1e-3)
    for tag, data in (("A", data_a), ("B", data_b)):
        h = data.header
        console.print(Timeline.from_trace(data, axis=axis, legend=tag == "B", footer=False,
                                          title=f"{tag}: {h.mode or '?'} · {h.task or '?'} · "
                                                f"model {h.model or '?'} · {data.path}"))
    table = Table(box=None, pad_edge=False, title_justify="left")
    table.add_column("", style="bold")
    table.add_column(f"A ({_label(data_a.header.mode or '?')})", justify="right")
    table.add_column(f"B ({_label(data_b.header.mode or '?')})", justify="right")
    table.add_column("B − A", justify="right")
    diffs = {"wall": _diff(m_a.wall, m_b.wall), "model time": _diff(m_a.model_time, m_b.model_time),
             "tool time": _diff(m_a.tool_time, m_b.tool_time), "model blocked": _diff(m_a.blocked, m_b.blocked),
             "overlap": _diff(m_a.overlap, m_b.overlap), "critical path": _diff(m_a.critical_path, m_b.critical_path),
             "sequential-equivalent": _diff(m_a.sequential, m_b.sequential),
             "tokens in / out": f"{_signed(m_b.tokens_in - m_a.tokens_in)} / {_signed(m_b.tokens_out - m_a.tokens_out)}"}
    for (name, va, _), (_, vb, _) in zip(summary_rows(m_a), summary_rows(m_b)):
        table.add_row(name, va, vb, diffs.get(name, ""))
    table.add_row("model requests", str(m_a.requests), str(m_b.requests), _signed(m_b.requests - m_a.requests))
    console.print()
    console.print(table)
    console.print()
    if math.isnan(speedup):
        console.print("speedup: -")
    else:
        word = "faster" if speedup >= 1 else "slower"
        factor = speedup if speedup >= 1 else 1 / speedup
        console.print(f"[bold]B is {factor:.2f}× {word} than A[/] ({_s(m_a.wall)} → {_s(m_b.wall)}, "
                      f"speedup {speedup:.2f}×)")
    _save_svg(console, svg, f"asyncfc trace compare {a} {b}")


def _diff(a: float, b: float) -> str:
    d = b - a
    text = _s(abs(d))
    return text if text == _s(0.0) else f"{'+' if d > 0 else '-'}{text}"


def _signed(n: int) -> str:
    return f"{n:+d}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(trace_app())
