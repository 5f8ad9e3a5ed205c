"""Traces out to the tools people already use.

:func:`chrome_trace` writes the Chrome trace-event format (JSON object
form), which Perfetto (https://ui.perfetto.dev) and ``chrome://tracing``
open: a "start-up" lane with a slice per tool source that started for the
run (an MCP server), one lane (thread) for the model with a slice per request split into
``ttft`` and ``decode``, an instant event ``call_ready`` on the model lane
where each call's arguments completed in the stream, ``wait`` slices, and
lanes "tool slot N" for the tool calls (a call keeps one slot from issue to
end: a ``pending`` slice while it waits for its inputs, then the execution
slice), with flow arrows from each future to the calls that reference it.

:func:`otel_trace` writes OpenTelemetry spans as OTLP/JSON (an
``ExportTraceServiceRequest``, what an OTLP/HTTP collector accepts at
``/v1/traces``), following the GenAI semantic conventions: a root
``invoke_agent {agent}`` span, a ``chat {model}`` span (kind CLIENT) per
model request with ``gen_ai.operation.name``, ``gen_ai.provider.name``,
``gen_ai.request.model``, ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``, ``gen_ai.response.finish_reasons`` and
``error.type``, and an ``execute_tool {name}`` span (kind INTERNAL) per
call with ``gen_ai.tool.name``, ``gen_ai.tool.call.id``,
``gen_ai.tool.type`` and ``error.type``. Project-specific facts (future
ids, dependencies, time to first token, call readiness) use the
``asyncfc.`` prefix; a call's dependencies are also span links; a tool
source's start is a ``start {name}`` span, and the root carries
``asyncfc.startup_s`` and the run's tools (``asyncfc.tools``). Absolute
times come from the header's ``started_at`` (second precision).

Unfinished spans (a truncated trace) end at the trace's last event and are
marked: ``(unfinished)`` and ``args.unfinished`` in Chrome, status ERROR and
``asyncfc.unfinished = true`` in OTel.
"""

from __future__ import annotations

import hashlib
import heapq
from datetime import datetime, timezone
from typing import Any

from asyncfc_cli import __version__, analysis
from asyncfc_cli.analysis import Run, ToolSpan

FORMATS = ("chrome", "otel")

MODEL_TID = 1
SETUP_TID = 2
TOOL_TID0 = 100


def _us(run: Run, t: float) -> float:
    return round(max(t - run.start, 0.0) * 1e6, 3)


def tool_slots(run: Run) -> dict[str, int]:
    """A lane per concurrently open call: each call gets the lowest free slot
    for its whole life (issue to end), so slices in a lane never overlap."""
    busy: list[tuple[float, int]] = []  # (free at, slot), a heap
    free: list[int] = []  # slots free now, a heap: the lowest is taken first
    slots: dict[str, int] = {}
    for span in sorted(run.tools, key=lambda s: (s.first_seen, s.number)):
        begin = span.first_seen
        end = span.stop(run.end) if span.start is not None else run.end
        while busy and busy[0][0] <= begin + 1e-9:
            heapq.heappush(free, heapq.heappop(busy)[1])
        slot = heapq.heappop(free) if free else len(busy)
        slots[span.call_id] = slot
        heapq.heappush(busy, (max(end, begin), slot))
    return slots


