"""The BFCL files, read where they live: never copied into the repository.

The directory is, first match wins: ``--data DIR``; ``$ASYNCFC_BFCL_DIR``;
the nearest ``shared/data/bfcl`` walking up from the current directory; the
nearest one walking up from this package. Each line of a BFCL file is one JSON
object (the README next to the data describes the fields).

Function names such as ``spotify.play`` are not valid chat-completions tool
names, so the tools the model sees are sanitized (``spotify_play``) and the
checker maps them back.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_VAR = "ASYNCFC_BFCL_DIR"
RELATIVE = Path("shared") / "data" / "bfcl"
SINGLE_TURN = ("parallel", "multiple", "parallel_multiple")
MULTI_TURN = "multi_turn_base"


class DataNotFound(Exception):
    """The BFCL directory (or one of its files) is missing; the message says where we looked."""


def _candidates_above(start: Path) -> list[Path]:
    start = start.resolve()
    return [p / RELATIVE for p in (start, *start.parents)]


def find_bfcl_dir(option: Path | None = None, cwd: Path | None = None) -> Path:
    """The BFCL data directory, by the rule in the module docstring.

    Raises:
        DataNotFound: with every place looked at, and how to point at the data.
    """
    looked: list[str] = []
    if option is not None:
        if _is_bfcl(option):
            return option.resolve()
        raise DataNotFound(f"--data {option}: no BFCL files there (expected BFCL_v4_*.json and possible_answer/)")
    env = os.environ.get(ENV_VAR)
    if env:
        if _is_bfcl(Path(env)):
            return Path(env).resolve()
        raise DataNotFound(f"${ENV_VAR}={env}: no BFCL files there (expected BFCL_v4_*.json and possible_answer/)")
    for start in (cwd or Path.cwd(), Path(__file__).parent):
        for candidate in _candidates_above(start):
            if _is_bfcl(candidate):
                return candidate
        looked.append(f"{RELATIVE} above {start.resolve()}")
    raise DataNotFound(
        "BFCL data not found (looked for " + "; ".join(looked) + "). "
        f"Point at it with --data DIR or ${ENV_VAR}=DIR"
    )


def _is_bfcl(path: Path) -> bool:
    return (path / "possible_answer").is_dir() and any(path.glob("BFCL_v4_*.json"))


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataNotFound(f"{path}: missing")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# --- single turn ---------------------------------------------------------------------


@dataclass
class Entry:
    """One BFCL single-turn question with its ground truth."""

    id: str
    category: str
    messages: list[dict[str, Any]]  # the (single) turn's messages
    functions: list[dict[str, Any]]  # BFCL function documents
    ground_truth: list[dict[str, dict[str, list[Any]]]]  # [{name: {param: [acceptable...]}}]
    names: dict[str, str] = field(default_factory=dict)  # tool name -> BFCL function name

    @property
    def prompt(self) -> str:
        return "\n\n".join(str(m.get("content", "")) for m in self.messages if m.get("role") == "user")

    @property
    def system(self) -> str:
        return "\n\n".join(str(m.get("content", "")) for m in self.messages if m.get("role") == "system")


def load_single(data_dir: Path, category: str, limit: int | None = None, offset: int = 0) -> list[Entry]:
    """Entries of ``BFCL_v4_{category}.json`` joined with their possible answers."""
    if category not in SINGLE_TURN:
        raise ValueError(f"unknown BFCL category {category!r}; expected one of {', '.join(SINGLE_TURN)}")
    questions = _read_lines(data_dir / f"BFCL_v4_{category}.json")
    answers = {a["id"]: a["ground_truth"] for a in _read_lines(data_dir / "possible_answer" / f"BFCL_v4_{category}.json")}
    entries = []
    for q in questions[offset:]:
        if limit is not None and len(entries) >= limit:
            break
        if q["id"] not in answers:
            continue
        entry = Entry(q["id"], category, q["question"][0], q["function"], answers[q["id"]])
        entry.names = tool_names([f["name"] for f in entry.functions])
        entries.append(entry)
    return entries


# --- multi turn ----------------------------------------------------------------------


@dataclass
class MultiTurnEntry:
    id: str
    turns: list[list[dict[str, Any]]]  # user messages per turn
    initial_config: dict[str, Any]
    ground_truth: list[list[str]]  # per turn, calls as Python source: "cd(folder='document')"
    excluded: list[str] = field(default_factory=list)  # tools BFCL hides in this session


def load_multi_turn(data_dir: Path) -> list[MultiTurnEntry]:
    questions = _read_lines(data_dir / f"BFCL_v4_{MULTI_TURN}.json")
    answers = {a["id"]: a["ground_truth"] for a in _read_lines(data_dir / "possible_answer" / f"BFCL_v4_{MULTI_TURN}.json")}
    return [
        MultiTurnEntry(q["id"], q["question"], q.get("initial_config", {}),
                       answers[q["id"]], list(q.get("excluded_function") or []))
        for q in questions
        if q["id"] in answers
    ]


def load_func_doc(data_dir: Path, name: str) -> list[dict[str, Any]]:
    """Tool documents of one multi-turn class, e.g. ``gorilla_file_system``."""
    return _read_lines(data_dir / "multi_turn_func_doc" / f"{name}.json")


# --- schemas and names ---------------------------------------------------------------

# BFCL writes Python-ish type names; JSON Schema (and every provider) wants these.
_TYPES = {
    "dict": "object", "float": "number", "tuple": "array", "list": "array", "bool": "boolean",
    "int": "integer", "str": "string", "any": "string", "double": "number", "long": "integer",
}


def json_schema(bfcl: Any) -> Any:
    """A BFCL parameter document as JSON Schema (recursively)."""
    if isinstance(bfcl, list):
        return [json_schema(v) for v in bfcl]
    if not isinstance(bfcl, dict):
        return bfcl
    out: dict[str, Any] = {}
    for key, value in bfcl.items():
        if key == "type" and isinstance(value, str):
            out[key] = _TYPES.get(value, value)
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: json_schema(prop) for name, prop in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = json_schema(value)
        else:
            out[key] = value
    if out.get("type") == "array" and "items" not in out:
        out["items"] = {}
    return out


_BAD_NAME = re.compile(r"[^A-Za-z0-9_-]")


def tool_names(names: list[str]) -> dict[str, str]:
    """Valid, distinct chat-completions tool names for BFCL function names: tool -> BFCL."""
    out: dict[str, str] = {}
    for name in names:
        base = _BAD_NAME.sub("_", name)[:60] or "f"
        tool, n = base, 1
        while tool in out:
            n += 1
            tool = f"{base}_{n}"
        out[tool] = name
    return out
