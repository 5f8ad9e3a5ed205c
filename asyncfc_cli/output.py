"""One policy for text asyncfc did not write itself, at every place it is shown.

Model output, tool output and trace files are untrusted: an answer, a tool
name, an argument or an error may hold a lone surrogate (a model can send
``"\\ud800"`` as a JSON escape), characters the console's encoding lacks,
or control characters. None of them may crash an output or take over a
terminal:

1. **Streams never raise on text.** :func:`configure_streams` (called by
   every ``asyncfc`` command) sets stdout and stderr to
   ``errors="backslashreplace"``: a character the stream cannot encode is
   written as its escape (``\\ud800``, or ``\\u2713`` on a Latin-1
   terminal) instead of raising ``UnicodeEncodeError``. The answer is
   printed as the model wrote it, apart from that; on a terminal its
   control characters (but newlines and tabs) are shown escaped
   (:func:`answer_text`).
2. **JSON stays JSON.** :func:`json_text` writes strict JSON (no NaN or
   Infinity: non-finite numbers become ``null``), readable UTF-8 when the
   destination can take it, else ASCII with ``\\uXXXX`` escapes, so
   ``--json`` output, exports and trace lines always parse.
3. **Labels cannot drive the terminal.** :func:`printable` shows control
   characters (ESC, CR, the C1 range), line separators, bidirectional
   overrides and lone surrogates as visible escapes in one-line labels:
   progress lines, timeline lanes, tables.
4. **Labels are short before they are laid out.** :func:`label` cuts such
   text to a few hundred characters *before* it is escaped, measured or
   wrapped, so a 5 MB tool name in a trace costs a display what a short
   one does (Rich's layout of one long cell is far from linear).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from typing import Any

from asyncfc_cli.walk import map_strings

_MAX_DEPTH = 64  # deeper values are written as text


def configure_streams() -> None:
    """stdout and stderr write what they cannot encode as backslash escapes."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is None:
            continue
        try:
            reconfigure(errors="backslashreplace")
        except (ValueError, OSError, TypeError):  # a closed or unusual stream: leave it
            pass


def plain(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data: dicts with string keys, lists, strings,
    finite numbers, booleans and ``None``. Non-finite floats become ``None``;
    tuples and sets become lists; anything else (and anything nested deeper
    than 64 levels) becomes its ``str``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= _MAX_DEPTH:
        return _safe_str(value)
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else _safe_str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v, depth + 1) for v in value]
    return _safe_str(value)


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception as exc:  # a broken __str__ must not lose the output
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"


def json_text(value: Any, encoding: str | None = "utf-8") -> str:
    """Strict JSON for ``value``, encodable in ``encoding``.

    Readable text (``ensure_ascii=False``) when every character encodes;
    otherwise (a lone surrogate, a character the encoding lacks) the ASCII
    form, whose ``\\uXXXX`` escapes any JSON reader turns back into the
    same text. ``encoding=None`` means the current stdout's.
    """
    data = plain(value)
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    if encoding is None:
        encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        text = json.dumps(data, ensure_ascii=True, allow_nan=False)
    return text


def print_json(value: Any) -> None:
    """One JSON document on stdout, always valid (see :func:`json_text`)."""
    print(json_text(value, encoding=None))


def _escapes() -> dict[int, str]:
    table = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}
    table.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
    # Line and paragraph separators, and the bidirectional controls that
    # can make a label display in another order than it reads.
    for c in (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C):
        table[c] = f"\\u{c:04x}"
    for c in range(0xD800, 0xE000):  # lone surrogates
        table[c] = f"\\u{c:04x}"
    return table


_ESCAPES = _escapes()
_KEEP_LINES = {c: e for c, e in _ESCAPES.items() if c not in (ord("\n"), ord("\t"))}


def printable(text: Any) -> str:
    """``text`` on one line, safe to show on a terminal (see the module docstring)."""
    text = text if isinstance(text, str) else _safe_str(text)
    return text if text.isprintable() else text.translate(_ESCAPES)


_SURROGATE = re.compile("[\ud800-\udfff]")


def without_surrogates(value: Any) -> Any:
    """``value`` (text, or JSON-like data with its dict keys) with every lone
    surrogate replaced by U+FFFD, so it encodes as UTF-8. A lone surrogate is
    what Python makes of bytes that are not UTF-8 in argv, the environment or
    a file, and what a JSON ``"\\ud800"`` escape decodes to; no request can
    carry one."""
    return map_strings(value, _replace, keys=_replace)


def _replace(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def first_surrogate(text: str) -> str | None:
    """A description of the first lone surrogate in ``text``, or None if it has none."""
    found = _SURROGATE.search(text)
    if found is None:
        return None
    code = ord(found.group())
    if 0xDC80 <= code <= 0xDCFF:  # how Python passes on a byte that is not UTF-8 (surrogateescape)
        return f"the byte 0x{code - 0xDC00:02X}, which is not UTF-8 (read as U+{code:04X})"
    return f"a lone surrogate (U+{code:04X}), which is not a character"


LABEL_CHARS = 200  # outside text in one label (a name, a status, an argument summary)


def label(value: Any, limit: int = LABEL_CHARS) -> str:
    """``value`` as :func:`printable` text of at most ``limit`` characters
    before escaping (a longer one is cut and ends with ``…``)."""
    text = value if isinstance(value, str) else _safe_str(value)
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    return printable(text)


def answer_text(text: str, stream: Any = None) -> str:
    """The answer as it goes to stdout: as written for a pipe or a file (it is
    data), with control characters other than newline and tab escaped on a
    terminal, where an escape sequence would act (move the cursor, set the
    title, write the clipboard) instead of showing."""
    stream = sys.stdout if stream is None else stream
    try:
        tty = bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        tty = False
    return text.translate(_KEEP_LINES) if tty else text


# Terminal control sequences: CSI (colours, cursor moves), OSC (titles, the
# clipboard) up to BEL or ST, and the two-character ESC forms. No nested
# quantifiers: a scan is linear in the text.
_SEQUENCE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def printable_lines(text: Any) -> str:
    """Text another program printed (Ray's notices), as lines safe to show: terminal
    control sequences removed, any other control character escaped, newlines and
    tabs kept."""
    text = text if isinstance(text, str) else _safe_str(text)
    if text.isprintable():
        return text
    return _SEQUENCE.sub("", text).translate(_KEEP_LINES)
