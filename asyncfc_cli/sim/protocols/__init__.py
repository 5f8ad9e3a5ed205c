"""The wire formats the simulated model speaks, one module per provider.

Each format is written from its provider's public API reference: the
request it accepts, the stream events it sends (names, JSON shapes, usage,
stop reasons) and its errors. The simulated server picks one per run
(``[sim] protocol``, ``--model sim:P``, ``asyncfc sim serve --protocol P``),
and asyncfc reaches it through LiteLLM's own adapter for that provider, with
the base URL pointed at the local server: the code path a real key takes.

=============  ================================  ==================================
protocol       endpoint on the sim server        LiteLLM model string / api_base
=============  ================================  ==================================
``openai``     ``POST /v1/chat/completions``      ``openai/asyncfc-sim``, ``.../v1``
``anthropic``  ``POST /v1/messages``              ``anthropic/asyncfc-sim``, ``...``
``gemini``     ``POST /v1beta/models/M:stream…``  ``gemini/asyncfc-sim``, ``.../v1beta``
``responses``  ``POST /v1/responses``             ``openai/responses/asyncfc-sim``,
                                                  ``.../v1``
=============  ================================  ==================================

A format translates two ways: the provider's request into the OpenAI-shaped
conversation the engine reads (:class:`Request`), and the engine's neutral
stream events (:mod:`asyncfc_cli.sim.render`) into the provider's stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from asyncfc_cli.sim.plan import PROTOCOLS
from asyncfc_cli.sim.render import StreamEvent

SIM_MODEL = "asyncfc-sim"  # the model name LiteLLM sends to the sim, on every route
NAMES = PROTOCOLS

class BadRequest(Exception):
    """The request does not follow the provider's format: a 400 in that format."""


@dataclass
class Request:
    """A provider's request, read into what the engine understands."""

    messages: list[dict[str, Any]]  # OpenAI chat shape
    tools: list[dict[str, Any]]  # OpenAI function tools
    stream: bool
    model: str
    # What the client asked to see: thinking (Anthropic ``thinking``, Gemini
    # ``includeThoughts``, Responses ``reasoning.summary``), the usage chunk
    # (OpenAI ``stream_options``), tools with ``eager_input_streaming``.
    show_thinking: bool = False
    include_usage: bool = False
    eager_tools: frozenset[str] = frozenset()


class Encoder:
    """Turns one response's neutral events into the provider's stream.

    ``frames`` returns the bytes to send for one event (possibly none: a
    Gemini call goes out whole at its end); ``fault`` the bytes of an error
    in the middle of the stream, in the provider's format; ``body`` the whole
    response for a non-streaming request, from every event seen.
    """

    def __init__(self, request: Request, response_id: str, created: int) -> None:
        self.request = request
        self.response_id = response_id
        self.created = created
        self.events: list[StreamEvent] = []

    def frames(self, event: StreamEvent) -> list[bytes]:
        """The bytes to stream for ``event``."""
        self.events.append(event)
        return self.encode(event)

    def collect(self, event: StreamEvent) -> None:
        """Keep ``event`` for :meth:`body` without encoding it (a non-streaming request)."""
        self.events.append(event)

    def encode(self, event: StreamEvent) -> list[bytes]:
        raise NotImplementedError

    def fault(self, message: str) -> list[bytes]:
        raise NotImplementedError

    def body(self) -> dict[str, Any]:
        raise NotImplementedError


class WireFormat:
    """One provider's API, as the sim server serves it."""

    name = ""
    litellm_prefix = ""  # what goes before the model name in the LiteLLM model string
    base_path = ""  # appended to the server's root URL to make LiteLLM's api_base

    def handles(self, method: str, path: str) -> bool:
        raise NotImplementedError

    def read(self, path: str, body: Any) -> Request:
        raise NotImplementedError

    def encoder(self, request: Request, response_id: str, created: int) -> Encoder:
        raise NotImplementedError

    def error(self, kind: str, message: str) -> tuple[int, dict[str, Any]]:
        """Status and JSON body of an error of a neutral ``kind`` (bad_request, auth, not_found,
        rate_limit, overloaded, server_error) in this format (Anthropic's overloaded is a 529, ...)."""
        raise NotImplementedError

    def get(self, path: str) -> dict[str, Any] | None:
        """A GET route (e.g. a model list), or None for 404."""
        return None

    @property
    def litellm_model(self) -> str:
        return f"{self.litellm_prefix}{SIM_MODEL}"

    def api_base(self, root_url: str) -> str:
        return root_url + self.base_path


def sse(data: dict[str, Any], event: str | None = None, newline: bytes = b"\n") -> bytes:
    """One server-sent event."""
    head = b"event: " + event.encode() + newline if event else b""
    return head + b"data: " + json.dumps(data, ensure_ascii=False).encode() + newline + newline


def openai_tool(name: str, description: str | None, parameters: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, "parameters": parameters or {"type": "object", "properties": {}}}
    if description:
        function["description"] = description
    return {"type": "function", "function": function}


def text_of(content: Any) -> str:
    """The text of a content that is a string or a list of typed text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return str(content)


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise BadRequest(message)


def get_format(name: str) -> WireFormat:
    """The wire format called ``name`` (one of :data:`NAMES`)."""
    if name == "openai":
        from .openai import OpenAIChat

        return OpenAIChat()
    if name == "anthropic":
        from .anthropic import AnthropicMessages

        return AnthropicMessages()
    if name == "gemini":
        from .gemini import GeminiGenerateContent

        return GeminiGenerateContent()
    if name == "responses":
        from .responses import OpenAIResponses

        return OpenAIResponses()
    raise ValueError(f"unknown protocol {name!r}; one of {', '.join(NAMES)}")
