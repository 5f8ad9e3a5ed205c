"""A task file or a command-line prompt resolved into a :class:`RunSpec`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from asyncfc_cli import modes
from asyncfc_cli.spec.errors import SpecError, spec_error_from, tool_spec_error, validate_as
from asyncfc_cli.spec.hints import tool_hints
from asyncfc_cli.spec.load import (
    _interpolate_leniently,
    explicit_agents_file,
    find_agents_file,
    find_agents_upward,
    interpolate,
    interpolate_leniently,
    read_toml,
)
from asyncfc_cli.spec.schema import (
    RESERVED_TOOL_NAMES,
    SIM_MODEL,
    AgentSpec,
    AgentsFile,
    Expectations,
    ModelSpec,
    ResolvedModel,
    RunSpec,
    TaskFile,
)
from asyncfc_cli.spec.sim import check_sim_tools, fill_sim_params, load_sim_plan, sim_parameters


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



@dataclass
class _Origin:
    """Where a run's agent comes from, its files read and validated: the part a
    task run and a prompt run find differently, before :func:`_run_spec` makes
    them one run."""

    task_path: Path | None  # None: a prompt given on the command line
    agents_path: Path | None
    raw_agents: dict[str, Any]
    agent_name: str
    agent: AgentSpec  # as its file's validation gave it
    raw_agent: dict[str, Any]
    agent_file: Path | None  # where the agent is written: errors about it point there
    agent_key: str
    task_tools: dict[str, Any] = field(default_factory=dict)  # the task's raw [tools]
    models: dict[str, ModelSpec] = field(default_factory=dict)  # [models] as the agents file's validation gave them
    # Both files' [tools] as validated (names are unique across the two: check_tool_definitions).
    tool_configs: dict[str, Any] = field(default_factory=dict)

    def resolve(self, **overrides: Any) -> tuple[AgentSpec, ResolvedModel, dict[str, Any], list[Any]]:
        return resolve_agent(self.raw_agent, self.agent_file, self.agent_key, self.raw_agents, self.agents_path,
                             models=self.models, tool_configs=self.tool_configs,
                             task_tools=self.task_tools, task_path=self.task_path, agent=self.agent, **overrides)


def _agents_of(found: Path | None, task_tools: dict[str, Any],
               task_path: Path | None) -> tuple[dict[str, Any], AgentsFile]:
    """An agents file read and validated once (none: empty), its tool names checked against the task's."""
    raw_agents = read_toml(found) if found else {}
    agents = validate_as(AgentsFile, _interpolate_leniently(raw_agents), found) if found else AgentsFile()
    check_tool_definitions(task_tools, task_path, raw_agents.get("tools", {}), found)
    return raw_agents, agents


def _run_spec(origin: _Origin, resolved: tuple[AgentSpec, ResolvedModel, dict[str, Any], list[Any]], *,
              prompt: str, expect: Expectations, sim_plan: Any, identity: dict[str, Any],
              task_label: str | None = None) -> RunSpec:
    """The one place a :class:`RunSpec` is assembled, for task and prompt runs alike;
    ``identity`` is what, besides the agent, mode and model, the run's digest covers."""
    from asyncfc_cli.trace import digest

    agent, model, tools, sources = resolved
    return RunSpec(
        task_path=origin.task_path,
        agents_path=origin.agents_path,
        agent_name=origin.agent_name,
        agent=agent,
        model=model,
        prompt=prompt,
        tools=tools,
        tool_sources=sources,
        expect=expect,
        sim_plan=sim_plan,
        digest=digest({**identity, "agents": origin.raw_agents.get("agents", {}).get(origin.agent_name),
                       "mode": agent.mode, "model": model.model}),
        task_label=task_label,
        hints=tool_hints(tools, {**origin.raw_agents.get("tools", {}), **origin.task_tools}),
    )


def resolve_run(
    task_path: Path,
    *,
    agents_path: Path | None = None,
    model_override: str | None = None,
    mode_override: str | None = None,
    overrides: dict[str, str] | None = None,
    timeout_override: float | None = None,
    keyless: bool = False,
    mcp: list[str] | None = None,
) -> RunSpec:
    """Load a task and its agent, strictly interpolated, tools built, and check
    that the run can work. ``asyncfc validate TASK`` is this function, run
    for nothing else: whatever a run would refuse, validate refuses too.
    ``keyless``: the run reaches no model endpoint (it replays a cassette), so
    the model's key and endpoint may name variables that are not set.
    ``mcp``: ``--mcp`` command lines, servers whose tools the agent gets for this run."""
    return resolve_task(Path(task_path), agents_path=agents_path, model_override=model_override,
                        mode_override=mode_override, overrides=overrides, timeout_override=timeout_override,
                        keyless=keyless, mcp=mcp)[0]


