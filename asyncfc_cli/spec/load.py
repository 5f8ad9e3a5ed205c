"""TOML files read safely, ``${VAR}`` interpolation, and where a task's agents file is."""

from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from asyncfc_cli.spec.errors import SpecError, validate_as
from asyncfc_cli.spec.schema import AgentsFile, TaskFile

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")

# Variables asyncfc knows without the environment (the environment still wins):
# ASYNCFC_PYTHON is the interpreter asyncfc runs on, which has asyncfc's
# dependencies (e.g. the mcp package for an MCP server written in Python).
BUILTIN_VARS = {"ASYNCFC_PYTHON": sys.executable}


def _value_of(m: re.Match[str], env: Any) -> str | None:
    """What ``${VAR}`` / ``${VAR:-default}`` stands for; None if it has no value.
    Strict and lenient interpolation share it, so a value both accept is the same."""
    name, default = m.group(1), m.group(2)
    if name in env and env[name] != "":
        return env[name]
    if name in BUILTIN_VARS:
        return BUILTIN_VARS[name]
    return default


def interpolate(value: Any, file: Path | None, key: str, env: dict[str, str] | None = None) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string inside ``value``."""
    env = os.environ if env is None else env
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            found = _value_of(m, env)
            if found is None:
                name = m.group(1)
                raise SpecError(
                    file, key, f"environment variable {name} is not set",
                    f"export {name}=..., or write ${{{name}:-default}} to give a default",
                )
            return found

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, file, f"{key}.{k}" if key else k, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, file, f"{key}[{i}]", env) for i, v in enumerate(value)]
    return value


# --- loading -----------------------------------------------------------------------------


MAX_NESTING = 64  # tables and arrays inside one another; real specs use a handful
MAX_SPEC_BYTES = 10_000_000


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as data; every way it can be unreadable is a :class:`SpecError`."""
    try:
        # Bounded: a path like /dev/zero must not read forever.
        with open(path, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(path, "", "file not found", "check the path") from None
    except OSError as exc:
        raise SpecError(path, "", f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(path, "", f"larger than {MAX_SPEC_BYTES // 1_000_000} MB: not a spec file",
                        "check the path")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(path, "", f"not UTF-8 text (line {line}, byte {exc.start + 1})",
                        "save the file as UTF-8") from None
    try:
        value = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(path, "", f"TOML syntax error: {exc}", "fix the syntax at that line") from None
    except RecursionError:
        value = None
    if value is None or _nesting(value) > MAX_NESTING:
        # Checked here so nothing later (interpolation, validation) recurses that deep.
        raise SpecError(path, "", f"tables or arrays nested more than {MAX_NESTING} levels deep",
                        "flatten the structure") from None
    return value


def _nesting(value: Any) -> int:
    """How deeply dicts and lists nest inside ``value`` (iteratively: any depth is safe)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_NESTING:
            break
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def load_agents_file(path: Path) -> AgentsFile:
    raw = read_toml(path)
    return validate_as(AgentsFile, _interpolate_leniently(raw), path)


def _interpolate_leniently(raw: dict[str, Any]) -> dict[str, Any]:
    # Structure is validated up front; missing variables are only an error
    # in the sections a run actually uses (see resolve_run).
    def sub(m: re.Match[str]) -> str:
        found = _value_of(m, os.environ)
        return m.group(0) if found is None else found

    def keep(value: Any) -> Any:
        if isinstance(value, str):
            return _VAR.sub(sub, value)
        if isinstance(value, dict):
            return {k: keep(v) for k, v in value.items()}
        if isinstance(value, list):
            return [keep(v) for v in value]
        return value

    return keep(raw)


def interpolate_leniently(value: Any) -> Any:
    """``value`` with every ``${VAR}`` that is set (or has a default) replaced, and
    the others left as written: for showing a spec, not for running it."""
    return _interpolate_leniently({"value": value})["value"]


def find_agents_file(task_path: Path, task: TaskFile, explicit: Path | None) -> Path | None:
    if explicit is not None:
        return explicit_agents_file(explicit)
    if task.agents_file:
        path = (task_path.parent / task.agents_file).resolve()
        if not path.is_file():
            raise SpecError(task_path, "agents_file", f"{path} does not exist", "point agents_file at an agents.toml")
        return path
    found = find_agents_upward(task_path.resolve().parent)
    if found is not None:
        return found
    cwd = Path.cwd() / "agents.toml"
    return cwd if cwd.is_file() else None


def explicit_agents_file(path: Path) -> Path:
    """An agents file named with ``--agents``: it must exist."""
    if not path.is_file():
        raise SpecError(path, "", "agents file not found", "check the --agents path")
    return path



def load_task(path: Path) -> TaskFile:
    raw = read_toml(path)
    return validate_as(TaskFile, _interpolate_leniently(raw), path)


def find_agents_upward(start: Path) -> Path | None:
    """``agents.toml`` in ``start`` or the nearest parent directory that has one."""
    start = start.resolve()
    for directory in [start, *start.parents]:
        candidate = directory / "agents.toml"
        if candidate.is_file():
            return candidate
    return None

