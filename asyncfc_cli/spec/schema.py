"""The spec's tables as pydantic models, and what resolving them gives: a run."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from asyncfc_cli import modes
from asyncfc_cli.tools import ToolConfig

Mode = Literal[modes.NAMES]  # type: ignore[valid-type]  (the registry's names, as pydantic checks them)
SIM_MODEL = "sim"
DEFAULT_MODE: Mode = modes.DEFAULT


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


def _typed_tools(data: Any, info: ValidationInfo) -> Any:
    # Each [tools.NAME] through its kind's model, with errors at the key inside
    # the table (a SpecError, which pydantic lets through as it is).
    from asyncfc_cli.spec.tooltables import with_tool_configs

    file = (info.context or {}).get("file")
    return with_tool_configs(data, file) if isinstance(data, dict) else data


class AgentsFile(_Strict):
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    agents: dict[str, AgentSpec] = Field(default_factory=dict)
    # name -> the table's typed config (tools.PythonToolConfig, CommandToolConfig, McpToolConfig)
    tools: dict[str, ToolConfig] = Field(default_factory=dict)

    _tools = model_validator(mode="before")(_typed_tools)


class TaskFile(_Strict):
    agent: str | AgentSpec = Field(description="an [agents] name from agents.toml, or an inline [agent] table")
    agents_file: str | None = None
    prompt: str
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    expect: Expectations = Field(default_factory=Expectations)
    tools: dict[str, ToolConfig] = Field(default_factory=dict)
    sim: dict[str, Any] | None = None
    description: str = ""

    _tools = model_validator(mode="before")(_typed_tools)


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
    # What credentials.resolve decided for this model: kept, so the CLI's check
    # before a run and the run's endpoint ask LiteLLM once, not once each.
    credentials: Any = field(default=None, repr=False, compare=False)

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
    history: Any = None  # a conversation this run continues (asyncfc_cli.continuation.History)

    @property
    def task_name(self) -> str:
        """The task as traces, ``trace list`` and ``--json`` show it."""
        return self.task_label or str(self.task_path)


# The modes' own tools (async: wait). Reserved in every mode, so a --mode switch
# never changes what a name means.
RESERVED_TOOL_NAMES = modes.RESERVED_TOOL_NAMES

