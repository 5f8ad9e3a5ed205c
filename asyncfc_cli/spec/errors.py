"""SpecError, and pydantic's validation errors turned into one (file, key, fix)."""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError


class SpecError(Exception):
    """A spec problem: ``file: key: message`` plus how to fix it."""

    def __init__(self, file: Path | str | None, key: str, message: str, fix: str = "") -> None:
        self.file, self.key, self.message, self.fix = file, key, message, fix
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(str(p) for p in (self.file, self.key) if p)
        text = f"{where}: {self.message}" if where else self.message
        return f"{text}\n  fix: {self.fix}" if self.fix else text


def validate_as(model: type[BaseModel], data: dict[str, Any], file: Path | None, prefix: str = "") -> Any:
    """``data`` as a ``model``, or the :class:`SpecError` of its first problem. The
    file is in the validation's context: a table that validates its parts itself
    (``[tools]``, asyncfc_cli/spec/tooltables.py) names it in its own errors."""
    try:
        return model.model_validate(data, context={"file": file})
    except ValidationError as exc:
        raise spec_error_from(exc, model, file, prefix, data) from None


def spec_error_from(
    exc: ValidationError,
    model: type[BaseModel] | None,
    file: Path | None,
    prefix: str = "",
    data: Any = None,
) -> SpecError:
    """Turn pydantic's errors into one message that names the key and the fix.

    Pydantic reports a union field (``agent = "name" | {table}``, a param's
    ``str | int | ...``) once per member, with the member's type name inside
    the location (``agent.str``, ``agent.AgentSpec.max_turns``). Those tags
    are dropped, and the error that got furthest into the user's data wins:
    for an ``[agent]`` table that is the bad key inside it, not "should be a
    string".
    """
    errors = exc.errors()
    cleaned = [(err, _real_loc(err, data)) for err in errors]
    first_top = cleaned[0][1][:1]
    group = [(err, loc) for err, loc in cleaned if loc[:1] == first_top]
    depth = max(len(loc) for _, loc in group)
    deepest = [(err, loc) for err, loc in group if len(loc) == depth]
    err, loc = next(((e, l) for e, l in deepest if e["type"] == "extra_forbidden"), deepest[0])
    if err["type"] == "missing":
        # A missing key next to an unknown one is usually a typo of it.
        err, loc = next(((e, l) for e, l in cleaned if e["type"] == "extra_forbidden" and l[:-1] == loc[:-1]),
                        (err, loc))
    names = [str(p) for p in loc]
    key = ".".join(([prefix] if prefix else []) + names)
    kind = err["type"]
    if kind == "extra_forbidden":
        valid = _field_names(model, loc[:-1]) if model else []
        where = f"in {'.'.join(names[:-1])}" if len(names) > 1 else "here"
        fix = f"valid keys {where}: {', '.join(valid)}" if valid else "remove it"
        close = difflib.get_close_matches(str(names[-1]), valid, n=1, cutoff=0.75)
        if close:
            fix = f"did you mean {close[0]}? {fix}"
        return SpecError(file, key, "unknown key", fix)
    if kind == "missing":
        return SpecError(file, key, "required key is missing", f"add {names[-1]} = ...")
    got = err.get("input")
    shown = "a table" if isinstance(got, dict) else repr(got)
    fix = _fix_for(model, loc)
    if sum(1 for _, other in deepest if other == loc) > 1:
        # Every member of a union refused the value: its type is wrong.
        return SpecError(file, key, f"wrong type (got {shown})", fix)
    # "a valid dictionary or instance of McpServer": the class is no word of the file's.
    message = re.sub(r" or instance of \w+", "", err["msg"][0].lower() + err["msg"][1:])
    if message.startswith("value error, "):
        message = message[len("value error, "):]
    # A check that knows the fix says it: "problem. Fix: what to do".
    message, sep, own_fix = message.partition(". Fix: ")
    if sep:
        quoted = isinstance(got, dict) or shown in message
        return SpecError(file, key, message if quoted else f"{message} (got {shown})", own_fix)
    if kind == "value_error" and isinstance(got, dict):
        # A check on a whole table (e.g. a [sim] plan's references): the
        # message says what is wrong, showing the table would not help.
        message, sep, valid = message.partition("; valid ")
        fix = f"valid {valid}" if sep else f"correct the [{key}] table as the message says"
        return SpecError(file, key, message, fix)
    return SpecError(file, key, f"{message} (got {shown})", fix)


