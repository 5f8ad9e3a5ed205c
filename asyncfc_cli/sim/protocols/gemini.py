"""Gemini API ``generateContent`` (Google AI Studio), from Google's API reference.

Request: ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` (or
``:generateContent`` for one JSON answer) with ``contents`` (turns of role
``user`` or ``model`` made of ``parts``: ``text``, ``functionCall`` with
``name``, parsed ``args`` and ``id``, ``functionResponse`` with ``name``,
``response`` object and ``id``), ``systemInstruction``, ``tools`` holding
``functionDeclarations`` and ``generationConfig.thinkingConfig``. Field
names are accepted in both JSON spellings the API takes (``functionCall``
and ``function_call``).

Stream: ``data: {GenerateContentResponse}`` events, no ``[DONE]``: each holds
``candidates[0].content.parts`` (text, thought text marked
``"thought": true`` when ``includeThoughts`` is set, and ``functionCall``
parts, which arrive **whole**: a call's arguments are never split across
events), and the last one ``finishReason`` (``STOP``, also after function
calls) and ``usageMetadata`` (``promptTokenCount``, ``candidatesTokenCount``,
``thoughtsTokenCount``, ``totalTokenCount``). Thinking the client did not ask
to see still costs its decode time and shows only in ``thoughtsTokenCount``.
A call whose arguments are not a JSON object cannot be expressed: the
candidate ends with ``MALFORMED_FUNCTION_CALL``, as Gemini's does.

Errors: ``{"error": {"code": 429, "message": ..., "status":
"RESOURCE_EXHAUSTED"}}``; ``UNAVAILABLE`` (503, overloaded), ``INTERNAL``
(500), ``INVALID_ARGUMENT`` (400; a bad key is a 400 too, reason
``API_KEY_INVALID``), ``NOT_FOUND``. After the stream began, an event holding
the same ``error`` object.

What litellm 1.110 does with it (``gemini/`` provider, checked in
tests/test_protocols.py): each ``functionCall`` part becomes one complete
fragment (``id`` from the part, name, ``json.dumps(args)``) at a running
index; thought parts become ``reasoning_content``; the finish reason is
``tool_calls`` once any call was seen; usage comes from the last event's
``usageMetadata``; an ``error`` event raises with the event's code.
"""

from __future__ import annotations

import json
from typing import Any

from asyncfc_cli.sim.render import CallEnd, Finish, StreamEvent, TextPiece

from . import Encoder, Request, WireFormat, expect, openai_tool, sse

_ERRORS = {
    "bad_request": (400, "INVALID_ARGUMENT"),
    "auth": (400, "INVALID_ARGUMENT"),
    "not_found": (404, "NOT_FOUND"),
    "rate_limit": (429, "RESOURCE_EXHAUSTED"),
    "overloaded": (503, "UNAVAILABLE"),
    "server_error": (500, "INTERNAL"),
}


def _field(obj: dict[str, Any], camel: str) -> Any:
    """A field in either JSON spelling (``functionCall`` or ``function_call``)."""
    if camel in obj:
        return obj[camel]
    snake = "".join("_" + c.lower() if c.isupper() else c for c in camel)
    return obj.get(snake)


def _error(kind: str, message: str) -> dict[str, Any]:
    status, name = _ERRORS[kind]
    error: dict[str, Any] = {"code": status, "message": message, "status": name}
    if kind == "auth":
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                             "domain": "googleapis.com"}]
    return {"error": error}