def chrome_trace(run: Run) -> dict[str, Any]:
    """The run as a Chrome trace-event JSON object."""
    header = run.header
    pid = 1
    title = f"asyncfc {header.agent or ''} · {header.model or ''} · {run.mode}"
    out: list[dict[str, Any]] = [
        {"ph": "M", "pid": pid, "tid": 0, "ts": 0, "name": "process_name", "args": {"name": title}},
        {"ph": "M", "pid": pid, "tid": MODEL_TID, "ts": 0, "name": "thread_name", "args": {"name": "model"}},
        {"ph": "M", "pid": pid, "tid": MODEL_TID, "ts": 0, "name": "thread_sort_index", "args": {"sort_index": 0}},
    ]

    def slice_(name: str, cat: str, tid: int, a: float, b: float, args: dict[str, Any]) -> dict[str, Any]:
        ts = _us(run, a)
        return {"ph": "X", "pid": pid, "tid": tid, "name": name, "cat": cat, "ts": ts,
                "dur": max(round(_us(run, b) - ts, 3), 0.0), "args": args}

    for m in run.models:
        stop = m.stop(run.end)
        unfinished = m.end is None
        args: dict[str, Any] = {"request": m.request, "status": m.status or "unfinished"}
        for key in ("tokens_in", "tokens_out", "tool_calls", "finish_reason", "error"):
            if getattr(m, key) is not None:
                args[key] = getattr(m, key)
        if m.ttft is not None:
            args["ttft_s"] = round(m.ttft, 6)
        if unfinished:
            args["unfinished"] = True
        name = f"request #{m.request}" + (" (unfinished)" if unfinished else "")
        out.append(slice_(name, "model", MODEL_TID, m.start, stop, args))
        first = m.first_token if m.first_token is not None else stop
        out.append(slice_("ttft", "model.ttft", MODEL_TID, m.start, min(first, stop), {"request": m.request}))
        if m.first_token is not None and m.first_token < stop:
            out.append(slice_("decode", "model.decode", MODEL_TID, m.first_token, stop, {"request": m.request}))
    if run.setup:  # start-up: each tool source starting, on a lane of its own (not the model's)
        out.append({"ph": "M", "pid": pid, "tid": SETUP_TID, "ts": 0, "name": "thread_name",
                    "args": {"name": "start-up"}})
        for source in run.setup:
            out.append(slice_(f"start {source.name} ({source.kind})", "startup", SETUP_TID, source.start, source.end,
                              {"source": source.name, "kind": source.kind, "tools": source.tools}))
    for w in run.waits:
        end = w.end if w.end is not None else run.end
        out.append(slice_(f"wait {','.join(w.futures)}", "wait", MODEL_TID, w.start, end,
                          {"futures": w.futures, **({"unfinished": True} if w.end is None else {})}))
    by_call = {s.call_id: s for s in run.tools}
    for t, request, call_id, tool in run.ready_marks:
        span = by_call.get(call_id)
        label = f"{span.label} {tool}" if span else tool
        out.append({"ph": "i", "s": "t", "pid": pid, "tid": MODEL_TID, "ts": _us(run, t),
                    "name": f"call_ready {label}", "cat": "call_ready",
                    "args": {"call_id": call_id, "tool": tool, "request": request}})

    slots = tool_slots(run)
    for slot in sorted(set(slots.values())):
        tid = TOOL_TID0 + slot
        out.append({"ph": "M", "pid": pid, "tid": tid, "ts": 0, "name": "thread_name",
                    "args": {"name": f"tool slot {slot + 1}"}})
        out.append({"ph": "M", "pid": pid, "tid": tid, "ts": 0, "name": "thread_sort_index",
                    "args": {"sort_index": slot + 1}})
    by_future = {s.future: s for s in run.tools if s.future}
    flow_id = 0
    for span in run.tools:
        tid = TOOL_TID0 + slots[span.call_id]
        state = run.tool_state(span)
        common: dict[str, Any] = {"call_id": span.call_id, "tool": span.tool}
        if span.future:
            common["future"] = span.future
        if span.deps:
            common["deps"] = span.deps
        if span.request is not None:
            common["request"] = span.request
        if span.issued is not None:
            pend_end = span.start if span.start is not None else run.end
            deps = f" ← {','.join(span.deps)}" if span.deps else ""
            out.append(slice_(f"{span.label} pending{deps}", "pending", tid, span.issued, pend_end, dict(common)))
        if span.start is not None:
            args = dict(common, status=state, arguments=span.args_summary)
            if span.error:
                args["error"] = span.error
            if state == analysis.UNFINISHED:
                args["unfinished"] = True
            name = f"{span.label} {span.tool}" + (" (unfinished)" if state == analysis.UNFINISHED else "")
            out.append(slice_(name, "tool", tid, span.start, span.stop(run.end) or span.start, args))
            for dep in span.deps:
                source = by_future.get(dep)
                if source is None or source.end is None:
                    continue
                flow_id += 1
                out.append({"ph": "s", "pid": pid, "tid": TOOL_TID0 + slots[source.call_id], "id": flow_id,
                            "ts": max(_us(run, source.end) - 1, 0.0), "name": f"{dep} → {span.label}",
                            "cat": "dependency"})
                # Just inside both ends, so each arrow binds to the execution slices, not their neighbours.
                begin = _us(run, span.start)
                inside = min(1.0, (_us(run, span.stop(run.end) or span.start) - begin) / 2)
                out.append({"ph": "f", "bp": "e", "pid": pid, "tid": tid, "id": flow_id,
                            "ts": begin + inside, "name": f"{dep} → {span.label}", "cat": "dependency"})
    metrics = analysis.compute(run).as_dict()
    other = {k: getattr(header, k) for k in ("run_id", "task", "agent", "model", "mode", "started_at", "spec_digest")}
    return {"traceEvents": out, "displayTimeUnit": "ms", "otherData": {**other, "tools": run.tool_names,
                                                                        "asyncfc": __version__, "summary": metrics}}