def resolve_task(
    task_path: Path,
    raw_task: dict[str, Any] | None = None,
    *,
    agents_path: Path | None = None,
    model_override: str | None = None,
    mode_override: str | None = None,
    overrides: dict[str, str] | None = None,
    timeout_override: float | None = None,
    keyless: bool = False,
    mcp: list[str] | None = None,
) -> tuple[RunSpec, TaskFile]:
    """:func:`resolve_run`, with the task as validated (``raw_task``: the file's data, if already read)."""
    prepared = prepare_task(task_path, raw_task, agents_path=agents_path, model_override=model_override,
                            mode_override=mode_override, timeout_override=timeout_override, keyless=keyless, mcp=mcp)
    return spec_for(prepared, overrides), prepared.task


@dataclass
class PreparedTask:
    """A task file and its agent read, validated and resolved (tools built): the
    part of :func:`resolve_task` that no parameter row changes, done once for a
    whole matrix (:func:`asyncfc_cli.batch.plan_batch`); :func:`spec_for` adds a row."""

    task_path: Path
    raw_task: dict[str, Any]
    task: TaskFile
    origin: _Origin
    resolved: tuple[AgentSpec, ResolvedModel, dict[str, Any], list[Any]]
    mcp: list[str] | None = None  # --mcp command lines: part of each run's identity


def prepare_task(
    task_path: Path,
    raw_task: dict[str, Any] | None = None,
    *,
    agents_path: Path | None = None,
    model_override: str | None = None,
    mode_override: str | None = None,
    timeout_override: float | None = None,
    keyless: bool = False,
    mcp: list[str] | None = None,
) -> PreparedTask:
    """The row-independent part of :func:`resolve_task` (same checks, same errors)."""
    raw_task = read_toml(task_path) if raw_task is None else raw_task
    if not raw_task:
        raise SpecError(task_path, "", "the file is empty", "write a task: agent = ..., prompt = ...")
    _check_tool_names_first(raw_task, task_path, agents_path)
    task = validate_as(TaskFile, _interpolate_leniently(raw_task), task_path)
    # The parts of the task every run uses are interpolated strictly, so an
    # unset ${VAR} in the prompt is an error rather than literal text. Where
    # strict interpolation succeeds it gives what the lenient one gave
    # (load._value_of serves both), so the task validated above stands.
    for key in ("agents_file", "prompt", "params", "expect"):
        if key in raw_task:
            interpolate(raw_task[key], task_path, key)
    found = find_agents_file(task_path, task, agents_path)
    task_tools = raw_task.get("tools", {})
    raw_agents, agents = _agents_of(found, task_tools, task_path)

    if isinstance(task.agent, str):
        if task.agent not in agents.agents:
            known = ", ".join(sorted(agents.agents)) or "none"
            where = found or "no agents.toml found (looked next to the task, in its parents and in the current directory)"
            raise SpecError(task_path, "agent", f"agent {task.agent!r} is not defined in {where}",
                            f"use one of: {known}, pass --agents FILE, or write an inline [agent] table")
        origin = _Origin(task_path, found, raw_agents, task.agent, agents.agents[task.agent],
                         raw_agents["agents"][task.agent], found, f"agents.{task.agent}", task_tools,
                         models=agents.models, tool_configs={**agents.tools, **task.tools})
    else:
        origin = _Origin(task_path, found, raw_agents, "inline", task.agent, raw_task["agent"], task_path, "agent",
                         task_tools, models=agents.models, tool_configs={**agents.tools, **task.tools})
    resolved = origin.resolve(model_override=model_override, mode_override=mode_override,
                              timeout_override=timeout_override, keyless=keyless, mcp=mcp)
    return PreparedTask(task_path, raw_task, task, origin, resolved, mcp)


