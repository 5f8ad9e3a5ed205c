"""What an ``[tools.NAME]`` table with ``mcp = {...}`` holds: the server and the tools' settings."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from asyncfc_cli.tools.core import ToolConfigBase

DEFAULT_STARTUP_TIMEOUT = 30.0
# Bytes of one message from the server: far more than a model is shown of a
# result (max_result_chars), far less than what would hold the loop or memory.
DEFAULT_MAX_OUTPUT = 4 * 1024 * 1024


class McpServer(BaseModel):
    """How to reach the server: ``command`` (stdio) or ``url`` (streamable HTTP)."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] | None = Field(None, min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_transport(self) -> "McpServer":
        if (self.command is None) == (self.url is None):
            raise ValueError(
                'give exactly one of command = ["server", "..."] (stdio) or url = "http://..." '
                "(streamable HTTP)"
            )
        if self.command is not None and self.headers:
            raise ValueError("headers are for url servers; a command server gets env")
        if self.url is not None and (self.env or self.cwd):
            raise ValueError("env and cwd are for command servers; a url server gets headers")
        if self.url is not None and not re.match(r"^https?://", self.url):
            raise ValueError(f"url {self.url!r} must start with http:// or https://")
        return self


class McpToolOverride(BaseModel):
    """Per server tool: what differs from the table's settings."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    timeout: PositiveFloat | None = None
    ordered: bool | None = None
    max_concurrency: PositiveInt | None = None
    expected_latency: NonNegativeFloat | None = None


class McpToolConfig(ToolConfigBase):
    mcp: McpServer
    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    prefix: str = ""
    overrides: dict[str, McpToolOverride] = Field(default_factory=dict)
    startup_timeout: PositiveFloat = DEFAULT_STARTUP_TIMEOUT
    # Bytes one message from the server may have; a longer answer ends its call with an error.
    max_output: PositiveInt = DEFAULT_MAX_OUTPUT
    # "auto": an MCP task when the server and the tool allow one; "never": plain calls.
    tasks: Literal["auto", "never"] = "auto"

    @model_validator(mode="after")
    def _check(self) -> "McpToolConfig":
        if self.include is not None and self.exclude:
            raise ValueError("set include or exclude, not both")
        if self.prefix and not re.match(r"^[A-Za-z0-9_-]{1,40}$", self.prefix):
            raise ValueError(f"prefix {self.prefix!r} may hold only letters, digits, '_' and '-'")
        if self.description is not None:
            raise ValueError(
                "description is per server tool: set it under [tools.NAME.overrides.TOOL]"
            )
        return self

