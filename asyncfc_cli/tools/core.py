"""The shared core of every tool kind: the Tool record, its errors, the
base of every ``[tools.NAME]`` config, schema helpers, and the ToolSource
seam each kind implements.

A *tool source* is one ``[tools.NAME]`` table turned into tools. A python or
command table brings one tool, known when the spec is loaded; an mcp table
brings the tools its server lists, known only once the server runs. Every
source is opened inside the run and closed when the run ends, however it ends
(:func:`asyncfc_cli.tools.open_tools`); a kind may also hold one resource for
the whole run (the process guard of command tools), see :class:`ToolKind`.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Mapping

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, ValidationError
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticSerializationError, to_jsonable_python


class ToolError(Exception):
    """A tool call failed; ``message`` is what the model gets to see."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ToolLoadError(Exception):
    """A ``[tools.NAME]`` table cannot become a tool (bad spec, bad import)."""



NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ToolConfigBase(BaseModel):
    """Settings every tool kind has."""

    model_config = ConfigDict(extra="forbid")

    # The descriptions are the fix lines of a wrong value (asyncfc_cli/spec/errors.py).
    description: str | None = Field(None, description="what the model is told the tool does")
    timeout: PositiveFloat | None = Field(None, description="seconds a call may take (default: the agent's "
                                          "tool_timeout)")
    ordered: bool = Field(False, description="calls of this tool run one after another, in the order made")
    max_concurrency: PositiveInt | None = Field(None, description="calls of this tool running at once")
    # Seconds a call usually takes: what async mode assumes before it has
    # measured the tool itself (asyncfc_cli/latency.py).
    expected_latency: NonNegativeFloat | None = Field(None, description="seconds a call usually takes")


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(lines)


