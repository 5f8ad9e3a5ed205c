"""Any file may be handed to ``asyncfc trace``: every reader, renderer and
exporter must survive it (docs/reliability.md, "Bad files").

The named cases come first (each one a traceback before); then property
tests throw random bytes, random JSON and random event sequences with
random fields at every trace command, through the typer app, and check
that none raises and each exits 0 (a header was readable: bad lines are
listed on stderr and skipped) or 2 (not an asyncfc trace), with valid
strict JSON wherever JSON is promised.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from asyncfc_cli import events as ev_mod
from asyncfc_cli.progress import ProgressPrinter
from asyncfc_cli.timeline import LiveTimeline, Timeline
from asyncfc_cli.trace import read_trace

from conftest import invoke

TRACES = Path(__file__).parent / "data" / "traces"
GOOD = TRACES / "quickstart_async.jsonl"
EXAMPLES = int(os.environ.get("ASYNCFC_FUZZ_EXAMPLES", "25"))  # 400 each found nothing more


def strict_json(text: str):
    def no_constants(name: str):
        raise AssertionError(f"{name} in output: not strict JSON")

    return json.loads(text, parse_constant=no_constants)


def lines(*events: dict) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


HEADER = {"type": "header", "t": 0.0, "version": 1, "run_id": "r", "task": "t.toml", "agent": "a",
          "model": "sim", "mode": "async", "started_at": "2026-11-28T10:00:00+00:00"}


def future(t: float, fid: str, call: str, deps: list[str], after: str | None = None,
           runs: float = 0.4) -> list[dict]:
    return [
        {"type": "future_created", "t": t, "future": fid, "call_id": call, "tool": "echo", "deps": deps,
         "request": 1, "ordered_after": after},
        {"type": "tool_begin", "t": t + 0.1, "call_id": call, "tool": "echo", "args_summary": "x=1",
         "future": fid, "deps": deps},
        {"type": "tool_end", "t": t + 0.1 + runs, "call_id": call, "tool": "echo", "status": "ok"},
    ]


def every_command(path: Path, tmp_path: Path, *, readable: bool) -> None:
    """Run every trace command on ``path``; each must exit 0 if readable, else 2."""
    want = 0 if readable else 2
    shown = invoke("trace", path, "--width", "100")
    assert shown.exit_code == want, shown.output
    if not readable:
        assert "error:" in shown.stderr
    as_json = invoke("trace", path, "--json")
    assert as_json.exit_code == want
    if readable:
        strict_json(as_json.stdout)
    for fmt in ("chrome", "otel"):
        exported = invoke("trace", path, "--export", fmt)
        assert exported.exit_code == want
        if readable:
            strict_json(exported.stdout)
    compared = invoke("trace", "compare", path, GOOD, "--width", "90")
    assert compared.exit_code == want
    compared = invoke("trace", "compare", GOOD, path, "--json")
    assert compared.exit_code == want
    if readable:
        strict_json(compared.stdout)
    runs = tmp_path / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir()
    shutil.copy(path, runs / "x.jsonl")
    listed = invoke("trace", "list", "--dir", runs, "--json")
    assert listed.exit_code == 0
    for line in listed.stdout.splitlines():
        strict_json(line)
    assert invoke("trace", "list", "--dir", runs).exit_code == 0
    assert invoke("trace", "latest", "--dir", runs).exit_code in (0, 2)


def live_frames(records: list) -> None:
    """What ``asyncfc run`` draws from the same events: the live frames, the
    last frame, and the plain progress lines. None may raise."""
    out = io.StringIO()
    console = Console(file=out, width=100, height=30, force_terminal=True, color_system="truecolor")
    sink = LiveTimeline(console)
    printer = ProgressPrinter(console)
    for record in records:
        sink(record)
        printer(record)
    # Unguarded: LiveTimeline hides a rendering error behind a note; the
    # Timeline itself must not have one.
    console.print(Timeline(sink.events, now=(sink.events[-1].t + 1) if sink.events else None, live=True))
    console.print(Timeline(sink.events))
    console.print(sink.renderable())
    assert "timeline not drawn" not in out.getvalue()


# --- the named cases ----------------------------------------------------------------------------


# The critical path with 2 s calls: every reference is followed but the one
# that closes a cycle (found last, walking from the first call issued), so
# a ring of three is a chain of three, a pair a chain of two; a call that
# references itself starts when it was issued (0.1 s into the request).
CRITICAL = {"self": 2.1, "mutual": 4.0, "ring": 6.0, "ordered": 4.0, "long chain": 1500 * 2.0}


@pytest.mark.parametrize("shape", list(CRITICAL))
def test_cyclic_and_self_references_render_everywhere(tmp_path, shape):
    """Item 4: a call whose deps name itself, two calls naming each other, a
    ring of three, an ordered chain that loops, and a chain longer than
    Python's recursion limit."""
    graphs = {
        "self": [("f1", "c1", ["f1"], None)],
        "mutual": [("f1", "c1", ["f2"], None), ("f2", "c2", ["f1"], None)],
        "ring": [("f1", "c1", ["f3"], None), ("f2", "c2", ["f1"], None), ("f3", "c3", ["f2"], None)],
        "ordered": [("f1", "c1", [], "f2"), ("f2", "c2", [], "f1")],
        "long chain": [(f"f{i}", f"c{i}", [f"f{i + 1}"], None) for i in range(1, 1501)],
    }
    body = [{"type": "model_begin", "t": 0.1, "request": 1, "messages": 2}]
    for i, (fid, call, deps, after) in enumerate(graphs[shape]):
        body += future(0.2 + i * 1e-4, fid, call, deps, after, runs=2.0)
    body.append({"type": "model_end", "t": 2.0, "request": 1, "status": "ok", "tokens_in": 5, "tokens_out": 5})
    path = tmp_path / "cyclic.jsonl"
    path.write_text(lines(HEADER, *body, {"type": "summary", "t": 10.0, "status": "ok"}))
    every_command(path, tmp_path, readable=True)
    summary = strict_json(invoke("trace", path, "--json").stdout)
    assert summary["critical_path"] == pytest.approx(CRITICAL[shape], abs=1e-6)
    assert len(summary["critical_chain"]) == round(CRITICAL[shape] / 2.0) + (shape == "self")
    live_frames([HEADER, *body])


