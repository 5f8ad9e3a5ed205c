"""``asyncfc validate``: a task or an agents file checked as a run of it would be."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from asyncfc_cli.spec.errors import SpecError, tool_spec_error, validate_as
from asyncfc_cli.spec.hints import tool_hints
from asyncfc_cli.spec.load import _interpolate_leniently, find_agents_upward, read_toml
from asyncfc_cli.spec.resolve import check_sim_model, check_tool_definitions, resolve_agent, resolve_task, tool_source
from asyncfc_cli.spec.schema import AgentsFile
from asyncfc_cli.spec.sim import fill_sim_params, load_sim_plan


def validate_file(path: Path, hints: list[str] | None = None) -> str:
    """Check one agents or task file without running anything; returns a summary.

    A task goes through :func:`resolve_run` (read and validated once),
    exactly as ``asyncfc run`` would (its [sim] plan is also checked when
    another model is set, since ``--model sim`` would use it). An agents
    file has every agent resolved as a run of it would
    (:func:`resolve_agent`: strict ``${VAR}``, model, tools), and every
    tool built (:func:`tool_source`), used or not.
    """
    raw = read_toml(path)
    if not raw:
        raise SpecError(path, "", "the file is empty",
                        "write a task (agent = ..., prompt = ...) or an agents file ([agents.NAME], ...)")
    if "prompt" in raw or "agent" in raw:
        run_spec, task = resolve_task(Path(path), raw)
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
        resolve_agent(raw["agents"][name], path, f"agents.{name}", raw, path, agent=agents.agents[name],
                      models=agents.models, tool_configs=agents.tools)
    built = {}
    for name, config in agents.tools.items():
        source = tool_source(name, raw["tools"][name], path, strict=False, config=config)
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


def project_files(start: Path) -> tuple[Path, list[Path]]:
    """What ``asyncfc validate`` checks when given no file: the project found
    from ``start`` as ``tools``, ``agents`` and ``models`` find it (the nearest
    agents.toml upward), then every ``*.toml`` under its ``tasks/`` directory,
    in name order. Hidden directories and links to directories are not
    entered (a link may lead anywhere, or round in a circle); the walk keeps
    its own stack, so depth is no limit."""
    agents = find_agents_upward(start)
    if agents is None:
        raise SpecError(None, "validate", f"no agents.toml in {start.resolve()} or a parent directory",
                        "run asyncfc validate inside a project (asyncfc init makes one), or name the files: "
                        "asyncfc validate agents.toml tasks/x.toml")
    tasks: list[Path] = []
    pending = [agents.parent / "tasks"]
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:  # no tasks/ (or not readable): a project of agents only
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            elif entry.name.endswith(".toml") and entry.is_file():
                tasks.append(Path(entry.path))
    return agents, sorted(tasks)
