"""Anthropic Messages (``POST /v1/messages``), from Anthropic's API reference.

Request: ``model``, ``max_tokens`` (required), ``messages`` whose content is
a string or typed blocks (``text``, ``tool_use`` with a parsed ``input``,
``tool_result`` with ``tool_use_id``), a top-level ``system``, ``tools``
with ``input_schema``, ``stream``, ``thinking``.

Stream (``event:`` + ``data:`` pairs): ``message_start`` (the message with
``usage.input_tokens``), ``ping``, then per content block
``content_block_start`` / ``content_block_delta`` / ``content_block_stop``
with an ``index`` counting every block of the message: ``thinking`` blocks
(``thinking_delta``, then a ``signature_delta``; only when the request
enables ``thinking``), ``text`` blocks (``text_delta``) and ``tool_use``
blocks (``input_json_delta`` with ``partial_json``). Then ``message_delta``
with ``stop_reason`` (``tool_use`` or ``end_turn``) and the cumulative
``usage.output_tokens``, and ``message_stop``. No ``[DONE]``.

Tool input: a tool declared with ``eager_input_streaming: true`` (Anthropic's
fine-grained tool streaming) gets its ``input_json_delta`` fragments as they
are decoded; any other tool's input is buffered server-side, as the API does
to validate it, and arrives in one delta just before its block stops. The
call is complete at the same moment either way (its last fragment); eager
streaming only moves the fragments earlier.

Errors: ``{"type": "error", "error": {"type": ..., "message": ...}}`` with
``rate_limit_error`` (429), ``overloaded_error`` (529), ``api_error`` (500),
``authentication_error`` (401), ``invalid_request_error`` (400),
``not_found_error`` (404). After the stream began, the same object comes as
an ``event: error``.

What litellm 1.110 does with it (``anthropic/`` provider, checked in
tests/test_protocols.py): ``content_block_start`` of a tool becomes a
fragment with ``id``, name and empty arguments at ``index`` = the count of
tool blocks so far (not the block index); each ``input_json_delta`` a
fragment with its text; ``content_block_stop`` of a tool that had no input
a fragment ``"{}"``; ``thinking_delta`` becomes ``reasoning_content``;
``message_delta`` carries the finish reason (``tool_use`` -> ``tool_calls``)
and the usage; an ``error`` event raises ``InternalServerError``. A 529 is
``InternalServerError`` too ("Overloaded"), a 429 ``RateLimitError``.
"""

from __future__ import annotations

import json
from typing import Any

from asyncfc_cli.sim.render import ArgsPiece, Begin, CallBegin, CallEnd, Finish, StreamEvent, TextPiece

from . import Encoder, Request, WireFormat, expect, openai_tool, sse, text_of

_ERRORS = {
    "bad_request": (400, "invalid_request_error"),
    "auth": (401, "authentication_error"),
    "not_found": (404, "not_found_error"),
    "rate_limit": (429, "rate_limit_error"),
    "overloaded": (529, "overloaded_error"),
    "server_error": (500, "api_error"),
}
_STOP = {"tool_calls": "tool_use", "stop": "end_turn"}
# A thinking block ends with a signature the client must send back; the sim
# never checks it, but the stream carries one as the API's does.
_SIGNATURE = "c2ltdWxhdGVkLXRoaW5raW5nLXNpZ25hdHVyZQ=="


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _ERRORS[kind][1], "message": message}}


