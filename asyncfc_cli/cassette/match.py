"""What a model request sent, as digests, and where two of them first differ.

A request is summed up by what changes the model's answer: the model, each
message, the tools and the parameters (credentials, endpoints, timeouts and
headers left out: a replay reaches another endpoint with another key). Each
message keeps a short preview, so a divergence can be shown to a person.

Digests are computed by an iterative walk over the values (a model may nest
its arguments as deep as it likes), in time linear in their size.
"""

from __future__ import annotations

import hashlib
from typing import Any

from asyncfc_cli.output import printable
from asyncfc_cli.redaction import credential_name

PREVIEW_CHARS = 160

# Parameters that choose where and how a request goes, not what comes back.
_TRANSPORT = frozenset({
    "api_base", "base_url", "api_version", "timeout", "request_timeout", "stream_timeout", "num_retries",
    "max_retries", "stream", "stream_options", "headers", "extra_headers", "metadata", "drop_params", "user",
    "organization", "client", "mock_response", "caching",
})

_OPEN_DICT, _OPEN_LIST, _CLOSE = b"{", b"[", b"]"


def digest(value: Any) -> str:
    """A stable digest of a JSON-like value (dict order does not matter)."""
    h = hashlib.sha256()
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):  # a marker pushed below
            h.update(item)
        elif isinstance(item, dict):
            h.update(_OPEN_DICT)
            stack.append(_CLOSE)
            for key, inner in sorted(item.items(), key=lambda kv: str(kv[0]), reverse=True):
                stack.append(inner)
                stack.append(_scalar(str(key)))
        elif isinstance(item, (list, tuple)):
            h.update(_OPEN_LIST)
            stack.append(_CLOSE)
            stack.extend(reversed(item))
        else:
            h.update(_scalar(item))
    return h.hexdigest()[:16]


def _scalar(value: Any) -> bytes:
    text = value if isinstance(value, str) else repr(value) if isinstance(value, (int, float, bool)) or value is None \
        else str(value)
    kind = type(value).__name__[:1].encode()
    data = text.encode("utf-8", "surrogatepass")
    return kind + str(len(data)).encode() + b":" + data


def answer_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """The parameters that change the answer (no credentials, no transport settings)."""
    return {k: v for k, v in (params or {}).items()
            if str(k) not in _TRANSPORT and not credential_name(k) and "header" not in str(k).lower()}


def _tools(tools: list[dict] | None) -> list[Any]:
    # Anthropic's eager_input_streaming marks how arguments stream, not what they are.
    return [{k: v for k, v in tool.items() if k != "eager_input_streaming"} if isinstance(tool, dict) else tool
            for tool in tools or []]


def preview(message: Any) -> str:
    """A short one-line rendering of a message for a divergence report."""
    if not isinstance(message, dict):
        return printable(str(type(message).__name__))
    parts = []
    content = message.get("content")
    if isinstance(content, list):
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    if content:
        parts.append(str(content))
    for call in message.get("tool_calls") or []:
        fn = call.get("function", {}) if isinstance(call, dict) else {}
        if isinstance(fn, dict):
            parts.append(f"{fn.get('name')}({str(fn.get('arguments', ''))[:PREVIEW_CHARS]})")
    text = " ".join(" ".join(parts).split())
    text = printable(text)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def summarize(model: str, messages: list[dict], tools: list[dict] | None, params: dict[str, Any] | None) -> dict:
    """The request record of a cassette (before redaction): digests and previews."""
    shown = [{"role": printable(str(m.get("role") if isinstance(m, dict) else "?"))[:40], "digest": digest(m),
              "preview": preview(m)} for m in messages]
    tools_digest, params_digest = digest(_tools(tools)), digest(answer_params(params))
    whole = digest([model, [m["digest"] for m in shown], tools_digest, params_digest])
    return {"digest": whole, "model": model, "tools": tools_digest, "params": params_digest, "messages": shown}


def difference(recorded: dict[str, Any], now: dict[str, Any]) -> str | None:
    """Where ``now`` first differs from the recorded request, in words; None if they match."""
    if recorded["digest"] == now["digest"]:
        return None
    if recorded["model"] != now["model"]:
        return f"the model differs (recorded {printable(recorded['model'])}, now {now['model']})"
    old, new = recorded["messages"], now["messages"]
    for index in range(max(len(old), len(new))):
        if index >= len(old):
            return (f"message {index + 1} ({new[index]['role']}) is new: the recorded request had "
                    f"{len(old)} messages; now: {new[index]['preview']!r}")
        if index >= len(new):
            return (f"message {index + 1} ({printable(old[index]['role'])}) is missing: the recorded request had "
                    f"{len(old)} messages, now {len(new)}")
        if old[index]["digest"] != new[index]["digest"]:
            return (f"message {index + 1} ({new[index]['role']}) differs: recorded "
                    f"{printable(old[index]['preview'])!r}, now {new[index]['preview']!r}")
    if recorded["tools"] != now["tools"]:
        return "the tools differ (a tool was added, removed, or its name, description or parameters changed)"
    if recorded["params"] != now["params"]:
        return "the model parameters differ (e.g. temperature, max_tokens, tool_choice)"
    return "the request differs"
