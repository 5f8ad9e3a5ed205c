"""``asyncfc bench``: the typer app (registered by :mod:`asyncfc_cli.cli`; the
benchmarks themselves are :mod:`asyncfc_cli.bench`).

Commands stay thin: options in, :mod:`asyncfc_cli.bench.suite` does the work,
tables to stdout (to stderr with ``--json``, whose one JSON document owns
stdout), progress to stderr. Only this module is imported by ``asyncfc
--help``: everything heavier is imported inside the commands, and litellm
only by the ones that talk to a model over HTTP.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

bench_app = typer.Typer(
    help="Measure sync, parallel and async modes side by side: end-to-end time, speedup, the ideal "
         "bound, efficiency, tokens, executor overhead, and BFCL accuracy on any model.",
    no_args_is_help=True,
    rich_markup_mode=None,
)



@bench_app.callback()
def _bench(
    ctx: typer.Context,
    prefix_cache: Annotated[bool, typer.Option(
        "--prefix-cache/--no-prefix-cache",
        help="The simulated server prefills only what earlier requests of a run did not (as vLLM, "
             "llama.cpp and hosted APIs cache prompt prefixes), or every prompt whole.")] = True,
) -> None:
    ctx.obj = {"prefix_cache": prefix_cache}


DataOpt = Annotated[Optional[Path], typer.Option(
    "--data", help="BFCL data directory (default: $ASYNCFC_BFCL_DIR, else the nearest shared/data/bfcl "
    "above the current directory or the package).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (tables go to stderr).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines on stderr.")]
DecodeOpt = Annotated[float, typer.Option("--decode-tps", help="Simulated decode rate, tokens/s (every mode).")]
TtftOpt = Annotated[float, typer.Option("--ttft", help="Simulated base time to first token, s.")]
PrefillOpt = Annotated[float, typer.Option("--prefill-tps", help="Simulated prefill rate, prompt tokens/s.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of latencies and plans.")]
TransportOpt = Annotated[str, typer.Option(
    "--transport", help="mock: in-process sim under MockClock (exact, fast); real: in-process, real clock; "
    "http: the sim's HTTP server through LiteLLM (real bridge).")]
ModesOpt = Annotated[str, typer.Option("--mode", help="Modes to run, comma-separated.")]


def _command(ctx: typer.Context) -> str:
    """The command that reproduces this run: its path and every option not at its default."""
    parts = ["asyncfc", "bench", ctx.info_name]
    if not (ctx.obj or {}).get("prefix_cache", True):
        parts.insert(2, "--no-prefix-cache")
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value == param.default or not getattr(param, "opts", None):
            continue
        name = max(param.opts, key=len)
        if param.is_flag:
            parts.append(name if value else (param.secondary_opts or [name])[0])
        else:
            parts += [name, str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def _fail(message: str) -> typer.Exit:
    from asyncfc_cli.bench.suite import err

    err.print(f"[red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(2)


def _timing(ctx: typer.Context, decode_tps: float, ttft: float, prefill_tps: float):
    from asyncfc_cli.bench.workloads import Timing

    if decode_tps <= 0 or prefill_tps <= 0 or ttft < 0:
        raise _fail("--decode-tps and --prefill-tps must be positive, --ttft non-negative")
    obj = ctx.obj or {}
    return Timing(decode_tps=decode_tps, ttft=ttft, prefill_tps=prefill_tps,
                  prefix_cache=obj.get("prefix_cache", True))


def _modes(text: str) -> tuple[str, ...]:
    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    from asyncfc_cli.modes import NAMES

    bad = [m for m in modes if m not in NAMES]
    if bad or not modes:
        raise _fail(f"--mode: {', '.join(bad) or 'nothing'} is not a mode; use {', '.join(NAMES)} (comma-separated)")
    return modes


def _floats(option: str, text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise _fail(f"{option}: expected comma-separated numbers, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise _fail(f"{option}: expected non-negative numbers, got {text!r}")
    return values


def _latency(option: str, text: str):
    from asyncfc_cli.bench.latency import Latency

    try:
        return Latency.parse(text)
    except ValueError as exc:
        raise _fail(f"{option}: {exc}") from None


def _data_dir(data: Optional[Path]) -> Path:
    from asyncfc_cli.bench.data import DataNotFound, find_bfcl_dir

    try:
        return find_bfcl_dir(data)
    except DataNotFound as exc:
        raise _fail(str(exc)) from None


def _optional_bfcl_dir(data: Path | None, report: Any) -> Path | None:
    """The BFCL directory for commands that can run without it: an explicit
    --data that is wrong is an error; data not found by default only skips
    the BFCL workloads, with a note."""
    from asyncfc_cli.bench.data import DataNotFound, find_bfcl_dir

    try:
        return find_bfcl_dir(data)
    except DataNotFound as exc:
        if data is not None:
            raise _fail(str(exc)) from None
        report.note(f"BFCL workloads skipped: {exc}")
        return None


def _transport_name(text: str) -> str:
    if text not in ("mock", "real", "http"):
        raise _fail(f"--transport: {text!r}; use mock, real or http")
    return text


@bench_app.command("bfcl")
def bfcl(
    ctx: typer.Context,
    data: DataOpt = None,
    category: Annotated[str, typer.Option(help="Categories, comma-separated.")] = "parallel,multiple,parallel_multiple",
    limit: Annotated[int, typer.Option(help="Entries per category (0: all).")] = 20,
    offset: Annotated[int, typer.Option(help="Skip this many entries of each category.")] = 0,
    model: Annotated[Optional[str], typer.Option(
        "--model", help='Measure accuracy on this LiteLLM model (e.g. openai/gpt-4o-mini, or "sim" for the '
        "simulated model over HTTP) instead of timing the simulated model.")] = None,
    api_base: Annotated[Optional[str], typer.Option("--api-base", help="OpenAI-compatible endpoint for --model.")] = None,
    api_key_env: Annotated[Optional[str], typer.Option(
        "--api-key-env", help="Name of the environment variable holding the key for --model.")] = None,
    mode: ModesOpt = "sync,parallel,async",
    latency: Annotated[str, typer.Option(help="Tool latency distribution (const:S, uniform:A,B, "
                                               "lognormal:MEDIAN,SIGMA, exp:MEAN).")] = "lognormal:0.5,0.6",
    think: Annotated[int, typer.Option(help="Thinking tokens before each simulated call.")] = 0,
    seed: SeedOpt = 0,
    repeat: Annotated[int, typer.Option(help="Runs per entry, each with its own latency seed.")] = 1,
    transport: TransportOpt = "mock",
    decode_tps: DecodeOpt = 50.0, ttft: TtftOpt = 0.25, prefill_tps: PrefillOpt = 5000.0,
    timeout: Annotated[float, typer.Option(help="Seconds per run (real models).")] = 300.0,
    max_runs: Annotated[int, typer.Option(
        "--max-runs", min=1, help="With --model: runs in progress at once (as asyncfc batch).")] = 8,
    max_per_model: Annotated[int, typer.Option(
        "--max-per-model", min=1, help="With --model: requests in flight at once to the model; a 429 pauses "
        "every run's next request (as asyncfc batch).")] = 10,
    as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """BFCL single-turn: time per mode on the simulated model, or accuracy per mode on --model
    (every entry x mode a run, --max-runs at once under the per-model limits)."""
    from asyncfc_cli.bench import suite

    data_dir = _data_dir(data)
    categories = tuple(c.strip() for c in category.split(",") if c.strip())
    from asyncfc_cli.bench.data import SINGLE_TURN

    bad = [c for c in categories if c not in SINGLE_TURN]
    if bad or not categories:
        raise _fail(f"--category: {', '.join(bad) or 'nothing'}; use {', '.join(SINGLE_TURN)}")
    report = suite.Report(_command(ctx), as_json, quiet)
    modes = _modes(mode)
    lat = _latency("--latency", latency)
    if model:
        key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not key:
            raise _fail(f"--api-key-env {api_key_env}: that variable is not set")
        suite.accuracy(report, data_dir, categories, limit or None, offset, modes, lat, seed, model, api_base,
                       key, timeout, _timing(ctx, decode_tps, ttft, prefill_tps), max_runs, max_per_model)
    else:
        timing = _timing(ctx, decode_tps, ttft, prefill_tps)
        suite.bfcl_timing(report, data_dir, categories, limit or None, offset, modes, timing, lat,
                          list(range(seed, seed + max(1, repeat))), think, _transport_name(transport))
    report.finish()


@bench_app.command("multiturn")
def multiturn(
    ctx: typer.Context,
    data: DataOpt = None,
    limit: Annotated[int, typer.Option(help="Sessions (0: every file-system-only session).")] = 0,
    latency: Annotated[str, typer.Option(help="File-system call latency distribution.")] = "lognormal:0.3,0.5",
    seed: SeedOpt = 0,
    repeat: Annotated[int, typer.Option(help="Runs per session, each with its own latency seed.")] = 1,
    mode: ModesOpt = "sync,parallel,async",
    transport: TransportOpt = "mock",
    decode_tps: DecodeOpt = 50.0, ttft: TtftOpt = 0.25, prefill_tps: PrefillOpt = 5000.0,
    as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """BFCL multi-turn sessions on our own file system, every tool ordered: order kept, time per mode."""
    from asyncfc_cli.bench import suite

    report = suite.Report(_command(ctx), as_json, quiet)
    suite.multiturn(report, _data_dir(data), limit or None, _modes(mode), _timing(ctx, decode_tps, ttft, prefill_tps),
                    _latency("--latency", latency), list(range(seed, seed + max(1, repeat))),
                    _transport_name(transport))
    report.finish()


@bench_app.command("dag")
def dag(
    ctx: typer.Context,
    width: Annotated[int, typer.Option(min=1, help="Steps per layer.")] = 3,
    depth: Annotated[int, typer.Option(min=1, help="Layers.")] = 3,
    fan_in: Annotated[int, typer.Option(min=0, help="Inputs of each step from the layer above.")] = 2,
    read_share: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of inputs the model must read.")] = 0.3,
    latency: Annotated[str, typer.Option(help="Tool latency distribution.")] = "lognormal:0.8,0.5",
    think: Annotated[str, typer.Option(help="Thinking tokens per step, as a distribution.")] = "uniform:0,30",
    seeds: Annotated[int, typer.Option(min=1, help="Number of seeded plans.")] = 10,
    seed: SeedOpt = 0,
    mode: ModesOpt = "sync,parallel,async",
    transport: TransportOpt = "mock",
    decode_tps: DecodeOpt = 50.0, ttft: TtftOpt = 0.25, prefill_tps: PrefillOpt = 5000.0,
    as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Seeded dependent DAGs: width, depth, fan-in, latency and think distributions."""
    from asyncfc_cli.bench import suite

    report = suite.Report(_command(ctx), as_json, quiet)
    suite.dag(report, _modes(mode), _timing(ctx, decode_tps, ttft, prefill_tps), width, depth, fan_in, read_share,
              _latency("--latency", latency), _latency("--think", think), list(range(seed, seed + seeds)),
              _transport_name(transport))
    report.finish()


