"""Continuing a conversation: ``asyncfc run -c "next prompt"`` / ``--continue RUN_ID``.

Every run ends its trace with a ``conversation`` event (written by the agent
loop, secrets masked like every line): the messages as the model saw them,
the outcomes it had not seen yet (a run that ended with futures outstanding,
or calls a Ctrl-C left without a reply), and, in async mode, every future's
outcome. A continued run starts from those messages, with

- a tool message for each call left without one (its outcome, or that it was
  cancelled), so the conversation is one every provider accepts;
- one delivery message (``Futures resolved: {...}``) with the outcomes of
  futures the model only saw as handles, each exactly once;
- the new prompt as a user message;

and runs the same agent, model and mode (the trace's header says which;
``--model``/``--mode`` override them). In async mode new calls number on
from the earlier ones (f4 after f3), and ``$f2`` still reads f2's value.

A trace is untrusted input: it is read with the tolerant reader, and the
conversation is checked field by field before anything runs. A trace that is
not a run's, or whose conversation is missing or damaged, is a
:class:`~asyncfc_cli.spec.SpecError` (exit 2) naming the file and the field.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncfc_cli.output import plain

# A run left without a reply at the end (interrupted, timed out) says so to the model.
UNFINISHED = "cancelled: the run ended before the call finished"
MAX_TRACE_BYTES = 512 * 1024 * 1024  # larger is not a trace asyncfc wrote for one conversation
ROLES = ("system", "user", "assistant", "tool")
_FUTURE_ID = re.compile(r"f[1-9]\d{0,8}")


# --- writing: what the agent loop records at the end of a run ----------------------------------


def conversation_fields(messages: list[dict[str, Any]], records: list[Any]) -> dict[str, Any]:
    """The fields of the ``conversation`` event for a run that ends with ``messages``
    and call ``records`` (:class:`~asyncfc_cli.executor.CallRecord`)."""
    answered = {m.get("tool_call_id") for m in messages if m.get("role") == "tool"}
    unseen, futures = [], []
    for record in records:
        settled = record.status not in ("pending", "waiting", "running")
        content = record.content() if settled else _error(UNFINISHED)
        outcome = record.outcome() if settled else {"error": UNFINISHED}
        if record.future is not None:
            futures.append({"future": record.future, "tool": record.tool,
                            "status": record.status if settled else "cancelled",
                            "value": plain(record.value) if record.status == "ok" else None,
                            "error": record.error if settled else UNFINISHED})
        if (record.delivered if record.future is not None else record.call_id in answered):
            continue
        unseen.append({"call_id": record.call_id, "future": record.future, "content": content,
                       "outcome": plain(outcome)})
    return {"messages": plain(messages), "unseen": unseen, "futures": futures}


def _error(message: str) -> str:
    import json

    return json.dumps({"error": message}, ensure_ascii=False)


# --- reading: a trace back into a conversation -------------------------------------------------


@dataclass
class History:
    """A conversation to continue, checked and ready for the next prompt."""

    run_id: str
    trace_path: Path
    agent: str
    model: str | None  # the [models] name (or LiteLLM string) the run used
    mode: str | None
    messages: list[dict[str, Any]]
    futures: list[dict[str, Any]] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)  # futures whose outcomes this continuation delivers


def find_trace(run: str | None, runs_dir: Path) -> Path:
    """The trace of run ``run`` (an id in ``runs_dir``, or a trace's path); None: the latest run there."""
    from asyncfc_cli.spec import SpecError

    if run is None:
        try:
            found = [p for p in runs_dir.glob("*.jsonl") if p.is_file()]
        except OSError:
            found = []
        if not found:
            raise SpecError(None, "--continue", f"there is no earlier run to continue in {runs_dir}",
                            'run one first: asyncfc run -a AGENT "prompt" (or name a trace: --continue PATH)')
        return max(found, key=lambda p: (p.stat().st_mtime_ns, p.name))
    path = Path(run)
    if path.suffix == ".jsonl" or os.sep in run:
        if not path.is_file():
            raise SpecError(run, "--continue", "no such trace file",
                            "name a trace file, or a run id (asyncfc trace list)")
        return path
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,200}", run):
        raise SpecError(None, "--continue", "a run id is letters, digits, '-', '_', '.' and ':'",
                        "asyncfc trace list shows the run ids")
    candidate = runs_dir / f"{run}.jsonl"
    if not candidate.is_file():
        raise SpecError(None, "--continue", f"no run {run} in {runs_dir}",
                        "asyncfc trace list shows the runs; or name the trace file itself")
    return candidate