def spec_for(prepared: PreparedTask, overrides: dict[str, str] | None = None) -> RunSpec:
    """The run of ``prepared`` with one parameter row (``--set`` values) applied."""
    task_path, raw_task, task, origin = prepared.task_path, prepared.raw_task, prepared.task, prepared.origin
    resolved, mcp = prepared.resolved, prepared.mcp
    agent, model, tools, sources = resolved

    params = task_params(task, raw_task, task_path, overrides)
    prompt = render_prompt(task.prompt, params, task_path)
    check_text(prompt, task_path, "prompt", "the prompt")

    # A server's tools (mcp) are listed only when it starts, inside the run:
    # names that may be among them are not judged here.
    dynamic = any(not src.static_tools() for src in sources)
    for index, name in enumerate(task.expect.tools_called):
        if name not in tools and not dynamic:
            # "wait" is never recorded as a call, so it cannot be expected either.
            raise SpecError(task_path, f"expect.tools_called[{index}]",
                            f"agent {origin.agent_name!r} has no tool {name!r}, so this can never be met",
                            f"use one of the agent's tools: {', '.join(sorted(tools)) or 'none'}")

    sim_plan = None
    if model.is_sim and task.sim is None:
        from asyncfc_cli.sim.plan import no_plan

        sim_plan = no_plan()  # answers, saying it is simulated: trying an agent needs no plan
    elif model.is_sim:
        raw_sim = fill_sim_params(interpolate(raw_task["sim"], task_path, "sim"), params, task_path)
        sim_plan = load_sim_plan(raw_sim, task_path)
        if not dynamic:
            check_sim_tools(sim_plan, raw_sim, tools, agent.mode, origin.agent_name, task_path)

    return _run_spec(origin, resolved, prompt=prompt, expect=task.expect, sim_plan=sim_plan,
                     identity={"task": raw_task, **({"mcp": mcp} if mcp else {})})


def _check_tool_names_first(raw_task: dict[str, Any], task_path: Path, agents_path: Path | None) -> None:
    """A task's [tools] names against its agents file's, before the tables are validated:
    a table that redefines the agents file's tool is refused for that, whatever it holds."""
    from types import SimpleNamespace

    tools, agents_file = raw_task.get("tools"), interpolate_leniently(raw_task.get("agents_file"))
    if not isinstance(tools, dict) or not tools or not isinstance(agents_file, (str, type(None))):
        return  # nothing to compare, or the task's validation says what is wrong
    try:
        found = find_agents_file(task_path, SimpleNamespace(agents_file=agents_file), agents_path)  # type: ignore[arg-type]
        raw_agents = read_toml(found) if found else {}
    except SpecError:
        return  # said where the run reads the agents file, in its turn
    agents_tools = raw_agents.get("tools", {})
    check_tool_definitions(tools, task_path, agents_tools if isinstance(agents_tools, dict) else {}, found)


def task_params(task: TaskFile, raw_task: dict[str, Any], task_path: Path,
                overrides: dict[str, str] | None) -> dict[str, Any]:
    """The task's ``[params]`` with ``--set`` applied: what its prompt and its
    [sim] plan are filled with, for a run and for ``asyncfc sim serve`` alike."""
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
    return params


