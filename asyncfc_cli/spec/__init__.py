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

Every ``[tools.NAME]`` table of a file is validated when the file is read,
used or not, into its kind's typed config (``AgentsFile.tools``,
``TaskFile.tools``; :mod:`.tooltables`), and a run builds its tool sources
from those (:func:`tool_source`). ``--mcp "command line"`` adds a server to
one run (:func:`mcp_line_source`).

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

# The package's parts, one concern each: schema (the tables and the resolved
# run), errors (pydantic's errors as SpecError), load (TOML, discovery,
# ${VAR}), resolve (task and prompt runs), tooltables ([tools] tables into typed
# configs, --mcp lines into sources), sim ([sim] plans), hints (likely
# mistakes that are not errors), validate (``asyncfc validate``). Callers
# import from here.

from asyncfc_cli.spec.errors import SpecError, spec_error_from, split_fix, tool_spec_error, validate_as
from asyncfc_cli.spec.hints import tool_hints
from asyncfc_cli.spec.load import (
    BUILTIN_VARS,
    MAX_NESTING,
    MAX_SPEC_BYTES,
    find_agents_file,
    find_agents_upward,
    interpolate,
    interpolate_leniently,
    load_agents_file,
    load_task,
    read_toml,
)
from asyncfc_cli.spec.resolve import (
    check_sim_model,
    check_text,
    check_tool_definitions,
    is_model_string,
    parse_set,
    prompt_parameters,
    render_prompt,
    resolve_agent,
    resolve_prompt_run,
    resolve_run,
    resolve_task,
    task_params,
    task_sim_plan,
    tool_source,
)
from asyncfc_cli.spec.schema import (
    DEFAULT_MODE,
    RESERVED_TOOL_NAMES,
    SIM_MODEL,
    AgentSpec,
    AgentsFile,
    Expectations,
    Mode,
    ModelSpec,
    ResolvedModel,
    RunSpec,
    TaskFile,
)
from asyncfc_cli.spec.tooltables import mcp_line_source, tool_config, tool_configs
from asyncfc_cli.spec.sim import check_sim_tools, fill_sim_params, load_sim_plan, sim_parameters
from asyncfc_cli.spec.validate import project_files, validate_file

__all__ = [
    "AgentSpec", "AgentsFile", "BUILTIN_VARS", "DEFAULT_MODE", "Expectations", "MAX_NESTING", "MAX_SPEC_BYTES",
    "Mode", "ModelSpec", "RESERVED_TOOL_NAMES", "ResolvedModel", "RunSpec", "SIM_MODEL", "SpecError", "TaskFile",
    "check_sim_model", "check_sim_tools", "check_text", "check_tool_definitions", "fill_sim_params",
    "find_agents_file", "find_agents_upward", "interpolate", "interpolate_leniently", "is_model_string",
    "load_agents_file", "load_sim_plan", "load_task", "mcp_line_source", "tool_config", "tool_configs", "parse_set", "project_files", "prompt_parameters", "read_toml",
    "render_prompt", "resolve_agent", "resolve_prompt_run", "resolve_run", "resolve_task", "sim_parameters", "spec_error_from", "split_fix",
    "task_params", "task_sim_plan",
    "tool_hints", "tool_source", "tool_spec_error", "validate_as", "validate_file",
]
