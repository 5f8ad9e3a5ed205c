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
``problems`` so the executor can fail the call with the reason. It takes
time linear in the length of the text whatever the text holds, and reads at
most ``MAX_REFERENCES`` references per call; values are walked with a stack
of their own, however deep they nest.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from asyncfc_cli.walk import map_strings, strings

# A future id: f1, f2, ... (f0 and leading zeros are well-formed but never issued).
#
# Everything here is read by hand-written scanners built from single-quantifier
# regexes: model output is untrusted, and a regex with nested or overlapping
# quantifiers (``\\+(?=\$)`` retried at every backslash of a run) is quadratic
# in the worst case; this is linear in the length of the text, whatever it holds.
_DIGITS = re.compile(r"\d+")
_TOOL = re.compile(r"[A-Za-z0-9_-]+")
# Inside ${...} a path segment runs up to a dot or a brace; the reference to the next brace.
_TO_BRACE = re.compile(r"[^{}]*")
# A dollar that starts a reference: "$f<digit>" or "${f<digit>". Each position
# is tried in constant time, so a search over any text is linear.
_REF_DOLLAR = re.compile(r"\$\{?f\d")
# Problems kept per parse and per scan: the executor reports the first, and a
# string of a million bad references must not build a million messages.
MAX_PROBLEMS = 8
# References one call's arguments may hold, escaped and refused ones included:
# each is a step of Python, and the loop must not be held for seconds.
MAX_REFERENCES = 10_000


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
    read: int = 0  # references read, escaped and refused ones included (what MAX_REFERENCES counts)
    over: bool = False  # more than the limit: the rest was left unread

    @property
    def references(self) -> list[Reference]:
        return [p for p in self.parts if isinstance(p, Reference)]


