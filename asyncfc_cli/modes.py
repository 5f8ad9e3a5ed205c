"""The execution modes, in one registry: every other place derives from it.

A :class:`Mode` names its scheduler (the one seam of the agent loop,
:class:`asyncfc_cli.executor.Scheduler`) and what it adds to the
conversation: tools (async mode's ``wait``) and an instruction in the system
prompt. The spec's ``mode`` values and ``--mode`` checks, the CLI's
``--mode`` choices, ``asyncfc batch --mode``, the benchmarks' mode lists and
the reserved tool names all read :data:`MODES`.

This module stays light (no trio, no tools): the spec reads it while
validating a file. Schedulers and tools are imported when a run asks for them.

To add a mode, write its scheduler (a :class:`~asyncfc_cli.executor.Scheduler`
in a module of its own) and add one :class:`Mode` to :data:`MODES` below
(docs/futures.md, "How to add a mode").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asyncfc_cli.futures import protocol


@dataclass(frozen=True)
class AddedTool:
    """A tool a mode gives the model besides the agent's own; the mode's
    scheduler serves its calls (they are never run as tool calls)."""

    name: str
    description: str
    parameters: dict[str, Any]
    why: str  # what the model does with it (``asyncfc tools`` says so)

    def tool(self) -> Any:
        """As a :class:`asyncfc_cli.tools.Tool`, sent like any other."""
        from asyncfc_cli.tools import Tool

        name = self.name

        async def served_by_the_scheduler(_args: dict[str, Any]) -> Any:
            raise RuntimeError(f"{name} is served by the mode's scheduler, never run as a call")

        return Tool(name=self.name, description=self.description, parameters=self.parameters, kind="builtin",
                    runner=served_by_the_scheduler, source="asyncfc")


def _no_instruction(_override: str | None) -> str | None:
    return None


@dataclass(frozen=True)
class Mode:
    """One execution mode."""

    name: str
    summary: str  # one line, for --help and the docs
    # (AgentRun, Limits, Trace, RequestCost) -> Scheduler; imports its module when called.
    scheduler: Callable[[Any, Any, Any, Any], Any]
    tools: tuple[AddedTool, ...] = ()
    # agents.toml's futures_instruction (None: not set) -> the text added to the system prompt, or None.
    instruction: Callable[[str | None], str | None] = _no_instruction


def _sync(run: Any, limits: Any, trace: Any, cost: Any) -> Any:
    from asyncfc_cli.executor import SyncScheduler

    return SyncScheduler(run.tools, limits, trace)


def _parallel(run: Any, limits: Any, trace: Any, cost: Any) -> Any:
    from asyncfc_cli.executor import ParallelScheduler

    return ParallelScheduler(run.tools, limits, trace)


def _async(run: Any, limits: Any, trace: Any, cost: Any) -> Any:
    from asyncfc_cli.futures.hold import hold_policy
    from asyncfc_cli.futures.scheduler import AsyncScheduler
    from asyncfc_cli.latency import LatencyBook

    # The one default of the book: what the tools declare (expected_latency), nothing remembered.
    latency = run.latency if run.latency is not None else LatencyBook.for_tools(run.tools)
    return AsyncScheduler(run.tools, limits, trace, latency, hold_policy(run.hold, latency, cost), run.cassette)


WAIT = AddedTool(protocol.WAIT_TOOL, protocol.WAIT_DESCRIPTION, protocol.WAIT_PARAMETERS,
                 why="the model blocks on futures with it")

MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("sync", "each call runs to completion, one after another; the model waits", _sync),
    Mode("parallel", "the calls of one message run at once; the model waits for all", _parallel),
    Mode("async", "futures: calls start as they stream, results come back when ready", _async,
         tools=(WAIT,), instruction=protocol.instruction_for),
)}
NAMES: tuple[str, ...] = tuple(MODES)
DEFAULT = "async"

# Names the modes' own tools take, reserved in every mode: a --mode switch
# never changes what a tool name means.
RESERVED_TOOL_NAMES: tuple[str, ...] = tuple(dict.fromkeys(t.name for m in MODES.values() for t in m.tools))


def get(name: str) -> Mode:
    """The mode called ``name``; ValueError naming the modes otherwise."""
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown mode {name!r}: use {listed()}") from None


def listed(last: str = "or") -> str:
    """``sync, parallel or async``: the modes as a phrase for messages."""
    return ", ".join(NAMES[:-1]) + f" {last} {NAMES[-1]}" if len(NAMES) > 1 else NAMES[0]