class MessagesEncoder(Encoder):
    def __init__(self, request: Request, response_id: str, created: int) -> None:
        super().__init__(request, response_id, created)
        self._block = -1  # index of the open content block
        self._open: str | None = None  # its type
        self._buffered: dict[int, list[str]] = {}  # tool input held back (not eager)
        self._names: dict[int, str] = {}

    def encode(self, event: StreamEvent) -> list[bytes]:
        if isinstance(event, Begin):
            message = {"id": self.response_id, "type": "message", "role": "assistant",
                       "model": self.request.model, "content": [], "stop_reason": None,
                       "stop_sequence": None, "usage": {"input_tokens": event.prompt_tokens, "output_tokens": 1}}
            return [_event("message_start", {"message": message}), _event("ping", {})]
        if isinstance(event, TextPiece):
            if event.reasoning and not self.request.show_thinking:
                return []  # thinking the client did not ask to see: time passes, nothing is sent
            kind = "thinking" if event.reasoning else "text"
            out = self._start(kind, {"type": kind, kind: ""} if kind == "text" else
                              {"type": "thinking", "thinking": ""}) if self._open != kind else []
            delta = ({"type": "thinking_delta", "thinking": event.text} if event.reasoning
                     else {"type": "text_delta", "text": event.text})
            return out + [_event("content_block_delta", {"index": self._block, "delta": delta})]
        if isinstance(event, CallBegin):
            self._names[event.index] = event.name
            block = {"type": "tool_use", "id": event.id, "name": event.name, "input": {}}
            return self._start("tool_use", block)
        if isinstance(event, ArgsPiece):
            if self._names.get(event.index) in self.request.eager_tools:
                return [self._input(event.text)]
            self._buffered.setdefault(event.index, []).append(event.text)
            return []
        if isinstance(event, CallEnd):
            held = "".join(self._buffered.pop(event.index, []))
            return ([self._input(held)] if held else []) + self._stop()
        if isinstance(event, Finish):
            delta = {"stop_reason": _STOP.get(event.reason, "end_turn"), "stop_sequence": None}
            return self._stop() + [
                _event("message_delta", {"delta": delta, "usage": {"output_tokens": event.completion_tokens}}),
                _event("message_stop", {}),
            ]
        return []

    def fault(self, message: str) -> list[bytes]:
        return [sse(_error("overloaded", message), event="error")]

    def body(self) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        finish: Finish | None = None
        for event in self.events:
            if isinstance(event, TextPiece):
                if event.reasoning and not self.request.show_thinking:
                    continue
                kind = "thinking" if event.reasoning else "text"
                if not content or content[-1]["type"] != kind:
                    content.append({"type": kind, kind: ""} | ({"signature": _SIGNATURE} if event.reasoning else {}))
                content[-1][kind] += event.text
            elif isinstance(event, CallEnd):
                content.append({"type": "tool_use", "id": event.id, "name": event.name,
                                "input": _parsed(event.arguments)})
            elif isinstance(event, Finish):
                finish = event
        assert finish is not None
        return {"id": self.response_id, "type": "message", "role": "assistant", "model": self.request.model,
                "content": content, "stop_reason": _STOP.get(finish.reason, "end_turn"), "stop_sequence": None,
                "usage": {"input_tokens": finish.prompt_tokens, "output_tokens": finish.completion_tokens}}

    def _start(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = self._stop()
        self._block += 1
        self._open = kind
        return out + [_event("content_block_start", {"index": self._block, "content_block": block})]

    def _stop(self) -> list[bytes]:
        if self._open is None:
            return []
        out = []
        if self._open == "thinking":
            out.append(_event("content_block_delta", {"index": self._block,
                                                      "delta": {"type": "signature_delta", "signature": _SIGNATURE}}))
        out.append(_event("content_block_stop", {"index": self._block}))
        self._open = None
        return out

    def _input(self, text: str) -> bytes:
        return _event("content_block_delta", {"index": self._block,
                                              "delta": {"type": "input_json_delta", "partial_json": text}})


def _event(name: str, data: dict[str, Any]) -> bytes:
    return sse({"type": name, **data}, event=name)


def _parsed(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return {}


class AnthropicMessages(WireFormat):
    name = "anthropic"
    litellm_prefix = "anthropic/"
    base_path = ""  # LiteLLM appends /v1/messages to the api_base

    def handles(self, method: str, path: str) -> bool:
        return method == "POST" and path.rstrip("/") in ("/v1/messages", "/messages")

    def read(self, path: str, body: Any) -> Request:
        expect(isinstance(body, dict), "request body must be a JSON object")
        expect("max_tokens" in body, "max_tokens: Field required")
        raw = body.get("messages")
        expect(isinstance(raw, list) and all(isinstance(m, dict) for m in raw),
               "messages: Input should be a valid list of objects")
        messages: list[dict[str, Any]] = []
        if body.get("system"):
            messages.append({"role": "system", "content": text_of(body["system"])})
        for index, message in enumerate(raw):
            role = message.get("role")
            expect(role in ("user", "assistant"), f"messages.{index}.role: Input should be 'user' or 'assistant'")
            content = message.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            expect(isinstance(blocks, list), f"messages.{index}.content: Input should be a string or a list")
            if role == "assistant":
                messages.append(_assistant(blocks))
            else:
                messages.extend(_user(blocks))
        tools = body.get("tools") or []
        expect(isinstance(tools, list), "tools: Input should be a valid list")
        thinking = body.get("thinking") if isinstance(body.get("thinking"), dict) else {}
        return Request(
            messages=messages,
            tools=[openai_tool(t.get("name", ""), t.get("description"), t.get("input_schema"))
                   for t in tools if isinstance(t, dict)],
            stream=bool(body.get("stream")),
            model=str(body.get("model") or ""),
            show_thinking=thinking.get("type") in ("enabled", "adaptive"),
            eager_tools=frozenset(t.get("name", "") for t in tools
                                  if isinstance(t, dict) and t.get("eager_input_streaming") is True),
        )

    def encoder(self, request: Request, response_id: str, created: int) -> MessagesEncoder:
        return MessagesEncoder(request, f"msg_{response_id}", created)

    def error(self, kind: str, message: str) -> tuple[int, dict[str, Any]]:
        return _ERRORS[kind][0], _error(kind, message)


def _assistant(blocks: list[Any]) -> dict[str, Any]:
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            text.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            calls.append({"id": str(block.get("id", "")), "type": "function",
                          "function": {"name": str(block.get("name", "")),
                                       "arguments": json.dumps(block.get("input", {}), ensure_ascii=False)}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _user(blocks: list[Any]) -> list[dict[str, Any]]:
    # LiteLLM puts tool results and the user text that follows them into one
    # user turn; each becomes its own message again, in order.
    out: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_result":
            out.append({"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")),
                        "content": text_of(block.get("content"))})
        elif block.get("type") == "text":
            out.append({"role": "user", "content": str(block.get("text", ""))})
    return out
