"""The agent loop in sync and parallel mode, through the whole run path:
spec -> runner -> LiteLLM over HTTP -> simulated model -> real tools -> trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asyncfc_cli import runner
from asyncfc_cli.agent import AgentRun, agent_settings, run_agent
from asyncfc_cli.spec import resolve_run
from asyncfc_cli.trace import Trace, TraceWriter, read_trace
from conftest import DATA, Reply, ScriptedServer, client_for, text_stream, tool_call_stream


@pytest.fixture(autouse=True)
def _litellm(litellm):
    return litellm


def run_task(tmp_path: Path, name: str, **overrides):
    """Run ``tests/data/<name>.toml``; return the outcome and the trace read back."""
    spec = resolve_run(DATA / f"{name}.toml", **overrides)
    trace_path = tmp_path / f"{name}.jsonl"
    outcome = runner.execute(spec, runner.open_trace_file(trace_path))
    return outcome, read_trace(trace_path)


def tool_spans(data):
    return sorted(data.spans("tool"), key=lambda s: s.start)


def test_parallel_mode_overlaps_the_calls_of_one_message(tmp_path):
    outcome, data = run_task(tmp_path, "parallel", mode_override="parallel")
    assert outcome.result.status == "ok" and outcome.result.answer == "slept 0.3 and 0.3"
    a, b = tool_spans(data)
    assert a.status == b.status == "ok"
    assert a.end - a.start >= 0.29 and b.end - b.start >= 0.29
    # Both started before either ended: they ran together (sync runs b after a ended).
    assert b.start < a.end and a.start < b.end
    # The model waited for both: the next request began after the last one ended.
    model = data.spans("model")
    assert model[1].start >= max(a.end, b.end)


def test_sync_mode_runs_one_call_after_the_other(tmp_path):
    outcome, data = run_task(tmp_path, "parallel", mode_override="sync")
    assert outcome.result.answer == "slept 0.3 and 0.3"
    a, b = tool_spans(data)
    assert b.start >= a.end
    assert b.end - a.start >= 0.59
    assert data.header["mode"] == "sync"


def test_tool_errors_go_back_to_the_model_and_the_run_continues(tmp_path):
    outcome, data = run_task(tmp_path, "errors")
    result = outcome.result
    assert result.status == "ok" and result.requests == 2
    # The sim's answer quotes what it saw in each tool message.
    assert "raised: RuntimeError: kaboom" in result.answer
    assert "unknown: unknown tool 'no_such_tool'; available tools: argv, boom, chatty, echo, nap, sleep_for" in result.answer
    assert "badargs: invalid arguments for 'sleep_for': argument 'seconds'" in result.answer
    assert [(c.tool, c.status) for c in result.calls] == [
        ("boom", "error"), ("no_such_tool", "error"), ("sleep_for", "error")]
    tool_messages = [m for m in result.messages if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == [c.call_id for c in result.calls]
    assert all("error" in json.loads(m["content"]) for m in tool_messages)
    ends = data.of_type("tool_end")
    assert [e["status"] for e in ends] == ["error"] * 3
    assert "kaboom" in ends[0]["error"]


async def test_malformed_arguments_are_an_error_the_model_sees(litellm):
    # Broken JSON cannot come from the sim (it writes arguments with
    # json.dumps), so a scripted endpoint sends it.
    script = [
        Reply(chunks=tool_call_stream([("call_bad", "echo", '{"text": "unterminated')])),
        Reply(chunks=text_stream("recovered")),
    ]
    spec = resolve_run(DATA / "ok.toml", mode_override="sync")
    run = AgentRun(prompt="go", tools=spec.tools, agent=agent_settings(mode="sync", max_turns=4, timeout=30,
                                                                  max_concurrency=4))
    with ScriptedServer(script) as server, client_for(server.base_url) as client:
        result = await run_agent(run, client, Trace())
    assert result.status == "ok" and result.answer == "recovered"
    (call,) = result.calls
    assert call.status == "error" and "not valid JSON" in call.error
    second_request = server.requests[1]["body"]["messages"]
    tool_message = second_request[-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_bad"
    assert "not valid JSON" in json.loads(tool_message["content"])["error"]
    # The assistant message carries {} (servers that parse the history, as llama.cpp's
    # does, refuse the request otherwise); the error quotes what the model wrote.
    assert second_request[-2]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert '{"text": "unterminated' in json.loads(tool_message["content"])["error"]


def test_max_turns_ends_the_run(tmp_path):
    outcome, data = run_task(tmp_path, "max_turns")
    result = outcome.result
    assert result.status == "max_turns" and result.answer is None
    assert result.turns == 2 and result.requests == 2
    assert "max_turns" in result.error
    assert data.summary["status"] == "max_turns" and not data.truncated


def test_run_timeout_cancels_the_running_tool(tmp_path):
    # The first request of a process pays LiteLLM's lazy set-up (seconds on a loaded
    # machine): paid here, so that the timed run's request is quick and its call is
    # running when the 5 s are up (far short of the nap's 30 s).
    run_task(tmp_path, "ok")
    outcome, data = run_task(tmp_path, "slow", timeout_override=5, mode_override="sync")
    result = outcome.result
    assert result.status == "timeout" and "timed out after 5s" in result.error
    assert result.wall < 25  # not the tool's 30 s (wide: a loaded machine is slow)
    (nap,) = tool_spans(data)
    assert nap.begin["tool"] == "nap" and nap.status == "cancelled"
    assert nap.end is not None and nap.end < 25
    assert result.calls[0].status == "cancelled"
    assert data.summary["status"] == "timeout" and not data.truncated


def test_trace_records_header_model_and_tool_spans_and_summary(tmp_path):
    outcome, data = run_task(tmp_path, "ok", mode_override="sync")
    result = outcome.result
    assert result.status == "ok" and result.answer == "The echo said hello."

    header = data.header
    assert header["version"] == 1 and header["mode"] == "sync" and header["agent"] == "worker"
    assert header["model"] == "sim" and header["task"].endswith("ok.toml")
    assert header["run_id"] == outcome.run_id and len(header["spec_digest"]) == 12

    models = data.spans("model")
    assert len(models) == result.requests == 2
    for span in models:
        end = span.finish
        assert end["status"] == "ok"
        assert 0 < end["ttft"] <= span.end - span.start
        assert span.marks["first_token"] == pytest.approx(span.start + end["ttft"], abs=0.01)
        assert end["tokens_in"] > 0 and end["tokens_out"] > 0
    assert sum(s.finish["tokens_in"] for s in models) == result.tokens_in
    assert sum(s.finish["tokens_out"] for s in models) == result.tokens_out
    assert [s.finish["finish_reason"] for s in models] == ["tool_calls", "stop"]

    (echo,) = data.spans("tool")
    assert echo.begin["tool"] == "echo" and echo.status == "ok"
    assert echo.begin["call_id"] == result.calls[0].call_id
    assert echo.begin["args_summary"] == 'text="hello"'
    assert models[0].end <= echo.start <= echo.end <= models[1].start

    summary = data.summary
    assert summary["status"] == "ok" and summary["turns"] == 2 and summary["tool_calls"] == 1
    assert summary["tokens_in"] == result.tokens_in and summary["answer_chars"] == len(result.answer)
    times = [e["t"] for e in [header, *data.events, summary]]
    assert times == sorted(times)
    assert not data.truncated
