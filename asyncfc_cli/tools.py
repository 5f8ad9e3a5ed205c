"""Tool registry: turn ``[tools.NAME]`` tables into callable, schema-bearing tools.

Two kinds of tool exist, both declared in agents.toml:

* ``python = "module:function"``: an ordinary callable, sync or async,
  imported as is. Its JSON schema comes from its signature and docstring
  through pydantic, and the same pydantic model validates the model's
  arguments, so the schema the model sees and the checks it meets never drift.
* ``command = [...]``: an argv run without a shell. ``"{param}"``
  placeholders are filled per call, each value landing inside exactly one
  argv element, so no argument can inject options or shell syntax beyond the
  element the author put it in.

``Tool.invoke`` never enforces ``timeout`` (the executor owns time through
trio cancel scopes) but always honours cancellation: async tools are
cancelled, sync tools are abandoned in their worker thread, and commands are
killed with their whole process group before ``invoke`` lets ``Cancelled``
out.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import json
import math
import os
import re
import shutil
import signal
import sys
import threading
import typing
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Awaitable, Callable, Literal, Mapping, Union

import trio
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PositiveFloat,
    PositiveInt,
    Tag,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticSerializationError, to_jsonable_python

from asyncfc_cli import blocking, processes

__all__ = [
    "ToolError",
    "ToolLoadError",
    "PythonToolConfig",
    "CommandToolConfig",
    "CommandParam",
    "ToolConfig",
    "parse_tool_config",
    "Tool",
    "build_tool",
    "build_tools",
    "build_python_tool",
    "build_command_tool",
    "parse_docstring",
    "parse_template",
]


class ToolError(Exception):
    """A tool call failed; ``message`` is what the model gets to see.

    ``kind`` lets the executor and traces tell failures apart without parsing
    text: "arguments", "exception", "result", "exit", "spawn", "path".
    """

    def __init__(
        self, message: str, *, kind: str = "exception", details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        # Full data behind the short message (e.g. a failed command's output),
        # for traces; the model only sees ``message``.
        self.details = details


class ToolLoadError(Exception):
    """A ``[tools.NAME]`` table cannot become a tool (bad spec, bad import)."""


# --------------------------------------------------------------------------
# argv templates

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_template(element: str) -> list[tuple[str, str]]:
    """Split one argv element into ``("text", s)`` and ``("param", name)`` parts.

    Only ``{identifier}`` is a placeholder; ``{{``/``}}`` are literal braces.
    Anything else with a brace is rejected rather than guessed at, because a
    silently literal ``{path}`` typo would run the command with the wrong
    argument.
    """
    parts: list[tuple[str, str]] = []
    text: list[str] = []
    i = 0
    while i < len(element):
        ch = element[i]
        if element.startswith("{{", i) or element.startswith("}}", i):
            text.append(ch)
            i += 2
            continue
        if ch == "{":
            m = _PLACEHOLDER.match(element, i)
            if not m:
                raise ValueError(
                    f"bad placeholder in {element!r} at position {i}: expected "
                    "'{name}' with name a letter/underscore followed by letters, "
                    "digits or underscores; write '{{' for a literal '{'"
                )
            if text:
                parts.append(("text", "".join(text)))
                text = []
            parts.append(("param", m.group(1)))
            i = m.end()
            continue
        if ch == "}":
            raise ValueError(
                f"unmatched '}}' in {element!r} at position {i}: write '}}}}' "
                "for a literal '}'"
            )
        text.append(ch)
        i += 1
    if text:
        parts.append(("text", "".join(text)))
    return parts


# --------------------------------------------------------------------------
# config models

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_IMPORT_RE = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
    r":[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
)


class _ToolConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    timeout: PositiveFloat | None = None
    ordered: bool = False
    max_concurrency: PositiveInt | None = None


class PythonToolConfig(_ToolConfigBase):
    python: str
    # Most async code in the wild is written for asyncio and would fail under
    # trio; this runs such a coroutine in its own asyncio loop, unmodified.
    async_backend: Literal["trio", "asyncio"] = "trio"

    @field_validator("python")
    @classmethod
    def _check_import_path(cls, v: str) -> str:
        if not _IMPORT_RE.match(v):
            raise ValueError(
                f"{v!r} is not an import path: expected \"package.module:function\", "
                'e.g. "tools.textstats:word_count"'
            )
        return v


def _reject_bool(v: Any) -> Any:
    # JSON true is not the integer 1 to a command line.
    if isinstance(v, bool):
        raise ValueError("expected a number, not a boolean")
    return v


_PARAM_TYPES: dict[str, Any] = {
    "string": str,
    "integer": Annotated[int, BeforeValidator(_reject_bool)],
    "number": Annotated[float, Field(allow_inf_nan=False), BeforeValidator(_reject_bool)],
    "boolean": bool,
}



class CommandParam(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["string", "integer", "number", "boolean"] = "string"
    description: str | None = None
    default: str | int | float | bool | None = None
    path: bool = False

    @model_validator(mode="after")
    def _check(self) -> "CommandParam":
        if self.path and self.type != "string":
            raise ValueError(
                f"path = true needs type = \"string\", not {self.type!r}"
            )
        if "default" in self.model_fields_set:
            if self.default is None:
                raise ValueError(
                    "default must be a value of the param's type; omit it to make "
                    "the param required"
                )
            try:
                self.default = TypeAdapter(_PARAM_TYPES[self.type]).validate_python(
                    self.default
                )
            except ValidationError as exc:
                raise ValueError(
                    f"default {self.default!r} is not a valid {self.type}: "
                    f"{exc.errors()[0]['msg']}"
                ) from None
        return self

    @property
    def required(self) -> bool:
        return "default" not in self.model_fields_set


class CommandToolConfig(_ToolConfigBase):
    command: list[str] = Field(min_length=1)
    description: str  # a command has no docstring to fall back on
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    ok_codes: list[int] = Field(default_factory=lambda: [0], min_length=1)
    max_output: PositiveInt = 65536
    root: str | None = None
    params: dict[str, CommandParam] = Field(default_factory=dict)

    @field_validator("description")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a command tool needs a non-empty description")
        return v

    @model_validator(mode="after")
    def _check_placeholders(self) -> "CommandToolConfig":
        used: list[str] = []
        for index, element in enumerate(self.command):
            parts = parse_template(element)
            names = [v for k, v in parts if k == "param"]
            if index == 0 and names:
                raise ValueError(
                    f"the executable {element!r} cannot contain placeholders: "
                    "letting the model pick the program defeats the point of a "
                    "fixed argv; put the placeholder in a later element"
                )
            used.extend(names)
        for name in used:
            if name not in self.params:
                raise ValueError(
                    f"placeholder {{{name}}} is not a declared param: add "
                    f"[tools.NAME.params] {name} = {{ type = \"string\", "
                    f"description = \"...\" }}, or write {{{{{name}}}}} for literal "
                    "braces"
                )
        for name in self.params:
            if name not in used:
                raise ValueError(
                    f"param {name!r} is declared but never used in command: add "
                    f"\"{{{name}}}\" to an argv element or remove the param"
                )
        if self.root is not None and not any(p.path for p in self.params.values()):
            raise ValueError(
                "root is set but no param has path = true, so it would check "
                "nothing: mark the path params with path = true or drop root"
            )
        return self


def _tool_kind(raw: Any) -> str | None:
    if isinstance(raw, BaseModel):
        return "python" if isinstance(raw, PythonToolConfig) else "command"
    if not isinstance(raw, Mapping):
        return None
    has_python, has_command = "python" in raw, "command" in raw
    if has_python and has_command:
        return "both"
    if has_python:
        return "python"
    if has_command:
        return "command"
    return None


_KIND_MESSAGE = (
    'a tool needs exactly one of python = "module:function" or '
    'command = ["argv", "..."]'
)

ToolConfig = Annotated[
    Union[
        Annotated[PythonToolConfig, Tag("python")],
        Annotated[CommandToolConfig, Tag("command")],
    ],
    Discriminator(
        _tool_kind,
        custom_error_type="tool_kind",
        custom_error_message=_KIND_MESSAGE,
    ),
]
"""Pydantic type for one ``[tools.NAME]`` table, usable inside other models."""


def _format_validation_error(exc: ValidationError) -> str:
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


_PYTHON_KEYS = sorted(PythonToolConfig.model_fields)
_COMMAND_KEYS = sorted(CommandToolConfig.model_fields)


def parse_tool_config(
    raw: Mapping[str, Any], name: str = "?"
) -> PythonToolConfig | CommandToolConfig:
    """Validate one ``[tools.NAME]`` table; raise ``ToolLoadError`` on problems."""
    where = f"tool {name!r}"
    kind = _tool_kind(raw)
    if kind is None:
        raise ToolLoadError(
            f"{where}: {_KIND_MESSAGE} (got keys: {sorted(raw) if isinstance(raw, Mapping) else type(raw).__name__})"
        )
    if kind == "both":
        raise ToolLoadError(
            f"{where}: sets both python and command; {_KIND_MESSAGE}. Split it "
            "into two tools if you need both"
        )
    model = PythonToolConfig if kind == "python" else CommandToolConfig
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        valid = _PYTHON_KEYS if kind == "python" else _COMMAND_KEYS
        raise ToolLoadError(
            f"{where}: {_format_validation_error(exc)} (valid keys for a {kind} "
            f"tool: {', '.join(valid)})"
        ) from None


# --------------------------------------------------------------------------
# the tool


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
    source: str = ""  # import path or argv, for messages and traces

    async def invoke(self, arguments: Mapping[str, Any] | None) -> Any:
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, Mapping):
            raise ToolError(
                f"arguments for {self.name!r} must be a JSON object, got "
                f"{type(arguments).__name__}",
                kind="arguments",
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


def build_tool(name: str, raw_config: Mapping[str, Any], base_dir: Path) -> Tool:
    """Build a tool from its ``[tools.NAME]`` table; ``base_dir`` is the agents.toml dir."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ToolLoadError(
            f"tool name {name!r} is not valid: use 1-64 letters, digits, '_' or '-' "
            "(what chat-completions APIs accept as a function name)"
        )
    cfg = parse_tool_config(raw_config, name)
    if isinstance(cfg, PythonToolConfig):
        return build_python_tool(name, cfg, Path(base_dir))
    return build_command_tool(name, cfg, Path(base_dir))


