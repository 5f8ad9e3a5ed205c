"""``asyncfc tools``, ``asyncfc agents``, ``asyncfc models``: look before you run.

They show what the files resolve to, through the same resolution a run
uses (:func:`asyncfc_cli.spec.resolve_agent`, :func:`~asyncfc_cli.spec.resolve_run`):
each tool's kind, the JSON schema the model is sent, its timeout, ``ordered``
and limits; each agent's model as the LiteLLM model string and where its API
key would come from. A key itself is never shown: only the name of the
variable or file that holds it, and whether that variable is set.

Nothing here imports LiteLLM or starts a model. With ``--json`` every
outcome, errors included, is one JSON object on stdout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

EXIT_OK, EXIT_USAGE = 0, 2

# The variable LiteLLM reads a provider's key from when none is configured,
# for the providers people use most; others: "the provider's usual variable".
PROVIDER_KEYS = {
    "openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY",
    "groq": "GROQ_API_KEY", "mistral": "MISTRAL_API_KEY", "cohere": "COHERE_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY", "openrouter": "OPENROUTER_API_KEY", "xai": "XAI_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY", "fireworks_ai": "FIREWORKS_AI_API_KEY", "azure": "AZURE_API_KEY",
    "perplexity": "PERPLEXITYAI_API_KEY",
}

AgentsOpt = Annotated[Optional[Path], typer.Option(
    "--agents", help="agents.toml to read (default: the current directory's, or the nearest parent's).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout (errors too).")]


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _text(value: Any) -> str:
    """A value from a file or a module, shown as text (never markup, never a control sequence)."""
    from asyncfc_cli.output import printable

    return escape(printable(value))


def _fail(exc: Exception, as_json: bool) -> typer.Exit:
    from asyncfc_cli.commands.common import spec_error_object
    from asyncfc_cli.redaction import Redactor, env_secrets

    redact = Redactor(env_secrets())
    _err().print(f"[red]error:[/] {escape(redact.text(str(exc)))}")
    if as_json:
        from asyncfc_cli.output import print_json

        print_json(redact.value(spec_error_object(exc, EXIT_USAGE)))
    return typer.Exit(EXIT_USAGE)


def _agents_file(explicit: Path | None) -> tuple[Path, dict[str, Any]]:
    """The agents file and its raw tables (read and checked like a run reads them)."""
    found, raw, _typed = _read_agents_file(explicit)
    return found, raw


def _read_agents_file(explicit: Path | None) -> tuple[Path, dict[str, Any], Any]:
    """The agents file, its raw tables, and the file as validated (spec.AgentsFile)."""
    from asyncfc_cli import spec

    if explicit is not None:
        if not explicit.is_file():
            raise spec.SpecError(explicit, "", "agents file not found", "check the --agents path")
        found = explicit
    else:
        found = spec.find_agents_upward(Path.cwd())
        if found is None:
            raise spec.SpecError(None, "--agents", f"no agents.toml in {Path.cwd()} or a parent directory",
                                 "run asyncfc init to create a project, or pass --agents FILE")
    raw = spec.read_toml(found)
    typed = spec.load_agents_file(found)  # structure, so a bad table is an error here and not a traceback below
    spec.check_tool_definitions({}, None, raw.get("tools", {}), found)
    return found, raw, typed


# --- tools ------------------------------------------------------------------------------------


def tools(
    target: Annotated[Optional[str], typer.Argument(
        metavar="AGENT|TASK", help="An agent of agents.toml (its tools, as a run of it gets them), or a "
        "task file (the tools of its run). Default: every tool the agents file defines.",
        show_default=False)] = None,
    agents: AgentsOpt = None,
    as_json: JsonOpt = False,
    mcp: Annotated[Optional[list[str]], typer.Option(
        "--mcp", metavar="<command line>", help='An MCP server\'s tools, as asyncfc run --mcp adds them: '
        '--mcp "mcp-server-git --repository ." (repeatable). With AGENT or TASK, listed with that run\'s '
        "tools (a name clash is an error, as in the run); alone, only the servers' tools, no agents.toml "
        "needed.")] = None,
) -> None:
    """Show each tool as the model sees it: kind, JSON schema, timeout, ordered and limits.

    The schema is the one sent to the model (a Python tool's comes from its
    signature and docstring). For an agent in async mode the futures
    protocol's own wait tool is listed too. Hints name likely mistakes, such
    as an async tool written for asyncio without async_backend = "asyncio".
    """
    from asyncfc_cli import spec

    from asyncfc_cli.redaction import Redactor, env_secrets

    redact = Redactor(env_secrets())  # and every tool source's secrets, once resolved
    try:
        where, agent_name, mode, built, hints = _resolve_tools(target, agents, redact, mcp or [])
    except spec.SpecError as exc:
        raise _fail(exc, as_json) from None
    rows = [_tool_row(tool) for tool in built.values()]
    if mode is not None:
        from asyncfc_cli import modes

        rows += [{**_tool_row(added.tool()), "note": f"added by {mode} mode: {added.why}"}
                 for added in modes.get(mode).tools]
    # Names, descriptions and schemas may come from an MCP server: it may quote a credential.
    rows, hints = redact.value(rows), redact.value(hints)
    if as_json:
        from asyncfc_cli.output import print_json

        print_json({"status": "ok", "exit_code": EXIT_OK, "file": str(where), "agent": agent_name, "mode": mode,
                    "tools": rows, "hints": hints})
        raise typer.Exit(EXIT_OK)
    out = _out()
    heading = f"agent {agent_name} ({mode} mode)" if agent_name else \
        "every tool (a timeout not set on the tool is the agents' default tool_timeout)" if target or not mcp \
        else "the --mcp servers' tools (a timeout not set is the agents' default tool_timeout)"
    out.print(f"[bold]{_text(heading)}[/] · {_text(where)}")
    if not rows:
        out.print("no tools")
    for row in rows:
        out.print()
        source = f"  [dim]{_text(row['source'])}[/]" if row.get("source") else ""
        out.print(f"[bold]{_text(row['name'])}[/]  {_text(row['kind'])}{source}")
        if row.get("note"):
            out.print(f"  [dim]{_text(row['note'])}[/]")
        limits = [f"timeout {_seconds(row['timeout'])}", f"ordered {'yes' if row['ordered'] else 'no'}",
                  f"max_concurrency {row['max_concurrency'] if row['max_concurrency'] is not None else 'none'}",
                  f"expected_latency {_seconds(row['expected_latency'])}"]
        out.print("  " + " · ".join(limits))
        schema = json.dumps(row["schema"], indent=2, ensure_ascii=False)
        for line in schema.splitlines():
            out.print(f"  {_text(line)}")
    for hint in hints:
        _err().print(f"[yellow]hint:[/] {escape(hint)}")
    raise typer.Exit(EXIT_OK)


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:g}s"


def _tool_row(tool: Any) -> dict[str, Any]:
    # Only the Tool's public fields: how tools are built is tools.py's business.
    return {"name": tool.name, "kind": tool.kind, "source": getattr(tool, "source", None) or None,
            "timeout": tool.timeout, "ordered": tool.ordered, "max_concurrency": tool.max_concurrency,
            "expected_latency": tool.expected_latency, "schema": tool.openai_schema()}


def _resolve_tools(target: str | None, agents: Path | None, redact: Any,
                   mcp: list[str]) -> tuple[Path, str | None, str | None, dict, list]:
    """(file, agent, mode, tools by name, hints) for ``asyncfc tools [AGENT|TASK] [--mcp ...]``;
    ``redact`` learns the secrets of every tool source it opens. Every source is
    built by the function a run builds it with (spec.tool_source, spec.resolve_agent)."""
    from asyncfc_cli import spec

    if target is not None and target.endswith(".toml") and Path(target).is_file():
        run = spec.resolve_run(Path(target), agents_path=agents, mcp=mcp)
        built = _opened_tools(run.tool_sources, Path(target), redact)
        return Path(target), run.agent_name, run.agent.mode, built, run.hints
    # Outside an agent a tool without its own timeout still has one: the
    # agent's tool_timeout, whose default every agent that does not set it runs with.
    default_timeout = spec.AgentSpec.model_fields["tool_timeout"].default
    if target is None and mcp:  # only the servers': a look at a server before writing any file
        sources = []
        for index, line in enumerate(mcp):
            sources.append(spec.mcp_line_source(line, index, {s.name for s in sources}))
            sources[-1].set_default_timeout(default_timeout)
        return Path.cwd(), None, None, _opened_tools(sources, None, redact), []
    found, raw, typed = _read_agents_file(agents)
    raw_tools = raw.get("tools", {})
    if target is None:
        sources = []
        for name, config in typed.tools.items():
            # Leniently: a tool no run uses may name a variable this shell has not set.
            sources.append(spec.tool_source(name, raw_tools[name], found, strict=False, config=config))
            sources[-1].set_default_timeout(default_timeout)
        built = _opened_tools(sources, found, redact)
        return found, None, None, built, spec.tool_hints(built, raw_tools)
    agents_table = raw.get("agents", {})
    if target not in agents_table:
        known = ", ".join(sorted(agents_table)) or "none"
        raise spec.SpecError(found, "agents", f"agent {target!r} is not defined",
                             f"use one of: {known}, or name a task file")
    agent, _model, _static, sources = spec.resolve_agent(agents_table[target], found, f"agents.{target}", raw, found,
                                                         agent=typed.agents[target], tool_configs=typed.tools, mcp=mcp)
    built = _opened_tools(sources, found, redact)
    return found, target, agent.mode, built, spec.tool_hints(built, raw_tools)


def _opened_tools(sources: list[Any], file: Path | None, redact: Any) -> dict[str, Any]:
    """Every tool the sources bring: an MCP server is started to list its own (and stopped)."""
    import trio

    from asyncfc_cli import modes, spec
    from asyncfc_cli.tools import ToolLoadError, open_tools
    from asyncfc_cli.trace import Trace

    for src in sources:
        redact.add(src.secrets())
    if all(src.static_tools() for src in sources):
        return {tool.name: tool for src in sources for tool in src.static_tools()}

    async def listing() -> dict[str, Any]:
        async with open_tools(sources, Trace(redactor=redact), reserved=modes.RESERVED_TOOL_NAMES) as tools:
            return dict(tools)

    try:
        return trio.run(listing)
    except ToolLoadError as exc:
        raise spec.tool_spec_error(exc, "", file) from None


# --- agents and models ------------------------------------------------------------------------


def key_source(model: str, raw: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Where a model's API key comes from: a variable's name (and whether it is set),
    a file, or nothing needed. Never the key.

    ``raw`` is the ``[models.NAME]`` table as written (before ``${VAR}``),
    or empty for a model string used directly.
    """
    import re

    env = dict(os.environ) if env is None else env
    if model == "sim":
        return {"source": "none", "variable": None, "set": None, "text": "no key: the simulated model"}
    if raw.get("api_key_env"):
        name = str(raw["api_key_env"])
        return {"source": "env", "variable": name, "set": bool(env.get(name)),
                "text": f"${name} (api_key_env){'' if env.get(name) else ', not set'}"}
    written = raw.get("api_key")
    if isinstance(written, str) and written:
        var = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?\}", written)
        if var is None:
            return {"source": "file", "variable": None, "set": True,
                    "text": "written in the agents file (better: api_key_env = \"VAR\")"}
        name, default = var.group(1), var.group(2)
        if env.get(name) or default is None:
            return {"source": "env", "variable": name, "set": bool(env.get(name)),
                    "text": f"${name} (api_key){'' if env.get(name) else ', not set'}"}
        if default:
            return {"source": "file", "variable": name, "set": False,
                    "text": f"${name} (api_key) is not set: the default written in the agents file"}
        # ${VAR:-} and VAR unset: no key, so LiteLLM reads the provider's variable, as below.
    from asyncfc_cli import credentials
    from asyncfc_cli.spec import SpecError, interpolate

    # Decided on the values a run has (${VAR} substituted), by the function
    # the run's own check uses: the raw "${ASYNCFC_API_BASE:-}" is not a server.
    def value(key: str) -> str | None:
        try:
            found = interpolate(raw.get(key), None, key, env)
        except SpecError:  # an unset ${VAR} without default: the run stops on it before any key
            return None
        return found if isinstance(found, str) and found else None

    need = credentials.key_need(model, value("api_key"), value("api_base"), env)
    provider = model.split("/", 1)[0] if "/" in model else (
        "openai" if model.startswith("gpt-") else "anthropic" if model.startswith("claude") else "")
    if need.kind == "provider":
        name = need.report[-1]
        return {"source": "provider", "variable": name, "set": need.present,
                "text": f"${name} (LiteLLM's default for {provider})"
                        + ("" if need.present else ", not set: asyncfc run refuses to start without it")}
    name = PROVIDER_KEYS.get(provider)
    if need.kind == "server":
        return {"source": "provider", "variable": name, "set": bool(env.get(name or "")) if name else None,
                "text": f"${name or 'the provider key'} if the server at api_base asks for one "
                        "(local servers usually do not)"}
    if name:
        return {"source": "provider", "variable": name, "set": bool(env.get(name)),
                "text": f"${name} (LiteLLM's default for {provider}){'' if env.get(name) else ', not set'}"}
    return {"source": "provider", "variable": None, "set": None,
            "text": f"the usual variable of provider {provider or model!r} (see LiteLLM's provider docs)"}


