"""OpenAI Responses (``POST /v1/responses``), from OpenAI's API reference.

Request: ``model``, ``input`` (a string, or items: ``message`` with a role
and ``input_text``/``output_text`` parts, ``function_call`` with ``call_id``,
``name`` and ``arguments``, ``function_call_output`` with ``call_id`` and
``output``), ``instructions``, ``tools`` (``{"type": "function", "name",
"parameters"}``), ``stream``, ``reasoning.summary``.

Stream (``event:`` + ``data:`` pairs, each with a ``sequence_number``, no
``[DONE]``): ``response.created``, ``response.in_progress``, then per output
item ``response.output_item.added`` ... ``response.output_item.done``:
``reasoning`` items (with ``response.reasoning_summary_text.delta`` when the
request asks for a summary; otherwise the thinking shows only in
``usage.output_tokens_details.reasoning_tokens``), ``message`` items
(``response.content_part.added``, ``response.output_text.delta``,
``.done``) and ``function_call`` items
(``response.function_call_arguments.delta`` per fragment and
``response.function_call_arguments.done`` with the whole arguments: the one
format with a per-call done event). Last ``response.completed`` with the
output and ``usage`` (``input_tokens``, ``output_tokens``). The API has no
finish reason: a response with function calls ends ``completed`` as well.

Errors: the OpenAI error object (``{"error": {"message", "type", "code"}}``)
with 429, 500, 503; after the stream began, a ``response.failed`` event whose
response holds ``error``.

What litellm 1.110 does with it (``openai/responses/`` model strings, the
Responses bridge; checked in tests/test_protocols.py): ``output_item.added``
of a function call becomes a fragment with ``id`` = ``call_id``, the name and
empty arguments, at an index counting function calls; each arguments delta a
fragment; ``output_item.done`` an empty delta; ``output_text.delta`` content;
``response.completed`` the finish reason (``tool_calls`` when the output has
calls) and the usage.
"""

from __future__ import annotations

from typing import Any

from asyncfc_cli.sim.render import ArgsPiece, Begin, CallBegin, CallEnd, Finish, StreamEvent, TextPiece

from . import Encoder, Request, WireFormat, expect, openai_tool, sse, text_of
from .openai import OpenAIChat


class ResponsesEncoder(Encoder):
    def __init__(self, request: Request, response_id: str, created: int) -> None:
        super().__init__(request, response_id, created)
        self._sequence = 0
        self._output: list[dict[str, Any]] = []  # items done so far, for response.completed
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._reasoning_tokens = 0

    def encode(self, event: StreamEvent) -> list[bytes]:
        if isinstance(event, Begin):
            return [self._event("response.created", response=self._response("in_progress")),
                    self._event("response.in_progress", response=self._response("in_progress"))]
        if isinstance(event, TextPiece):
            return self._reasoning(event) if event.reasoning else self._text(event.text)
        if isinstance(event, CallBegin):
            item = {"id": f"fc_{event.id}", "type": "function_call", "status": "in_progress", "arguments": "",
                    "call_id": event.id, "name": event.name}
            return self._close() + self._add(item)
        if isinstance(event, ArgsPiece):
            assert self._open is not None
            self._open["arguments"] += event.text
            return [self._event("response.function_call_arguments.delta", item_id=self._open["id"],
                                output_index=len(self._output), delta=event.text)]
        if isinstance(event, CallEnd):
            assert self._open is not None
            done = [self._event("response.function_call_arguments.done", item_id=self._open["id"],
                                output_index=len(self._output), arguments=self._open["arguments"])]
            return done + self._close()
        if isinstance(event, Finish):
            closing = self._close()
            return closing + [self._event("response.completed", response=self._response("completed", event))]
        return []

    def fault(self, message: str) -> list[bytes]:
        response = self._response("failed")
        response["error"] = {"code": "server_error", "message": message}
        return [self._event("response.failed", response=response)]

    def body(self) -> dict[str, Any]:
        for event in self.events:  # replays the stream without sending it
            if not isinstance(event, Finish):
                self.encode(event)
        self._close()
        finish = next(e for e in self.events if isinstance(e, Finish))
        return self._response("completed", finish)

    def _reasoning(self, piece: TextPiece) -> list[bytes]:
        self._reasoning_tokens += piece.tokens
        out: list[bytes] = []
        if self._open is None or self._open["type"] != "reasoning":
            out = self._close() + self._add({"id": f"rs_{len(self._output)}", "type": "reasoning", "summary": []})
            if self.request.show_thinking:
                self._open["summary"].append({"type": "summary_text", "text": ""})
                out.append(self._event("response.reasoning_summary_part.added", item_id=self._open["id"],
                                       output_index=len(self._output), summary_index=0,
                                       part={"type": "summary_text", "text": ""}))
        if not self.request.show_thinking:
            return out  # hidden reasoning: its time passes, its tokens are counted
        self._open["summary"][0]["text"] += piece.text
        return out + [self._event("response.reasoning_summary_text.delta", item_id=self._open["id"],
                                  output_index=len(self._output), summary_index=0, delta=piece.text)]

    def _text(self, text: str) -> list[bytes]:
        out: list[bytes] = []
        if self._open is None or self._open["type"] != "message":
            item = {"id": f"msg_{len(self._output)}", "type": "message", "status": "in_progress",
                    "role": "assistant", "content": []}
            out = self._close() + self._add(item)
            self._open["content"].append({"type": "output_text", "text": "", "annotations": []})
            out.append(self._event("response.content_part.added", item_id=item["id"],
                                   output_index=len(self._output), content_index=0,
                                   part={"type": "output_text", "text": "", "annotations": []}))
        self._open["content"][0]["text"] += text
        return out + [self._event("response.output_text.delta", item_id=self._open["id"],
                                  output_index=len(self._output), content_index=0, delta=text, logprobs=[])]

    def _add(self, item: dict[str, Any]) -> list[bytes]:
        self._open = item
        return [self._event("response.output_item.added", output_index=len(self._output), item=dict(item))]

    def _close(self) -> list[bytes]:
        item, self._open = self._open, None
        if item is None:
            return []
        out: list[bytes] = []
        index = len(self._output)
        if item["type"] == "message":
            part = item["content"][0]
            out += [self._event("response.output_text.done", item_id=item["id"], output_index=index,
                                content_index=0, text=part["text"], logprobs=[]),
                    self._event("response.content_part.done", item_id=item["id"], output_index=index,
                                content_index=0, part=part)]
        elif item["type"] == "reasoning" and item["summary"]:
            part = item["summary"][0]
            out += [self._event("response.reasoning_summary_text.done", item_id=item["id"], output_index=index,
                                summary_index=0, text=part["text"]),
                    self._event("response.reasoning_summary_part.done", item_id=item["id"], output_index=index,
                                summary_index=0, part=part)]
        if "status" in item:
            item["status"] = "completed"
        self._output.append(item)
        return out + [self._event("response.output_item.done", output_index=index, item=item)]

    def _response(self, status: str, finish: Finish | None = None) -> dict[str, Any]:
        usage = None
        if finish is not None:
            usage = {"input_tokens": finish.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
                     "output_tokens": finish.completion_tokens,
                     "output_tokens_details": {"reasoning_tokens": self._reasoning_tokens},
                     "total_tokens": finish.prompt_tokens + finish.completion_tokens}
        return {"id": self.response_id, "object": "response", "created_at": self.created, "status": status,
                "error": None, "incomplete_details": None, "instructions": None, "model": self.request.model,
                "output": list(self._output) if status != "in_progress" else [], "parallel_tool_calls": True,
                "tool_choice": "auto", "tools": [], "usage": usage}

    def _event(self, name: str, **data: Any) -> bytes:
        payload = {"type": name, "sequence_number": self._sequence, **data}
        self._sequence += 1
        return sse(payload, event=name)


