"""agents.toml and task.toml: parsing, validation, and the errors users read.

Every problem with a spec becomes a :class:`SpecError` that names the file,
the key path inside it and what would be valid; the CLI prints it and exits 2.

How a task finds its agents file, first match wins:

1. ``--agents FILE`` on the command line;
2. ``agents_file = "..."`` in the task (relative to the task file);
3. ``agents.toml`` in the task's directory or the nearest parent directory
   that has one (so ``tasks/x.toml`` finds the project's ``agents.toml``);
4. ``agents.toml`` in the current directory.

A task whose agent is written inline (``[agent]``) with a LiteLLM model string
and its own ``[tools]`` needs no agents file at all.

``${VAR}`` and ``${VAR:-default}`` in any string value are replaced from the
environment (a variable set to the empty string counts as unset). Only the
sections a run uses are interpolated strictly: the task's prompt, params,
expect and agents_file, the run's agent, its model, its tools, and the [sim]
plan when the model is the simulated one. An unset variable anywhere else is
left alone, so an agent for a hosted model whose key is unset does not stop
the quickstart from running.

Prompt parameters are ``{name}`` placeholders filled from ``[params]`` and
``--set name=value``; a placeholder without a value, and a ``--set`` for a
name the prompt does not have (usually a typo), are errors.

Tool names: a task may define ``[tools.NAME]`` of its own, but not a name
its agents file also defines (it used to replace that tool silently); the
name ``wait`` is reserved for async mode's own tool, in every mode.

``asyncfc validate`` and ``asyncfc run`` share one check: a task goes
through :func:`resolve_run`, which also refuses what could never work (a
[sim] step calling a tool the agent lacks, unless listed in ``[sim]
unknown_tools``; ``expect.tools_called`` naming a tool the agent lacks);
each agent of an agents file goes through :func:`resolve_agent`, the part
of :func:`resolve_run` that resolves an agent.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from asyncfc_cli import modes

Mode = Literal[modes.NAMES]  # type: ignore[valid-type]  (the registry's names, as pydantic checks them)
SIM_MODEL = "sim"
DEFAULT_MODE: Mode = modes.DEFAULT


class SpecError(Exception):
    """A spec problem: ``file: key: message`` plus how to fix it."""

    def __init__(self, file: Path | str | None, key: str, message: str, fix: str = "") -> None:
        self.file, self.key, self.message, self.fix = file, key, message, fix
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(str(p) for p in (self.file, self.key) if p)
        text = f"{where}: {self.message}" if where else self.message
        return f"{text}\n  fix: {self.fix}" if self.fix else text


# --- the schema --------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    """``[models.NAME]``: how to reach one model through LiteLLM."""

    model: str = Field(description='LiteLLM model string, e.g. "openai/gpt-4o-mini", or "sim"')
    api_base: str | None = None
    api_key_env: str | None = Field(None, description="name of the environment variable with the key")
    api_key: str | None = Field(None, description='the key itself, normally "${SOME_VAR}"')
    params: dict[str, Any] = Field(default_factory=dict, description="extra LiteLLM arguments")
    retries: int = Field(3, ge=0, le=10)
    request_timeout: float = Field(120.0, gt=0)
    eager_input_streaming: bool | None = Field(
        None, description="Anthropic: stream tool arguments without server buffering (default: on for anthropic/)")


class AgentSpec(_Strict):
    """``[agents.NAME]`` (or ``[agent]`` inline in a task)."""

    model: str = Field(description="a [models] name or a LiteLLM model string")
    instructions: str = ""
    tools: list[str] = Field(default_factory=list)
    mode: Mode = DEFAULT_MODE
    max_turns: int = Field(16, ge=1)
    max_result_chars: int = Field(
        32_000, ge=100, description="longest tool result shown to the model; the rest is cut and marked")
    timeout: float | None = Field(300.0, gt=0, description="seconds for the whole run")
    tool_timeout: float | None = Field(60.0, gt=0, description="default per-tool timeout")
    max_concurrency: int = Field(32, ge=1, description="tool calls running at once, all tools")
    futures_instruction: str | None = Field(
        None, description="replaces the futures instruction added to the system prompt in async mode")


class Expectations(_Strict):
    """``[expect]``: what a successful run looks like (exit 3 if not met)."""

    contains: list[str] = Field(default_factory=list)
    not_contains: list[str] = Field(default_factory=list)
    matches: str | None = Field(None, description="a Python regular expression the answer must match (re.search)")
    tools_called: list[str] = Field(default_factory=list)

    @field_validator("matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class AgentsFile(_Strict):
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    agents: dict[str, AgentSpec] = Field(default_factory=dict)
    tools: dict[str, dict[str, Any]] = Field(default_factory=dict)


class TaskFile(_Strict):
    agent: str | AgentSpec = Field(description="an [agents] name from agents.toml, or an inline [agent] table")
    agents_file: str | None = None
    prompt: str
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    expect: Expectations = Field(default_factory=Expectations)
    tools: dict[str, dict[str, Any]] = Field(default_factory=dict)
    sim: dict[str, Any] | None = None
    description: str = ""


# --- interpolation -----------------------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")

# Variables asyncfc knows without the environment (the environment still wins):
# ASYNCFC_PYTHON is the interpreter asyncfc runs on, which has asyncfc's
# dependencies (e.g. the mcp package for an MCP server written in Python).
BUILTIN_VARS = {"ASYNCFC_PYTHON": sys.executable}


def interpolate(value: Any, file: Path | None, key: str, env: dict[str, str] | None = None) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string inside ``value``."""
    env = os.environ if env is None else env
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env and env[name] != "":
                return env[name]
            if name in BUILTIN_VARS:
                return BUILTIN_VARS[name]
            if default is not None:
                return default
            raise SpecError(
                file, key, f"environment variable {name} is not set",
                f"export {name}=..., or write ${{{name}:-default}} to give a default",
            )

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