def build_tools(raw_tools: Mapping[str, Mapping[str, Any]], base_dir: Path) -> dict[str, Tool]:
    """Build every tool; report all broken tables at once, not just the first."""
    tools: dict[str, Tool] = {}
    problems: list[str] = []
    for name, raw in raw_tools.items():
        try:
            tools[name] = build_tool(name, raw, base_dir)
        except ToolLoadError as exc:
            problems.append(str(exc))
    if problems:
        raise ToolLoadError("\n".join(problems))
    return tools


# --------------------------------------------------------------------------
# docstrings

_GOOGLE_ARGS = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters):\s*$"
)
_GOOGLE_ANY_SECTION = re.compile(r"^[A-Z][A-Za-z ]*:\s*$")
_GOOGLE_ENTRY = re.compile(r"^\**([A-Za-z_][A-Za-z0-9_]*)\s*(\([^)]*\))?\s*:\s*(.*)$")
_REST_PARAM = re.compile(
    r"^:(?:param|parameter|arg|argument|key|keyword)\s+(?:[^:]*\s)?\**([A-Za-z_][A-Za-z0-9_]*)\s*:\s*(.*)$"
)
_NUMPY_ENTRY = re.compile(r"^\**([A-Za-z_][A-Za-z0-9_]*)\s*(?::.*)?$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _is_numpy_header(lines: list[str], i: int) -> bool:
    return (
        i + 1 < len(lines)
        and lines[i].strip() != ""
        and re.match(r"^\s*-{3,}\s*$", lines[i + 1]) is not None
    )


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Return (summary, {param: description}) from a Google, reST or numpy docstring."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()

    summary: list[str] = []
    for i, line in enumerate(lines):
        s = line.strip()
        if (
            not s
            or _GOOGLE_ANY_SECTION.match(s)
            or s.startswith(":")
            or _is_numpy_header(lines, i)
        ):
            break
        summary.append(s)

    params: dict[str, str] = {}

    # Google: entries one level below an "Args:" header, continuations deeper.
    i = 0
    while i < len(lines):
        if _GOOGLE_ARGS.match(lines[i].strip()):
            header_indent = _indent(lines[i])
            entry_indent: int | None = None
            current: str | None = None
            i += 1
            while i < len(lines):
                line = lines[i]
                if not line.strip():
                    i += 1
                    continue
                ind = _indent(line)
                if ind <= header_indent:
                    break
                if entry_indent is None:
                    entry_indent = ind
                m = _GOOGLE_ENTRY.match(line.strip()) if ind == entry_indent else None
                if m:
                    current = m.group(1)
                    params[current] = m.group(3).strip()
                elif current is not None:
                    params[current] = (params[current] + " " + line.strip()).strip()
                i += 1
            continue
        i += 1

    # reST: ":param x: text" with indented continuation lines.
    current = None
    for line in lines:
        s = line.strip()
        m = _REST_PARAM.match(s)
        if m:
            current = m.group(1)
            params[current] = m.group(2).strip()
        elif s.startswith(":") or not s or _indent(line) == 0:
            current = None
        elif current is not None:
            params[current] = (params[current] + " " + s).strip()

    # numpy: "Parameters\n----------\nx : int\n    text".
    i = 0
    while i < len(lines):
        if lines[i].strip() in ("Parameters", "Other Parameters") and _is_numpy_header(lines, i):
            base = _indent(lines[i])
            current = None
            i += 2
            while i < len(lines):
                line = lines[i]
                if _is_numpy_header(lines, i):
                    break
                if line.strip() and _indent(line) == base:
                    m = _NUMPY_ENTRY.match(line.strip())
                    current = m.group(1) if m else None
                    if current:
                        params.setdefault(current, "")
                elif line.strip() and current is not None:
                    params[current] = (params[current] + " " + line.strip()).strip()
                i += 1
            continue
        i += 1

    return " ".join(summary), params


# --------------------------------------------------------------------------
# python tools


class _NoTitles(GenerateJsonSchema):
    # Titles just repeat the property name and every schema token costs
    # decode/prefill time on every request.
    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, schema_generator=_NoTitles)
    schema.pop("title", None)
    schema.setdefault("properties", {})
    return schema


