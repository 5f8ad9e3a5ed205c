"""Async mode through the real path: LiteLLM over HTTP to the simulated server.
(Ctrl-C on a real subprocess tool: tests/test_faults.py.)"""

from __future__ import annotations

from pathlib import Path

from asyncfc_cli import runner, spec
from asyncfc_cli.trace import TraceWriter, read_trace

DATA = Path(__file__).parent / "data"


def test_tools_start_mid_stream_and_overlap_each_other_and_decoding(tmp_path):
    run_spec = spec.resolve_run(DATA / "async_overlap.toml")
    outcome = runner.execute(run_spec, TraceWriter(tmp_path / "t.jsonl"))
    assert outcome.result.status == "ok"
    assert outcome.result.answer == "sizes 21 and 21, INDEPENDENT"

    data = read_trace(tmp_path / "t.jsonl")
    # What happened when, by the order of the trace's events rather than their
    # clock: a loaded machine stretches every gap, but never reorders these.
    order = {id(e): i for i, e in enumerate(data.events)}
    first_request = data.spans("model")[0]
    fetches = sorted((s for s in data.spans("tool") if s.begin["tool"] == "fetch"), key=lambda s: order[id(s.begin)])
    a, b = fetches
    lookup_ready = next(e for e in data.of_type("call_ready") if e["tool"] == "lookup")
    # Both fetches started while the first response was still streaming...
    assert order[id(a.begin)] < order[id(b.begin)] < order[id(first_request.finish)]
    # ...ran at the same time (b began before a ended; each takes 1 s)...
    assert order[id(b.begin)] < order[id(a.finish)]
    # ...while the model went on decoding: the third call (after 300 tokens of
    # thinking, 1.5 s) was written after both had started.
    assert order[id(b.begin)] < order[id(lookup_ready)] < order[id(first_request.finish)]
    assert all(s.status == "ok" for s in fetches)
    # Results already there when the next request was built skip the handle.
    via = {f: e["via"] for e in data.of_type("delivery") for f in e["futures"]}
    assert via["f1"] == "result"


def test_sync_mode_gives_the_same_answer_without_overlap(tmp_path):
    run_spec = spec.resolve_run(DATA / "async_overlap.toml", mode_override="sync")
    outcome = runner.execute(run_spec, TraceWriter(tmp_path / "t.jsonl"))
    assert outcome.result.answer == "sizes 21 and 21, INDEPENDENT"
    data = read_trace(tmp_path / "t.jsonl")
    spans = sorted(data.spans("tool"), key=lambda s: s.start)
    model = data.spans("model")
    for earlier, later in zip(spans, spans[1:]):
        assert later.start >= earlier.end
    assert spans[0].start >= model[0].end  # nothing ran while the model decoded