def task_sim_plan(task_path: Path, overrides: dict[str, str] | None = None) -> Any:
    """A task's [sim] plan with its parameters filled in as a run fills them,
    without resolving its agent: what ``asyncfc sim serve`` follows (the
    client, not asyncfc, holds the tools there)."""
    raw_task = read_toml(task_path)
    if not raw_task:
        raise SpecError(task_path, "", "the file is empty", "write a task: agent = ..., prompt = ...")
    task = validate_as(TaskFile, _interpolate_leniently(raw_task), task_path)
    if task.sim is None:
        raise SpecError(task_path, "sim", "this task has no [sim] plan", "add a [sim] section")
    for key in ("prompt", "params"):
        if key in raw_task:
            interpolate(raw_task[key], task_path, key)
    params = task_params(task, raw_task, task_path, overrides)
    raw_sim = fill_sim_params(interpolate(raw_task["sim"], task_path, "sim"), params, task_path)
    return load_sim_plan(raw_sim, task_path)


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
    agent: AgentSpec | None = None,
    models: dict[str, ModelSpec] | None = None,
    keyless: bool = False,
    tool_configs: dict[str, Any] | None = None,
    mcp: list[str] | None = None,
) -> tuple[AgentSpec, ResolvedModel, dict[str, Any], list[Any]]:
    """An agent as a run uses it: strictly interpolated, overrides applied, its
    model resolved, its tool sources built and the tools known before the run
    (an mcp source's tools exist only once it is opened, inside the run). Shared by :func:`resolve_run` and by
    ``asyncfc validate`` on an agents file (every agent, as a run of it would).

    ``agent`` is the agent as its file's validation gave it (strict
    interpolation, where it succeeds, gives the same values); None: it is
    validated here, from ``raw_agent``. ``models``: the ``[models]`` tables as
    that validation gave them, likewise (a model not there is validated here).
    ``tool_configs`` are the [tools] tables as their files' validation gave
    them (by name; a table not among them is validated here). ``mcp`` are
    ``--mcp`` command lines: each server's tools join the agent's
    (:func:`~asyncfc_cli.spec.tooltables.mcp_line_source`)."""
    task_tools = task_tools or {}
    agents_tools = raw_agents.get("tools", {})
    strict = interpolate(raw_agent, agent_file, agent_key)  # an unset ${VAR} in the agent is an error
    if agent is None:
        agent = validate_as(AgentSpec, strict, agent_file, agent_key)
    if mode_override:
        if mode_override not in modes.MODES:
            raise SpecError(None, "--mode", f"unknown mode {mode_override!r}", f"use {modes.listed()}")
        agent = agent.model_copy(update={"mode": mode_override})
    if timeout_override is not None:
        if not timeout_override > 0:  # also refuses NaN
            raise SpecError(None, "--timeout", "must be a positive number of seconds", "give seconds, e.g. --timeout 60")
        agent = agent.model_copy(update={"timeout": timeout_override})

    if model_override:
        model = _resolve_model(model_override, raw_agents, agents_path, None, "--model", models or {}, keyless)
    else:
        model = _resolve_model(agent.model, raw_agents, agents_path, agent_file, f"{agent_key}.model", models or {},
                               keyless)

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
        source = tool_source(name, raw, file, config=(tool_configs or {}).get(name))
        source.set_default_timeout(agent.tool_timeout)
        sources.append(source)
        tools.update({tool.name: tool for tool in source.static_tools()})
    from asyncfc_cli.spec.tooltables import mcp_line_source

    taken = {*agents_tools, *task_tools}
    for index, line in enumerate(mcp or []):
        source = mcp_line_source(line, index, taken)
        taken.add(source.name)
        source.set_default_timeout(agent.tool_timeout)
        sources.append(source)
    return agent, model, tools, sources