def validate_as(model: type[BaseModel], data: dict[str, Any], file: Path | None, prefix: str = "") -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise spec_error_from(exc, model, file, prefix, data) from None


def spec_error_from(
    exc: ValidationError,
    model: type[BaseModel] | None,
    file: Path | None,
    prefix: str = "",
    data: Any = None,
) -> SpecError:
    """Turn pydantic's errors into one message that names the key and the fix.

    Pydantic reports a union field (``agent = "name" | {table}``, a param's
    ``str | int | ...``) once per member, with the member's type name inside
    the location (``agent.str``, ``agent.AgentSpec.max_turns``). Those tags
    are dropped, and the error that got furthest into the user's data wins:
    for an ``[agent]`` table that is the bad key inside it, not "should be a
    string".
    """
    errors = exc.errors()
    cleaned = [(err, _real_loc(err, data)) for err in errors]
    first_top = cleaned[0][1][:1]
    group = [(err, loc) for err, loc in cleaned if loc[:1] == first_top]
    depth = max(len(loc) for _, loc in group)
    deepest = [(err, loc) for err, loc in group if len(loc) == depth]
    err, loc = next(((e, l) for e, l in deepest if e["type"] == "extra_forbidden"), deepest[0])
    if err["type"] == "missing":
        # A missing key next to an unknown one is usually a typo of it.
        err, loc = next(((e, l) for e, l in cleaned if e["type"] == "extra_forbidden" and l[:-1] == loc[:-1]),
                        (err, loc))
    names = [str(p) for p in loc]
    key = ".".join(([prefix] if prefix else []) + names)
    kind = err["type"]
    if kind == "extra_forbidden":
        valid = _field_names(model, loc[:-1]) if model else []
        fix = f"valid keys here: {', '.join(valid)}" if valid else "remove it"
        return SpecError(file, key, "unknown key", fix)
    if kind == "missing":
        return SpecError(file, key, "required key is missing", f"add {names[-1]} = ...")
    got = err.get("input")
    shown = "a table" if isinstance(got, dict) else repr(got)
    fix = _fix_for(model, loc)
    if sum(1 for _, other in deepest if other == loc) > 1:
        # Every member of a union refused the value: its type is wrong.
        return SpecError(file, key, f"wrong type (got {shown})", fix)
    message = err["msg"][0].lower() + err["msg"][1:]
    if message.startswith("value error, "):
        message = message[len("value error, "):]
    if kind == "value_error" and isinstance(got, dict):
        # A check on a whole table (e.g. a [sim] plan's references): the
        # message says what is wrong, showing the table would not help.
        message, sep, valid = message.partition("; valid ")
        fix = f"valid {valid}" if sep else f"correct the [{key}] table as the message says"
        return SpecError(file, key, message, fix)
    return SpecError(file, key, f"{message} (got {shown})", fix)