# --- OpenTelemetry ----------------------------------------------------------------------------

KIND_INTERNAL, KIND_CLIENT = 1, 3
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2

# LiteLLM provider prefixes -> gen_ai.provider.name well-known values.
PROVIDERS = {
    "openai": "openai", "text-completion-openai": "openai", "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference", "anthropic": "anthropic", "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini", "vertex_ai": "gcp.vertex_ai", "cohere": "cohere", "cohere_chat": "cohere",
    "deepseek": "deepseek", "groq": "groq", "watsonx": "ibm.watsonx.ai", "mistral": "mistral_ai",
    "perplexity": "perplexity", "xai": "x_ai",
}


def provider_name(model: str, provider: str | None = None) -> str:
    """``gen_ai.provider.name``: ``asyncfc.sim`` for the simulated model (``sim``,
    ``sim:P``), else the LiteLLM provider the header records (or the model's
    ``provider/`` prefix, for older traces) mapped to the convention's value,
    else ``_OTHER``."""
    if model == "sim" or model.startswith("sim:"):
        return "asyncfc.sim"
    prefix = provider or (model.split("/", 1)[0] if "/" in model else "")
    return PROVIDERS.get(prefix, prefix or "_OTHER")


def _value(v: Any) -> dict[str, Any]:
    if isinstance(v, (list, tuple)):
        # One level, as the attributes are (future ids): an item is never walked into.
        return {"arrayValue": {"values": [_scalar(x) for x in v]}}
    return _scalar(v)