def parse(text: str, limit: int = MAX_REFERENCES) -> Parsed:
    """Split ``text`` into literal text and references (see the module docstring).

    Past ``limit`` references (escaped and refused ones included) the rest is
    left as text and a problem says so. Time is linear in the length of
    ``text``, whatever it holds.
    """
    if text.startswith("${"):
        whole = _braced_at(text, 0)
        if whole is not None and whole[1] == len(text):
            return Parsed([whole[0]], whole=True, read=1)
    elif text.startswith("$"):
        bare = _bare_whole(text)
        if bare is not None:
            return Parsed([bare], whole=True, read=1)
    out = Parsed()
    literal: list[str] = []
    i = 0  # text before i is read
    for dollar in _REF_DOLLAR.finditer(text):
        at = dollar.start()
        if at < i:
            continue  # inside a reference or an escape already read
        if out.read == limit:
            out.over = True
            out.problems.append(f"more than {MAX_REFERENCES} references in one call's arguments (escaped ones "
                          "included): split the work into several calls")
            break
        out.read += 1
        # The backslashes right before the dollar (none of them read yet: what
        # was read ends with a brace, a digit or a dollar, never a backslash).
        before = text[i:at]
        kept = before.rstrip("\\")
        literal.append(kept)
        slashes = len(before) - len(kept)
        # Each pair of backslashes is one backslash; an odd one left over
        # makes the reference literal text.
        literal.append("\\" * (slashes // 2))
        i = at
        if slashes % 2:
            i = _escaped_end(text, at)
            literal.append(text[at:i])
            continue
        if text.startswith("${", at):
            braced = _braced_at(text, at)
            if braced is None:
                _problem(out, f"unterminated or malformed reference at {text[at:at + 24]!r}: "
                              "write ${f1} or ${f1.key}, or \\${ for the literal text")
                literal.append("${")
                i = at + 2
                continue
            _flush(out, literal)
            out.parts.append(braced[0])
            i = braced[1]
            continue
        # "$f<digit>" inside longer text: which id is meant is a guess.
        end = _id_end(text, at + 1)
        future = _shown(text[at + 1:end])
        _problem(out, f"ambiguous reference '${future}' inside text: write ${{{future}}} to insert "
                      f"the result (or \\${future} for the literal text)")
        literal.append(text[at:end])
        i = end
    literal.append(text[i:])
    _flush(out, literal)
    return out


def _id_end(text: str, i: int) -> int:
    """Where the future id ``f<digits>`` at ``i`` ends, or -1 if there is none."""
    if not text.startswith("f", i):
        return -1
    digits = _DIGITS.match(text, i + 1)
    return digits.end() if digits else -1


def _braced_at(text: str, i: int) -> tuple[Reference, int] | None:
    """The reference ``${f3:tool.a.b}`` starting at ``i`` and where it ends, or None.

    Every step of the grammar is forced (an id's digits are followed by ``:``,
    ``.`` or ``}``; a segment runs to the next dot or brace), so one pass
    decides, without backtracking.
    """
    j = _id_end(text, i + 2)
    if j < 0 or j == len(text) or text[j] not in ":.}":
        return None
    close = _TO_BRACE.match(text, j).end()
    if not text.startswith("}", close):
        return None
    inner = text[j:close]  # ":tool.a.b", ".a.b" or ""
    tool = None
    if inner.startswith(":"):
        tool, dot, rest = inner[1:].partition(".")
        if not _TOOL.fullmatch(tool):
            return None
        inner = dot + rest
    path = _split_path(inner)
    return None if path is None else (Reference(text[i + 2:j], path, tool), close + 1)


def _split_path(text: str) -> tuple[str, ...] | None:
    """``.a.b`` as ("a", "b"); None when a segment is empty (split in C: a
    path of millions of segments costs no Python step per segment)."""
    if not text:
        return ()
    if not text.startswith("."):
        return None
    segments = text[1:].split(".")
    return None if "" in segments else tuple(segments)


def _bare_whole(text: str) -> Reference | None:
    """``$f3`` or ``$f3.rows.0`` as the whole of ``text``, or None."""
    j = _id_end(text, 1)
    if j < 0:
        return None
    path = _split_path(text[j:])
    return None if path is None else Reference(text[1:j], path)


def _escaped_end(text: str, at: int) -> int:
    """Where the escaped reference at ``at`` (after an odd backslash) ends.

    The whole ``${f1.a}`` when it is well-formed, else just ``${``, or
    ``$f1``: the text is copied as it is, so nothing in it is read again.
    """
    if text.startswith("${", at):
        braced = _braced_at(text, at)
        return braced[1] if braced is not None else at + 2
    return _id_end(text, at + 1)


def _shown(text: str, limit: int = 40) -> str:
    """A model-written piece of text, bounded, for a message."""
    return text if len(text) <= limit else text[:limit] + f"...({len(text) - limit} more)"


def _problem(out: Parsed, message: str) -> None:
    if len(out.problems) < MAX_PROBLEMS:
        out.problems.append(message)


def _flush(out: Parsed, literal: list[str]) -> None:
    text = "".join(literal)
    literal.clear()
    if text:
        out.parts.append(Literal(text))


def scan(value: Any) -> tuple[list[Reference], list[str]]:
    """Every reference in a JSON value (in order), and the first problems found.

    Walked with an explicit stack: a value nested however deep is read
    (arguments come from the model, results from tools). At most
    MAX_REFERENCES references in all are read; past them, a problem.
    """
    refs: list[Reference] = []
    problems: list[str] = []
    read = 0
    for text in strings(value):
        if "$" in text:
            parsed = parse(text, MAX_REFERENCES - read)
            read += parsed.read
            refs.extend(parsed.references)
            problems.extend(parsed.problems[:MAX_PROBLEMS - len(problems)])
            if parsed.over:
                break
    return refs, problems


class PathError(Exception):
    pass


def pick(value: Any, path: tuple[str, ...]) -> Any:
    """The part of ``value`` that ``path`` names; PathError says which step failed."""
    for key in path:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and _index(key, len(value)) is not None:
            value = value[_index(key, len(value))]
        else:
            kind = type(value).__name__
            have = (f"keys: {', '.join(_shown(str(k)) for k in itertools.islice(value, 8))}"
                    if isinstance(value, dict)
                    else f"{len(value)} items" if isinstance(value, list) else "no parts")
            raise PathError(f"has no part {_shown(key)!r} (it is a {kind}; {have})")
    return value


def _index(key: str, length: int) -> int | None:
    """``key`` as an index into a list of ``length`` items (negative from the end), or None.

    A key of more digits than any list has items is no index (and ``int`` of
    thousands of digits would raise).
    """
    negative = key.startswith("-")
    digits = key[1:] if negative else key
    if not _DIGITS.fullmatch(digits):
        return None
    digits = digits.lstrip("0") or "0"
    if len(digits) > 20:
        return None
    index = -int(digits) if negative else int(digits)
    return index if -length <= index < length else None


def substitute(value: Any, values: dict[str, Any]) -> Any:
    """``value`` with every reference replaced by its future's value from ``values``.

    A string that is one reference keeps the value's JSON type; references
    inside text are inserted as text. Escapes lose their backslash.
    Raises PathError for a path the value does not have, or a value too deeply
    nested to write as text. Walked with an explicit stack, however deep the
    value is.
    """
    return map_strings(value, lambda text: _substitute_string(text, values))


def _substitute_string(value: str, values: dict[str, Any]) -> Any:
    if "$" not in value:
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
            out.append(found if isinstance(found, str) else _as_text(part, found))
    return "".join(out)


def _as_text(ref: Reference, found: Any) -> str:
    try:
        return json.dumps(found, ensure_ascii=False)
    except RecursionError:
        raise PathError(f"{ref.text}: the value is nested too deeply to insert into text; "
                        f"pass it whole, as \"${ref.future}\"") from None


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
    out: list[str] = []
    i = 0
    for dollar in _REF_DOLLAR.finditer(text):
        at = dollar.start()
        before = text[i:at]
        kept = before.rstrip("\\")
        out.append(kept)
        out.append("\\" * (2 * (len(before) - len(kept)) + 1))
        i = at  # the dollar itself is copied with what follows
    out.append(text[i:])
    escaped = "".join(out)
    if then_reference:
        trailing = len(escaped) - len(escaped.rstrip("\\"))
        escaped += "\\" * trailing
    return escaped