class OpenAIResponses(WireFormat):
    name = "responses"
    litellm_prefix = "openai/responses/"
    base_path = "/v1"

    def handles(self, method: str, path: str) -> bool:
        return method == "POST" and path.rstrip("/") in ("/v1/responses", "/responses")

    def read(self, path: str, body: Any) -> Request:
        expect(isinstance(body, dict), "request body must be a JSON object")
        raw = body.get("input")
        expect(isinstance(raw, (str, list)), "'input' must be a string or a list of items")
        messages: list[dict[str, Any]] = []
        if body.get("instructions"):
            messages.append({"role": "system", "content": str(body["instructions"])})
        items = [{"type": "message", "role": "user", "content": raw}] if isinstance(raw, str) else raw
        for index, item in enumerate(items):
            expect(isinstance(item, dict), f"input[{index}] must be an object")
            _read_item(item, messages)
        tools = body.get("tools") or []
        expect(isinstance(tools, list), "'tools' must be a list")
        reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
        return Request(
            messages=messages,
            tools=[openai_tool(t.get("name", ""), t.get("description"), t.get("parameters"))
                   for t in tools if isinstance(t, dict) and t.get("type") == "function"],
            stream=bool(body.get("stream")),
            model=str(body.get("model") or ""),
            show_thinking=bool(reasoning.get("summary")),
        )

    def encoder(self, request: Request, response_id: str, created: int) -> ResponsesEncoder:
        return ResponsesEncoder(request, f"resp_{response_id}", created)

    def error(self, kind: str, message: str) -> tuple[int, dict[str, Any]]:
        return OpenAIChat().error(kind, message)


def _read_item(item: dict[str, Any], messages: list[dict[str, Any]]) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        expect(role in ("system", "developer", "user", "assistant"), f"unknown message role {role!r}")
        text = text_of(item.get("content"))
        if role == "assistant":
            messages.append({"role": "assistant", "content": text or None})
        else:
            messages.append({"role": "system" if role == "developer" else role, "content": text})
    elif kind == "function_call":
        call = {"id": str(item.get("call_id", "")), "type": "function",
                "function": {"name": str(item.get("name", "")), "arguments": str(item.get("arguments", ""))}}
        last = messages[-1] if messages else None
        if last is not None and last.get("role") == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        messages.append({"role": "tool", "tool_call_id": str(item.get("call_id", "")),
                         "content": text_of(item.get("output"))})
    # reasoning and other items carry nothing the simulated model reads