def resolve_prompt_run(
    prompt: str,
    agent_name: str,
    *,
    agents_path: Path | None = None,
    model_override: str | None = None,
    mode_override: str | None = None,
    overrides: dict[str, str] | None = None,
    timeout_override: float | None = None,
    keyless: bool = False,
    mcp: list[str] | None = None,
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
        found = explicit_agents_file(agents_path)
    else:
        found = find_agents_upward(Path.cwd())
        if found is None:
            raise SpecError(None, "--agent", f"no agents.toml in {Path.cwd()} or a parent directory, so there is "
                            f"no agent {agent_name!r}", "run asyncfc init to create a project, or pass --agents FILE")
    raw_agents, agents = _agents_of(found, {}, None)
    if agent_name not in agents.agents:
        known = ", ".join(sorted(agents.agents)) or "none"
        raise SpecError(found, "agents", f"agent {agent_name!r} is not defined",
                        f"use one of: {known} (asyncfc agents lists them)")
    origin = _Origin(None, found, raw_agents, agent_name, agents.agents[agent_name],
                     raw_agents["agents"][agent_name], found, f"agents.{agent_name}", models=agents.models,
                     tool_configs=agents.tools)
    resolved = origin.resolve(model_override=model_override, mode_override=mode_override,
                              timeout_override=timeout_override, keyless=keyless, mcp=mcp)
    from asyncfc_cli.sim.plan import no_plan

    one_line = " ".join(prompt.split())
    return _run_spec(origin, resolved, prompt=prompt, expect=Expectations(),
                     sim_plan=no_plan() if resolved[1].is_sim else None,
                     identity={"prompt": prompt, **({"mcp": mcp} if mcp else {})},
                     task_label="prompt: " + (one_line if len(one_line) <= 60 else one_line[:59] + "…"))


def is_model_string(ref: str) -> bool:
    """Whether ``ref`` reads as a LiteLLM model string (or the simulated model, ``sim[:protocol]``)."""
    return (ref == SIM_MODEL or ref.startswith(SIM_MODEL + ":") or "/" in ref
            or ref.startswith(("gpt-", "claude", "gemini")))


def tool_source(name: str, raw: Any, file: Path | None, *, strict: bool = True, config: Any = None) -> Any:
    """One ``[tools.NAME]`` table as a tool source, built from its typed config
    (:data:`asyncfc_cli.tools.ToolConfig`): ``config`` as its file's validation
    gave it (:class:`AgentsFile`, :class:`TaskFile`), or None to validate ``raw``
    here (:func:`~asyncfc_cli.spec.tooltables.tool_config`). ``strict``: an unset
    ``${VAR}`` in the table is an error (a run); not so to show or check a tool
    no run uses. What the CLI runs, validates and lists is built here; every
    problem is a SpecError at ``tools.NAME`` (or a key inside it)."""
    from asyncfc_cli import tools as tools_mod
    from asyncfc_cli.spec.tooltables import tool_config

    if strict and isinstance(raw, dict):
        # Where strict interpolation succeeds it gives what the lenient one the config came from gave.
        raw = interpolate(raw, file, f"tools.{name}")
    if config is None:
        config = tool_config(name, raw if strict else interpolate_leniently(raw), file)
    try:
        return tools_mod.build_source(name, config, Path(file).parent.resolve() if file else Path.cwd())
    except ValidationError as exc:
        raise spec_error_from(exc, None, file, f"tools.{name}") from None
    except tools_mod.ToolLoadError as exc:
        raise tool_spec_error(exc, name, file) from None


def check_sim_model(model: str, file: Path | None, key: str) -> None:
    """``sim:P`` must name a wire format the simulated model speaks."""
    from asyncfc_cli.sim.plan import PROTOCOLS

    if model.startswith(SIM_MODEL + ":") and model.partition(":")[2] not in PROTOCOLS:
        raise SpecError(file, key, f"the simulated model does not speak {model.partition(':')[2]!r}",
                        "use " + ", ".join(["sim"] + [f"sim:{p}" for p in PROTOCOLS]))


def _resolve_model(ref: str, raw_agents: dict[str, Any], file: Path | None,
                   ref_file: Path | None, key: str, validated: dict[str, ModelSpec],
                   keyless: bool = False) -> ResolvedModel:
    # ``file`` holds the [models] tables; ``ref_file``/``key`` say where the
    # reference itself is written (an agent in either file, or --model).
    models = raw_agents.get("models", {})
    if ref in models:
        if keyless:
            spec = validate_as(ModelSpec, _keyless_model(models[ref], file, f"models.{ref}"), file, f"models.{ref}")
        else:
            strict = interpolate(models[ref], file, f"models.{ref}")  # an unset ${VAR} in the model is an error
            # Where strict interpolation succeeds it gives the values the file's validation saw: no second validation.
            spec = validated.get(ref) or validate_as(ModelSpec, strict, file, f"models.{ref}")
        check_sim_model(spec.model, file, f"models.{ref}.model")
        api_key = spec.api_key
        if spec.api_key_env and keyless:
            api_key = os.environ.get(spec.api_key_env) or None  # a replay sends no key: unset is fine
        elif spec.api_key_env:
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


def _keyless_model(raw: Any, file: Path | None, key: str) -> Any:
    """A [models] table for a run that reaches no endpoint (a replay): the key, the
    endpoint and credential parameters may name unset variables (left as written,
    and a key that is not all there is none); the rest, which changes the answer,
    is interpolated strictly as for any run."""
    from asyncfc_cli.redaction import credential_name
    from asyncfc_cli.spec.load import _VAR

    if not isinstance(raw, dict):
        return interpolate(raw, file, key)

    def reach_only(name: Any) -> bool:
        return credential_name(name) or "header" in str(name).lower()

    out = {}
    for name, value in raw.items():
        if name in ("api_key", "api_base") or reach_only(name):
            value = interpolate_leniently(value)
            if name == "api_key" and isinstance(value, str) and _VAR.search(value):
                value = None
        elif name == "params" and isinstance(value, dict):
            value = {p: interpolate_leniently(v) if reach_only(p) else interpolate(v, file, f"{key}.params.{p}")
                     for p, v in value.items()}
        else:
            value = interpolate(value, file, f"{key}.{name}")
        out[name] = value
    return out


def _model_fix(models: Any) -> str:
    names = [n for n in sorted(models) if n != SIM_MODEL]
    defined = f"a [models] name ({', '.join(names)}), " if names else ""
    return f'use {defined}"sim" (or sim:anthropic, ...), or a provider/model string like openai/gpt-4o-mini'