BAD_LINES = {
    "binary": b"\x00\xff\xfe\x89PNG\r\x1a",
    "not UTF-8": "caf\u00e9".encode("latin-1"),
    "not an object": b"[1, 2, 3]",
    "a JSON string": b'"header"',
    "a missing field": b'{"type": "tool_begin", "t": 1.0, "tool": "echo"}',
    "a wrong type": b'{"type": "tool_end", "t": 1.0, "call_id": 5, "tool": "echo", "status": "ok"}',
    "NaN": b'{"type": "model_begin", "t": NaN, "request": 1}',
    "Infinity": b'{"type": "model_end", "t": 1.0, "request": 1, "status": "ok", "ttft": Infinity}',
    "a huge timestamp": b'{"type": "model_begin", "t": 1e15, "request": 2}',
    "a negative timestamp": b'{"type": "model_begin", "t": -5, "request": 2}',
    "a boolean count": b'{"type": "model_begin", "t": 1.0, "request": true}',
    "a 5000-digit number": b'{"type": "model_begin", "t": 1.0, "request": ' + b"9" * 5000 + b"}",
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "an unknown type": b'{"type": "teleport", "t": 1.0}',
    "a second header": lines(HEADER).strip().encode(),
}


@pytest.mark.parametrize("kind", list(BAD_LINES))
def test_a_bad_line_is_reported_with_its_number_and_skipped(tmp_path, kind):
    """Item 10: each kind of bad line in the middle of a good trace."""
    good = GOOD.read_bytes().split(b"\n")
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join([*good[:3], BAD_LINES[kind], *good[3:]]))
    shown = invoke("trace", path, "--width", "100")
    assert shown.exit_code == 0
    assert "skipped 1 line(s)" in shown.stderr and "line 4: " in shown.stderr
    # Everything else of the run is still there.
    assert "f4 ← f1,f2 compute" in shown.stdout
    report = strict_json(invoke("trace", path, "--json").stdout)
    assert len(report["problems"]) == 1 and report["problems"][0].startswith("line 4: ")
    assert report["status"] == "ok" and report["tool_calls"] == 4
    every_command(path, tmp_path, readable=True)


# --- size: every trace renders in time linear in its size --------------------------------------

BIG = 5_000_000