def _model_entry(ref: str, raw_agents: dict[str, Any]) -> dict[str, Any]:
    """A model reference (a [models] name or a model string) as a run would resolve it."""
    from asyncfc_cli import spec

    tables = raw_agents.get("models", {})
    table = tables.get(ref) if isinstance(tables.get(ref), dict) else None
    if table is None:
        model = ref
        return {"ref": ref, "model": model, "api_base": None, "defined_in_file": False,
                "key": key_source(model, {})}
    from asyncfc_cli.redaction import mask_url

    lenient = spec.interpolate_leniently(table)
    model = str(lenient.get("model", "?"))
    api_base = lenient.get("api_base")
    # A password or token in the URL is a credential: shown masked, like a key is never shown.
    return {"ref": ref, "model": model, "api_base": mask_url(api_base) if isinstance(api_base, str) and api_base
            else None, "defined_in_file": True, "key": key_source(model, table)}


def agents_cmd(agents: AgentsOpt = None, as_json: JsonOpt = False) -> None:
    """List the agents of agents.toml: model (as a LiteLLM model string), where its key comes from, mode, tools.

    The key itself is never shown: only the variable that holds it and
    whether it is set. ASYNCFC_MODEL, when set, replaces every agent's
    model in asyncfc run, as --model does; this listing says so.
    """
    from asyncfc_cli import spec

    try:
        found, raw = _agents_file(agents)
        rows = []
        for name, table in raw.get("agents", {}).items():
            lenient = spec.interpolate_leniently(table)
            agent = spec.validate_as(spec.AgentSpec, lenient, found, f"agents.{name}")
            rows.append({"name": name, "mode": agent.mode, "tools": list(agent.tools),
                         "instructions": agent.instructions, **_model_entry(agent.model, raw)})
    except spec.SpecError as exc:
        raise _fail(exc, as_json) from None
    override = os.environ.get("ASYNCFC_MODEL") or None
    if as_json:
        from asyncfc_cli.output import print_json

        print_json({"status": "ok", "exit_code": EXIT_OK, "file": str(found), "model_override": override,
                    "agents": rows})
        raise typer.Exit(EXIT_OK)
    out = _out()
    out.print(f"[bold]agents[/] · {_text(found)}")
    for row in rows:
        out.print()
        out.print(f"[bold]{_text(row['name'])}[/]  mode {_text(row['mode'])}")
        model = row["model"] if row["ref"] == row["model"] else f"{row['ref']} = {row['model']}"
        out.print(f"  model  {_text(model)}" + (f"  at {_text(row['api_base'])}" if row["api_base"] else ""))
        out.print(f"  key    {_text(row['key']['text'])}")
        out.print(f"  tools  {_text(', '.join(row['tools']) or 'none')}")
    if override:
        out.print(f"\n[yellow]note:[/] ASYNCFC_MODEL={_text(override)} is set: asyncfc run uses that model "
                  "for every agent (as --model does)")
    raise typer.Exit(EXIT_OK)


