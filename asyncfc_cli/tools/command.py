"""The ``command`` tool kind: an argv run without a shell.

``"{param}"`` placeholders are filled per call, each value landing inside
exactly one argv element, so no argument can inject options or shell syntax
beyond the element the author put it in. A ``path = true`` parameter is never
an option and, with ``root``, is handed to the program as the path asyncfc
resolved and checked. Every process a call starts is stopped when the call
ends, and for the run the kind holds a guard that stops them even if
asyncfc is killed (:mod:`asyncfc_cli.tools.processes`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import trio
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PositiveInt, TypeAdapter, ValidationError, create_model, field_validator, model_validator

from asyncfc_cli.tools import processes
from asyncfc_cli.tools.core import (
    RunContext,
    StaticSource,
    Tool,
    ToolConfigBase,
    ToolError,
    ToolKind,
    ToolLoadError,
    argument_error,
)

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_template(element: str) -> list[tuple[str, str]]:
    """Split one argv element into ``("text", s)`` and ``("param", name)`` parts.

    Only ``{identifier}`` is a placeholder; ``{{``/``}}`` are literal braces.
    Anything else with a brace is rejected rather than guessed at, because a
    silently literal ``{path}`` typo would run the command with the wrong
    argument.
    """
    parts: list[tuple[str, str]] = []
    text: list[str] = []
    i = 0
    while i < len(element):
        ch = element[i]
        if element.startswith("{{", i) or element.startswith("}}", i):
            text.append(ch)
            i += 2
            continue
        if ch == "{":
            m = _PLACEHOLDER.match(element, i)
            if not m:
                raise ValueError(
                    f"bad placeholder in {element!r} at position {i}: expected "
                    "'{name}' with name a letter/underscore followed by letters, "
                    "digits or underscores; write '{{' for a literal '{'"
                )
            if text:
                parts.append(("text", "".join(text)))
                text = []
            parts.append(("param", m.group(1)))
            i = m.end()
            continue
        if ch == "}":
            raise ValueError(
                f"unmatched '}}' in {element!r} at position {i}: write '}}}}' "
                "for a literal '}'"
            )
        text.append(ch)
        i += 1
    if text:
        parts.append(("text", "".join(text)))
    return parts



def _reject_bool(v: Any) -> Any:
    # JSON true is not the integer 1 to a command line.
    if isinstance(v, bool):
        raise ValueError("expected a number, not a boolean")
    return v


_PARAM_TYPES: dict[str, Any] = {
    "string": str,
    "integer": Annotated[int, BeforeValidator(_reject_bool)],
    "number": Annotated[float, Field(allow_inf_nan=False), BeforeValidator(_reject_bool)],
    "boolean": bool,
}



class CommandParam(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["string", "integer", "number", "boolean"] = Field("string", description="the JSON type the model sends")
    description: str | None = Field(None, description="what the model is told the param is")
    default: str | int | float | bool | None = Field(None, description="the value when the model leaves it out")
    path: bool = Field(False, description="the value is a path that must stay inside root")

    @model_validator(mode="after")
    def _check(self) -> "CommandParam":
        if self.path and self.type != "string":
            raise ValueError(
                f"path = true needs type = \"string\", not {self.type!r}. Fix: set type = \"string\" "
                "or drop path"
            )
        if "default" in self.model_fields_set:
            if self.default is None:
                raise ValueError(
                    "default has no value of the param's type. Fix: give one, or omit default to make "
                    "the param required"
                )
            try:
                self.default = TypeAdapter(_PARAM_TYPES[self.type]).validate_python(
                    self.default
                )
            except ValidationError as exc:
                raise ValueError(
                    f"default {self.default!r} is not a valid {self.type}: "
                    f"{exc.errors()[0]['msg']}. Fix: give a default of type {self.type}"
                ) from None
        return self

    @property
    def required(self) -> bool:
        return "default" not in self.model_fields_set


class CommandToolConfig(ToolConfigBase):
    command: list[str] = Field(min_length=1, description='the argv, run without a shell: ["git", "log", "{ref}"]')
    # A command has no docstring to fall back on.
    description: str = Field(description="what the model is told the tool does")
    cwd: str | None = Field(None, description="the working directory, relative to this file")
    env: dict[str, str] = Field(default_factory=dict, description="variables added to the environment")
    ok_codes: list[int] = Field(default_factory=lambda: [0], min_length=1,
                                description="exit codes that mean success, e.g. [0, 1]")
    max_output: PositiveInt = Field(65536, description="bytes of output kept")
    root: str | None = Field(None, description="the directory path = true params must stay inside")
    params: dict[str, CommandParam] = Field(
        default_factory=dict, description='the {placeholders}: [tools.NAME.params] x = { type = "string", ... }')

    @field_validator("description")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("description is empty. Fix: say what the tool does; the model reads it")
        return v

    @model_validator(mode="after")
    def _check_placeholders(self) -> "CommandToolConfig":
        used: list[str] = []
        for index, element in enumerate(self.command):
            parts = parse_template(element)
            names = [v for k, v in parts if k == "param"]
            if index == 0 and names:
                raise ValueError(
                    f"the executable {element!r} cannot contain placeholders: "
                    "letting the model pick the program defeats the point of a "
                    "fixed argv. Fix: put the placeholder in a later element"
                )
            used.extend(names)
        for name in used:
            if name not in self.params:
                raise ValueError(
                    f"placeholder {{{name}}} is not a declared param. Fix: add "
                    f"[tools.NAME.params] {name} = {{ type = \"string\", "
                    f"description = \"...\" }}, or write {{{{{name}}}}} for literal "
                    "braces"
                )
        for name in self.params:
            if name not in used:
                raise ValueError(
                    f"param {name!r} is declared but never used in command. Fix: add "
                    f"\"{{{name}}}\" to an argv element or remove the param"
                )
        if self.root is not None and not any(p.path for p in self.params.values()):
            raise ValueError(
                "root is set but no param has path = true, so it would check "
                "nothing. Fix: mark the path params with path = true or drop root"
            )
        return self



_INHERITED_ENV = ("PATH", "HOME", "LANG")
_PIPE_GRACE = 1.0  # seconds to drain pipes after exit when an escaped child holds them
_STDERR_TAIL = 2000


def _render(value: Any, type_: str) -> str:
    if type_ == "string":
        return value
    if type_ == "number" and float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return json.dumps(value)


@dataclass
class _Capture:
    limit: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def feed(self, chunk: bytes) -> None:
        # Keep draining past the limit: a child blocked on a full pipe would
        # never exit.
        kept = chunk[: self.limit - len(self.data)]
        self.data += kept
        self.dropped += len(chunk) - len(kept)

    def text(self) -> str:
        out = self.data.decode("utf-8", errors="replace")
        if self.dropped:
            out += f"\n[... {self.dropped} bytes cut]"
        return out


async def _drain(stream: trio.abc.ReceiveStream, capture: _Capture) -> None:
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return
        capture.feed(chunk)


async def _run_process(
    argv: list[str], cwd: str, env: dict[str, str], max_output: int
) -> tuple[int, str, str]:
    try:
        child = processes.spawn(argv, cwd, env)
    except FileNotFoundError:
        if not os.path.isdir(cwd):
            raise ToolError(f"working directory {cwd!r} no longer exists") from None
        # Not the PATH itself: it is long, says nothing to the model, and may
        # name things about the machine that are nobody's business.
        raise ToolError(
            f"executable {argv[0]!r} not found (it is not on the tool's PATH); "
            "the tool cannot run on this machine",
        ) from None
    except PermissionError:
        raise ToolError(f"executable {argv[0]!r} is not executable (permission denied)") from None
    except OSError as exc:
        raise ToolError(f"cannot start {argv[0]!r}: {type(exc).__name__}: {exc}") from None

    out, err = _Capture(max_output), _Capture(max_output)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, child.stdout, out)
            nursery.start_soon(_drain, child.stderr, err)
            await child.wait()
            # Leftover background children would keep the pipes open (and
            # outlive the run); the tool is over, so they go too.
            processes.kill_group(child.pid)
            nursery.cancel_scope.deadline = trio.current_time() + _PIPE_GRACE
    except BaseException:
        processes.kill_group(child.pid)
        with trio.CancelScope(shield=True):
            await child.wait()
        raise
    finally:
        # Whatever left the group (setsid, a double fork) still carries the
        # call's token: it goes too.
        processes.sweep(child.token)
        with trio.CancelScope(shield=True):
            for stream in (child.stdout, child.stderr):
                await stream.aclose()
    return child.popen.returncode, out.text(), err.text()


def _exit_description(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _inside(path: str, root: str) -> bool:
    # Component-wise, never a string prefix: "/x/rootkit" is not inside "/x/root".
    return os.path.commonpath([path, root]) == root


def _confine_path(pname: str, text: str, cwd: str, root: str | None) -> str:
    """The text to hand the program for a ``path = true`` value, or a ToolError.

    A value starting with ``-`` is refused outright (with or without a root):
    most programs read it as an option whatever comes before it, and ``--``
    does not stop all of them (pytest takes ``--junitxml=...`` after it).

    With a root, the value is resolved here (following every symlink, and
    ``/proc/self/...`` in this process) and what the program receives is that
    resolved path, relative to the tool's resolved cwd: the program opens what
    was checked, not a string it would resolve again in another process.
    """
    if text == "":
        raise ToolError(
            f"argument {pname!r}: the path is empty; write '.' for the working directory",
        )
    if text.startswith("-"):
        raise ToolError(
            f"argument {pname!r}: path {text!r} starts with '-', so the program would "
            f"read it as an option; to name a file that starts with '-', write "
            f"'./{text}'",
        )
    if root is None:
        return text
    real = os.path.realpath(os.path.join(cwd, text))
    if not _inside(real, root):
        raise ToolError(
            f"argument {pname!r}: path {text!r} resolves to {real!r}, "
            f"outside the allowed root {root!r}; use a path inside it",
        )
    relative = os.path.relpath(real, cwd)
    # "./-x" resolves to "-x": hand it back with the prefix that keeps it a name.
    return "./" + relative if relative.startswith("-") else relative


def check_executable(name: str, executable: str, written: str, env: dict[str, str], base_dir: Path) -> None:
    # At load time, so `validate` and `run` both say it before anything runs,
    # rather than every call failing in front of the model.
    if "/" in executable:
        if not os.path.isfile(executable):
            raise ToolLoadError(
                f"tool {name!r}: program {written!r} does not exist ({executable}). "
                f"Fix: give a path to an executable file, relative to {base_dir} or absolute"
            )
        if not os.access(executable, os.X_OK):
            raise ToolLoadError(
                f"tool {name!r}: program {written!r} is not executable ({executable}). "
                f"Fix: chmod +x {executable}, or run it through its interpreter"
            )
        return
    if shutil.which(executable, path=env.get("PATH", os.defpath)) is None:
        where = "the PATH set in its env" if "PATH" in env and env["PATH"] != os.environ.get("PATH") else "PATH"
        # "mcp-server-git --repository ." as one string: the arguments are no part of the name.
        spaced = len(written.split()) > 1
        raise ToolLoadError(
            f"tool {name!r}: program {written!r} is not found on {where}. "
            + ("Fix: give the program and its arguments apart: [\"" + '", "'.join(written.split())
               + "\"] (an mcp server also takes command = \"" + written.split()[0] + "\" with args = [...])"
               if spaced else
               "Fix: install it, or give its absolute path")
        )


def build_command_tool(name: str, cfg: CommandToolConfig, base_dir: Path) -> Tool:
    base_dir = Path(base_dir).resolve()
    cwd = (base_dir / cfg.cwd).resolve() if cfg.cwd else base_dir
    if not cwd.is_dir():
        raise ToolLoadError(
            f"tool {name!r}: cwd {str(cwd)!r} is not a directory. Fix: set cwd to an "
            f"existing directory, relative to {base_dir}"
        )
    root: str | None = None
    if cfg.root is not None:
        root = os.path.realpath(base_dir / cfg.root)
        if not os.path.isdir(root):
            raise ToolLoadError(
                f"tool {name!r}: root {root!r} is not a directory. Fix: set root to "
                f"an existing directory, relative to {base_dir}"
            )

    template = [parse_template(e) for e in cfg.command]
    executable = cfg.command[0].replace("{{", "{").replace("}}", "}")
    if "/" in executable and not os.path.isabs(executable):
        # Like cwd and root: relative to agents.toml, not to wherever the CLI runs.
        executable = str(base_dir / executable)

    env = {k: os.environ[k] for k in _INHERITED_ENV if k in os.environ}
    env.update(cfg.env)
    check_executable(name, executable, cfg.command[0], env, base_dir)

    fields: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for index, (pname, param) in enumerate(cfg.params.items()):
        prop: dict[str, Any] = {"type": param.type}
        if param.description:
            prop["description"] = param.description
        if param.required:
            required.append(pname)
            default: Any = ...
        else:
            prop["default"] = param.default
            default = param.default
        properties[pname] = prop
        fields[f"p{index}"] = (_PARAM_TYPES[param.type], Field(default, alias=pname))
    model = create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    aliases = {info.alias: f for f, info in model.model_fields.items()}
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    ok_codes = set(cfg.ok_codes)

    async def runner(arguments: dict[str, Any]) -> Any:
        try:
            validated = model.model_validate(arguments)
        except ValidationError as exc:
            raise argument_error(name, exc, schema) from None
        values: dict[str, str] = {}
        for pname, param in cfg.params.items():
            value = getattr(validated, aliases[pname])
            text = _render(value, param.type)
            if "\x00" in text:
                raise ToolError(
                    f"invalid arguments for {name!r}: argument {pname!r} contains a NUL "
                    "character, which cannot be passed on a command line",
                )
            if param.path:
                text = _confine_path(pname, text, str(cwd), root)
            values[pname] = text
        argv = [
            "".join(v if k == "text" else values[v] for k, v in parts) for parts in template
        ]
        argv[0] = executable
        code, stdout, stderr = await _run_process(argv, str(cwd), env, cfg.max_output)
        if code not in ok_codes:
            tail = (stderr or stdout)[-_STDERR_TAIL:].strip()
            raise ToolError(
                f"command {_exit_description(code)} (ok codes: {sorted(ok_codes)}); "
                f"{'stderr' if stderr else 'stdout'} tail: {tail or '(empty)'}",
            )
        return {"exit_code": code, "stdout": stdout, "stderr": stderr}

    return Tool(
        name=name,
        description=cfg.description,
        parameters=schema,
        kind="command",
        runner=runner,
        ordered=cfg.ordered,
        timeout=cfg.timeout,
        max_concurrency=cfg.max_concurrency,
        expected_latency=cfg.expected_latency,
        source=" ".join(cfg.command),
    )


@asynccontextmanager
async def _run_resources(run: RunContext) -> AsyncIterator[None]:
    async with processes.guard():
        yield


KIND = ToolKind(
    name="command",
    key="command",
    config=CommandToolConfig,
    build=lambda name, cfg, base_dir: StaticSource(build_command_tool(name, cfg, base_dir)),
    run_resources=_run_resources,
)