def _sized_trace(field: str, size: int) -> list[dict]:
    """A finished async run of three calls whose ``field`` holds ``size`` characters."""
    long = "n" * size
    header = dict(HEADER)
    body = [{"type": "model_begin", "t": 0.1, "request": 1, "messages": 2}]
    # A chain of 2 s calls: every one is on the critical path, which the
    # summary spells out (where a long name once wrapped over thousands of lines).
    body += future(0.2, "f1", "c1", [], runs=2.0)
    body += future(0.3, "f2", "c2", ["f1"], runs=2.0)
    body += future(0.4, "f3", "c3", ["f1", "f2"], runs=2.0)
    body.append({"type": "model_end", "t": 0.5, "request": 1, "status": "ok", "tokens_in": 5, "tokens_out": 5})
    if field in ("task", "agent", "model", "mode", "run_id"):
        header[field] = long
    elif field in ("tool", "call_id"):
        for event in body:
            if event.get("call_id") == "c2":
                event[field] = long
    elif field == "future":
        for event in body:
            if event.get("future") == "f2":
                event["future"] = long
            if "f2" in event.get("deps", []):
                event["deps"] = [long if d == "f2" else d for d in event["deps"]]
    elif field == "args_summary":
        body[5]["args_summary"] = long
    elif field == "error":
        body[6].update(status="error", error=long)
    elif field == "status":
        body[6]["status"] = long
    elif field == "deps":
        body[7]["deps"] = body[8]["deps"] = [f"f{i}" for i in range(size // 40)]
    elif field == "model error":
        body[-1].update(status="error", error=long, finish_reason=long)
    return [header, *body, {"type": "summary", "t": 7.0, "status": "ok"}]


LONG_FIELDS = ["tool", "call_id", "future", "args_summary", "error", "status", "deps", "model error",
               "task", "agent", "model", "mode", "run_id"]


def _render_cost(path: Path) -> tuple[float, int]:
    """CPU time of this thread (not the wall clock: a loaded machine does not
    move it) to draw the trace, and the characters drawn."""
    start = time.thread_time()
    shown = invoke("trace", path, "--width", "120")
    compared = invoke("trace", "compare", path, GOOD, "--width", "120")
    took = time.thread_time() - start
    assert shown.exit_code == 0 and compared.exit_code == 0, shown.output
    return took, len(shown.stdout) + len(compared.stdout)


@pytest.mark.parametrize("field", LONG_FIELDS)
def test_a_5_mb_field_is_cut_before_layout(tmp_path, field):
    """Item 9: a 5 MB tool name took 13 s to draw (Rich wrapped it, far from
    linearly); every field is cut to a label before anything lays it out."""
    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    small.write_text(lines(*_sized_trace(field, BIG // 4)))
    big.write_text(lines(*_sized_trace(field, BIG)))
    small_cost, small_drawn = _render_cost(small)
    big_cost, big_drawn = _render_cost(big)
    # What is drawn does not grow with the field: it was cut first.
    assert big_drawn < 40_000 and big_drawn <= small_drawn + 200
    # Four times the field costs at most about four times the (reading) work;
    # the quadratic layout cost sixteen times (and 50 s of CPU at 5 MB).
    assert big_cost < 8 * small_cost + 0.5, (small_cost, big_cost)
    assert big_cost < 2.0, big_cost
    strict_json(invoke("trace", big, "--json").stdout)
    for fmt in ("chrome", "otel"):
        strict_json(invoke("trace", big, "--export", fmt).stdout)
    live_frames(_sized_trace(field, BIG))


DEEP = json.loads("[" * 900 + "]" * 900)


@pytest.mark.parametrize("shape", ["many calls", "long chain", "deep fields"])
def test_drawing_cost_grows_linearly_with_the_trace(tmp_path, shape):
    def trace(n: int) -> list[dict]:
        body: list[dict] = [{"type": "model_begin", "t": 0.1, "request": 1, "messages": 2}]
        for i in range(n):
            deps = [f"f{i}"] if shape == "long chain" and i else []
            events = future(0.2 + i * 1e-4, f"f{i + 1}", f"c{i + 1}", deps)
            if shape == "deep fields" and i % 10 == 0:  # a field nested past the recursion limit rides along
                events[1]["extra"] = DEEP
            body += events
        body.append({"type": "model_end", "t": 5.0, "request": 1, "status": "ok"})
        return [HEADER, *body, {"type": "summary", "t": 6.0, "status": "ok"}]

    costs = []
    for n in (300, 1200):
        path = tmp_path / f"{n}.jsonl"
        path.write_text(lines(*trace(n)))
        costs.append(_render_cost(path)[0])
    assert costs[1] < 8 * costs[0] + 0.5, costs


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\x00" * 64, b"\xff\xfe garbage", b"[]\n",
                                     lines({"type": "model_begin", "t": 0, "request": 1}).encode(),
                                     b'{"type": "header", "t": NaN}\n'],
                         ids=["empty", "blank", "zeros", "binary", "array", "no header", "NaN header"])
def test_what_is_not_a_trace_exits_2_with_a_message(tmp_path, content):
    path = tmp_path / "nope.jsonl"
    path.write_bytes(content)
    result = invoke("trace", path)
    assert result.exit_code == 2
    assert "not an asyncfc trace" in result.stderr
    every_command(path, tmp_path, readable=False)


def test_a_timestamp_near_the_limit_draws_a_bounded_axis(tmp_path):
    """Item 10: t up to the limit (1e9 s) renders at once; the axis has a
    bounded number of ticks however long the run."""
    path = tmp_path / "long.jsonl"
    path.write_text(lines(HEADER, {"type": "model_begin", "t": 0.5, "request": 1},
                          {"type": "model_end", "t": 1e9, "request": 1, "status": "ok"},
                          {"type": "summary", "t": 1e9, "status": "ok"}))
    shown = invoke("trace", path, "--width", "120")
    assert shown.exit_code == 0 and "277777h" in shown.stdout
    every_command(path, tmp_path, readable=True)


def test_old_traces_with_a_leading_blank_line_still_read(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_bytes(b"\n" + GOOD.read_bytes())
    data = read_trace(path)
    assert not data.problems and data.summary is not None
    every_command(path, tmp_path, readable=True)


def test_a_json_string_may_hold_line_separators(tmp_path):
    """U+2028 inside a string is not a line break: lines split at \\n only."""
    path = tmp_path / "sep.jsonl"
    tool = {"type": "tool_begin", "t": 0.2, "call_id": "c1", "tool": "a\u2028b\u0085c\x0bd"}
    path.write_text(lines(HEADER, tool, {"type": "summary", "t": 1.0, "status": "ok"}), encoding="utf-8")
    data = read_trace(path)
    assert not data.problems and data.events[0]["tool"] == "a\u2028b\u0085c\x0bd"
    shown = invoke("trace", path, "--width", "100")
    assert shown.exit_code == 0 and "a\\u2028b\\x85c\\x0bd" in shown.stdout


def test_latest_passes_over_a_file_without_a_header(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copy(GOOD, runs / "older.jsonl")
    (runs / "newer.jsonl").write_bytes(b"")
    os.utime(runs / "older.jsonl", (1_700_000_000, 1_700_000_000))
    result = invoke("trace", "latest", "--dir", runs, "--json")
    assert result.exit_code == 0 and strict_json(result.stdout)["path"].endswith("older.jsonl")
    assert "skipped 1 newer file(s) without a trace header" in result.stderr


# --- property tests ------------------------------------------------------------------------------

FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

TEXTS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["\ud800", "[/]", "[bold red]x", "\x1b[2J\x1b]0;pwned\x07", "a\u2028b", "\u202egnp.exe",
                     "", "wait", "🙂🙂", "f1", "f2", "f3", "$f1", "c1", "c2", "ok", "error", "unfinished"]),
)
NUMBERS = st.one_of(
    st.integers(min_value=-5, max_value=50),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 0.0, 1e15, 1e300, -1.0, 1e9, 5e-324, 2**63, 2**63 - 1]),
)
ANY = st.one_of(st.none(), st.booleans(), NUMBERS, TEXTS, st.lists(TEXTS, max_size=4),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
JSON = st.recursive(st.one_of(st.none(), st.booleans(), NUMBERS, TEXTS),
                    lambda inner: st.one_of(st.lists(inner, max_size=4),
                                            st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                    max_leaves=12)
IDS = {"future": ["f1", "f2", "f3"], "call_id": ["c1", "c2", "c3", "w1"], "tool": ["echo", "wait", "boom"],
       "status": ["ok", "error", "timeout", "cancelled", "weird"], "via": ["result", "wait", "message"]}


def plausible(name: str, kind: str, rnd: random.Random):
    """A value of the field's own kind (events.py), from small pools so that
    ids collide and references form cycles."""
    if kind == "ids":
        return rnd.sample(IDS["future"], rnd.randint(0, 3))
    if kind == "count":
        return rnd.randint(0, 4)
    if kind in ("seconds", "number"):
        return round(rnd.uniform(0, 3), 3)
    return rnd.choice(IDS.get(name, IDS["future"] + ["x"]))


@st.composite
def event_sequences(draw) -> list:
    rnd = draw(st.randoms(use_true_random=False))
    records: list = []
    if rnd.random() < 0.9:
        records.append(dict(HEADER))
    for _ in range(draw(st.integers(min_value=0, max_value=25))):
        name = draw(st.sampled_from([*ev_mod.EVENT_TYPES, "bogus"]))
        record: dict = {"type": name, "t": round(rnd.uniform(0, 5), 4)}
        cls = ev_mod.EVENT_TYPES.get(name)
        for field, kind, _optional, _default in ev_mod._FIELDS.get(cls, []):
            roll = rnd.random()
            if roll < 0.1:
                continue  # missing
            record[field] = draw(ANY) if roll < 0.25 else plausible(field, kind, rnd)
        if rnd.random() < 0.1:
            record["t"] = draw(ANY)
        records.append(record)
    return records


def write_records(path: Path, records: list, rnd: random.Random) -> None:
    out = []
    for record in records:
        line = json.dumps(record, ensure_ascii=rnd.random() < 0.7, allow_nan=True)
        out.append(line.encode("utf-8", "surrogatepass"))  # a raw surrogate: not valid UTF-8
        if rnd.random() < 0.05:
            out.append(rnd.choice([b"", b"   ", b"\x00\x01", b"{", b"[" * 5000]))
    data = b"\n".join(out) + b"\n"
    if rnd.random() < 0.2:
        data = data[: rnd.randint(0, len(data))]  # killed mid-line
    path.write_bytes(data)


def readable(path: Path) -> bool:
    from asyncfc_cli.trace import TraceError

    try:
        read_trace(path)
    except TraceError:
        return False
    return True


@FUZZ
@given(records=event_sequences(), seed=st.integers(0, 2**32))
def test_random_event_sequences_never_break_a_command(tmp_path, records, seed):
    path = tmp_path / "fuzz.jsonl"
    write_records(path, records, random.Random(seed))
    every_command(path, tmp_path, readable=readable(path))
    live_frames(records)


@FUZZ
@given(values=st.lists(JSON, max_size=8), header=st.booleans())
def test_random_json_lines_never_break_a_command(tmp_path, values, header):
    path = tmp_path / "json.jsonl"
    path.write_text("".join(json.dumps(v, allow_nan=True) + "\n" for v in ([HEADER] if header else []) + values),
                    encoding="utf-8", errors="surrogatepass")
    ok = readable(path)
    assert ok or not header
    every_command(path, tmp_path, readable=ok)
    live_frames(values)


@FUZZ
@given(blob=st.binary(max_size=400), header=st.booleans())
def test_random_bytes_never_break_a_command(tmp_path, blob, header):
    path = tmp_path / "bytes.jsonl"
    path.write_bytes((lines(HEADER).encode() if header else b"") + blob)
    every_command(path, tmp_path, readable=readable(path))


@pytest.mark.parametrize("width", ["5", "1001", "100000000"])
def test_a_width_out_of_range_is_a_usage_error(width):
    # 1e8 columns used to render for minutes.
    for args in ([GOOD], ["compare", GOOD, GOOD]):
        result = invoke("trace", *args, "--width", width)
        assert result.exit_code == 2 and "--width" in result.stderr


def test_compare_with_walls_whose_ratio_underflows(tmp_path):
    # 5e-324 s against 1e9 s: the speedup is 0.0 in floating point ("B is
    # 1/0 times slower" raised ZeroDivisionError); overflow is the mirror case.
    tiny, huge = tmp_path / "tiny.jsonl", tmp_path / "huge.jsonl"
    tiny.write_text(lines(HEADER, {"type": "summary", "t": 5e-324, "status": "ok"}))
    huge.write_text(lines(HEADER, {"type": "summary", "t": 1e9, "status": "ok"}))
    for a, b in ((tiny, huge), (huge, tiny)):
        shown = invoke("trace", "compare", a, b, "--width", "100")
        assert shown.exit_code == 0 and "speedup: -" in shown.stdout
        assert strict_json(invoke("trace", "compare", a, b, "--json").stdout)["speedup"] is None