def models_cmd(agents: AgentsOpt = None, as_json: JsonOpt = False) -> None:
    """List the [models] of agents.toml (and the model strings agents use directly): the
    LiteLLM model string, api_base, and where the key comes from (never the key)."""
    from asyncfc_cli import spec

    try:
        found, raw = _agents_file(agents)
        refs = list(raw.get("models", {}))
        for table in raw.get("agents", {}).values():
            ref = table.get("model") if isinstance(table, dict) else None
            if isinstance(ref, str):
                ref = spec.interpolate_leniently(ref)
                if ref not in refs:
                    refs.append(ref)
        rows = []
        for ref in refs:
            entry = _model_entry(ref, raw)
            entry["used_by"] = [n for n, t in raw.get("agents", {}).items()
                                if isinstance(t, dict) and spec.interpolate_leniently(t.get("model")) == ref]
            rows.append(entry)
    except spec.SpecError as exc:
        raise _fail(exc, as_json) from None
    if as_json:
        from asyncfc_cli.output import print_json

        print_json({"status": "ok", "exit_code": EXIT_OK, "file": str(found),
                    "model_override": os.environ.get("ASYNCFC_MODEL") or None, "models": rows})
        raise typer.Exit(EXIT_OK)
    out = _out()
    out.print(f"[bold]models[/] · {_text(found)}")
    for row in rows:
        out.print()
        title = row["ref"] if row["defined_in_file"] else f"{row['ref']} (a model string, not a [models] entry)"
        out.print(f"[bold]{_text(title)}[/]")
        out.print(f"  litellm   {_text(row['model'] if row['model'] != 'sim' else 'sim (the embedded simulated model)')}")
        if row["api_base"]:
            out.print(f"  api_base  {_text(row['api_base'])}")
        out.print(f"  key       {_text(row['key']['text'])}")
        out.print(f"  used by   {_text(', '.join(row['used_by']) or 'no agent')}")
    raise typer.Exit(EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add ``tools``, ``agents`` and ``models`` to the CLI."""
    app.command("tools")(tools)
    app.command("agents")(agents_cmd)
    app.command("models")(models_cmd)