@bench_app.command("nogain")
def nogain(
    ctx: typer.Context,
    latencies: Annotated[str, typer.Option(help="Tool latencies to try, comma-separated seconds.")] = "0.05,0.3,1.0",
    mode: ModesOpt = "sync,parallel,async",
    transport: TransportOpt = "mock",
    decode_tps: DecodeOpt = 50.0, ttft: TtftOpt = 0.25, prefill_tps: PrefillOpt = 5000.0,
    as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Plans where the model needs every value at once: the price of async, shown."""
    from asyncfc_cli.bench import suite

    report = suite.Report(_command(ctx), as_json, quiet)
    suite.nogain(report, _modes(mode), _timing(ctx, decode_tps, ttft, prefill_tps), _floats("--latencies", latencies),
                 _transport_name(transport))
    report.finish()


@bench_app.command("inspect")
def inspect(
    ctx: typer.Context,
    repo: Annotated[Optional[Path], typer.Option(help="Repository to inspect (default benchmarks/fixture_repo).")] = None,
    repeat: Annotated[int, typer.Option(min=1, help="Runs per mode.")] = 3,
    mode: ModesOpt = "sync,parallel,async",
    transport: Annotated[str, typer.Option(help="real (in process) or http (through LiteLLM).")] = "http",
    decode_tps: DecodeOpt = 50.0, ttft: TtftOpt = 0.25, prefill_tps: PrefillOpt = 5000.0,
    as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Code inspection with real processes: grep, head, wc and pytest on a fixture repository."""
    from asyncfc_cli.bench import suite
    from asyncfc_cli.bench.workloads import FIXTURE_REPO

    target = repo or FIXTURE_REPO
    if not target.is_dir():
        raise _fail(f"--repo {target}: not a directory")
    if transport not in ("real", "http"):
        raise _fail("--transport: real processes need the real clock; use real or http")
    report = suite.Report(_command(ctx), as_json, quiet)
    suite.inspect(report, _modes(mode), _timing(ctx, decode_tps, ttft, prefill_tps), target, repeat, transport)
    report.finish()


@bench_app.command("sweep")
def sweep(
    ctx: typer.Context,
    decode: Annotated[str, typer.Option(help="Decode rates, tokens/s, comma-separated.")] = "10,25,50,100,200,400",
    latency: Annotated[str, typer.Option(help="Tool latencies, s, comma-separated.")] = "0,0.05,0.1,0.25,0.5,1,2,4",
    seeds: Annotated[int, typer.Option(min=1, help="Seeded plans per cell.")] = 3,
    ttft: TtftOpt = 0.25, prefill_tps: PrefillOpt = 5000.0,
    chart: Annotated[Optional[Path], typer.Option(help="Write the chart (SVG) here.")] = None,
    as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Decode rate x tool latency: async's speedup over sync and parallel, and its efficiency."""
    from asyncfc_cli.bench import suite

    rates = _floats("--decode", decode)
    if any(r <= 0 for r in rates):
        raise _fail("--decode: rates must be positive")
    report = suite.Report(_command(ctx), as_json, quiet)
    suite.sweep(report, _timing(ctx, 50.0, ttft, prefill_tps), rates, _floats("--latency", latency),
                list(range(seeds)), chart)
    report.finish()


@bench_app.command("overhead")
def overhead(
    ctx: typer.Context,
    sizes: Annotated[str, typer.Option(help="Numbers of concurrent futures, comma-separated.")] = "1,2,5,10,20,50,100,200,500,1000",
    repeat: Annotated[int, typer.Option(min=1, help="Repeats per size (median).")] = 5,
    chart: Annotated[Optional[Path], typer.Option(help="Write the chart (SVG) here.")] = None,
    as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Executor overhead per tool call from 1 to 1,000 concurrent futures (real clock)."""
    from asyncfc_cli.bench import suite

    ns = tuple(int(n) for n in _floats("--sizes", sizes))
    if any(n < 1 for n in ns):
        raise _fail("--sizes: at least one future")
    report = suite.Report(_command(ctx), as_json, quiet)
    suite.overhead(report, ns, repeat, chart)
    report.finish()


@bench_app.command("hold")
def hold(
    ctx: typer.Context,
    data: DataOpt = None,
    policy: Annotated[str, typer.Option(
        help="Hold policies to compare, comma-separated: never (handles at once), a number (a fixed hold "
             "of that many seconds), latency (the loop's policy, this run's durations), learned (the same "
             "with durations remembered across the workload's runs), inline (the current instruction: the "
             "model says what it needs).")] = "never,0.05,1,latency,learned,inline",
    limit: Annotated[int, typer.Option(help="BFCL entries per category.")] = 20,
    seed: SeedOpt = 0,
    decode_tps: DecodeOpt = 50.0, ttft: TtftOpt = 0.25, prefill_tps: PrefillOpt = 5000.0,
    as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Hold policies compared: handles at once, fixed holds, the loop's latency-aware hold."""
    from asyncfc_cli.bench import suite

    policies: list[str | float] = []
    for item in (p.strip() for p in policy.split(",") if p.strip()):
        policies.append(item if item in ("never", "latency", "learned", "inline") else _floats("--policy", item)[0])
    report = suite.Report(_command(ctx), as_json, quiet)
    data_dir = _optional_bfcl_dir(data, report)
    suite.hold(report, data_dir, _timing(ctx, decode_tps, ttft, prefill_tps), tuple(policies), limit, seed)
    report.finish()


@bench_app.command("all")
def all_(
    ctx: typer.Context,
    data: DataOpt = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Directory for results.json and the charts (default benchmarks/results).")] = None,
    quick: Annotated[bool, typer.Option(help="Small samples everywhere (a smoke run, about a minute).")] = False,
    seed: SeedOpt = 0,
    decode_tps: DecodeOpt = 50.0, ttft: TtftOpt = 0.25, prefill_tps: PrefillOpt = 5000.0,
    as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Every workload in sync, parallel and async, both sweeps and the charts, in one invocation."""
    from asyncfc_cli.bench import suite
    from asyncfc_cli.bench.workloads import REPO_ROOT

    report = suite.Report(_command(ctx), as_json, quiet)
    data_dir = _optional_bfcl_dir(data, report)
    target = out or REPO_ROOT / "benchmarks" / "results"
    suite.everything(report, data_dir, _timing(ctx, decode_tps, ttft, prefill_tps), seed, quick, target)
    report.finish(write=target / "results.json")