@dataclass
class Tool:
    """A callable tool plus what the model needs to know to call it.

    ``runner`` receives the argument dict and does the work; it is a field so
    the executor can build its own tools (e.g. ``wait``) the same way.
    ``kind`` is "python" or "command" for tools built here.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    kind: str
    runner: Callable[[dict[str, Any]], Awaitable[Any]] = field(repr=False, compare=False)
    ordered: bool = False
    timeout: float | None = None
    max_concurrency: int | None = None
    expected_latency: float | None = None
    source: str = ""  # import path or argv, for messages and traces

    async def invoke(self, arguments: Mapping[str, Any] | None) -> Any:
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, Mapping):
            raise ToolError(
                f"arguments for {self.name!r} must be a JSON object, got "
                f"{type(arguments).__name__}",
            )
        return await self.runner(dict(arguments))

    def openai_schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


class _NoTitles(GenerateJsonSchema):
    # Titles just repeat the property name and every schema token costs
    # decode/prefill time on every request.
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, schema_generator=_NoTitles)
    schema.pop("title", None)
    schema.setdefault("properties", {})
    return schema


def argument_error(tool: str, exc: ValidationError, schema: dict[str, Any]) -> ToolError:
    props = schema.get("properties", {})
    problems = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        arg = str(loc[0]) if loc else "?"
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
        wanted = expected(props.get(arg, {}))
        if err["type"] == "extra_forbidden" and len(loc) == 1:
            problems.append(
                f"unknown argument {arg!r} (valid: {', '.join(props) or 'none'})"
            )
        elif err["type"] == "missing" and len(loc) == 1:
            problems.append(f"missing required argument {arg!r} (expected {wanted})")
        else:
            got = json.dumps(err.get("input"), default=repr)[:80]
            problems.append(
                f"argument {arg!r}{where}: {err['msg']} (got {got}; expected {wanted})"
            )
    return ToolError(f"invalid arguments for {tool!r}: " + "; ".join(problems))


def expected(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return "one of " + ", ".join(json.dumps(v) for v in prop["enum"])
    if "type" in prop:
        t = prop["type"]
        if t == "array" and isinstance(prop.get("items"), dict):
            return f"array of {expected(prop['items'])}"
        return t if isinstance(t, str) else " or ".join(t)
    if "anyOf" in prop:
        return " or ".join(expected(p) for p in prop["anyOf"])
    if "$ref" in prop:
        return "an object (see schema)"
    return "any JSON value"


def to_json(tool: str, value: Any) -> Any:
    try:
        plain = to_jsonable_python(value)
        json.dumps(plain, allow_nan=True)
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise ToolError(
            f"tool {tool!r} returned a {type(value).__name__} that is not "
            f"JSON-serialisable: {exc}",
        ) from None
    return plain




# --------------------------------------------------------------------------
# the tool-source seam


# The call the current task is running, noted from its tool_begin event (the
# executor emits it in the task that then invokes the tool), so a tool can put
# its own events (progress, blocking) on the right call in the trace.
CURRENT_CALL: ContextVar[str | None] = ContextVar("asyncfc_current_call", default=None)


def note_current_call(event: dict[str, Any]) -> None:
    """A trace sink that keeps :data:`CURRENT_CALL` up to date."""
    if event.get("type") == "tool_begin":
        CURRENT_CALL.set(event.get("call_id"))


@dataclass
class RunContext:
    """What a source is given when it opens for a run."""

    trace: Any  # asyncfc_cli.trace.Trace: emit() and sinks


class ToolSource:
    """One ``[tools.NAME]`` table: the tools it brings and what they need for a run."""

    kind: str = ""

    def __init__(self, name: str) -> None:
        self.name = name
        self.default_timeout: float | None = None
        # Where the user wrote the source, for errors: the key an error is at
        # ("tools.NAME", or "--mcp" for a server given on the command line),
        # how a message names the source, and where a setting of it is changed.
        self.key = f"tools.{name}"
        self.label = f"tool {name!r}"
        self.settings = f"[tools.{name}]"

    def fix_setting(self, what: str) -> str:
        """How to change a setting of this source (``what``: "raise max_output")."""
        return f"{what} in {self.settings}"

    def load_error(self, text: str) -> "ToolLoadError":
        """A ToolLoadError about this source (``text`` without the source's label), at its key."""
        error = ToolLoadError(f"{self.label}: {text}")
        error.source, error.key = self.name, self.key  # type: ignore[attr-defined]  (spec.tool_spec_error)
        return error

    def static_tools(self) -> list[Tool]:
        """Tools known without opening the source (none for a server's tools)."""
        return []

    def set_default_timeout(self, seconds: float | None) -> None:
        """The agent's ``tool_timeout``, for tools without their own."""
        self.default_timeout = seconds
        for tool in self.static_tools():
            if tool.timeout is None:
                tool.timeout = seconds

    def secrets(self) -> list[str]:
        """Strings of this source's config that must never reach a trace or log."""
        return []

    def open(self, run: RunContext) -> AbstractAsyncContextManager[list[Tool]]:
        """Open whatever the tools need for this run; yields the tools."""
        return _just(self.static_tools())

    async def check(self) -> str | None:
        """A deeper check for ``asyncfc validate`` (e.g. start a server); a summary or None."""
        return None


@asynccontextmanager
async def _just(tools: list[Tool]) -> AsyncIterator[list[Tool]]:
    yield tools


class StaticSource(ToolSource):
    """A source of one tool built when the spec is loaded (python, command)."""

    def __init__(self, tool: Tool) -> None:
        super().__init__(tool.name)
        self.kind = tool.kind
        self.tool = tool

    def static_tools(self) -> list[Tool]:
        return [self.tool]


@dataclass(frozen=True)
class ToolKind:
    """How one kind of ``[tools.NAME]`` table becomes a tool source.

    ``key`` is the table key that names the kind (``python = ...``,
    ``command = [...]``, ``mcp = {...}``); ``build`` turns the validated
    config into a source; ``run_resources``, if set, is opened once per run
    that uses the kind, before its sources, and closed after them.
    """

    name: str
    key: str
    config: type[ToolConfigBase]
    build: Callable[[str, Any, Path], ToolSource]
    run_resources: Callable[[RunContext], AbstractAsyncContextManager[Any]] | None = None
