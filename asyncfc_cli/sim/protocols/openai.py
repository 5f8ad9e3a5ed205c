"""OpenAI chat completions (``POST /v1/chat/completions``), the format every
OpenAI-compatible server (vLLM, llama.cpp, Ollama) speaks.

Stream: ``data: {chat.completion.chunk}`` lines, then ``data: [DONE]``. A
tool call's first fragment carries ``index``, ``id``, ``type`` and the
function name with empty arguments; later fragments carry ``index`` and
argument text; nothing marks a call's end. Thinking streams as
``reasoning_content`` (what vLLM's and DeepSeek's reasoning parsers send).
``finish_reason`` comes on a last chunk with an empty delta; with
``stream_options.include_usage`` a chunk with empty ``choices`` and the
``usage`` follows.

What litellm 1.110 does with such a stream (``openai/`` provider,
``CustomStreamWrapper``; checked in tests/test_sim.py and tests/test_protocols.py):

- Interleaving is handled correctly. Every upstream chunk whose delta has
  non-empty content or any ``tool_calls`` is passed on, in order, with the
  delta intact; content that arrives between one call's fragments and the
  next call's header is neither dropped nor reordered. Argument fragments
  are passed through byte-exact, even when they split a JSON escape
  (``\\`` | ``n``) or sit next to multi-byte characters.
- ``raise_on_model_repetition``: 100 consecutive identical content deltas
  longer than two characters abort the stream with ``MidStreamFallbackError``
  (``REPEATED_STREAMING_CHUNK_LIMIT``), which is why ``render`` never sends
  the same piece twice in a row.
- A ``finish_reason`` of ``"stop"`` is rewritten to ``"tool_calls"`` when the
  response streamed any tool call.
- The usage chunk (``choices: []``) comes out as a chunk with empty
  ``choices`` and ``usage`` set: consumers must not index ``choices[0]``.
"""

from __future__ import annotations

from typing import Any

from asyncfc_cli.sim.render import ArgsPiece, Begin, CallBegin, CallEnd, Finish, StreamEvent, TextPiece

from . import Encoder, Request, WireFormat, expect, openai_tool, sse

_ERRORS = {
    "bad_request": (400, "invalid_request_error", None),
    "auth": (401, "invalid_request_error", "invalid_api_key"),
    "not_found": (404, "invalid_request_error", "model_not_found"),
    "rate_limit": (429, "requests", "rate_limit_exceeded"),
    "overloaded": (503, "server_error", "engine_overloaded"),
    "server_error": (500, "server_error", None),
}


def delta_of(event: StreamEvent) -> dict[str, Any] | None:
    """The ``choices[0]`` (delta and finish reason) for one event, or None."""
    if isinstance(event, Begin):
        return {"delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    if isinstance(event, TextPiece):
        key = "reasoning_content" if event.reasoning else "content"
        return {"delta": {key: event.text}, "finish_reason": None}
    if isinstance(event, CallBegin):
        header = {"index": event.index, "id": event.id, "type": "function",
                  "function": {"name": event.name, "arguments": ""}}
        return {"delta": {"tool_calls": [header]}, "finish_reason": None}
    if isinstance(event, ArgsPiece):
        fragment = {"index": event.index, "function": {"arguments": event.text}}
        return {"delta": {"tool_calls": [fragment]}, "finish_reason": None}
    if isinstance(event, Finish):
        return {"delta": {}, "finish_reason": event.reason}
    return None  # CallEnd: the chat format has no end-of-call event


def usage_of(finish: Finish) -> dict[str, int]:
    return {"prompt_tokens": finish.prompt_tokens, "completion_tokens": finish.completion_tokens,
            "total_tokens": finish.prompt_tokens + finish.completion_tokens}


class ChatEncoder(Encoder):
    def chunks(self, event: StreamEvent) -> list[dict[str, Any]]:
        """The ``chat.completion.chunk`` objects for one event (also used in process)."""
        out = []
        choice = delta_of(event)
        if choice is not None:
            out.append(self._chunk([{"index": 0, **choice}]))
        if isinstance(event, Finish) and self.request.include_usage:
            out.append({**self._chunk([]), "usage": usage_of(event)})
        return out

    def encode(self, event: StreamEvent) -> list[bytes]:
        frames = [sse(chunk) for chunk in self.chunks(event)]
        if isinstance(event, Finish):
            frames.append(b"data: [DONE]\n\n")
        return frames

    def fault(self, message: str) -> list[bytes]:
        # What OpenAI sends when a stream fails after it began: an error object
        # in place of a chunk, then the connection closes.
        return [sse({"error": {"message": message, "type": "server_error", "param": None, "code": None}})]

    def body(self) -> dict[str, Any]:
        content: list[str] = []
        calls: list[dict[str, Any]] = []
        finish: Finish | None = None
        for event in self.events:
            if isinstance(event, TextPiece) and not event.reasoning:
                content.append(event.text)
            elif isinstance(event, CallEnd):
                calls.append({"id": event.id, "type": "function",
                              "function": {"name": event.name, "arguments": event.arguments}})
            elif isinstance(event, Finish):
                finish = event
        assert finish is not None
        message: dict[str, Any] = {"role": "assistant", "content": "".join(content) if content else None}
        if calls:
            message["tool_calls"] = calls
        return {
            "id": self.response_id, "object": "chat.completion", "created": self.created,
            "model": self.request.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish.reason}],
            "usage": usage_of(finish),
        }

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.response_id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.request.model, "choices": choices}


class OpenAIChat(WireFormat):
    name = "openai"
    litellm_prefix = "openai/"
    base_path = "/v1"

    def handles(self, method: str, path: str) -> bool:
        return method == "POST" and path.rstrip("/") in ("/v1/chat/completions", "/chat/completions")

    def get(self, path: str) -> dict[str, Any] | None:
        if path.rstrip("/") in ("/v1/models", "/models"):
            return {"object": "list",
                    "data": [{"id": "sim", "object": "model", "created": 0, "owned_by": "asyncfc"}]}
        return None

    def read(self, path: str, body: Any) -> Request:
        expect(isinstance(body, dict), "request body must be a JSON object")
        messages = body.get("messages")
        expect(isinstance(messages, list) and all(isinstance(m, dict) for m in messages),
               "request body must be an object with a 'messages' list of objects")
        tools = body.get("tools") or []
        expect(isinstance(tools, list), "'tools' must be a list")
        options = body.get("stream_options") or {}
        return Request(
            messages=messages,
            tools=[openai_tool(_fn(t).get("name", ""), _fn(t).get("description"), _fn(t).get("parameters"))
                   for t in tools if isinstance(t, dict)],
            stream=bool(body.get("stream")),
            model=str(body.get("model") or "sim"),
            show_thinking=True,
            include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
        )

    def encoder(self, request: Request, response_id: str, created: int) -> ChatEncoder:
        return ChatEncoder(request, f"chatcmpl-{response_id}", created)

    def error(self, kind: str, message: str) -> tuple[int, dict[str, Any]]:
        status, type_, code = _ERRORS[kind]
        return status, {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _fn(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function")
    return fn if isinstance(fn, dict) else tool
