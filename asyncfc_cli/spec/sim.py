"""A task's [sim] plan: parameters filled in, validated, checked against the agent's tools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from asyncfc_cli import modes
from asyncfc_cli.spec.errors import SpecError, spec_error_from


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

