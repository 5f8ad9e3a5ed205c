"""The ``python`` tool kind: an ordinary callable, sync or async, imported as is.

Its JSON schema comes from its signature and docstring through pydantic, and
the same pydantic model validates the model's arguments, so the schema the
model sees and the checks it meets never drift. A plain ``def`` runs in a
worker thread (abandoned, not killed, when cancelled); an ``async def`` runs
on trio's loop, or in its own asyncio loop with ``async_backend = "asyncio"``.
For the run, the kind watches the loop for async tools that block it
(:mod:`asyncfc_cli.tools.blocking`).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import math
import re
import sys
import threading
import typing
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import trio
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model, field_validator

from asyncfc_cli.tools import blocking
from asyncfc_cli.tools.core import (
    RunContext,
    StaticSource,
    Tool,
    ToolConfigBase,
    ToolError,
    ToolKind,
    ToolLoadError,
    argument_error,
    schema_of,
    to_json,
)
from asyncfc_cli.tools.docstrings import parse_docstring

_IMPORT_RE = re.compile(
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
    r":[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
)


class PythonToolConfig(ToolConfigBase):
    python: str = Field(description='the function\'s import path, "package.module:function"')
    # Most async code in the wild is written for asyncio and would fail under
    # trio; this runs such a coroutine in its own asyncio loop, unmodified.
    async_backend: Literal["trio", "asyncio"] = Field(
        "trio", description='"asyncio" for an async function written for asyncio')

    @field_validator("python")
    @classmethod
    def _check_import_path(cls, v: str) -> str:
        if not _IMPORT_RE.match(v):
            raise ValueError(
                f"{v!r} is not an import path. Fix: write \"package.module:function\", "
                'e.g. "tools.textstats:word_count"'
            )
        return v



def _import_callable(name: str, spec: str, base_dir: Path) -> Callable[..., Any]:
    module_name, _, attr_path = spec.partition(":")
    fix_import = (
        f"check that {module_name.replace('.', '/')}.py (or a package of that name) "
        f"exists under {base_dir} (the agents.toml directory) or is installed, and "
        "that it imports cleanly"
    )
    base = str(base_dir)
    sys.path.insert(0, base)
    # A module file created after an earlier import in the same process would
    # otherwise be missed by the path finders' directory caches.
    importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # SystemExit/KeyboardInterrupt at import: still a spec error
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise ToolLoadError(
            f"tool {name!r}: cannot import python = {spec!r}: "
            f"{type(exc).__name__}: {exc}. Fix: {fix_import}"
        ) from exc
    finally:
        try:
            sys.path.remove(base)
        except ValueError:
            pass
    _check_not_shadowed(name, spec, module, base_dir)

    obj: Any = module
    walked = module_name
    for attr in attr_path.split("."):
        if not hasattr(obj, attr):
            owner = getattr(obj, "__name__", None)
            available = sorted(
                n
                for n, v in getattr(obj, "__dict__", {}).items()
                if callable(v)
                and not n.startswith("_")
                # Skip what the module merely imported.
                and getattr(v, "__module__", owner) == owner
            )
            raise ToolLoadError(
                f"tool {name!r}: python = {spec!r}: {walked} has no attribute "
                f"{attr!r}. Fix: use one of {', '.join(available) or '(no public callables)'}"
            )
        obj = getattr(obj, attr)
        walked = f"{walked}.{attr}"
    if not callable(obj):
        raise ToolLoadError(
            f"tool {name!r}: python = {spec!r} is a {type(obj).__name__}, not a "
            "callable. Fix: point it at a function"
        )
    return obj


def _check_not_shadowed(name: str, spec: str, module: Any, base_dir: Path) -> None:
    # sys.modules caches by name: a second agents.toml whose own tools/ package
    # has the same name would silently get the first one's code.
    rel = Path(*module.__name__.split("."))
    candidates = [base_dir / rel.with_suffix(".py"), base_dir / rel / "__init__.py"]
    local = next((c for c in candidates if c.is_file()), None)
    loaded = getattr(module, "__file__", None)
    if local is not None and loaded and Path(loaded).resolve() != local.resolve():
        raise ToolLoadError(
            f"tool {name!r}: python = {spec!r}: module {module.__name__!r} was already "
            f"imported from {loaded}, so {local} is not the code that would run. "
            "Fix: give the local module a distinct name"
        )


def _is_async_callable(func: Any) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)
    )


def _annotated_target(func: Any) -> Any:
    while isinstance(func, functools.partial):
        func = func.func
    if inspect.isfunction(func) or inspect.ismethod(func) or inspect.isbuiltin(func):
        return func
    if inspect.isclass(func):
        return func.__init__
    return getattr(func, "__call__", func)


@dataclass
class _Signature:
    model: type[BaseModel]
    positional_only: set[str]
    schema: dict[str, Any]
    summary: str


def _describe_signature(name: str, func: Callable[..., Any], spec: str) -> _Signature:
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise ToolLoadError(
            f"tool {name!r}: cannot read the signature of {spec}: {exc}. Fix: "
            "wrap it in a plain def with named parameters"
        ) from None
    try:
        hints = typing.get_type_hints(_annotated_target(func), include_extras=True)
    except Exception as exc:
        raise ToolLoadError(
            f"tool {name!r}: cannot resolve the type annotations of {spec}: "
            f"{type(exc).__name__}: {exc}. Fix: make every annotation importable "
            "in that module"
        ) from None

    summary, param_docs = parse_docstring(inspect.getdoc(func))
    fields: dict[str, Any] = {}
    positional_only: set[str] = set()
    for index, (pname, param) in enumerate(sig.parameters.items()):
        # The model fills named parameters from a JSON object; it cannot know
        # what *args or **kwargs expect, so such a tool would be registered
        # with parameters that do not describe it and its calls would fail.
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            star = "*" if param.kind == param.VAR_POSITIONAL else "**"
            raise ToolLoadError(
                f"tool {name!r}: {spec} takes {star}{pname}, which a model's JSON "
                "arguments cannot fill. Fix: wrap it in a def with named, annotated "
                "parameters that calls it"
            )
        if param.kind == param.POSITIONAL_ONLY:
            positional_only.add(pname)
        annotation = hints.get(pname, Any)
        try:
            TypeAdapter(annotation).json_schema()
        except Exception as exc:
            raise ToolLoadError(
                f"tool {name!r}: parameter {pname!r} of {spec} has type "
                f"{annotation!r}, which has no JSON schema ({type(exc).__name__}). "
                "Fix: annotate it with a JSON-friendly type (str, int, float, bool, "
                "list, dict, Literal, a pydantic model)"
            ) from None
        default = ... if param.default is param.empty else param.default
        # Internal field names dodge pydantic's rules about leading
        # underscores and BaseModel attribute names; the alias is the real name.
        fields[f"p{index}"] = (
            annotation,
            Field(default, alias=pname, description=param_docs.get(pname) or None),
        )
    try:
        model = create_model(  # type: ignore[call-overload]
            f"{name}_arguments",
            __config__=ConfigDict(extra="forbid"),
            **fields,
        )
        schema = schema_of(model)
    except Exception as exc:
        raise ToolLoadError(
            f"tool {name!r}: cannot derive a schema for {spec}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    return _Signature(model, positional_only, schema, summary)


def _failure(tool: str, exc: BaseException, asyncio_hint: bool = False) -> ToolError:
    text = str(exc)
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if asyncio_hint and (
        "asyncio" in text or "no running event loop" in text or "no current event loop" in text
    ):
        message += (
            ' (this looks like asyncio code: set async_backend = "asyncio" on '
            "the tool so it runs in its own asyncio loop)"
        )
    err = ToolError(message)
    err.__cause__ = exc
    return err


_LIVE_THREAD_TOKENS = 64


@dataclass
class _Threads:
    """One run's worker threads for sync tools (see :func:`_in_thread`)."""

    # At most this many threads running for a live call of the run at once.
    live: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(_LIVE_THREAD_TOKENS))
    # trio's own limiter for these threads never blocks: the token that counts is
    # taken and given back around the call.
    unlimited: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(math.inf))


