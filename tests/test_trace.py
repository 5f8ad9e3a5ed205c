"""Trace files: flushed line by line, readable after a crash, free of secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asyncfc_cli import runner
from asyncfc_cli.events import (EVENT_TYPES, FinishHeld, Header, ModelBegin, ModelEnd, Retry, Summary, ToolBegin,
                                WaitBegin, parse_event)
from asyncfc_cli.spec import resolve_run
from asyncfc_cli.trace import (Trace, TraceError, TraceWriter, check_writable, header_fields, parse_trace,
                               read_trace)
from conftest import DATA, free_port, make_plan

SECRET = "sk-test-PLANTED-123"


def lines(*events: dict) -> str:
    return "".join(json.dumps(e) + "\n" for e in events)


HEADER = {"type": "header", "t": 0.0, "version": 1, "run_id": "r", "mode": "sync"}
EVENTS = [
    {"type": "model_begin", "t": 0.1, "request": 1, "messages": 2},
    {"type": "model_first_token", "t": 0.3, "request": 1},
    {"type": "model_end", "t": 0.5, "request": 1, "status": "ok", "ttft": 0.2},
    {"type": "tool_begin", "t": 0.6, "call_id": "c1", "tool": "nap"},
    {"type": "tool_begin", "t": 0.6, "call_id": "c2", "tool": "nap"},
    {"type": "tool_end", "t": 0.9, "call_id": "c1", "tool": "nap", "status": "ok"},
]
SUMMARY = {"type": "summary", "t": 1.0, "status": "ok"}


def test_a_complete_trace():
    data = parse_trace(lines(HEADER, *EVENTS, SUMMARY))
    assert not data.truncated and data.summary == SUMMARY and data.header == HEADER
    assert data.events == EVENTS
    (model,) = data.spans("model")
    assert (model.start, model.end, model.marks, model.status) == (0.1, 0.5, {"first_token": 0.3}, "ok")


def test_a_trace_cut_mid_line():
    text = lines(HEADER, *EVENTS) + '{"type": "tool_end", "t": 1.2, "call_id": "c2", "sta'
    data = parse_trace(text)
    assert data.truncated and data.summary is None
    assert data.events == EVENTS  # everything before the cut
    c1, c2 = data.spans("tool")
    assert (c1.key, c1.end, c1.status) == ("c1", 0.9, "ok")
    assert (c2.key, c2.end, c2.finish, c2.status) == ("c2", None, None, "unfinished")


def test_a_trace_without_summary(tmp_path):
    path = tmp_path / "died.jsonl"
    path.write_text(lines(HEADER, *EVENTS[:4]))
    data = read_trace(path)
    assert data.truncated and data.summary is None and data.path == path
    (model,) = data.spans("model")
    assert model.end == 0.5
    (tool,) = data.spans("tool")
    assert tool.end is None and tool.status == "unfinished"


def test_what_is_not_a_trace(tmp_path):
    with pytest.raises(TraceError, match="not an asyncfc trace: line 1 is a model_begin event"):
        parse_trace(lines(*EVENTS))
    with pytest.raises(TraceError, match="no header"):
        parse_trace("")
    with pytest.raises(TraceError, match=r"no header line; line 1: not JSON"):
        parse_trace("garbage\n" + lines({"type": "tool_begin", "t": 0.6, "call_id": 5}))
    with pytest.raises(TraceError, match="cannot read trace"):
        read_trace(tmp_path / "missing.jsonl")


def test_bad_lines_are_skipped_and_reported_with_their_numbers():
    text = lines(HEADER) + "garbage\n" + lines({"type": "tool_begin", "t": 0.6, "tool": "nap"}, *EVENTS, SUMMARY)
    data = parse_trace(text)
    assert data.events == EVENTS and data.summary == SUMMARY and not data.truncated
    assert data.problems == ["line 2: not JSON (Expecting value: line 1 column 1 (char 0))",
                             "line 3: tool_begin: call_id is missing"]


def test_the_writer_writes_strict_jsonl_whatever_the_events_hold(tmp_path):
    """No blank line, no NaN or Infinity, valid UTF-8 even for a lone
    surrogate (written as its JSON escape, so it reads back the same)."""
    path = tmp_path / "t.jsonl"
    writer = TraceWriter(path)
    writer.write_header({"type": "header", "t": 0.0, "version": 1, "run_id": "r"})
    trace = Trace()
    trace.sinks.append(writer)
    trace.emit(Header(version=1, run_id="again"))  # already written at open: not twice
    trace.emit(WaitBegin(call_id="w\ud800", futures=("f1",), timeout=float("nan")))
    trace.emit(ModelEnd(request=1, status="ok", ttft=float("inf"), error=object()))  # not JSON: its text
    writer.close()
    raw = path.read_bytes()
    assert raw.startswith(b'{"type": "header"') and b"\n\n" not in raw
    text = raw.decode("utf-8")

    def strict(name):
        raise AssertionError(name)

    records = [json.loads(line, parse_constant=strict) for line in text.splitlines()]
    assert [r["type"] for r in records] == ["header", "wait_begin", "model_end"]
    assert records[1]["timeout"] is None and records[2]["ttft"] is None
    data = read_trace(path)
    assert not data.problems
    assert data.header.run_id == "r" and data.events[0].call_id == "w\ud800" and data.events[0].futures == ["f1"]


def test_an_unwritable_path_or_a_full_disk_fails_when_the_trace_opens(tmp_path):
    with pytest.raises(OSError):
        TraceWriter(Path("/dev/full")).write_header({"type": "header", "t": 0.0})
    with pytest.raises(OSError):
        check_writable(tmp_path)  # a directory
    with pytest.raises(OSError):
        check_writable(Path("/proc/asyncfc-cannot-write/t.jsonl"))  # even for root
    check_writable(tmp_path / "new" / "t.jsonl")  # creates the directories, not the file
    assert (tmp_path / "new").is_dir() and not (tmp_path / "new" / "t.jsonl").exists()


def test_every_event_is_on_disk_as_soon_as_it_is_emitted(tmp_path):
    path = tmp_path / "live.jsonl"
    writer = TraceWriter(path)
    trace = Trace()
    trace.sinks.append(writer)
    trace.emit(header_fields("r1", mode="sync"))
    trace.emit(ToolBegin(call_id="c1", tool="nap"))
    # Read while the writer is still open, as after a crash.
    data = read_trace(path)
    assert data.header["run_id"] == "r1" and data.truncated
    assert [e["type"] for e in data.events] == ["tool_begin"]
    writer.close()


def test_secrets_are_scrubbed_from_every_event(tmp_path):
    path = tmp_path / "t.jsonl"
    writer = TraceWriter(path)
    trace = Trace(secrets=[SECRET, None, ""])
    trace.sinks.append(writer)
    seen = []
    trace.sinks.append(seen.append)
    trace.emit(header_fields("r", model="m"))
    trace.emit(ToolBegin(call_id="c", tool="t", args_summary=f'key="{SECRET}"', deps=[f"Bearer {SECRET}", "f1"]))
    trace.emit(Summary(status="error", error=f"401 for key {SECRET}{SECRET}"))
    writer.close()
    text = path.read_text()
    assert SECRET not in text and "***" in text
    assert SECRET not in json.dumps([dict(e) for e in trace.events]) and SECRET not in json.dumps([dict(e) for e in seen])
    # The typed fields the sinks read are masked as the line is.
    assert SECRET not in seen[1].args_summary and seen[1].deps == ["Bearer ***", "f1"]
    data = read_trace(path)
    assert data.events[0].deps == ["Bearer ***", "f1"]
    assert data.summary["error"] == "401 for key ******"


def test_writers_and_readers_share_one_schema():
    """An event a writer builds is written as its fields in class order, an
    optional field without a value left out unless the reader must see its
    null, and reads back as the same typed event."""
    trace = Trace()
    end = trace.emit(ModelEnd(request=2, status="ok", ttft=None, tokens_in=5, tokens_out=1,
                              finish_reason="stop", tool_calls=0))
    assert list(end) == ["type", "t", "request", "status", "ttft", "tokens_in", "tokens_out", "finish_reason",
                         "tool_calls"]
    assert end["ttft"] is None and "error" not in end  # ttft null is written; no error, no key
    summary = trace.emit(Summary(status="ok", turns=1))
    assert list(summary) == ["type", "t", "status", "turns"]
    retry = trace.emit(Retry(attempt=1, error="503"))  # before any request: request is null, not missing
    assert list(retry) == ["type", "t", "request", "attempt", "error"] and retry["request"] is None
    for event in trace.events:
        again = parse_event(json.loads(json.dumps(dict(event))))
        assert type(again) is type(event) and dict(again) == dict(event)
    # Every event type can be built by a writer and read back.
    for name, cls in EVENT_TYPES.items():
        assert cls.TYPE == name


def test_the_run_state_is_kept_as_events_pass_not_read_back():
    trace = Trace()
    assert trace.request is None and trace.header is None
    trace.emit(header_fields("r", model="sim", model_alias="fast"))
    trace.emit(ModelBegin(request=1, messages=2))
    trace.emit(ModelBegin(request=2, messages=4))
    trace.emit(header_fields("second"))  # not the run's header: the first one is
    assert trace.request == 2 and trace.header.run_id == "r" and trace.header.model_alias == "fast"
    trace.events.clear()  # the state does not come from the list
    assert trace.request == 2 and trace.header.model == "sim"


def test_fields_that_joined_the_schema_late_never_make_an_old_line_invalid():
    header = parse_event({"type": "header", "t": 0, "provider": 7, "tool_kinds": ["x"], "model_alias": {}})
    assert header.provider is None and header.tool_kinds is None and header["provider"] == 7
    held = parse_event({"type": "finish_held", "t": 1, "outstanding": ["f1"], "cut": "yes"})
    assert held.cut is None and held.outstanding == ["f1"]
    with pytest.raises(Exception, match="t is missing"):
        parse_event({"type": "model_begin", "request": 1})  # t has a default for writers only


@pytest.mark.parametrize("reachable", [True, False])
def test_a_model_api_key_never_enters_a_run_trace(tmp_path, monkeypatch, litellm, reachable):
    """A real-model run whose key the model even repeats back: not in the trace."""
    from asyncfc_cli.sim.server import SimServer

    # The "model" echoes the key into a tool argument and its answer.
    plan = make_plan(steps=[{"id": "e", "tool": "echo", "args": {"text": f"my key is {SECRET}"}}],
                     final={"answer": "{e}"})
    with SimServer(plan) as server:
        base = server.base_url if reachable else f"http://127.0.0.1:{free_port()}/v1"
        monkeypatch.setenv("ASYNCFC_TEST_API_BASE", base)
        monkeypatch.setenv("ASYNCFC_TEST_API_KEY", SECRET)
        spec = resolve_run(DATA / "ok.toml", model_override="counter", mode_override="sync")
        assert spec.model.api_key == SECRET and SECRET not in repr(spec.model)
        path = tmp_path / "run.jsonl"
        outcome = runner.execute(spec, runner.open_trace_file(path))
    text = path.read_text()
    assert SECRET not in text
    data = read_trace(path)
    if reachable:
        assert outcome.result.status == "ok" and SECRET in outcome.result.answer
        assert data.of_type("tool_begin")[0]["args_summary"] == 'text="my key is ***"'
    else:
        assert outcome.result.status == "error"
        assert data.of_type("model_end")[0]["status"] == "error" and data.summary["error"]
