"""What a run's first model request loads, learned once so the worker can load it too.

The first request of a process costs LiteLLM far more than the next ones:
measured on the 2-core machine (benchmarks/RESULTS.md, "First request"), the
provider adapters and logging modules it imports on demand and the tiktoken
encoding its cost bookkeeping counts with are most of a second of CPU that
every warm child paid again. Which modules and encodings depends on the
LiteLLM version, so the worker does not keep a list: it *rehearses* a run
before it serves. It forks a child that streams one request per wire format
from the simulated model through asyncfc's own bridge (the path a run takes)
and reports what that loaded; then the worker loads the same in itself, and
every child it forks later inherits them.

The request itself must happen in the child: LiteLLM's Rust runtime starts
threads on its first native call, and a process that forks after that cannot
give its children a working runtime. Importing modules and reading encodings
starts none (the worker checks its thread count before it serves anyway).
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

DEADLINE = 60.0  # seconds for the rehearsal child to report; it is killed after


@dataclass
class Learned:
    modules: list[str] = field(default_factory=list)  # imported by the first requests
    encodings: list[str] = field(default_factory=list)  # tiktoken encodings they loaded
    seconds: float = 0.0
    error: str | None = None  # why nothing was learned (logged by the worker)


def rehearse(package: str, deadline: float = DEADLINE) -> Learned:
    """Fork a child that makes one request per wire format, and return what it loaded.

    Call only with one thread running (the caller's fork check). Never raises."""
    started = time.monotonic()
    try:
        read_end, write_end = os.pipe()
    except OSError as exc:
        return Learned(error=f"no pipe: {exc}")
    try:
        pid = os.fork()
    except OSError as exc:
        os.close(read_end)
        os.close(write_end)
        return Learned(error=f"cannot fork: {exc}")
    if pid == 0:  # the child: never returns
        os.close(read_end)
        _child(package, write_end)
    os.close(write_end)
    try:
        data = _read_report(read_end, started + deadline)
    finally:
        os.close(read_end)
        _reap(pid)
    seconds = time.monotonic() - started
    if data is None:
        return Learned(seconds=seconds, error=f"the rehearsal did not report within {deadline:g} s")
    try:
        report = json.loads(data)
        names = [str(n) for n in report["modules"]]
        encodings = [str(n) for n in report["encodings"]]
    except (ValueError, KeyError, TypeError):
        return Learned(seconds=seconds, error="the rehearsal's report was unreadable")
    if report.get("error"):
        return Learned(seconds=seconds, error=str(report["error"])[:300])
    return Learned(names, encodings, seconds)


def load_encodings(learned: Learned) -> None:
    """Load in this process the tiktoken encodings the rehearsal loaded (its modules
    are the worker's to import, with its own preimport)."""
    tiktoken = sys.modules.get("tiktoken")
    if tiktoken is None:
        return
    for name in learned.encodings:
        try:  # from the cache the rehearsal read (LiteLLM points tiktoken at its bundled files)
            tiktoken.get_encoding(name)
        except Exception:  # noqa: BLE001  (a child then loads it itself, as before)
            pass


def _read_report(fd: int, until: float) -> bytes | None:
    chunks = []
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _reap(pid: int) -> None:
    try:
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError, OSError):
        pass


def _child(package: str, fd: int) -> None:
    code = 0
    try:
        # Nothing it does may reach the worker's log: a line there would read as
        # the worker's imports printing something (worker.main refuses to serve then).
        null = os.open(os.devnull, os.O_RDWR)
        for target in (0, 1, 2):
            os.dup2(null, target)
        report: dict[str, Any] = {"modules": [], "encodings": []}
        before = set(sys.modules)
        try:
            _requests(package)
        except BaseException as exc:  # noqa: BLE001  (reported, the worker logs it)
            report["error"] = f"{type(exc).__name__}: {exc}"
        # Only libraries: which of asyncfc's own modules the worker may hold is modules.py's call.
        report["modules"] = sorted(name for name in set(sys.modules) - before
                                   if name != package and not name.startswith(f"{package}."))
        registry = sys.modules.get("tiktoken.registry")
        report["encodings"] = sorted(getattr(registry, "ENCODINGS", None) or {})
        data = json.dumps(report).encode()
        while data:
            data = data[os.write(fd, data):]
    except BaseException:  # noqa: BLE001
        code = 1
    os._exit(code)


def _requests(package: str) -> None:
    """One short streamed request with a tool call per wire format, the way a run makes it."""
    import importlib

    import trio

    model = importlib.import_module(f"{package}.model")
    runner = importlib.import_module(f"{package}.runner")
    plan_module = importlib.import_module(f"{package}.sim.plan")
    server_module = importlib.import_module(f"{package}.sim.server")
    protocols = importlib.import_module(f"{package}.sim.protocols")

    plan = plan_module.SimPlan(ttft=0, decode_tps=1e6, prefill_tps=1e9,
                               steps=[{"id": "a", "tool": "lookup", "args": {"key": "x"}}],
                               final={"answer": "done: {a}"})
    tools = [{"type": "function", "function": {
        "name": "lookup", "description": "Look a key up.",
        "parameters": {"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]}}}]
    messages = [{"role": "system", "content": "You are a rehearsal."}, {"role": "user", "content": "Look x up."}]

    async def one(server: Any) -> None:
        with model.AsyncioThread() as loop_thread:
            client = model.LiteLLMClient(runner.sim_config(server, retries=0, stream_timeout=20.0), loop_thread)
            async for _event in client.stream(messages, tools):
                pass

    for name in protocols.NAMES:
        with server_module.SimServer(plan, protocol=name) as server:
            trio.run(one, server)