def _real_loc(err: Any, data: Any) -> tuple[Any, ...]:
    """``err["loc"]`` without the union-member tags pydantic puts in it."""
    loc = tuple(err["loc"])
    if data is None:
        return tuple(p for p in loc if not _looks_like_tag(p))
    out: list[Any] = []
    current = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(current, dict) and part in current:
            out.append(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            out.append(part)
            current = current[part]
        elif last and err["type"] == "missing" or not _looks_like_tag(part):
            out.append(part)
            current = None
        # else: a union tag, the data stays where it is
    return tuple(out)


def _looks_like_tag(part: Any) -> bool:
    return isinstance(part, str) and (
        part in ("str", "int", "float", "bool", "none") or "[" in part or part[:1].isupper()
    )


def _fix_for(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> str:
    if model is None:
        return ""
    ann, info = _annotation_at(model, loc)
    if ann is None:
        return ""
    hint = info.description if info is not None and info.description else ""
    return f"expected {_describe_type(ann)}" + (f": {hint}" if hint else "")


def _describe_type(ann: Any) -> str:
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Annotated:  # PositiveFloat and the like: the message names the bound
        return _describe_type(args[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        members = [_describe_type(a) for a in args if a is not type(None)]
        return members[0] if len(members) == 1 else ", ".join(members[:-1]) + " or " + members[-1]
    if origin is list:
        return f"a list of {_plural(_describe_type(args[0]))}" if args else "a list"
    if origin is dict:
        return f"a table of {_plural(_describe_type(args[-1]))}" if args else "a table"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "a table"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(ann, str(ann).replace("typing.", ""))


def _plural(description: str) -> str:
    if description.startswith(("a ", "an ")):
        word = description.split(" ", 1)[1]
        return word if " or " in word or "," in word else word + "s"
    return description


def _annotation_at(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, Any]:
    """The type annotation (and field info) at a tag-free location inside ``model``."""
    current: Any = model
    info = None
    for part in loc:
        current = _unwrap(current, part)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return None, None
            current = info.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1] if typing.get_args(current) else Any
            info = None
        else:
            return None, None
    return current, info


def _unwrap(ann: Any, part: Any) -> Any:
    # From a union, the member that can hold ``part``: a model for a key,
    # a dict/list for an entry.
    if typing.get_origin(ann) not in (typing.Union, types.UnionType):
        return ann
    for member in typing.get_args(ann):
        if isinstance(member, type) and issubclass(member, BaseModel) and str(part) in member.model_fields:
            return member
    for member in typing.get_args(ann):
        if typing.get_origin(member) in (dict, list):
            return member
    return ann


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    ann = _annotation_at(model, loc)[0] if loc else model
    for candidate in [ann, *typing.get_args(ann)]:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return list(candidate.model_fields)
    return []


def tool_spec_error(exc: Exception, name: str, file: Path | None) -> SpecError:
    """A :class:`~asyncfc_cli.tools.ToolLoadError` as a spec error with its fix apart."""
    text = str(exc)
    # The table the error is about: the caller's, or (opening several at once) the error's own.
    name = name or getattr(exc, "source", None) or ""
    if not name and (named := re.match(r"tool '([A-Za-z0-9_-]{1,64})': ", text)):
        name = named[1]
    key = getattr(exc, "key", None) or (f"tools.{name}" if name else "tools")
    label = f"tool {name!r}: " if key.startswith("tools.") else key + " "  # "--mcp server '...': ..."
    if name and text.startswith(label):
        text = text[len(label):]
    message, fix = split_fix(text)
    return SpecError(file if key.startswith("tools") else None, key, message, fix)



def split_fix(text: str) -> tuple[str, str]:
    """``problem. Fix: what to do`` as (problem, what to do); ("text", "") without a fix.
    The last "Fix:" (after a sentence or a quoted block): a message may quote a server's output before it."""
    at = max(text.rfind(". Fix: "), text.rfind("\nFix: "))
    return (text[:at], text[at:].split("Fix: ", 1)[1]) if at >= 0 else (text, "")
