"""Keeping secrets out of a recorded response body.

A model can write a secret it saw (a tool printed an environment variable,
say). In the wire format the secret is not one string: it streams a few
characters per event, each event a JSON line of its own, so masking each
line cannot find it. So the body of one response is scrubbed whole, once it
has ended: every line is masked as text (a secret inside one event), and the
text the events carry (content, arguments, thinking, in any provider's
field names) is joined in stream order and searched too; where a secret
spans several events, its characters are starred out in each of them.

Lines are the unit of timing: a line goes out at the time of the read that
completed it (a read that ended mid-line gives the client nothing it can
use before the rest arrives anyway).
"""

from __future__ import annotations

import json
from typing import Any

from asyncfc_cli.events import loads

# Fields that carry what the model writes, in the four wire formats (OpenAI chat and
# Responses, Anthropic, Gemini): text, tool arguments, thinking.
_CARRIERS = frozenset({"content", "text", "arguments", "partial_json", "reasoning_content", "thinking", "delta",
                       "refusal", "reasoning", "summary_text", "output_text"})


def scrub(reads: list[tuple[float, str]], redactor: Any) -> list[tuple[float, str]]:
    """The body's reads as (time, text) again, secrets masked; lines moved to the read that ended them."""
    lines: list[list[Any]] = []  # [time, text] of each line, its newline kept
    parts: list[str] = []  # the line being read, in pieces: joined once its newline comes (linear time)
    for t, text in reads:
        if "\n" not in text:
            parts.append(text)
            continue
        pending = "".join(parts) + text
        start = 0
        while True:
            end = pending.find("\n", start)
            if end < 0:
                break
            lines.append([t, pending[start:end + 1]])
            start = end + 1
        parts = [pending[start:]] if start < len(pending) else []
    if parts:
        lines.append([reads[-1][0], "".join(parts)])
    if not redactor:
        return _regroup(lines)
    for line in lines:
        line[1] = redactor.text(line[1])
    _mask_spread(lines, redactor)
    return _regroup(lines)


def _regroup(lines: list[list[Any]]) -> list[tuple[float, str]]:
    out: list[tuple[float, str]] = []
    for t, text in lines:
        if out and out[-1][0] == t:
            out[-1] = (t, out[-1][1] + text)
        else:
            out.append((t, text))
    return out


def _mask_spread(lines: list[list[Any]], redactor: Any) -> None:
    """Star out secrets whose characters are spread over the events' text fields."""
    pieces: list[tuple[int, Any, Any, str]] = []  # (line index, container, key, text)
    events: dict[int, Any] = {}
    for index, (_, text) in enumerate(lines):
        stripped = text.strip()
        if not stripped.startswith("data:"):
            continue
        try:
            event = loads(stripped[5:].strip())
        except (ValueError, RecursionError):
            continue
        events[index] = event
        stack: list[Any] = [event]
        found: list[tuple[Any, Any, str]] = []
        while stack:  # iterative: an event may nest as deep as its writer likes
            item = stack.pop()
            children = item.items() if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else ()
            for key, value in children:
                if isinstance(value, str):
                    if isinstance(item, dict) and key in _CARRIERS:
                        found.append((item, key, value))
                elif isinstance(value, (dict, list)):
                    stack.append(value)
        pieces.extend((index, item, key, value) for item, key, value in found)
    joined = "".join(piece[3] for piece in pieces)
    spans = redactor.spans(joined)
    if not spans:
        return
    changed: set[int] = set()
    offset = 0
    for index, container, key, text in pieces:
        start, end = offset, offset + len(text)
        offset = end
        masked = list(text)
        for s, e in spans:
            for position in range(max(s, start), min(e, end)):
                masked[position - start] = "*"
        if masked != list(text):
            container[key] = "".join(masked)
            changed.add(index)
    for index in changed:
        text = lines[index][1]
        newline = text[len(text.rstrip("\r\n")):]
        lines[index][1] = "data: " + json.dumps(events[index], ensure_ascii=False) + newline
