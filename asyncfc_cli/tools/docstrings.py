"""Parameter descriptions from a function's docstring (Google, reST or numpy style),
so users write no JSON Schema by hand."""

from __future__ import annotations

import inspect
import re

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