def _import_callable(name: str, spec: str, base_dir: Path) -> Callable[..., Any]:
    module_name, _, attr_path = spec.partition(":")
    fix_import = (
        f"check that {module_name.replace('.', '/')}.py (or a package of that name) "
        f"exists under {base_dir} (the agents.toml directory) or is installed, and "
        "that it imports cleanly"
    )
    base = str(base_dir)
    sys.path.insert(0, base)
    # A module file created after an earlier import in the same process would
    # otherwise be missed by the path finders' directory caches.
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # SystemExit/KeyboardInterrupt at import: still a spec error
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ToolLoadError(
            f"tool {name!r}: cannot import python = {spec!r}: "
            f"{type(exc).__name__}: {exc}. Fix: {fix_import}"
        ) from exc
    finally:
        try:
            sys.path.remove(base)
        except ValueError:
            pass
    _check_not_shadowed(name, spec, module, base_dir)

    obj: Any = module
    walked = module_name
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            owner = getattr(obj, "__name__", None)
            available = sorted(
                n
                for n, v in getattr(obj, "__dict__", {}).items()
                if callable(v)
                and not n.startswith("_")
                # Skip what the module merely imported.
                and getattr(v, "__module__", owner) == owner
            )
            raise ToolLoadError(
                f"tool {name!r}: python = {spec!r}: {walked} has no attribute "
                f"{attr!r}. Fix: use one of {', '.join(available) or '(no public callables)'}"
            )
        obj = getattr(obj, attr)
        walked = f"{walked}.{attr}"
    if not callable(obj):
        raise ToolLoadError(
            f"tool {name!r}: python = {spec!r} is a {type(obj).__name__}, not a "
            "callable. Fix: point it at a function"
        )
    return obj


