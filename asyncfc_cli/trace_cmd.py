"""``asyncfc trace``: view, list, compare and export recorded runs.

``asyncfc trace [FILE|latest|RUN_ID]`` is short for ``asyncfc trace show
...``. Everything here reads trace files only (never LiteLLM), so the
commands start fast. Data goes to stdout, messages to stderr.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer
from typer.core import TyperGroup

EXIT_USAGE = 2


class _ShowByDefault(TyperGroup):
    """``asyncfc trace FILE`` runs ``show FILE``: anything that is not a
    subcommand (a path, ``latest``, an option) goes to ``show``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["show", *args]
        return super().parse_args(ctx, args)


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
    try:
        console.save_svg(str(svg), title=title)
    except OSError as exc:
        raise _fail(f"cannot write {svg}: {exc.strerror or exc}") from None
    _err().print(f"saved {svg}")


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    from rich.markup import escape

    _err().print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _runs_dir(directory: Optional[Path]) -> Path:
    from asyncfc_cli.trace import DEFAULT_DIR

    return directory or DEFAULT_DIR


def recent_traces(directory: Path) -> list[Path]:
    """Trace files in ``directory``, newest first (by modification time)."""
    if not directory.is_dir():
        return []
    return sorted(directory.glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


def resolve(target: str, directory: Optional[Path] = None) -> Path:
    """A trace path from ``latest``, a file path, or a run id in the runs directory."""
    runs = _runs_dir(directory)
    if target == "latest":
        found = recent_traces(runs)
        if not found:
            raise _fail(f"no traces in {runs}; run a task first (asyncfc run TASK) or name a trace file")
        return found[0]
    path = Path(target)
    if path.is_file():
        return path
    for candidate in (runs / target, runs / f"{target}.jsonl"):
        if candidate.is_file():
            return candidate
    raise _fail(f"no trace at {target}; asyncfc trace list shows the runs in {runs}")


def _load(path: Path):
    from asyncfc_cli.trace import TraceError, read_trace

    try:
        return read_trace(path)
    except TraceError as exc:
        raise _fail(str(exc)) from None


def _describe(data: Any) -> dict[str, Any]:
    h = data.header
    return {"path": str(data.path), "run_id": h.get("run_id"), "task": h.get("task"), "agent": h.get("agent"),
            "model": h.get("model"), "mode": h.get("mode"), "started_at": h.get("started_at"),
            "truncated": data.truncated}


# --- show ---------------------------------------------------------------------------------------


@trace_app.command("show")
def show(
    target: Annotated[str, typer.Argument(help="A trace file, a run id, or latest.")] = "latest",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    export: Annotated[Optional[str], typer.Option(
        "--export", help="Write the trace as chrome (Chrome trace-event JSON for Perfetto and chrome://tracing) "
        "or otel (OTLP/JSON spans, OpenTelemetry GenAI conventions).", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option(
        "-o", "--output", help="File for --export (default: stdout).")] = None,
    width: Annotated[Optional[int], typer.Option("--width", help="Render at this many columns.")] = None,
    svg: Annotated[Optional[Path], typer.Option(
        "--svg", help="Also save what is printed as an SVG picture (Rich's export).", show_default=False)] = None,
    directory: Annotated[Optional[Path], typer.Option(
        "--dir", help="Where runs are recorded (default .asyncfc/runs).")] = None,
) -> None:
    """Show a run: its timeline and a summary table (or export it)."""
    from asyncfc_cli import analysis

    path = resolve(target, directory)
    data = _load(path)
    run = analysis.run_from_trace(data)
    if export is not None:
        from asyncfc_cli import exporters

        if export not in exporters.FORMATS:
            raise _fail(f"--export {export}: choose one of {', '.join(exporters.FORMATS)}")
        document = exporters.export(run, export)
        text = json.dumps(document, ensure_ascii=False)
        if output is None or str(output) == "-":
            print(text)
        else:
            try:
                output.write_text(text + "\n", encoding="utf-8")
            except OSError as exc:
                raise _fail(f"cannot write {output}: {exc.strerror or exc}") from None
            hint = "open it in https://ui.perfetto.dev or chrome://tracing" if export == "chrome" else \
                "send it to an OTLP/HTTP collector: POST to /v1/traces with Content-Type: application/json"
            _err().print(f"wrote {export} trace to {output} ({hint})")
        return
    metrics = analysis.compute(run)
    if as_json:
        print(json.dumps({**_describe(data), **metrics.as_dict()}, ensure_ascii=False))
        return
    from asyncfc_cli.timeline import Timeline

    console = _out(width, svg)
    console.print(Timeline.from_trace(data, title=_title(data, path)))
    for table in (summary_table(metrics), requests_table(run) if run.models else None,
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
    status = data.summary.get("status") if data.summary else "unfinished"
    return (f"{h.get('task', '?')} · agent {h.get('agent', '?')} · model {h.get('model', '?')} · "
            f"mode {h.get('mode', '?')} · {status} · {path}")


def _s(x: float) -> str:
    from asyncfc_cli.timeline import fmt_seconds

    return fmt_seconds(x)


def _pct(part: float, whole: float) -> str:
    return f"{part / whole * 100:.0f}% of wall" if whole > 0 and not math.isnan(part) else ""


def _x(x: float) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.2f}×"


def _chain(names: list[str], keep: int = 8) -> str:
    if len(names) > keep:
        names = [*names[:3], f"… {len(names) - keep + 1} more …", *names[-(keep - 4):]]
    return " → ".join(names)


def summary_rows(m: Any) -> list[tuple[str, str, str]]:
    """(metric, value, note) rows shared by ``show`` and ``compare``."""
    return [
        ("wall", _s(m.wall), m.status if m.finished else "unfinished"),
        ("model time", _s(m.model_time), f"{m.requests} requests, ttft {_s(m.ttft_total)}"),
        ("tool time", _s(m.tool_time), f"{m.tool_calls} calls, summed"),
        ("model blocked", _s(m.blocked), _pct(m.blocked, m.wall)),
        ("overlap", _s(m.overlap), f"model‖tool {_s(m.overlap_model_tool)}, tool‖tool {_s(m.overlap_tool_tool)}"),
        ("critical path", _s(m.critical_path), _chain(m.critical_chain)),
        ("sequential-equivalent", _s(m.sequential), "model time + tool time"),
        ("achieved speedup", _x(m.speedup), "sequential-equivalent / wall"),
        ("ideal speedup", _x(m.ideal_speedup), "sequential-equivalent / critical path"),
        ("tokens in / out", f"{m.tokens_in} / {m.tokens_out}", ""),
    ]


def summary_table(m: Any):
    from rich.table import Table

    table = Table(title="summary", title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    table.add_column("", style="dim", overflow="fold")
    for row in summary_rows(m):
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
                      m.status or "unfinished")
    return table


def tools_table(m: Any):
    from rich.table import Table

    table = Table(title="tools", title_justify="left", box=None, pad_edge=False)
    for name in ("tool", "calls", "ok", "failed", "p50", "p90", "p99", "max"):
        table.add_column(name, justify="left" if name == "tool" else "right")
    for name, s in sorted(m.per_tool.items()):
        failed = f"{s.failed}" + (f" (+{s.unfinished} unfinished)" if s.unfinished else "")
        table.add_row(name, str(s.count), str(s.ok), failed, _s(s.p50), _s(s.p90), _s(s.p99), _s(s.max))
    return table


# --- list ----------------------------------------------------------------------------------------


def _head_and_tail(path: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The header and the last complete record, without reading the whole file."""
    try:
        with open(path, "rb") as f:
            first = f.readline()
            while first and not first.strip():  # the writer may open with a blank probe line
                first = f.readline()
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(size - 65536, 0))
            tail = f.read().splitlines()
    except OSError:
        return None, None

    def parse(line: bytes) -> dict[str, Any] | None:
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return value if isinstance(value, dict) else None

    header = parse(first)
    last = None
    for line in reversed(tail):
        last = parse(line)
        if last is not None:
            break
    return header, last


def list_entry(path: Path) -> dict[str, Any] | None:
    header, last = _head_and_tail(path)
    if header is None or header.get("type") != "header":
        return None
    finished = last is not None and last.get("type") == "summary"
    t0 = float(header.get("t", 0.0))
    wall = float(last.get("wall", last["t"] - t0)) if finished else (float(last.get("t", t0)) - t0 if last else 0.0)
    return {"path": str(path), "run_id": header.get("run_id"), "started_at": header.get("started_at"),
            "task": header.get("task"), "agent": header.get("agent"), "model": header.get("model"),
            "mode": header.get("mode"), "status": last.get("status") if finished else "unfinished",
            "wall": round(wall, 6), "requests": last.get("requests") if finished else None,
            "tool_calls": last.get("tool_calls") if finished else None}


def _local_time(stamp: Any) -> str:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(stamp)).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(stamp or "?")


@trace_app.command("list")
def list_runs(
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs to show.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    directory: Annotated[Optional[Path], typer.Option(
        "--dir", help="Where runs are recorded (default .asyncfc/runs).")] = None,
) -> None:
    """List recent runs, newest first: time, task, model, mode, status, wall time."""
    runs = _runs_dir(directory)
    entries = [e for e in (list_entry(p) for p in recent_traces(runs)[: max(limit, 0)]) if e]
    if as_json:
        for entry in entries:
            print(json.dumps(entry, ensure_ascii=False))
        return
    if not entries:
        _err().print(f"no runs recorded in {runs} (asyncfc run TASK records one)")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for name in ("time", "task", "model", "mode", "status", "wall", "run"):
        table.add_column(name, justify="right" if name == "wall" else "left", no_wrap=name != "task")
    styles = {"ok": "green", "unfinished": "yellow", "interrupted": "yellow"}
    for e in entries:
        status = str(e["status"])
        wall = _s(e["wall"]) + ("+" if status == "unfinished" else "")
        table.add_row(_local_time(e["started_at"]), str(e["task"]), str(e["model"]), str(e["mode"]),
                      f"[{styles.get(status, 'red')}]{status}[/]", wall, Path(e["path"]).stem)
    _out().print(table)


# --- compare -----------------------------------------------------------------------------------


@trace_app.command("compare")
def compare(
    a: Annotated[str, typer.Argument(help="The baseline run (trace file, run id, or latest).")],
    b: Annotated[str, typer.Argument(help="The run to compare with it.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print both summaries and the speedup as JSON.")] = False,
    width: Annotated[Optional[int], typer.Option("--width", help="Render at this many columns.")] = None,
    svg: Annotated[Optional[Path], typer.Option(
        "--svg", help="Also save what is printed as an SVG picture (Rich's export).", show_default=False)] = None,
    directory: Annotated[Optional[Path], typer.Option(
        "--dir", help="Where runs are recorded (default .asyncfc/runs).")] = None,
) -> None:
    """Compare two runs: both timelines on one time scale, the summaries side by side, and B's speedup.

    Typically the same task in sync (A) and async (B) mode. The speedup is
    A's wall time / B's wall time.
    """
    from asyncfc_cli import analysis

    data_a, data_b = _load(resolve(a, directory)), _load(resolve(b, directory))
    run_a, run_b = analysis.run_from_trace(data_a), analysis.run_from_trace(data_b)
    m_a, m_b = analysis.compute(run_a), analysis.compute(run_b)
    speedup = m_a.wall / m_b.wall if m_b.wall > 0 else math.nan
    if as_json:
        print(json.dumps({"a": {**_describe(data_a), **m_a.as_dict()}, "b": {**_describe(data_b), **m_b.as_dict()},
                          "speedup": None if math.isnan(speedup) else round(speedup, 6)}, ensure_ascii=False))
        return
    from rich.table import Table

    from asyncfc_cli.timeline import Timeline

    console = _out(width, svg)
    axis = max(m_a.wall, m_b.wall, 1e-3)
    for tag, data in (("A", data_a), ("B", data_b)):
        h = data.header
        console.print(Timeline.from_trace(data, axis=axis, legend=tag == "B", footer=False,
                                          title=f"{tag}: {h.get('mode', '?')} · {h.get('task', '?')} · "
                                                f"model {h.get('model', '?')} · {data.path}"))
    table = Table(box=None, pad_edge=False, title_justify="left")
    table.add_column("", style="bold")
    table.add_column(f"A ({data_a.header.get('mode', '?')})", justify="right")
    table.add_column(f"B ({data_b.header.get('mode', '?')})", justify="right")
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
