"""What an ``[tools.NAME]`` table with ``mcp = {...}`` holds: the server and the tools' settings.

The server table takes the shape most MCP configurations use (an
``mcpServers`` entry of Claude Desktop, Cursor or VS Code): ``command`` as
the program and ``args`` as its arguments, or ``command`` as the whole argv.
Either way it is one argv once validated (:attr:`McpServer.command`).

A message of a check below reads ``problem. Fix: what to do``: the spec's
errors show the two apart (asyncfc_cli/spec/errors.py).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, PositiveFloat, PositiveInt, model_validator

from asyncfc_cli.tools.core import ToolConfigBase

DEFAULT_STARTUP_TIMEOUT = 30.0
# Bytes of one message from the server: far more than a model is shown of a
# result (max_result_chars), far less than what would hold the loop or memory.
DEFAULT_MAX_OUTPUT = 4 * 1024 * 1024

# "type" as mcpServers entries write it; sse is the transport the
# specification replaced with streamable HTTP, which the SDK client here speaks.
_STDIO_TYPES = ("stdio",)
_HTTP_TYPES = ("http", "streamable-http", "streamableHttp")


class McpServer(BaseModel):
    """How to reach the server: ``command`` (stdio) or ``url`` (streamable HTTP)."""

    model_config = ConfigDict(extra="forbid")

    command: str | list[str] | None = Field(
        None, description='the server program, "mcp-server-git" (with args = [...]), or its whole argv '
        '["uvx", "mcp-server-git"]')
    args: list[str] = Field(default_factory=list, description="the program's arguments, after command")
    env: dict[str, str] = Field(default_factory=dict, description="variables added to the server's environment")
    cwd: str | None = Field(None, description="the server's working directory, relative to this file")
    url: str | None = Field(None, description='a streamable HTTP server, "http://host:port/mcp"')
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP headers sent to a url server")
    type: Literal["stdio", "http", "streamable-http", "streamableHttp"] | None = Field(
        None, description='optional, as mcpServers entries write it: "stdio" with command, "http" with url '
        "(sse servers are not supported: use the server's streamable HTTP url)")

    @model_validator(mode="after")
    def _one_transport(self) -> "McpServer":
        if (self.command is None) == (self.url is None):
            raise ValueError(
                "the server needs exactly one of command (stdio) or url (streamable HTTP). "
                'Fix: write mcp = { command = "server", args = ["..."] } or mcp = { url = "http://..." }'
            )
        if self.command is not None:
            argv = [self.command] if isinstance(self.command, str) else list(self.command)
            if not argv or not argv[0].strip():
                raise ValueError('command is empty. Fix: name the server program: command = "mcp-server-git"')
            # One argv from here on: what starts the server, and what masks its secrets.
            self.command, self.args = argv + list(self.args), []
            if self.headers:
                raise ValueError("headers are for url servers. Fix: a command server gets env = { ... } instead")
            if self.type is not None and self.type not in _STDIO_TYPES:
                raise ValueError(f'type = "{self.type}" is for a url server. Fix: write type = "stdio", or drop type')
            return self
        if self.args or self.env or self.cwd:
            raise ValueError("args, env and cwd are for command servers. Fix: a url server gets "
                             "headers = { ... } instead")
        if not re.match(r"^https?://", self.url or ""):
            raise ValueError(f"url {self.url!r} does not start with http:// or https://. Fix: give the server's "
                             "streamable HTTP address, e.g. http://127.0.0.1:8000/mcp")
        if self.type is not None and self.type not in _HTTP_TYPES:
            raise ValueError(f'type = "{self.type}" is for a command server. Fix: write type = "http", or drop type')
        return self


class McpToolOverride(BaseModel):
    """Per server tool: what differs from the table's settings."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(None, description="what the model is told the tool does")
    timeout: PositiveFloat | None = Field(None, description="seconds a call may take")
    ordered: bool | None = Field(None, description="calls of this tool run one after another, in order")
    max_concurrency: PositiveInt | None = Field(None, description="calls of this tool running at once")
    expected_latency: NonNegativeFloat | None = Field(None, description="seconds a call usually takes")


class McpToolConfig(ToolConfigBase):
    mcp: McpServer = Field(description='the server: { command = "mcp-server-git", args = ["..."], env = { ... } } '
                           'or { url = "http://..." }')
    include: list[str] | None = Field(None, description="only these of the server's tools")
    exclude: list[str] = Field(default_factory=list, description="all of the server's tools but these")
    prefix: str = Field("", description="put before every tool name the server lists, e.g. \"git_\"")
    overrides: dict[str, McpToolOverride] = Field(
        default_factory=dict, description="per server tool: [tools.NAME.overrides.TOOL] with timeout, description, ...")
    startup_timeout: PositiveFloat = Field(DEFAULT_STARTUP_TIMEOUT,
                                           description="seconds the server may take to start and list its tools")
    # Bytes one message from the server may have; a longer answer ends its call with an error.
    max_output: PositiveInt = Field(DEFAULT_MAX_OUTPUT, description="bytes one message from the server may have")
    # "auto": an MCP task when the server and the tool allow one; "never": plain calls.
    tasks: Literal["auto", "never"] = Field(
        "auto", description='"auto": MCP tasks where the server and the tool allow them; "never": plain calls')

    @model_validator(mode="after")
    def _check(self) -> "McpToolConfig":
        if self.include is not None and self.exclude:
            raise ValueError("include and exclude are both set. Fix: keep one of them")
        if self.prefix and not re.match(r"^[A-Za-z0-9_-]{1,40}$", self.prefix):
            raise ValueError(f"prefix {self.prefix!r} holds more than letters, digits, '_' and '-' (or is over "
                             "40 characters). Fix: use a short prefix of those, e.g. prefix = \"git_\"")
        if self.description is not None:
            raise ValueError("description is per server tool. Fix: set it under [tools.NAME.overrides.TOOL]")
        return self