def _real_loc(err: Any, data: Any) -> tuple[Any, ...]:
    """``err["loc"]`` without the union-member tags pydantic puts in it."""
    loc = tuple(err["loc"])
    if data is None:
        return tuple(p for p in loc if not _looks_like_tag(p))
    out: list[Any] = []
    current = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(current, dict) and part in current:
            out.append(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            out.append(part)
            current = current[part]
        elif last and err["type"] == "missing" or not _looks_like_tag(part):
            out.append(part)
            current = None
        # else: a union tag, the data stays where it is
    return tuple(out)


def _looks_like_tag(part: Any) -> bool:
    return isinstance(part, str) and (
        part in ("str", "int", "float", "bool", "none") or "[" in part or part[:1].isupper()
    )


def _fix_for(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> str:
    if model is None:
        return ""
    ann, info = _annotation_at(model, loc)
    if ann is None:
        return ""
    hint = info.description if info is not None and info.description else ""
    return f"expected {_describe_type(ann)}" + (f": {hint}" if hint else "")


def _describe_type(ann: Any) -> str:
    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        members = [_describe_type(a) for a in args if a is not type(None)]
        return members[0] if len(members) == 1 else ", ".join(members[:-1]) + " or " + members[-1]
    if origin is list:
        return f"a list of {_plural(_describe_type(args[0]))}" if args else "a list"
    if origin is dict:
        return f"a table of {_plural(_describe_type(args[-1]))}" if args else "a table"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "a table"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return names.get(ann, str(ann).replace("typing.", ""))


def _plural(description: str) -> str:
    if description.startswith(("a ", "an ")):
        word = description.split(" ", 1)[1]
        return word if " or " in word or "," in word else word + "s"
    return description


def _annotation_at(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, Any]:
    """The type annotation (and field info) at a tag-free location inside ``model``."""
    current: Any = model
    info = None
    for part in loc:
        current = _unwrap(current, part)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return None, None
            current = info.annotation
        elif typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1] if typing.get_args(current) else Any
            info = None
        else:
            return None, None
    return current, info


def _unwrap(ann: Any, part: Any) -> Any:
    # From a union, the member that can hold ``part``: a model for a key,
    # a dict/list for an entry.
    if typing.get_origin(ann) not in (typing.Union, types.UnionType):
        return ann
    for member in typing.get_args(ann):
        if isinstance(member, type) and issubclass(member, BaseModel) and str(part) in member.model_fields:
            return member
    for member in typing.get_args(ann):
        if typing.get_origin(member) in (dict, list):
            return member
    return ann


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    ann = _annotation_at(model, loc)[0] if loc else model
    for candidate in [ann, *typing.get_args(ann)]:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return list(candidate.model_fields)
    return []


def load_agents_file(path: Path) -> AgentsFile:
    raw = read_toml(path)
    return validate_as(AgentsFile, _interpolate_leniently(raw), path)


def _interpolate_leniently(raw: dict[str, Any]) -> dict[str, Any]:
    # Structure is validated up front; missing variables are only an error
    # in the sections a run actually uses (see resolve_run).
    def keep(value: Any) -> Any:
        if isinstance(value, str):
            return _VAR.sub(lambda m: os.environ.get(m.group(1)) or BUILTIN_VARS.get(m.group(1))
                            or (m.group(2) if m.group(2) is not None else m.group(0)), value)
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
        if not explicit.is_file():
            raise SpecError(explicit, "", "agents file not found", "check the --agents path")
        return explicit
    if task.agents_file:
        path = (task_path.parent / task.agents_file).resolve()
        if not path.is_file():
            raise SpecError(task_path, "agents_file", f"{path} does not exist", "point agents_file at an agents.toml")
        return path
    for directory in [task_path.resolve().parent, *task_path.resolve().parent.parents]:
        candidate = directory / "agents.toml"
        if candidate.is_file():
            return candidate
    cwd = Path.cwd() / "agents.toml"
    return cwd if cwd.is_file() else None


# --- the resolved run --------------------------------------------------------------------


@dataclass
class ResolvedModel:
    name: str  # the [models] key or the model string as given
    model: str  # LiteLLM model string, or "sim"
    api_base: str | None = None
    api_key: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    retries: int = 3
    request_timeout: float = 120.0
    eager_input_streaming: bool | None = None
    key_env: str | None = None  # the api_key_env variable, if the key comes from one

    @property
    def is_sim(self) -> bool:
        return self.model == SIM_MODEL or self.model.startswith(SIM_MODEL + ":")

    @property
    def sim_protocol(self) -> str | None:
        """The wire format asked for with ``sim:P`` (None: the plan's own)."""
        return self.model.partition(":")[2] or None if self.is_sim else None

    def __repr__(self) -> str:
        return f"ResolvedModel(name={self.name!r}, model={self.model!r})"


@dataclass
class RunSpec:
    """Everything a run needs, validated; what the CLI hands the agent loop."""

    task_path: Path | None  # None: a prompt given on the command line (resolve_prompt_run)
    agents_path: Path | None
    agent_name: str
    agent: AgentSpec
    model: ResolvedModel
    prompt: str
    tools: dict[str, Any]  # name -> asyncfc_cli.tools.Tool, those known before the run (python, command)
    expect: Expectations
    sim_plan: Any | None  # asyncfc_cli.sim.plan.SimPlan
    digest: str
    # Every [tools.NAME] the agent uses, opened inside the run (asyncfc_cli.tools.open_tools):
    # an mcp table's tools exist only then.
    tool_sources: list[Any] = field(default_factory=list)
    task_label: str | None = None  # what traces and --json call the task when there is no file
    hints: list[str] = field(default_factory=list)  # likely mistakes that are not errors (tool_hints)

    @property
    def task_name(self) -> str:
        """The task as traces, ``trace list`` and ``--json`` show it."""
        return self.task_label or str(self.task_path)


def parse_set(pairs: list[str]) -> dict[str, str]:
    """``--set key=value`` pairs."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SpecError(None, "--set", f"{pair!r} is not key=value", "write --set name=value")
        out[key.strip()] = value
    return out


def check_text(value: Any, file: Path | None, key: str, what: str) -> None:
    """Refuse text a model cannot be sent: a lone surrogate, which is how
    bytes that are not UTF-8 arrive from argv (``--set name=$'\\xff'``), the
    environment or a JSON escape. Said here, naming where it came from, not
    later as a failed request."""
    from asyncfc_cli.output import first_surrogate

    found = first_surrogate(value) if isinstance(value, str) else None
    if found is not None:
        raise SpecError(file, key, f"{what} holds {found}: it is not text a model can be sent",
                        "pass UTF-8 text (check the encoding of your terminal or of the file it came from)")


def prompt_parameters(template: str) -> set[str]:
    """The ``{name}`` placeholders of a prompt (``{{`` and ``}}`` are literal braces)."""
    return set(re.findall(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})", template))


def render_prompt(template: str, params: dict[str, Any], file: Path) -> str:
    names = prompt_parameters(template)
    missing = sorted(names - set(params))
    if missing:
        raise SpecError(
            file, "prompt", f"parameter {{{missing[0]}}} has no value",
            f"add it under [params] or pass --set {missing[0]}=...",
        )
    out = template
    for name in names:
        out = re.sub(r"(?<!\{)\{" + name + r"\}(?!\})", lambda _m, v=params[name]: str(v), out)
    return out.replace("{{", "{").replace("}}", "}")


def load_task(path: Path) -> TaskFile:
    raw = read_toml(path)
    return validate_as(TaskFile, _interpolate_leniently(raw), path)


def resolve_run(
    task_path: Path,
    *,
    agents_path: Path | None = None,
    model_override: str | None = None,
    mode_override: str | None = None,
    overrides: dict[str, str] | None = None,
    timeout_override: float | None = None,
) -> RunSpec:
    """Load a task and its agent, strictly interpolated, tools built, and check
    that the run can work. ``asyncfc validate TASK`` is this function, run
    for nothing else: whatever a run would refuse, validate refuses too."""
    task_path = Path(task_path)
    raw_task = read_toml(task_path)
    if not raw_task:
        raise SpecError(task_path, "", "the file is empty", "write a task: agent = ..., prompt = ...")
    task = validate_as(TaskFile, _interpolate_leniently(raw_task), task_path)
    # The parts of the task every run uses are interpolated strictly, so an
    # unset ${VAR} in the prompt is an error rather than literal text.
    strict = {key: interpolate(raw_task[key], task_path, key)
              for key in ("agents_file", "prompt", "params", "expect") if key in raw_task}
    task = validate_as(TaskFile, {**_interpolate_leniently(raw_task), **strict}, task_path)
    found = find_agents_file(task_path, task, agents_path)
    raw_agents = read_toml(found) if found else {}
    agents = validate_as(AgentsFile, _interpolate_leniently(raw_agents), found) if found else AgentsFile()
    check_tool_definitions(raw_task.get("tools", {}), task_path, raw_agents.get("tools", {}), found)

    if isinstance(task.agent, str):
        if task.agent not in agents.agents:
            known = ", ".join(sorted(agents.agents)) or "none"
            where = found or "no agents.toml found (looked next to the task, in its parents and in the current directory)"
            raise SpecError(task_path, "agent", f"agent {task.agent!r} is not defined in {where}",
                            f"use one of: {known}, pass --agents FILE, or write an inline [agent] table")
        agent_name = task.agent
        # Where the agent is written: errors about it point there.
        raw_agent, agent_file, agent_key = raw_agents["agents"][agent_name], found, f"agents.{agent_name}"
    else:
        agent_name = "inline"
        raw_agent, agent_file, agent_key = raw_task["agent"], task_path, "agent"
    agent, model, tools, sources = resolve_agent(
        raw_agent, agent_file, agent_key, raw_agents, found, task_tools=raw_task.get("tools", {}),
        task_path=task_path, model_override=model_override, mode_override=mode_override,
        timeout_override=timeout_override)

    params: dict[str, Any] = dict(task.params)
    # A [sim] plan may use parameters the prompt does not (e.g. only in a tool's arguments).
    names = prompt_parameters(task.prompt) | sim_parameters(raw_task.get("sim"))
    unused = sorted(set(overrides or {}) - names)
    if unused:
        known = ", ".join(sorted(names)) or "none"
        raise SpecError(None, "--set", f"the prompt of {task_path} has no parameter {{{unused[0]}}}",
                        f"parameters of this prompt: {known}")
    params.update(overrides or {})
    for name, value in params.items():
        from_set = name in (overrides or {})
        check_text(value, None if from_set else task_path, "--set" if from_set else f"params.{name}",
                   f"parameter {name}")
    prompt = render_prompt(task.prompt, params, task_path)
    check_text(prompt, task_path, "prompt", "the prompt")

    # A server's tools (mcp) are listed only when it starts, inside the run:
    # names that may be among them are not judged here.
    dynamic = any(not src.static_tools() for src in sources)
    for index, name in enumerate(task.expect.tools_called):
        if name not in tools and not dynamic:
            # "wait" is never recorded as a call, so it cannot be expected either.
            raise SpecError(task_path, f"expect.tools_called[{index}]",
                            f"agent {agent_name!r} has no tool {name!r}, so this can never be met",
                            f"use one of the agent's tools: {', '.join(sorted(tools)) or 'none'}")

    sim_plan = None
    if model.is_sim and task.sim is None:
        from asyncfc_cli.sim.plan import no_plan

        sim_plan = no_plan()  # answers, saying it is simulated: trying an agent needs no plan
    elif model.is_sim:
        raw_sim = fill_sim_params(interpolate(raw_task["sim"], task_path, "sim"), params, task_path)
        sim_plan = load_sim_plan(raw_sim, task_path)
        if not dynamic:
            check_sim_tools(sim_plan, raw_sim, tools, agent.mode, agent_name, task_path)

    from asyncfc_cli.trace import digest

    return RunSpec(
        task_path=task_path,
        agents_path=found,
        agent_name=agent_name,
        agent=agent,
        model=model,
        prompt=prompt,
        tools=tools,
        tool_sources=sources,
        expect=task.expect,
        sim_plan=sim_plan,
        digest=digest({"task": raw_task, "agents": raw_agents.get("agents", {}).get(agent_name),
                       "mode": agent.mode, "model": model.model}),
        hints=tool_hints(tools, {**raw_agents.get("tools", {}), **raw_task.get("tools", {})}),
    )


# The modes' own tools (async: wait). Reserved in every mode, so a --mode switch
# never changes what a name means.
RESERVED_TOOL_NAMES = modes.RESERVED_TOOL_NAMES


def check_tool_definitions(task_tools: dict[str, Any], task_path: Path | None,
                           agents_tools: dict[str, Any], agents_path: Path | None) -> None:
    """Tool names are unique and not reserved.

    A task's ``[tools.x]`` used to replace the agents file's ``x`` without a
    word, so the same agent ran a different tool depending on the task: a
    name defined in both files is now an error.
    """
    for tools, file in ((task_tools, task_path), (agents_tools, agents_path)):
        for name in tools:
            if name in RESERVED_TOOL_NAMES:
                raise SpecError(file, f"tools.{name}", f"the tool name {name!r} is reserved: async mode gives "
                                "the model its own wait tool to block on futures", "rename the tool")
    both = sorted(set(task_tools) & set(agents_tools))
    if both:
        name = both[0]
        raise SpecError(task_path, f"tools.{name}", f"tool {name!r} is also defined in {agents_path}; "
                        "a task may not redefine a tool of its agents file",
                        "give the task's tool another name (and list that name in the agent's tools), "
                        "or remove one of the two definitions")


def resolve_agent(
    raw_agent: dict[str, Any],
    agent_file: Path | None,
    agent_key: str,
    raw_agents: dict[str, Any],
    agents_path: Path | None,
    *,
    task_tools: dict[str, Any] | None = None,
    task_path: Path | None = None,
    model_override: str | None = None,
    mode_override: str | None = None,
    timeout_override: float | None = None,
) -> tuple[AgentSpec, ResolvedModel, dict[str, Any], list[Any]]:
    """An agent as a run uses it: strictly interpolated, overrides applied, its
    model resolved, its tool sources built and the tools known before the run
    (an mcp source's tools exist only once it is opened, inside the run). Shared by :func:`resolve_run` and by
    ``asyncfc validate`` on an agents file (every agent, as a run of it would)."""
    from asyncfc_cli import tools as tools_mod

    task_tools = task_tools or {}
    agents_tools = raw_agents.get("tools", {})
    agent = validate_as(AgentSpec, interpolate(raw_agent, agent_file, agent_key), agent_file, agent_key)
    if mode_override:
        if mode_override not in modes.MODES:
            raise SpecError(None, "--mode", f"unknown mode {mode_override!r}", f"use {modes.listed()}")
        agent = agent.model_copy(update={"mode": mode_override})
    if timeout_override is not None:
        if not timeout_override > 0:  # also refuses NaN
            raise SpecError(None, "--timeout", "must be a positive number of seconds", "give seconds, e.g. --timeout 60")
        agent = agent.model_copy(update={"timeout": timeout_override})

    if model_override:
        model = _resolve_model(model_override, raw_agents, agents_path, None, "--model")
    else:
        model = _resolve_model(agent.model, raw_agents, agents_path, agent_file, f"{agent_key}.model")

    tools = {}
    sources = []
    for index, name in enumerate(agent.tools):
        if name in task_tools:
            raw, file = task_tools[name], task_path
        elif name in agents_tools:
            raw, file = agents_tools[name], agents_path
        else:
            known = ", ".join(sorted({*agents_tools, *task_tools})) or "none"
            raise SpecError(agent_file, f"{agent_key}.tools[{index}]",
                            f"tool {name!r} is not defined",
                            f"define [tools.{name}] (in the task or in agents.toml) or use one of: {known}")
        if not isinstance(raw, dict):
            raise SpecError(file, f"tools.{name}", f"must be a table (got {raw!r})", f"write [tools.{name}]")
        raw = interpolate(raw, file, f"tools.{name}")
        try:
            source = tools_mod.build_source(name, raw, Path(file).parent.resolve())  # type: ignore[arg-type]
        except ValidationError as exc:
            raise spec_error_from(exc, None, file, f"tools.{name}") from None
        except tools_mod.ToolLoadError as exc:
            raise tool_spec_error(exc, name, file) from None
        source.set_default_timeout(agent.tool_timeout)
        sources.append(source)
        tools.update({tool.name: tool for tool in source.static_tools()})
    return agent, model, tools, sources


def check_sim_tools(plan: Any, raw_sim: dict[str, Any], tools: dict[str, Any], mode: str, agent_name: str,
                    file: Path) -> None:
    """Every tool a [sim] plan calls is one the agent has (or async mode's wait),
    unless the task lists it in ``[sim] unknown_tools`` to test that error."""
    allowed = set(tools) | {added.name for added in modes.get(mode).tools}
    on_purpose = set(raw_sim.get("unknown_tools", []))
    for index, step in enumerate(plan.steps):
        if step.tool not in allowed and step.tool not in on_purpose:
            raise SpecError(file, f"sim.steps[{index}].tool",
                            f"step {step.id!r} calls {step.tool!r}, which agent {agent_name!r} does not have "
                            f"(in {mode} mode)",
                            f"use one of: {', '.join(sorted(allowed)) or 'none'}; or, to test the unknown-tool "
                            f"error on purpose, add unknown_tools = [{step.tool!r}] to [sim]")


def load_sim_plan(raw: dict[str, Any], file: Path) -> Any:
    """The [sim] plan. ``unknown_tools`` (names the plan calls on purpose
    although the agent lacks them) is the spec's, not the plan's: checked
    by :func:`check_sim_tools`."""
    from asyncfc_cli.sim.plan import SimPlan

    unknown = raw.get("unknown_tools", [])
    if not isinstance(unknown, list) or not all(isinstance(n, str) for n in unknown):
        raise SpecError(file, "sim.unknown_tools", f"must be a list of tool names (got {unknown!r})",
                        'write unknown_tools = ["name", ...]')
    raw = {k: v for k, v in raw.items() if k != "unknown_tools"}
    try:
        return SimPlan.model_validate(raw)
    except ValidationError as exc:
        raise spec_error_from(exc, SimPlan, file, "sim") from None


def _sim_templates(raw_sim: Any) -> tuple[list[str], list[tuple[str, Any]]]:
    """A raw [sim] table's step ids (written or implied) and its templates as
    (key, value) pairs: each step's ``args`` and the final ``answer``."""
    steps = raw_sim.get("steps") if isinstance(raw_sim, dict) else None
    steps = steps if isinstance(steps, list) else []
    ids = [str(step.get("id") or f"s{i}") if isinstance(step, dict) else f"s{i}"
           for i, step in enumerate(steps, start=1)]
    templates = [(f"sim.steps[{i}].args", step["args"]) for i, step in enumerate(steps)
                 if isinstance(step, dict) and "args" in step]
    final = raw_sim.get("final") if isinstance(raw_sim, dict) else None
    if isinstance(final, dict) and "answer" in final:
        templates.append(("sim.final.answer", final["answer"]))
    return ids, templates


def _template_names(value: Any) -> set[str]:
    """The ``{name}`` references inside a JSON-like value (templates that do not parse: none)."""
    from asyncfc_cli.sim.plan import Ref, parse_template

    if isinstance(value, dict):
        return set().union(*(_template_names(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_template_names(v) for v in value))
    if not isinstance(value, str):
        return set()
    try:
        return {part.id for part in parse_template(value) if isinstance(part, Ref)}
    except ValueError:
        return set()  # reported by the plan's own validation


def sim_parameters(raw_sim: Any) -> set[str]:
    """Names a [sim] plan references that are not its steps: prompt parameters."""
    ids, templates = _sim_templates(raw_sim)
    return set().union(*(_template_names(value) for _, value in templates)) - set(ids)


def fill_sim_params(raw_sim: Any, params: dict[str, Any], file: Path | None) -> Any:
    """A [sim] plan with the task's parameters filled in, as the prompt gets them.

    ``{name}`` in a step's ``args`` or in the final ``answer`` is a step's
    result when a step has that id, else the parameter ``name`` (from
    ``[params]`` or ``--set``), so ``--set`` changes what a simulated run
    does. A string that is only ``{name}`` takes the parameter's value with
    its TOML type; inside longer text the value is inserted as text.
    Braces in a value stay literal. A name that is both a step and a
    parameter, or neither, is an error where the plan uses it.
    """
    from asyncfc_cli.sim.plan import Ref, parse_template

    ids, templates = _sim_templates(raw_sim)
    if not templates:
        return raw_sim

    def escaped(text: str) -> str:
        return text.replace("{", "{{").replace("}", "}}")

    def fill(value: Any, key: str) -> Any:
        if isinstance(value, dict):
            return {k: fill(v, f"{key}.{k}") for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v, f"{key}[{i}]") for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        try:
            parts = parse_template(value)
        except ValueError:
            return value  # reported by the plan's own validation
        for part in parts:
            if isinstance(part, Ref) and part.id not in ids and part.id not in params:
                raise SpecError(file, key, f"{{{part.id}}} is neither a step of the plan nor a parameter",
                                f"valid ids: {', '.join(ids) or '(no steps)'}; for a parameter, add "
                                f"{part.id} under [params] or pass --set {part.id}=...")
        refs = [p for p in parts if isinstance(p, Ref) and p.id in params]
        if not refs:
            return value
        for ref in refs:
            if ref.id in ids:
                raise SpecError(file, key, f"{{{ref.id}}} is both a step id and a prompt parameter",
                                f"rename the step {ref.id!r} or the parameter")
            if ref.path:
                raise SpecError(file, key, f"{{{ref.text}}}: the parameter {ref.id!r} is a single value, "
                                "it has no parts", f"write {{{ref.id}}}")
        if len(parts) == 1:
            whole = params[parts[0].id]
            return escaped(whole) if isinstance(whole, str) else whole
        out = []
        for part in parts:
            if isinstance(part, str):
                out.append(escaped(part))
            elif part.id in params:
                out.append(escaped(str(params[part.id])))
            else:
                out.append("{" + part.text + "}")
        return "".join(out)

    filled = dict(raw_sim)
    if isinstance(filled.get("steps"), list):
        filled["steps"] = [
            {**step, "args": fill(step["args"], f"sim.steps[{i}].args")}
            if isinstance(step, dict) and "args" in step else step
            for i, step in enumerate(filled["steps"])
        ]
    if isinstance(filled.get("final"), dict) and "answer" in filled["final"]:
        filled["final"] = {**filled["final"], "answer": fill(filled["final"]["answer"], "sim.final.answer")}
    return filled


# Libraries whose coroutines need an asyncio event loop: under trio they fail.
_ASYNCIO_ONLY = ("asyncio", "aiohttp", "aiofiles", "asyncpg", "aiosqlite", "aioredis", "uvloop", "motor")


def tool_hints(tools: dict[str, Any], raw_tables: dict[str, Any]) -> list[str]:
    """Likely mistakes in tools that load fine but would fail when called.

    Today one: an ``async def`` Python tool written for asyncio, left on the
    default ``async_backend = "trio"``. It passes every check, then every
    call fails (and the model, not the run, sees the failure), so
    ``validate``, ``run`` and ``tools`` say so before it runs.
    """
    hints = []
    for name, tool in tools.items():
        raw = raw_tables.get(name)
        if getattr(tool, "kind", None) != "python" or not isinstance(raw, dict):
            continue
        if raw.get("async_backend", "trio") != "trio":
            continue
        used = _asyncio_use(_loaded_callable(str(getattr(tool, "source", ""))))
        if used:
            hints.append(f"tool {name!r} is an async function that uses {used} (asyncio), but async tools "
                         f'run on trio unless told otherwise, so every call would fail. Fix: add '
                         f'async_backend = "asyncio" to [tools.{name}]')
    return hints


def _loaded_callable(source: str) -> Any:
    """The function behind ``module:attr`` if its module is already imported (building
    the tool imported it), else None: hints never import anything themselves."""
    import sys

    module_name, sep, attrs = source.partition(":")
    obj = sys.modules.get(module_name) if sep else None
    for attr in attrs.split(".") if obj is not None else ():
        obj = getattr(obj, attr, None)
    return obj


def _asyncio_use(func: Any) -> str | None:
    """The first asyncio-only name an ``async def`` refers to, or None."""
    import functools
    import inspect

    while isinstance(func, functools.partial):
        func = func.func
    try:
        func = inspect.unwrap(func)  # through functools.wraps decorators, to the code that runs
    except ValueError:  # a __wrapped__ cycle
        return None
    if not inspect.iscoroutinefunction(func) or not hasattr(func, "__code__"):
        return None
    names, codes = [], [func.__code__]
    while codes:  # nested functions and comprehensions have their own code objects
        code = codes.pop()
        names.extend(code.co_names)
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    for name in names:
        value = func.__globals__.get(name)
        owner = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if isinstance(owner, str) and owner.split(".")[0] in _ASYNCIO_ONLY:
            return name
    return None


def find_agents_upward(start: Path) -> Path | None:
    """``agents.toml`` in ``start`` or the nearest parent directory that has one."""
    start = start.resolve()
    for directory in [start, *start.parents]:
        candidate = directory / "agents.toml"
        if candidate.is_file():
            return candidate
    return None


def resolve_prompt_run(
    prompt: str,
    agent_name: str,
    *,
    agents_path: Path | None = None,
    model_override: str | None = None,
    mode_override: str | None = None,
    overrides: dict[str, str] | None = None,
    timeout_override: float | None = None,
) -> RunSpec:
    """A run of one agent on a prompt given on the command line: no task file.

    The agents file is ``--agents`` or the nearest ``agents.toml`` from the
    current directory up. The prompt is used as written: braces in it are
    text, not parameters, so ``--set`` is refused. On the simulated model,
    with no task there is no plan: the model answers that it is simulated.
    """
    if overrides:
        raise SpecError(None, "--set", "--set fills a task's {parameters}; a prompt given on the command "
                        "line is used as written", "write the values into the prompt, or use a task file")
    check_text(prompt, None, "prompt", "the prompt")
    if not prompt.strip():
        raise SpecError(None, "prompt", "the prompt is empty",
                        'give it as the argument: asyncfc run -a AGENT "...", or - to read it from stdin')
    if agents_path is not None:
        if not agents_path.is_file():
            raise SpecError(agents_path, "", "agents file not found", "check the --agents path")
        found = agents_path
    else:
        found = find_agents_upward(Path.cwd())
        if found is None:
            raise SpecError(None, "--agent", f"no agents.toml in {Path.cwd()} or a parent directory, so there is "
                            f"no agent {agent_name!r}", "run asyncfc init to create a project, or pass --agents FILE")
    raw_agents = read_toml(found)
    agents = validate_as(AgentsFile, _interpolate_leniently(raw_agents), found)
    check_tool_definitions({}, None, raw_agents.get("tools", {}), found)
    if agent_name not in agents.agents:
        known = ", ".join(sorted(agents.agents)) or "none"
        raise SpecError(found, "agents", f"agent {agent_name!r} is not defined",
                        f"use one of: {known} (asyncfc agents lists them)")
    agent, model, tools, sources = resolve_agent(
        raw_agents["agents"][agent_name], found, f"agents.{agent_name}", raw_agents, found,
        model_override=model_override, mode_override=mode_override, timeout_override=timeout_override)
    from asyncfc_cli.sim.plan import no_plan
    from asyncfc_cli.trace import digest

    one_line = " ".join(prompt.split())
    return RunSpec(
        task_path=None,
        agents_path=found,
        agent_name=agent_name,
        agent=agent,
        model=model,
        prompt=prompt,
        tools=tools,
        expect=Expectations(),
        sim_plan=no_plan() if model.is_sim else None,
        digest=digest({"prompt": prompt, "agents": raw_agents["agents"][agent_name],
                       "mode": agent.mode, "model": model.model}),
        task_label="prompt: " + (one_line if len(one_line) <= 60 else one_line[:59] + "…"),
        hints=tool_hints(tools, raw_agents.get("tools", {})),
        tool_sources=sources,
    )


def is_model_string(ref: str) -> bool:
    """Whether ``ref`` reads as a LiteLLM model string (or the simulated model, ``sim[:protocol]``)."""
    return (ref == SIM_MODEL or ref.startswith(SIM_MODEL + ":") or "/" in ref
            or ref.startswith(("gpt-", "claude", "gemini")))


def check_sim_model(model: str, file: Path | None, key: str) -> None:
    """``sim:P`` must name a wire format the simulated model speaks."""
    from asyncfc_cli.sim.plan import PROTOCOLS

    if model.startswith(SIM_MODEL + ":") and model.partition(":")[2] not in PROTOCOLS:
        raise SpecError(file, key, f"the simulated model does not speak {model.partition(':')[2]!r}",
                        "use " + ", ".join(["sim"] + [f"sim:{p}" for p in PROTOCOLS]))


def _resolve_model(ref: str, raw_agents: dict[str, Any], file: Path | None,
                   ref_file: Path | None, key: str) -> ResolvedModel:
    # ``file`` holds the [models] tables; ``ref_file``/``key`` say where the
    # reference itself is written (an agent in either file, or --model).
    models = raw_agents.get("models", {})
    if ref in models:
        spec = validate_as(ModelSpec, interpolate(models[ref], file, f"models.{ref}"), file, f"models.{ref}")
        check_sim_model(spec.model, file, f"models.{ref}.model")
        api_key = spec.api_key
        if spec.api_key_env:
            api_key = os.environ.get(spec.api_key_env) or None
            if api_key is None:
                raise SpecError(file, f"models.{ref}.api_key_env",
                                f"environment variable {spec.api_key_env} is not set",
                                f"export {spec.api_key_env}=<your key>")
        return ResolvedModel(ref, spec.model, spec.api_base or None, api_key, spec.params,
                             spec.retries, spec.request_timeout, spec.eager_input_streaming, spec.api_key_env)
    if is_model_string(ref):
        check_sim_model(ref, ref_file, key)
        return ResolvedModel(ref, ref)
    raise SpecError(ref_file, key, f"{ref!r} is neither a [models] entry nor a LiteLLM model string",
                    _model_fix(models))


def _model_fix(models: Any) -> str:
    names = [n for n in sorted(models) if n != SIM_MODEL]
    defined = f"a [models] name ({', '.join(names)}), " if names else ""
    return f'use {defined}"sim" (or sim:anthropic, ...), or a provider/model string like openai/gpt-4o-mini'


def tool_spec_error(exc: Exception, name: str, file: Path | None) -> SpecError:
    """A :class:`~asyncfc_cli.tools.ToolLoadError` as a spec error with its fix apart."""
    text = str(exc)
    # The table the error is about: the caller's, or (opening several at once) the error's own.
    name = name or getattr(exc, "source", None) or ""
    if not name and (named := re.match(r"tool '([A-Za-z0-9_-]{1,64})': ", text)):
        name = named[1]
    prefix = f"tool {name!r}: "
    if name and text.startswith(prefix):
        text = text[len(prefix):]
    # The last "Fix:" (after a sentence or a quoted block): a message may quote a server's output before it.
    at = max(text.rfind(". Fix: "), text.rfind("\nFix: "))
    message, fix = (text[:at], text[at:].split("Fix: ", 1)[1]) if at >= 0 else (text, "")
    return SpecError(file, f"tools.{name}" if name else "tools", message, fix)


def validate_file(path: Path, hints: list[str] | None = None) -> str:
    """Check one agents or task file without running anything; returns a summary.

    A task goes through :func:`resolve_run`, exactly as ``asyncfc run`` would
    (its [sim] plan is also checked when another model is set, since
    ``--model sim`` would use it). An agents file has every agent resolved
    as a run of it would (:func:`resolve_agent`: strict ``${VAR}``, model,
    tools), and every tool built, used or not.
    """
    from asyncfc_cli import tools as tools_mod

    raw = read_toml(path)
    if not raw:
        raise SpecError(path, "", "the file is empty",
                        "write a task (agent = ..., prompt = ...) or an agents file ([agents.NAME], ...)")
    if "prompt" in raw or "agent" in raw:
        task = validate_as(TaskFile, _interpolate_leniently(raw), path)
        run_spec = resolve_run(path)
        if hints is not None:
            hints.extend(run_spec.hints)
        if task.sim is not None and run_spec.sim_plan is None:
            # Unused by this run, but --model sim would use it.
            load_sim_plan(fill_sim_params(task.sim, dict(task.params), path), path)
        for source in run_spec.tool_sources:
            _check_source(source, run_spec.agents_path if source.name not in task.tools else path)
        return f"task ok (agent {task.agent if isinstance(task.agent, str) else 'inline'})"
    agents = validate_as(AgentsFile, _interpolate_leniently(raw), path)
    for name, model_spec in agents.models.items():
        check_sim_model(model_spec.model, path, f"models.{name}.model")
    check_tool_definitions({}, None, raw.get("tools", {}), path)
    for name in agents.agents:
        resolve_agent(raw["agents"][name], path, f"agents.{name}", raw, path)
    built = {}
    for name, tool_raw in agents.tools.items():
        try:
            source = tools_mod.build_source(name, _interpolate_leniently(tool_raw), path.parent.resolve())
        except ValidationError as exc:
            raise spec_error_from(exc, None, path, f"tools.{name}") from None
        except tools_mod.ToolLoadError as exc:
            raise tool_spec_error(exc, name, path) from None
        _check_source(source, path)
        built.update({tool.name: tool for tool in source.static_tools()})
    if hints is not None:
        hints.extend(tool_hints(built, raw.get("tools", {})))
    counts = ", ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in
                       ((len(agents.agents), "agent"), (len(agents.models), "model"), (len(agents.tools), "tool")))
    return f"agents ok ({counts})"


def _check_source(source: Any, file: Path | None) -> None:
    """What only running can tell (an MCP server starts and lists its tools), for validate."""
    import trio

    from asyncfc_cli import tools as tools_mod

    try:
        trio.run(source.check)
    except tools_mod.ToolLoadError as exc:
        raise tool_spec_error(exc, source.name, file) from None