# The current run's threads, set in the run's task by the kind's run resources
# (child tasks inherit it; another run of the same trio.run has its own).
_RUN_THREADS: ContextVar[_Threads | None] = ContextVar("asyncfc_tool_threads", default=None)


async def _in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a worker thread; abandon the thread if cancelled.

    At most 64 such threads *running for a live call* of one run at once. A
    thread abandoned on timeout or cancellation gives its token back at once,
    even though it runs on until its function returns: trio would keep the
    token until then, and 64 hung tools would starve every later sync tool.
    A tool invoked outside a run (no run resources) gets a bound of its own.
    """
    threads = _RUN_THREADS.get() or _Threads()
    async with threads.live:
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True, limiter=threads.unlimited)


async def _run_in_asyncio(func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    lock = threading.Lock()
    state: dict[str, Any] = {"cancelled": False}

    def run() -> Any:
        loop = asyncio.new_event_loop()
        try:
            task = loop.create_task(func(*args, **kwargs))
            with lock:
                state["loop"], state["task"] = loop, task
                if state["cancelled"]:
                    task.cancel()
            return loop.run_until_complete(task)
        finally:
            with lock:
                state.pop("loop", None)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    try:
        return await _in_thread(run)
    except trio.Cancelled:
        # The thread is abandoned either way; cancelling the task lets the
        # coroutine's own cleanup run instead of finishing work nobody wants.
        with lock:
            state["cancelled"] = True
            loop = state.get("loop")
            if loop is not None:
                try:
                    loop.call_soon_threadsafe(state["task"].cancel)
                except RuntimeError:
                    pass
        raise


def build_python_tool(name: str, cfg: PythonToolConfig, base_dir: Path) -> Tool:
    func = _import_callable(name, cfg.python, Path(base_dir))
    sig = _describe_signature(name, func, cfg.python)
    model, schema, positional_only = sig.model, sig.schema, sig.positional_only
    is_async = _is_async_callable(func)
    backend = cfg.async_backend
    field_names = {f: info.alias for f, info in model.model_fields.items()}

    async def runner(arguments: dict[str, Any]) -> Any:
        try:
            validated = model.model_validate(arguments)
        except ValidationError as exc:
            raise argument_error(name, exc, schema) from None
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        # Only what the caller sent: omitted arguments take the function's
        # own defaults, not a copy pydantic made at load time.
        for internal in model.model_fields:
            if internal not in validated.model_fields_set:
                continue
            real = field_names[internal]
            value = getattr(validated, internal)
            if real in positional_only:
                args.append(value)
            else:
                kwargs[real] = value
        try:
            if is_async and backend == "asyncio":
                result = await _run_in_asyncio(func, args, kwargs)
            elif is_async:
                handle = blocking.enter(name)
                try:
                    result = await func(*args, **kwargs)
                finally:
                    blocked = blocking.leave(handle)
                _check_not_blocked(tool, blocked)
            else:
                result = await _in_thread(lambda: func(*args, **kwargs))
                if inspect.isawaitable(result):  # a sync wrapper handing back a coroutine
                    result = await result
        except (Exception, SystemExit) as exc:
            raise _failure(name, exc, asyncio_hint=is_async and backend == "trio") from exc
        return to_json(name, result)

    tool = Tool(
        name=name,
        description=cfg.description if cfg.description is not None else sig.summary,
        parameters=schema,
        kind="python",
        runner=runner,
        ordered=cfg.ordered,
        timeout=cfg.timeout,
        max_concurrency=cfg.max_concurrency,
        expected_latency=cfg.expected_latency,
        source=cfg.python,
    )
    return tool


def _check_not_blocked(tool: Tool, blocked: float) -> None:
    # The executor's timeout is a cancel scope; a tool that never gives the
    # loop back cannot be cancelled, so its result arrives however late. When
    # the blocks alone reach its timeout, the model gets what the timeout
    # would have given it, with the reason.
    if blocked and tool.timeout is not None and blocked >= tool.timeout:
        raise ToolError(
            f"tool {tool.name!r} blocked the event loop for {blocked:.1f}s, past its "
            f"{tool.timeout:g}s timeout, which could not stop it (an async def making a "
            "blocking call); its result was discarded",
        )


@asynccontextmanager
async def _run_resources(run: RunContext) -> AsyncIterator[None]:
    reset = _RUN_THREADS.set(_Threads())
    try:
        async with blocking.watch(run.trace):
            yield
    finally:
        _RUN_THREADS.reset(reset)


KIND = ToolKind(
    name="python",
    key="python",
    config=PythonToolConfig,
    build=lambda name, cfg, base_dir: StaticSource(build_python_tool(name, cfg, base_dir)),
    run_resources=_run_resources,
)
