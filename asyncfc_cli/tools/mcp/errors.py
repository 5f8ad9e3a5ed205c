"""Reading an exception of the SDK or of a server as one line, without what it quoted."""

from __future__ import annotations

import trio

from asyncfc_cli.tools.core import format_validation_error


def leaf_of(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = leaf_of(inner, kind)
            if found is not None:
                return found
    return None


def without_inputs(text: str) -> str:
    """``text`` without the values pydantic quotes in its errors (``input_value=...``).

    pydantic cuts a quoted value to about 50 characters: a credential a server
    echoed may be cut in part there, and a part is no longer found by the
    redactor. The field and the message say what was wrong without it.
    """
    pieces, pos = [], 0
    while (start := text.find("input_value=", pos)) >= 0:
        end = text.find("input_type=", start)
        if end < 0:
            break
        pieces.append(text[pos:start])
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces)


def asyncfc_kind(exc: BaseException) -> str | None:
    """``too_long`` or ``invalid`` for an error the stdio transport made up, else None."""
    from mcp import MCPError

    leaf = leaf_of(exc, MCPError)
    data = getattr(leaf, "data", None)
    kind = data.get("asyncfc") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else None


def describe(exc: BaseException) -> str:
    """One line for an exception that may be a group of groups (anyio task groups)."""
    from pydantic import ValidationError

    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = next((e for e in exc.exceptions if not isinstance(e, trio.Cancelled)), exc.exceptions[0])
    if isinstance(exc, ValidationError):
        return f"its answer does not fit the MCP schema ({format_validation_error(exc)})"
    if asyncfc_kind(exc) is not None:  # the transport's own words
        return str(getattr(exc, "message", exc))
    text = without_inputs(str(exc)) or type(exc).__name__
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}"