def _check_not_shadowed(name: str, spec: str, module: Any, base_dir: Path) -> None:
    # sys.modules caches by name: a second agents.toml whose own tools/ package
    # has the same name would silently get the first one's code.
    rel = Path(*module.__name__.split("."))
    candidates = [base_dir / rel.with_suffix(".py"), base_dir / rel / "__init__.py"]
    local = next((c for c in candidates if c.is_file()), None)
    loaded = getattr(module, "__file__", None)
    if local is not None and loaded and Path(loaded).resolve() != local.resolve():
        raise ToolLoadError(
            f"tool {name!r}: python = {spec!r}: module {module.__name__!r} was already "
            f"imported from {loaded}, so {local} is not the code that would run. "
            "Fix: give the local module a distinct name"
        )


def _is_async_callable(func: Any) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)
    )


def _annotated_target(func: Any) -> Any:
    while isinstance(func, functools.partial):
        func = func.func
    if inspect.isfunction(func) or inspect.ismethod(func) or inspect.isbuiltin(func):
        return func
    if inspect.isclass(func):
        return func.__init__
    return getattr(func, "__call__", func)


@dataclass
class _Signature:
    model: type[BaseModel]
    positional_only: set[str]
    schema: dict[str, Any]
    summary: str


def _describe_signature(name: str, func: Callable[..., Any], spec: str) -> _Signature:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise ToolLoadError(
            f"tool {name!r}: cannot read the signature of {spec}: {exc}. Fix: "
            "wrap it in a plain def with named parameters"
        ) from None
    try:
        hints = typing.get_type_hints(_annotated_target(func), include_extras=True)
    except Exception as exc:
        raise ToolLoadError(
            f"tool {name!r}: cannot resolve the type annotations of {spec}: "
            f"{type(exc).__name__}: {exc}. Fix: make every annotation importable "
            "in that module"
        ) from None

    summary, param_docs = parse_docstring(inspect.getdoc(func))
    fields: dict[str, Any] = {}
    positional_only: set[str] = set()
    for index, (pname, param) in enumerate(sig.parameters.items()):
        # The model fills named parameters from a JSON object; it cannot know
        # what *args or **kwargs expect, so such a tool would be registered
        # with parameters that do not describe it and its calls would fail.
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            star = "*" if param.kind == param.VAR_POSITIONAL else "**"
            raise ToolLoadError(
                f"tool {name!r}: {spec} takes {star}{pname}, which a model's JSON "
                "arguments cannot fill. Fix: wrap it in a def with named, annotated "
                "parameters that calls it"
            )
        if param.kind == param.POSITIONAL_ONLY:
            positional_only.add(pname)
        annotation = hints.get(pname, Any)
        try:
            TypeAdapter(annotation).json_schema()
        except Exception as exc:
            raise ToolLoadError(
                f"tool {name!r}: parameter {pname!r} of {spec} has type "
                f"{annotation!r}, which has no JSON schema ({type(exc).__name__}). "
                "Fix: annotate it with a JSON-friendly type (str, int, float, bool, "
                "list, dict, Literal, a pydantic model)"
            ) from None
        default = ... if param.default is param.empty else param.default
        # Internal field names dodge pydantic's rules about leading
        # underscores and BaseModel attribute names; the alias is the real name.
        fields[f"p{index}"] = (
            annotation,
            Field(default, alias=pname, description=param_docs.get(pname) or None),
        )
    try:
        model = create_model(  # type: ignore[call-overload]
            f"{name}_arguments",
            __config__=ConfigDict(extra="forbid"),
            **fields,
        )
        schema = _schema_of(model)
    except Exception as exc:
        raise ToolLoadError(
            f"tool {name!r}: cannot derive a schema for {spec}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    return _Signature(model, positional_only, schema, summary)


def _argument_error(tool: str, exc: ValidationError, schema: dict[str, Any]) -> ToolError:
    props = schema.get("properties", {})
    problems = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        arg = str(loc[0]) if loc else "?"
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])
        expected = _expected(props.get(arg, {}))
        if err["type"] == "extra_forbidden" and len(loc) == 1:
            problems.append(
                f"unknown argument {arg!r} (valid: {', '.join(props) or 'none'})"
            )
        elif err["type"] == "missing" and len(loc) == 1:
            problems.append(f"missing required argument {arg!r} (expected {expected})")
        else:
            got = json.dumps(err.get("input"), default=repr)[:80]
            problems.append(
                f"argument {arg!r}{where}: {err['msg']} (got {got}; expected {expected})"
            )
    return ToolError(f"invalid arguments for {tool!r}: " + "; ".join(problems), kind="arguments")


