"""A ``CallToolResult`` as the JSON value the model sees."""

from __future__ import annotations

import base64
import json
from typing import Any

from asyncfc_cli.tools.core import ToolError


def result_value(exposed: str, result: Any) -> Any:
    """A ``CallToolResult`` as the JSON value the model sees (or a ToolError)."""
    parts = [_content(c) for c in (result.content or [])]
    if result.is_error:
        text = "\n".join(p if isinstance(p, str) else str(p) for p in parts) or "(no message)"
        raise ToolError(f"the MCP tool {exposed!r} reported an error: {text}")
    if result.structured_content is not None:
        return result.structured_content
    if len(parts) == 1 and isinstance(parts[0], str):
        # Many servers send JSON as text: pass an object or array on as that
        # value, so "$f1.key" references reach into it like any tool's result.
        try:
            value = json.loads(parts[0])
        except ValueError:
            return parts[0]
        return value if isinstance(value, (dict, list)) else parts[0]
    if all(isinstance(p, str) for p in parts):
        return "\n".join(parts)
    return parts


def _content(block: Any) -> Any:
    kind = getattr(block, "type", None)
    if kind == "text":
        return block.text
    if kind in ("image", "audio"):
        # The model cannot use base64 in a tool message; say what it was.
        size = len(base64.b64decode(block.data, validate=False)) if getattr(block, "data", None) else 0
        return {"type": kind, "mime_type": getattr(block, "mime_type", None), "bytes": size}
    if kind == "resource":
        resource = block.resource
        text = getattr(resource, "text", None)
        return {"type": "resource", "uri": str(resource.uri), **({"text": text} if text is not None else {})}
    if kind == "resource_link":
        return {"type": "resource_link", "uri": str(block.uri), "name": getattr(block, "name", None)}
    return {"type": kind or "unknown"}
