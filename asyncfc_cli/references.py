"""The future-reference grammar: how an argument names another call's result.

A call's arguments may use the result of another call by its future id
(``f1``, ``f2``, ... in the order the model made its calls):

=====================  =====================================================
``"$f3"``              the whole argument is f3's value, with its JSON type
``"$f3.rows.0"``       the whole argument is a part of it (keys and list
                       indices, negative ones too, separated by dots)
``"${f3}"``            the same, braced; also ``"${f3.rows.0}"``
``"${f3:fetch}"``      the same, and f3 must be a call of the tool ``fetch``
                       (a miscounted id fails instead of reading another call)
``"id ${f3.id}!"``     inside text only the braced form counts: the value is
                       inserted as text (strings as they are, anything else as
                       JSON), so ``${f1}1`` is f1 followed by "1", and
                       ``$${f1}`` is a dollar sign followed by f1
``"\\${f3}"``, ``"\\$f3"``  (a backslash in the string) literal text ``${f3}``, ``$f3``
=====================  =====================================================

A bare ``$f3`` inside longer text is refused (reported in ``problems``)
rather than guessed at: ``"id $f11"`` could be f11, or f1 then "1". Any
other ``$`` or ``${...}`` (``$HOME``, ``${HOME}``, ``$$``, ``$5``) is plain
text, and so is a backslash not followed by a reference.

Parsing never raises on odd text; :func:`parse` reports what it refused as
``problems`` so the executor can fail the call with the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

# A future id: f1, f2, ... (f0 and leading zeros are well-formed but never issued).
ID = r"f\d+"
TOOL = r"[A-Za-z0-9_-]+"
_BRACED = re.compile(rf"\$\{{({ID})(?::({TOOL}))?((?:\.[^.{{}}]+)*)\}}")
_BARE_WHOLE = re.compile(rf"\$({ID})((?:\.[^.]+)*)")
_BARE_IN_TEXT = re.compile(rf"\$({ID})")
# Where a reference could start: a backslash before one (an escape), "${f<digit>", "$f<digit>".
_START = re.compile(r"\\+(?=\$\{?f\d)|\$\{(?=f\d)|\$(?=f\d)")
# A dollar that starts a reference, with the backslashes before it.
_REF_DOLLAR = re.compile(r"(\\*)\$(?=\{?f\d)")
# What follows the backslash of an escape, copied as it is.
_ESCAPED = re.compile(rf"\$\{{{ID}(?::{TOOL})?(?:\.[^.{{}}]+)*\}}|\$\{{|\${ID}")


@dataclass(frozen=True)
class Reference:
    future: str
    path: tuple[str, ...] = ()
    tool: str | None = None  # the tool the writer says the future is a call of

    @property
    def text(self) -> str:
        return "${" + self.future + (f":{self.tool}" if self.tool else "") + "".join("." + p for p in self.path) + "}"


@dataclass(frozen=True)
class Literal:
    text: str


Part = Reference | Literal


@dataclass
class Parsed:
    """A string split into literal text and references."""

    parts: list[Part] = field(default_factory=list)
    whole: bool = False  # the string is exactly one reference: its value keeps its JSON type
    problems: list[str] = field(default_factory=list)

    @property
    def references(self) -> list[Reference]:
        return [p for p in self.parts if isinstance(p, Reference)]


def parse(text: str) -> Parsed:
    """Split ``text`` into literal text and references (see the module docstring)."""
    whole = _BRACED.fullmatch(text)
    if whole:
        return Parsed([_braced(whole)], whole=True)
    bare = _BARE_WHOLE.fullmatch(text)
    if bare:
        return Parsed([Reference(bare.group(1), _path(bare.group(2)))], whole=True)
    out = Parsed()
    literal: list[str] = []
    i = 0
    for start in _START.finditer(text):
        if start.start() < i:
            continue
        literal.append(text[i:start.start()])
        i = start.start()
        token = start.group()
        if token.startswith("\\"):
            # Backslashes before a reference: each pair is one backslash; an
            # odd one left over makes the reference literal text.
            literal.append("\\" * (len(token) // 2))
            i += len(token)
            if len(token) % 2:
                rest = _ESCAPED.match(text, i)
                if rest:
                    literal.append(rest.group())
                    i = rest.end()
                continue
            token = "${" if text.startswith("${", i) else "$"
        if token == "${":
            match = _BRACED.match(text, i)
            if match is None:
                out.problems.append(f"unterminated or malformed reference at {text[i:i + 24]!r}: "
                                    "write ${f1} or ${f1.key}, or \\${ for the literal text")
                literal.append("${")
                i += 2
                continue
            _flush(out, literal)
            out.parts.append(_braced(match))
            i = match.end()
            continue
        # "$f<digit>" inside longer text: which id is meant is a guess.
        match = _BARE_IN_TEXT.match(text, i)
        assert match is not None
        out.problems.append(
            f"ambiguous reference {match.group()!r} inside text: write ${{{match.group(1)}}} to insert "
            f"the result (or \\${match.group(1)} for the literal text)")
        literal.append(match.group())
        i = match.end()
    literal.append(text[i:])
    _flush(out, literal)
    return out


def _flush(out: Parsed, literal: list[str]) -> None:
    text = "".join(literal)
    literal.clear()
    if text:
        out.parts.append(Literal(text))


def _braced(match: re.Match[str]) -> Reference:
    return Reference(match.group(1), _path(match.group(3)), match.group(2))


def _path(text: str | None) -> tuple[str, ...]:
    return tuple(text.split(".")[1:]) if text else ()


def scan(value: Any) -> tuple[list[Reference], list[str]]:
    """Every reference in a JSON value (in order), and every problem found."""
    refs: list[Reference] = []
    problems: list[str] = []
    _walk(value, refs, problems)
    return refs, problems


def _walk(value: Any, refs: list[Reference], problems: list[str]) -> None:
    if isinstance(value, str):
        if "$" in value:
            parsed = parse(value)
            refs.extend(parsed.references)
            problems.extend(parsed.problems)
    elif isinstance(value, dict):
        for item in value.values():
            _walk(item, refs, problems)
    elif isinstance(value, list):
        for item in value:
            _walk(item, refs, problems)


class PathError(Exception):
    pass


def pick(value: Any, path: tuple[str, ...]) -> Any:
    """The part of ``value`` that ``path`` names; PathError says which step failed."""
    for key in path:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and re.fullmatch(r"-?\d+", key) and -len(value) <= int(key) < len(value):
            value = value[int(key)]
        else:
            kind = type(value).__name__
            have = (f"keys: {', '.join(list(map(str, value))[:8])}" if isinstance(value, dict)
                    else f"{len(value)} items" if isinstance(value, list) else "no parts")
            raise PathError(f"has no part {key!r} (it is a {kind}; {have})")
    return value


def substitute(value: Any, values: dict[str, Any]) -> Any:
    """``value`` with every reference replaced by its future's value from ``values``.

    A string that is one reference keeps the value's JSON type; references
    inside text are inserted as text. Escapes lose their backslash.
    Raises PathError for a path the value does not have.
    """
    if isinstance(value, dict):
        return {k: substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    if not isinstance(value, str) or "$" not in value:
        return value
    parsed = parse(value)
    if parsed.whole:
        return _part(parsed.references[0], values)
    out: list[str] = []
    for part in parsed.parts:
        if isinstance(part, Literal):
            out.append(part.text)
        else:
            found = _part(part, values)
            out.append(found if isinstance(found, str) else json.dumps(found, ensure_ascii=False))
    return "".join(out)


def _part(ref: Reference, values: dict[str, Any]) -> Any:
    try:
        return pick(values[ref.future], ref.path)
    except PathError as exc:
        raise PathError(f"{ref.text}: {ref.future} {exc}") from None


def escape(text: str, then_reference: bool = False) -> str:
    """``text`` written so that it reads back literally (for tools and the simulated model).

    Backslashes are doubled only where they stand before a reference (the
    only place they mean anything); ``then_reference``: a reference follows
    the text, so its trailing backslashes are doubled too.
    """
    out = _REF_DOLLAR.sub(lambda m: m.group(1) * 2 + "\\$", text)
    if then_reference:
        trailing = len(out) - len(out.rstrip("\\"))
        out += "\\" * trailing
    return out