def _expected(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return "one of " + ", ".join(json.dumps(v) for v in prop["enum"])
    if "type" in prop:
        t = prop["type"]
        if t == "array" and isinstance(prop.get("items"), dict):
            return f"array of {_expected(prop['items'])}"
        return t if isinstance(t, str) else " or ".join(t)
    if "anyOf" in prop:
        return " or ".join(_expected(p) for p in prop["anyOf"])
    if "$ref" in prop:
        return "an object (see schema)"
    return "any JSON value"


def _to_json(tool: str, value: Any) -> Any:
    try:
        plain = to_jsonable_python(value)
        json.dumps(plain, allow_nan=True)
    except (PydanticSerializationError, TypeError, ValueError) as exc:
        raise ToolError(
            f"tool {tool!r} returned a {type(value).__name__} that is not "
            f"JSON-serialisable: {exc}",
            kind="result",
        ) from None
    return plain


def _failure(tool: str, exc: BaseException, asyncio_hint: bool = False) -> ToolError:
    text = str(exc)
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if asyncio_hint and (
        "asyncio" in text or "no running event loop" in text or "no current event loop" in text
    ):
        message += (
            ' (this looks like asyncio code: set async_backend = "asyncio" on '
            "the tool so it runs in its own asyncio loop)"
        )
    err = ToolError(message, kind="exception")
    err.__cause__ = exc
    return err


_LIVE_THREADS: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("asyncfc_tool_threads")
_LIVE_THREAD_TOKENS = 64
# trio's own limiter for these threads never blocks: the token that counts is
# taken and given back around the call (see _in_thread).
_NO_LIMIT: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("asyncfc_tool_threads_unlimited")


def _run_limiter(var: trio.lowlevel.RunVar, tokens: float) -> trio.CapacityLimiter:
    try:
        return var.get()
    except LookupError:
        limiter = trio.CapacityLimiter(tokens)
        var.set(limiter)
        return limiter


async def _in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a worker thread; abandon the thread if cancelled.

    At most 64 such threads *running for a live call* at once. A thread
    abandoned on timeout or cancellation gives its token back at once, even
    though it runs on until its function returns: trio would keep the token
    until then, and 64 hung tools would starve every later sync tool.
    """
    async with _run_limiter(_LIVE_THREADS, _LIVE_THREAD_TOKENS):
        return await trio.to_thread.run_sync(
            fn, abandon_on_cancel=True, limiter=_run_limiter(_NO_LIMIT, math.inf)
        )


async def _run_in_asyncio(func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    lock = threading.Lock()
    state: dict[str, Any] = {"cancelled": False}

    def run() -> Any:
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(func(*args, **kwargs))
            with lock:
                state["loop"], state["task"] = loop, task
                if state["cancelled"]:
                    task.cancel()
            return loop.run_until_complete(task)
        finally:
            with lock:
                state.pop("loop", None)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    try:
        return await _in_thread(run)
    except trio.Cancelled:
        # The thread is abandoned either way; cancelling the task lets the
        # coroutine's own cleanup run instead of finishing work nobody wants.
        with lock:
            state["cancelled"] = True
            loop = state.get("loop")
            if loop is not None:
                try:
                    loop.call_soon_threadsafe(state["task"].cancel)
                except RuntimeError:
                    pass
        raise


def build_python_tool(name: str, cfg: PythonToolConfig, base_dir: Path) -> Tool:
    func = _import_callable(name, cfg.python, Path(base_dir))
    sig = _describe_signature(name, func, cfg.python)
    model, schema, positional_only = sig.model, sig.schema, sig.positional_only
    is_async = _is_async_callable(func)
    backend = cfg.async_backend
    field_names = {f: info.alias for f, info in model.model_fields.items()}

    async def runner(arguments: dict[str, Any]) -> Any:
        try:
            validated = model.model_validate(arguments)
        except ValidationError as exc:
            raise _argument_error(name, exc, schema) from None
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        # Only what the caller sent: omitted arguments take the function's
        # own defaults, not a copy pydantic made at load time.
        for internal in model.model_fields:
            if internal not in validated.model_fields_set:
                continue
            real = field_names[internal]
            value = getattr(validated, internal)
            if real in positional_only:
                args.append(value)
            else:
                kwargs[real] = value
        try:
            if is_async and backend == "asyncio":
                result = await _run_in_asyncio(func, args, kwargs)
            elif is_async:
                handle = blocking.enter(name)
                try:
                    result = await func(*args, **kwargs)
                finally:
                    blocked = blocking.leave(handle)
                _check_not_blocked(tool, blocked)
            else:
                result = await _in_thread(lambda: func(*args, **kwargs))
                if inspect.isawaitable(result):  # a sync wrapper handing back a coroutine
                    result = await result
        except (Exception, SystemExit) as exc:
            raise _failure(name, exc, asyncio_hint=is_async and backend == "trio") from exc
        return _to_json(name, result)

    tool = Tool(
        name=name,
        description=cfg.description if cfg.description is not None else sig.summary,
        parameters=schema,
        kind="python",
        runner=runner,
        ordered=cfg.ordered,
        timeout=cfg.timeout,
        max_concurrency=cfg.max_concurrency,
        source=cfg.python,
    )
    return tool


def _check_not_blocked(tool: Tool, blocked: float) -> None:
    # The executor's timeout is a cancel scope; a tool that never gives the
    # loop back cannot be cancelled, so its result arrives however late. When
    # the blocks alone reach its timeout, the model gets what the timeout
    # would have given it, with the reason.
    if blocked and tool.timeout is not None and blocked >= tool.timeout:
        raise ToolError(
            f"tool {tool.name!r} blocked the event loop for {blocked:.1f}s, past its "
            f"{tool.timeout:g}s timeout, which could not stop it (an async def making a "
            "blocking call); its result was discarded",
            kind="blocking",
        )


# --------------------------------------------------------------------------
# command tools


_INHERITED_ENV = ("PATH", "HOME", "LANG")
_PIPE_GRACE = 1.0  # seconds to drain pipes after exit when an escaped child holds them
_STDERR_TAIL = 2000


def _render(value: Any, type_: str) -> str:
    if type_ == "string":
        return value
    if type_ == "number" and float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return json.dumps(value)


@dataclass
class _Capture:
    limit: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def feed(self, chunk: bytes) -> None:
        # Keep draining past the limit: a child blocked on a full pipe would
        # never exit.
        kept = chunk[: self.limit - len(self.data)]
        self.data += kept
        self.dropped += len(chunk) - len(kept)

    def text(self) -> str:
        out = self.data.decode("utf-8", errors="replace")
        if self.dropped:
            out += f"\n[... {self.dropped} bytes cut]"
        return out


async def _drain(stream: trio.abc.ReceiveStream, capture: _Capture) -> None:
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return
        capture.feed(chunk)


async def _run_process(
    argv: list[str], cwd: str, env: dict[str, str], max_output: int
) -> tuple[int, str, str]:
    try:
        child = processes.spawn(argv, cwd, env)
    except FileNotFoundError:
        if not os.path.isdir(cwd):
            raise ToolError(f"working directory {cwd!r} no longer exists", kind="spawn") from None
        # Not the PATH itself: it is long, says nothing to the model, and may
        # name things about the machine that are nobody's business.
        raise ToolError(
            f"executable {argv[0]!r} not found (it is not on the tool's PATH); "
            "the tool cannot run on this machine",
            kind="spawn",
        ) from None
    except PermissionError:
        raise ToolError(f"executable {argv[0]!r} is not executable (permission denied)", kind="spawn") from None
    except OSError as exc:
        raise ToolError(f"cannot start {argv[0]!r}: {type(exc).__name__}: {exc}", kind="spawn") from None

    out, err = _Capture(max_output), _Capture(max_output)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, child.stdout, out)
            nursery.start_soon(_drain, child.stderr, err)
            await child.wait()
            # Leftover background children would keep the pipes open (and
            # outlive the run); the tool is over, so they go too.
            processes.kill_group(child.pid)
            nursery.cancel_scope.deadline = trio.current_time() + _PIPE_GRACE
    except BaseException:
        processes.kill_group(child.pid)
        with trio.CancelScope(shield=True):
            await child.wait()
        raise
    finally:
        # Whatever left the group (setsid, a double fork) still carries the
        # call's token: it goes too.
        processes.sweep(child.token)
        with trio.CancelScope(shield=True):
            for stream in (child.stdout, child.stderr):
                await stream.aclose()
    return child.popen.returncode, out.text(), err.text()


def _exit_description(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _inside(path: str, root: str) -> bool:
    # Component-wise, never a string prefix: "/x/rootkit" is not inside "/x/root".
    return os.path.commonpath([path, root]) == root


def _confine_path(pname: str, text: str, cwd: str, root: str | None) -> str:
    """The text to hand the program for a ``path = true`` value, or a ToolError.

    A value starting with ``-`` is refused outright (with or without a root):
    most programs read it as an option whatever comes before it, and ``--``
    does not stop all of them (pytest takes ``--junitxml=...`` after it).

    With a root, the value is resolved here (following every symlink, and
    ``/proc/self/...`` in this process) and what the program receives is that
    resolved path, relative to the tool's resolved cwd: the program opens what
    was checked, not a string it would resolve again in another process.
    """
    if text == "":
        raise ToolError(
            f"argument {pname!r}: the path is empty; write '.' for the working directory",
            kind="path",
        )
    if text.startswith("-"):
        raise ToolError(
            f"argument {pname!r}: path {text!r} starts with '-', so the program would "
            f"read it as an option; to name a file that starts with '-', write "
            f"'./{text}'",
            kind="path",
        )
    if root is None:
        return text
    real = os.path.realpath(os.path.join(cwd, text))
    if not _inside(real, root):
        raise ToolError(
            f"argument {pname!r}: path {text!r} resolves to {real!r}, "
            f"outside the allowed root {root!r}; use a path inside it",
            kind="path",
        )
    relative = os.path.relpath(real, cwd)
    # "./-x" resolves to "-x": hand it back with the prefix that keeps it a name.
    return "./" + relative if relative.startswith("-") else relative


def _check_executable(name: str, executable: str, written: str, env: dict[str, str], base_dir: Path) -> None:
    # At load time, so `validate` and `run` both say it before anything runs,
    # rather than every call failing in front of the model.
    if "/" in executable:
        if not os.path.isfile(executable):
            raise ToolLoadError(
                f"tool {name!r}: program {written!r} does not exist ({executable}). "
                f"Fix: give a path to an executable file, relative to {base_dir} or absolute"
            )
        if not os.access(executable, os.X_OK):
            raise ToolLoadError(
                f"tool {name!r}: program {written!r} is not executable ({executable}). "
                f"Fix: chmod +x {executable}, or run it through its interpreter"
            )
        return
    if shutil.which(executable, path=env.get("PATH", os.defpath)) is None:
        where = "the PATH set in its env" if "PATH" in env and env["PATH"] != os.environ.get("PATH") else "PATH"
        raise ToolLoadError(
            f"tool {name!r}: program {written!r} is not found on {where}. "
            "Fix: install it, or give its absolute path"
        )


def build_command_tool(name: str, cfg: CommandToolConfig, base_dir: Path) -> Tool:
    base_dir = Path(base_dir).resolve()
    cwd = (base_dir / cfg.cwd).resolve() if cfg.cwd else base_dir
    if not cwd.is_dir():
        raise ToolLoadError(
            f"tool {name!r}: cwd {str(cwd)!r} is not a directory. Fix: set cwd to an "
            f"existing directory, relative to {base_dir}"
        )
    root: str | None = None
    if cfg.root is not None:
        root = os.path.realpath(base_dir / cfg.root)
        if not os.path.isdir(root):
            raise ToolLoadError(
                f"tool {name!r}: root {root!r} is not a directory. Fix: set root to "
                f"an existing directory, relative to {base_dir}"
            )

    template = [parse_template(e) for e in cfg.command]
    executable = cfg.command[0].replace("{{", "{").replace("}}", "}")
    if "/" in executable and not os.path.isabs(executable):
        # Like cwd and root: relative to agents.toml, not to wherever the CLI runs.
        executable = str(base_dir / executable)

    env = {k: os.environ[k] for k in _INHERITED_ENV if k in os.environ}
    env.update(cfg.env)
    _check_executable(name, executable, cfg.command[0], env, base_dir)

    fields: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for index, (pname, param) in enumerate(cfg.params.items()):
        prop: dict[str, Any] = {"type": param.type}
        if param.description:
            prop["description"] = param.description
        if param.required:
            required.append(pname)
            default: Any = ...
        else:
            prop["default"] = param.default
            default = param.default
        properties[pname] = prop
        fields[f"p{index}"] = (_PARAM_TYPES[param.type], Field(default, alias=pname))
    model = create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    aliases = {info.alias: f for f, info in model.model_fields.items()}
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    ok_codes = set(cfg.ok_codes)

    async def runner(arguments: dict[str, Any]) -> Any:
        try:
            validated = model.model_validate(arguments)
        except ValidationError as exc:
            raise _argument_error(name, exc, schema) from None
        values: dict[str, str] = {}
        for pname, param in cfg.params.items():
            value = getattr(validated, aliases[pname])
            text = _render(value, param.type)
            if "\x00" in text:
                raise ToolError(
                    f"invalid arguments for {name!r}: argument {pname!r} contains a NUL "
                    "character, which cannot be passed on a command line",
                    kind="arguments",
                )
            if param.path:
                text = _confine_path(pname, text, str(cwd), root)
            values[pname] = text
        argv = [
            "".join(v if k == "text" else values[v] for k, v in parts) for parts in template
        ]
        argv[0] = executable
        code, stdout, stderr = await _run_process(argv, str(cwd), env, cfg.max_output)
        if code not in ok_codes:
            tail = (stderr or stdout)[-_STDERR_TAIL:].strip()
            raise ToolError(
                f"command {_exit_description(code)} (ok codes: {sorted(ok_codes)}); "
                f"{'stderr' if stderr else 'stdout'} tail: {tail or '(empty)'}",
                kind="exit",
                details={"exit_code": code, "stdout": stdout, "stderr": stderr},
            )
        return {"exit_code": code, "stdout": stdout, "stderr": stderr}

    return Tool(
        name=name,
        description=cfg.description,
        parameters=schema,
        kind="command",
        runner=runner,
        ordered=cfg.ordered,
        timeout=cfg.timeout,
        max_concurrency=cfg.max_concurrency,
        source=" ".join(cfg.command),
    )


# --------------------------------------------------------------------------
# the run's lifecycle


@asynccontextmanager
async def open_tools(tools: Mapping[str, Tool], trace: Any) -> AsyncIterator[dict[str, Tool]]:
    """What the tools need for one run, opened inside its trio run and closed
    when it ends, however it ends: the process guard for command tools, the
    loop watch for async Python tools."""
    async with AsyncExitStack() as stack:
        kinds = {tool.kind for tool in tools.values()}
        if "command" in kinds:
            await stack.enter_async_context(processes.guard())
        if "python" in kinds:
            await stack.enter_async_context(blocking.watch(trace))
        yield dict(tools)