def load_history(path: Path) -> History:
    """The conversation recorded in the trace at ``path``, checked; SpecError if it cannot be continued."""
    from asyncfc_cli.events import Conversation
    from asyncfc_cli.spec import SpecError
    from asyncfc_cli.trace import TraceError, parse_trace

    fix = "continue another run (asyncfc trace list), or start a new conversation without -c/--continue"
    try:
        if path.stat().st_size > MAX_TRACE_BYTES:
            raise SpecError(path, "", f"the trace is larger than {MAX_TRACE_BYTES >> 20} MB", fix)
        data = parse_trace(path.read_bytes(), path)
    except OSError as exc:
        raise SpecError(path, "", f"cannot read the trace: {exc.strerror or exc}", fix) from None
    except TraceError as exc:
        raise SpecError(path, "", str(exc).removeprefix(f"{path}: "), fix) from None
    header = data.header
    conversations = [ev for ev in data.events if isinstance(ev, Conversation)]
    if not conversations:
        raise SpecError(path, "conversation", "the trace holds no conversation (the run stopped before it "
                        "recorded one, or an older asyncfc wrote it)", fix)
    if not header.agent:
        raise SpecError(path, "header.agent", "the trace does not name its agent", fix)
    from asyncfc_cli import modes

    if header.mode is not None and header.mode not in modes.NAMES:
        raise SpecError(path, "header.mode", f"unknown mode {header.mode[:40]!r} (modes: {modes.listed()})", fix)
    event = conversations[-1]

    def bad(where: str, what: str) -> SpecError:
        return SpecError(path, f"conversation.{where}", what, fix)

    messages = _messages(event.messages, bad)
    futures = _futures(event.get("futures") or [], bad)
    unseen = _unseen(event.get("unseen") or [], bad)
    history = History(run_id=header.run_id or path.stem, trace_path=path, agent=header.agent,
                      model=header.model_alias or header.model, mode=header.mode, messages=messages,
                      futures=futures)
    _settle(history, unseen)
    return history


def _settle(history: History, unseen: list[dict[str, Any]]) -> None:
    """Give the model what it never saw: a reply for each call left without one,
    then one delivery for the futures it only has handles for."""
    from asyncfc_cli.futures.protocol import delivery_message

    messages = history.messages
    answered = {m.get("tool_call_id") for m in messages if m["role"] == "tool"}
    by_call = {u["call_id"]: u for u in unseen}
    settled: list[dict[str, Any]] = []
    missing: list[str] = []  # calls of the last assistant message without a reply so far

    def reply_missing() -> None:
        for call_id in missing:
            item = by_call.pop(call_id, None)
            content = item["content"] if item is not None else _error(UNFINISHED)
            settled.append({"role": "tool", "tool_call_id": call_id, "content": content})
            answered.add(call_id)
        missing.clear()

    for message in messages:
        if message["role"] != "tool":
            reply_missing()  # after the replies that are there, before what follows them
        settled.append(message)
        missing.extend(c["id"] for c in message.get("tool_calls") or [] if c["id"] not in answered)
    reply_missing()
    late = {u["future"]: u["outcome"] for u in by_call.values() if u.get("future")}
    if late:
        settled.append(delivery_message(late))
        history.delivered = list(late)
    history.messages = settled


