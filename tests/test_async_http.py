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
    model = data.spans("model")
    fetches = sorted((s for s in data.spans("tool") if s.begin["tool"] == "fetch"), key=lambda s: s.start)
    a, b = fetches
    first_request_end = model[0].end
    # Both fetches started while the first response was still streaming...
    assert a.start < b.start < first_request_end - 0.1
    # ...ran at the same time...
    assert b.start < a.end - 0.2
    # ...while the model went on decoding (the third call's thinking).
    assert first_request_end - b.start > 0.25
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