class GeminiEncoder(Encoder):
    def __init__(self, request: Request, response_id: str, created: int) -> None:
        super().__init__(request, response_id, created)
        self._thoughts = 0  # thinking tokens, reported apart
        self._malformed = False

    def encode(self, event: StreamEvent) -> list[bytes]:
        if isinstance(event, TextPiece):
            if event.reasoning:
                self._thoughts += event.tokens
                if not self.request.show_thinking:
                    return []
                return [self._frame([{"text": event.text, "thought": True}])]
            return [self._frame([{"text": event.text}])]
        if isinstance(event, CallEnd):
            args = _object(event.arguments)
            if args is None:
                self._malformed = True
                return []
            return [self._frame([{"functionCall": {"name": event.name, "args": args, "id": event.id}}])]
        if isinstance(event, Finish):
            return [self._frame([{"text": ""}], finish=self._finish_reason(), usage=self._usage(event))]
        return []  # Begin, call headers and fragments: Gemini sends a call only whole

    def fault(self, message: str) -> list[bytes]:
        return [sse(_error("overloaded", message), newline=b"\r\n")]

    def body(self) -> dict[str, Any]:
        parts: list[dict[str, Any]] = []
        finish: Finish | None = None
        thoughts = 0
        for event in self.events:
            if isinstance(event, TextPiece):
                if event.reasoning:
                    thoughts += event.tokens
                    if not self.request.show_thinking:
                        continue
                last = parts[-1] if parts else {}
                if "text" not in last or bool(last.get("thought")) != event.reasoning:
                    parts.append({"text": ""} | ({"thought": True} if event.reasoning else {}))
                parts[-1]["text"] += event.text
            elif isinstance(event, CallEnd):
                args = _object(event.arguments)
                if args is not None:
                    parts.append({"functionCall": {"name": event.name, "args": args, "id": event.id}})
            elif isinstance(event, Finish):
                finish = event
        assert finish is not None
        self._thoughts = thoughts
        return self._response(parts, self._finish_reason(), self._usage(finish))

    def _finish_reason(self) -> str:
        return "MALFORMED_FUNCTION_CALL" if self._malformed else "STOP"

    def _usage(self, finish: Finish) -> dict[str, int]:
        usage = {"promptTokenCount": finish.prompt_tokens,
                 "candidatesTokenCount": finish.completion_tokens - self._thoughts,
                 "totalTokenCount": finish.prompt_tokens + finish.completion_tokens}
        if self._thoughts:
            usage["thoughtsTokenCount"] = self._thoughts
        return usage

    def _response(self, parts: list[dict[str, Any]], finish: str | None = None,
                  usage: dict[str, int] | None = None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        response: dict[str, Any] = {"candidates": [candidate], "modelVersion": self.request.model,
                                    "responseId": self.response_id}
        if usage:
            response["usageMetadata"] = usage
        return response

    def _frame(self, parts: list[dict[str, Any]], finish: str | None = None,
               usage: dict[str, int] | None = None) -> bytes:
        return sse(self._response(parts, finish, usage), newline=b"\r\n")


def _object(arguments: str) -> dict[str, Any] | None:
    try:
        value = json.loads(arguments)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class GeminiGenerateContent(WireFormat):
    name = "gemini"
    litellm_prefix = "gemini/"
    base_path = "/v1beta"  # LiteLLM appends /models/{model}:streamGenerateContent?alt=sse

    def handles(self, method: str, path: str) -> bool:
        route = path.split("?", 1)[0]
        return method == "POST" and route.startswith(("/v1beta/models/", "/v1/models/")) and route.endswith(
            (":streamGenerateContent", ":generateContent"))

    def read(self, path: str, body: Any) -> Request:
        route, _, query = path.partition("?")
        stream = route.endswith(":streamGenerateContent")
        expect(not stream or "alt=sse" in query.split("&"),
               "this server streams server-sent events only: add ?alt=sse")
        expect(isinstance(body, dict), "Invalid JSON payload received.")
        contents = body.get("contents")
        expect(isinstance(contents, list) and all(isinstance(c, dict) for c in contents),
               "contents: a list of Content objects is required")
        messages: list[dict[str, Any]] = []
        system = _field(body, "systemInstruction")
        if isinstance(system, dict):
            messages.append({"role": "system", "content": _texts(system.get("parts") or [])})
        for index, content in enumerate(contents):
            parts = content.get("parts") or []
            expect(isinstance(parts, list), f"contents[{index}].parts must be a list")
            role = content.get("role", "user")
            expect(role in ("user", "model", "function"), f"contents[{index}].role must be user or model")
            if role == "model":
                messages.append(_model_turn(parts))
            else:
                messages.extend(_user_turn(parts, messages))
        declarations = []
        for tool in body.get("tools") or []:
            if isinstance(tool, dict):
                declarations.extend(_field(tool, "functionDeclarations") or [])
        config = _field(body, "generationConfig")
        thinking = _field(config, "thinkingConfig") if isinstance(config, dict) else None
        return Request(
            messages=messages,
            tools=[openai_tool(d.get("name", ""), d.get("description"), d.get("parameters"))
                   for d in declarations if isinstance(d, dict)],
            stream=stream,
            model=route.rsplit("/", 1)[-1].split(":", 1)[0],
            show_thinking=bool(isinstance(thinking, dict) and _field(thinking, "includeThoughts")),
        )

    def encoder(self, request: Request, response_id: str, created: int) -> GeminiEncoder:
        return GeminiEncoder(request, response_id, created)

    def error(self, kind: str, message: str) -> tuple[int, dict[str, Any]]:
        if kind == "auth":
            message = "API key not valid. Please pass a valid API key."
        return _ERRORS[kind][0], _error(kind, message)


def _texts(parts: list[Any]) -> str:
    return "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict) and "text" in p)


def _model_turn(parts: list[Any]) -> dict[str, Any]:
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        call = _field(part, "functionCall")
        if isinstance(call, dict):
            calls.append({"id": str(call.get("id") or ""), "type": "function",
                          "function": {"name": str(call.get("name", "")),
                                       "arguments": json.dumps(call.get("args") or {}, ensure_ascii=False)}})
        elif "text" in part and not part.get("thought"):
            text.append(str(part["text"]))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _user_turn(parts: list[Any], earlier: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        result = _field(part, "functionResponse")
        if isinstance(result, dict):
            call_id = str(result.get("id") or "") or _call_id_by_name(str(result.get("name", "")), earlier + out)
            out.append({"role": "tool", "tool_call_id": call_id, "content": _result_text(result.get("response"))})
        elif "text" in part:
            out.append({"role": "user", "content": str(part["text"])})
    return out


def _result_text(response: Any) -> str:
    # A tool result that is not a JSON object travels as {"content": text}
    # (the API wants an object); an object travels as itself.
    if isinstance(response, dict) and set(response) == {"content"} and isinstance(response["content"], str):
        return response["content"]
    return json.dumps(response, ensure_ascii=False)


def _call_id_by_name(name: str, earlier: list[dict[str, Any]]) -> str:
    """For a response without ``id``: the first unanswered call of that name in the last model turn."""
    answered = {m.get("tool_call_id") for m in earlier if m.get("role") == "tool"}
    for message in reversed(earlier):
        if message.get("role") == "assistant":
            for call in message.get("tool_calls") or ():
                if call["function"]["name"] == name and call["id"] not in answered:
                    return call["id"]
            break
    return ""