def _messages(value: Any, bad: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise bad("messages", "must be a non-empty list of messages")
    out = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise bad(where, "must be an object")
        role = message.get("role")
        if role not in ROLES:
            raise bad(f"{where}.role", f"must be one of {', '.join(ROLES)}")
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise bad(f"{where}.content", "must be text or null")
        clean: dict[str, Any] = {"role": role, "content": content}
        if role == "tool":
            if not isinstance(message.get("tool_call_id"), str):
                raise bad(f"{where}.tool_call_id", "must be a string")
            clean["tool_call_id"] = message["tool_call_id"]
            clean["content"] = content or ""
        elif role == "assistant" and message.get("tool_calls") is not None:
            clean["tool_calls"] = _tool_calls(message["tool_calls"], f"{where}.tool_calls", bad)
        elif content is None:
            raise bad(f"{where}.content", "must be text")
        out.append(clean)
    return out


def _tool_calls(value: Any, where: str, bad: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise bad(where, "must be a list")
    calls = []
    for j, call in enumerate(value):
        fn = call.get("function") if isinstance(call, dict) else None
        if not (isinstance(call, dict) and isinstance(call.get("id"), str) and isinstance(fn, dict)
                and isinstance(fn.get("name"), str) and isinstance(fn.get("arguments"), str)):
            raise bad(f"{where}[{j}]", "must be {id, function: {name, arguments}} with text values")
        calls.append({"id": call["id"], "type": "function",
                      "function": {"name": fn["name"], "arguments": fn["arguments"]}})
    return calls


def _futures(value: Any, bad: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise bad("futures", "must be a list")
    out = []
    for i, item in enumerate(value):
        where = f"futures[{i}]"
        if not isinstance(item, dict) or item.get("future") != f"f{i + 1}":
            raise bad(where, f"must be the future f{i + 1} (futures are numbered f1, f2, ... in order)")
        if not isinstance(item.get("tool"), str) or not isinstance(item.get("status"), str):
            raise bad(where, "must name its tool and status as text")
        error = item.get("error")
        if error is not None and not isinstance(error, str):
            raise bad(f"{where}.error", "must be text or null")
        out.append({"future": item["future"], "tool": item["tool"], "status": item["status"],
                    "value": item.get("value"), "error": error})
    return out


def _unseen(value: Any, bad: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise bad("unseen", "must be a list")
    out = []
    for i, item in enumerate(value):
        where = f"unseen[{i}]"
        if not (isinstance(item, dict) and isinstance(item.get("call_id"), str)
                and isinstance(item.get("content"), str)):
            raise bad(where, "must hold call_id and content as text")
        future = item.get("future")
        if future is not None and not (isinstance(future, str) and _FUTURE_ID.fullmatch(future)):
            raise bad(f"{where}.future", "must be a future id (f1, f2, ...) or null")
        out.append({"call_id": item["call_id"], "future": future, "content": item["content"],
                    "outcome": item.get("outcome")})
    return out


def continued_run(run: str | None, prompt: str, agent: str | None, agents: Path | None, model: str | None,
                  mode: str | None, overrides: dict[str, str], timeout: float | None) -> Any:
    """The RunSpec of ``asyncfc run -c PROMPT`` (``run`` None: the latest run) or
    ``--continue RUN PROMPT``: the earlier run's agent, model and mode unless given."""
    from asyncfc_cli import spec as spec_mod
    from asyncfc_cli.trace import runs_dir

    history = load_history(find_trace(run, runs_dir(agents)))  # the project of the agents.toml in use
    try:
        run_spec = spec_mod.resolve_prompt_run(prompt, agent or history.agent, agents_path=agents,
                                               model_override=model or history.model,
                                               mode_override=mode or history.mode, overrides=overrides,
                                               timeout_override=timeout)
    except spec_mod.SpecError as exc:
        if agent is None and exc.key == "agents":  # the agent named by the trace is gone
            exc.message = f"{exc.message} (run {history.run_id} was a run of it: {history.trace_path})"
            exc.fix = f"{exc.fix}; or continue with another agent: -a AGENT"
        raise
    run_spec.history = history
    return run_spec