def _scalar(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": str(v)}


def _attrs(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in d.items() if v is not None]


def _id(seed: str, n: int) -> str:
    return hashlib.sha256(seed.encode("utf-8", "surrogatepass")).hexdigest()[:n]


def _epoch_ns(run: Run) -> int:
    """Unix time of the trace clock's zero, from the header's ``started_at``."""
    started = run.header.started_at
    try:
        base = datetime.fromisoformat(str(started))
        if base.tzinfo is None:
            base = base.replace(tzinfo=timezone.utc)
        epoch = base.timestamp()
    except (ValueError, OverflowError):  # not a date, or one a timestamp cannot hold
        epoch = 0.0
    return int(round((epoch - run.header.t) * 1e9))


def otel_trace(run: Run) -> dict[str, Any]:
    """The run as OTLP/JSON spans following the GenAI semantic conventions."""
    header = run.header
    run_id = header.run_id if header.run_id is not None else "run"
    trace_id = _id(run_id, 32)
    zero = _epoch_ns(run)
    model = header.model or ""
    agent = header.agent or ""
    provider = provider_name(model, header.get("provider"))

    def ns(t: float) -> str:
        return str(zero + int(round(t * 1e9)))

    def span(key: str, name: str, kind: int, a: float, b: float, attrs: dict[str, Any], parent: str | None,
             status: tuple[int, str] = (STATUS_UNSET, ""), events: list[dict[str, Any]] | None = None,
             links: list[str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "traceId": trace_id, "spanId": _id(f"{run_id}/{key}", 16), "name": name, "kind": kind,
            "startTimeUnixNano": ns(a), "endTimeUnixNano": ns(max(b, a)), "attributes": _attrs(attrs),
            "status": {"code": status[0], **({"message": status[1]} if status[1] else {})},
        }
        if parent:
            out["parentSpanId"] = parent
        if events:
            out["events"] = events
        if links:
            out["links"] = [{"traceId": trace_id, "spanId": link} for link in links]
        return out

    spans: list[dict[str, Any]] = []
    metrics = analysis.compute(run)
    root_status = (STATUS_OK, "") if run.status == "ok" else (STATUS_ERROR, run.status)
    root = span("root", f"invoke_agent {agent}".strip(), KIND_INTERNAL, run.start, run.end, {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent or None,
        "gen_ai.provider.name": provider, "gen_ai.request.model": model or None,
        "gen_ai.usage.input_tokens": metrics.tokens_in, "gen_ai.usage.output_tokens": metrics.tokens_out,
        "error.type": None if run.status == "ok" else run.status,
        "asyncfc.mode": run.mode, "asyncfc.task": header.task, "asyncfc.run_id": run_id,
        "asyncfc.startup_s": round(metrics.startup, 6), "asyncfc.tools": run.tool_names or None,
        "asyncfc.unfinished": True if not run.finished else None,
    }, None, root_status)
    spans.append(root)
    root_id = root["spanId"]
    for source in run.setup:  # start-up: a tool source starting for the run
        spans.append(span(f"setup/{source.name}", f"start {source.name}", KIND_INTERNAL, source.start, source.end, {
            "asyncfc.tool_source": source.name, "asyncfc.tool_source.kind": source.kind,
            "asyncfc.tool_source.tools": source.tools or None}, root_id))
    chat_ids: dict[int, str] = {}
    ready_by_request: dict[Any, list[tuple[float, str, str]]] = {}
    for t, request, call_id, tool in run.ready_marks:
        ready_by_request.setdefault(request, []).append((t, call_id, tool))
    for m in run.models:
        unfinished = m.end is None
        error = m.error or (m.status if m.status not in (None, "ok") else None) or ("unfinished" if unfinished else None)
        attrs = {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": m.tokens_in, "gen_ai.usage.output_tokens": m.tokens_out,
            "gen_ai.response.finish_reasons": [m.finish_reason] if m.finish_reason else None,
            "error.type": (m.status if m.status not in (None, "ok") else ("unfinished" if unfinished else None)),
            "asyncfc.request": m.request, "asyncfc.ttft_s": round(m.ttft, 6) if m.ttft is not None else None,
            "asyncfc.unfinished": True if unfinished else None,
        }
        events = []
        if m.first_token is not None:
            events.append({"timeUnixNano": ns(m.first_token), "name": "asyncfc.first_token", "attributes": []})
        for t, call_id, tool in ready_by_request.get(m.request, []):
            events.append({"timeUnixNano": ns(t), "name": "asyncfc.call_ready", "attributes": _attrs(
                {"gen_ai.tool.call.id": call_id, "gen_ai.tool.name": tool})})
        status = (STATUS_ERROR, str(error)) if error else (STATUS_UNSET, "")
        s = span(f"chat/{m.request}", f"chat {model}".strip(), KIND_CLIENT, m.start, m.stop(run.end), attrs,
                 root_id, status, events)
        chat_ids[m.request] = s["spanId"]
        spans.append(s)
    tool_ids = {t.call_id: _id(f"{run_id}/tool/{t.call_id}", 16) for t in run.tools}
    by_future = {t.future: t for t in run.tools if t.future}
    for t in run.tools:
        if t.start is None:
            continue  # never executed: no execute_tool span (its issue is a call_ready event)
        state = run.tool_state(t)
        failed = state not in (analysis.OK, analysis.RUNNING)
        error_type = {"error": "tool_error"}.get(state, state) if failed else None
        attrs = {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": t.tool, "gen_ai.tool.call.id": t.call_id,
            "gen_ai.tool.type": "function", "error.type": error_type,
            "asyncfc.future": t.future, "asyncfc.deps": t.deps or None, "asyncfc.request": t.request,
            "asyncfc.pending_s": round(t.start - t.issued, 6) if t.issued is not None else None,
            "asyncfc.arguments": t.args_summary or None,
            "asyncfc.unfinished": True if state == analysis.UNFINISHED else None,
        }
        links = [tool_ids[by_future[d].call_id] for d in t.deps if d in by_future]
        if t.request in chat_ids:
            links.insert(0, chat_ids[t.request])
        status = (STATUS_ERROR, t.error or state) if failed else (STATUS_UNSET, "")
        s = span(f"tool/{t.call_id}", f"execute_tool {t.tool}", KIND_INTERNAL, t.start, t.stop(run.end) or t.start,
                 attrs, root_id, status, links=links)
        spans.append(s)
    return {"resourceSpans": [{
        "resource": {"attributes": _attrs({"service.name": "asyncfc", "service.version": __version__})},
        "scopeSpans": [{"scope": {"name": "asyncfc", "version": __version__}, "spans": spans}],
    }]}


def export(run: Run, fmt: str) -> dict[str, Any]:
    if fmt == "chrome":
        return chrome_trace(run)
    if fmt == "otel":
        return otel_trace(run)
    raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
