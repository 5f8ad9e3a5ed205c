"""``asyncfc batch --ray``: the same batch, each run a Ray task.

Ray is optional (``pip install 'asyncfc[ray]'``) and imported only here.

- **Driver** (this process): resolves and checks every spec first, as the
  local batch does; then keeps at most ``--max-runs`` Ray tasks in flight,
  collects each run's report and trace as it finishes, and drives the same
  progress, ``results.jsonl``, JUnit and JSON outputs. ``ray.wait`` and
  ``ray.get`` block, so the driver is plain code, not a trio run: trio lives
  inside each run, on the workers.
- **Worker** (:func:`_run_remote`): resolves the same task again from its
  path (the files must be at the same absolute paths on every node: true for
  ``--ray local``, and for a cluster on a shared file system or one image),
  checks that it reads the same spec (its digest), and runs it with
  :func:`asyncfc_cli.runner.run_spec` in its own ``trio.run``, the trace in a
  temporary file whose bytes go back with the report. A worker process is
  reused for later tasks, so LiteLLM's import is paid once per worker.
- **Limits across the cluster**: one Ray actor (:class:`LimitsActor`) holds
  the per-model request slots and the shared 429 cooldown
  (:class:`asyncfc_cli.limits.Cooldown`); every worker's model client asks it
  before each request attempt (:class:`RemoteGate`), so the limits hold for
  the whole cluster, not per worker.
- **Ctrl-C**: the driver tells the actor to stop; every worker watches for
  that and cancels its run, which records itself interrupted and closes its
  trace, and sends it back. Runs that have not answered within
  :data:`STOP_GRACE` seconds (or at a second Ctrl-C) are cancelled by force.
- **A worker that dies** (``kill -9``, the OOM killer, a cancel by force)
  sends nothing back. Before its run starts it tells the actor where its
  trace is (node and directory); the driver then runs a small task on that
  node that reads what the worker wrote and removes the directory
  (:func:`_salvage`), and keeps that trace, closed with the run's outcome.
  Only when nothing can be read (the node is gone) is the trace the
  driver's own two lines.
- **Ray's own messages** on the driver (a dead worker's notice, printed by
  Ray with colour codes) pass the printable filter: no escape sequence
  reaches the terminal or a log, with or without ``--json``.
- Ray is released before the command returns: the actor is killed and the
  driver disconnects; ``--ray local`` also stops the Ray instance it started.

Each run asks Ray for one CPU. ``--ray local`` starts Ray with ``--max-runs``
logical CPUs, so that many runs go at once; on a cluster, runs in flight are
at most ``--max-runs`` and at most the cluster's CPUs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from asyncfc_cli.batch import (BatchOutcome, PlannedRun, RunReport, failed_report, interrupted_report,
                               report_from_outcome, skipped_report)
from asyncfc_cli.limits import Cooldown, is_rate_limit, record_wait, retry_after
from asyncfc_cli.output import printable, printable_lines
from asyncfc_cli.ray_address import (ADDRESS_FIX, CONNECT_TIMEOUT, CONNECT_TIMEOUT_ENV,  # noqa: F401
                                     bounded_gcs_connect, check_reachable, connect_timeout, parse_address)
from asyncfc_cli.safefiles import write_atomically
from asyncfc_cli.spec import SpecError

INSTALL = "pip install 'asyncfc[ray]'"
STOP_GRACE = 15.0  # seconds runs get to stop and send their traces back after Ctrl-C
SLOT_WAIT = 1.0  # longest a worker's slot request waits in the actor before asking again
SALVAGE_WAIT = 30.0  # longest the driver waits for a dead worker's trace to be read on its node
RUN_DIR_PREFIX = "asyncfc-ray-run-"  # a worker's directory for one run's trace, under its temp dir




def backend(address: str) -> RayBackend:
    """The Ray backend for ``--ray ADDRESS`` (``local``: start one here); SpecError
    with the install line when Ray is not installed, and when a cluster's address
    is malformed or does not answer as Ray within :func:`connect_timeout`
    (checked before anything is planned or written: ``ray.init`` would retry
    an address that refuses or drops connections for minutes)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise SpecError(None, "--ray", "Ray is not installed", f"install the ray extra: {INSTALL}") from None
    address = address.strip()
    if not address:
        raise SpecError(None, "--ray", "no address", ADDRESS_FIX)
    if address != "local":
        check_reachable(address, connect_timeout())
    return RayBackend(address)


# --- the actor: limits for the whole cluster ------------------------------------------------


class LimitsActor:
    """Per-model request slots and 429 cooldowns for every worker (a Ray actor, async:
    a slot request waits here, up to :data:`SLOT_WAIT`, instead of polling), plus the
    driver's stop signal."""

    def __init__(self, max_requests: int | None) -> None:
        self.max_requests = max_requests
        self.models: dict[str, dict[str, Any]] = {}
        self.leases: dict[int, tuple[str, str]] = {}  # lease -> (model key, run key)
        self.next_lease = 0
        self.changed: asyncio.Condition | None = None
        self.stop_event: asyncio.Event | None = None
        self.traces: dict[str, tuple[str, str]] = {}  # run key -> (node id, directory) while it runs

    def _state(self) -> tuple[asyncio.Condition, asyncio.Event]:
        # Created on first use: inside the actor's own event loop.
        if self.changed is None:
            self.changed, self.stop_event = asyncio.Condition(), asyncio.Event()
        return self.changed, self.stop_event

    def _model(self, key: str) -> dict[str, Any]:
        return self.models.setdefault(key, {"in_flight": 0, "peak": 0, "cooldown": Cooldown(), "waited": 0.0})

    async def acquire(self, key: str, holder: str) -> tuple[int | None, float, str]:
        """(lease or None, seconds to wait before asking again, why it waited)."""
        changed, _ = self._state()
        model = self._model(key)
        deadline = time.monotonic() + SLOT_WAIT
        async with changed:
            while True:
                now = time.monotonic()
                until = model["cooldown"].until
                if now < until:
                    return None, min(until - now, SLOT_WAIT), "rate_limit"
                if self.max_requests is None or model["in_flight"] < self.max_requests:
                    break
                if now >= deadline:
                    return None, 0.0, "concurrency"
                try:
                    await asyncio.wait_for(changed.wait(), deadline - now)
                except asyncio.TimeoutError:
                    pass
            model["in_flight"] += 1
            model["peak"] = max(model["peak"], model["in_flight"])
            self.next_lease += 1
            self.leases[self.next_lease] = (key, holder)
            return self.next_lease, 0.0, ""

    async def release(self, lease: int, outcome: str, asked: float | None = None, waited: float = 0.0) -> None:
        """``outcome``: ok (resets the doubling), rate_limit (a 429: every run pauses), other."""
        changed, _ = self._state()
        found = self.leases.pop(lease, None)
        if found is None:
            return
        model = self._model(found[0])
        model["in_flight"] -= 1
        model["waited"] += waited
        if outcome == "ok":
            model["cooldown"].ok()
        elif outcome == "rate_limit":
            model["cooldown"].hit(time.monotonic(), asked)
        async with changed:
            changed.notify_all()

    async def release_holder(self, holder: str) -> None:
        """Give back what a run held when its worker died without releasing it."""
        for lease, (_, who) in list(self.leases.items()):
            if who == holder:
                await self.release(lease, "other")

    async def note_trace(self, holder: str, node: str, directory: str) -> None:
        """Where a run's trace is being written, until :meth:`trace_gone`."""
        self.traces[holder] = (node, directory)

    async def trace_gone(self, holder: str) -> None:
        self.traces.pop(holder, None)

    async def trace_of(self, holder: str) -> tuple[str, str] | None:
        """Where a run whose worker died left its trace (and forget it)."""
        return self.traces.pop(holder, None)

    async def stop(self) -> None:
        self._state()[1].set()

    async def wait_stop(self, timeout: float) -> bool:
        _, stop = self._state()
        try:
            await asyncio.wait_for(stop.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return stop.is_set()

    async def stats(self) -> dict[str, dict[str, Any]]:
        return {key: {"peak_requests": m["peak"], "rate_limits": m["cooldown"].hits, "waited": round(m["waited"], 3)}
                for key, m in self.models.items()}


# --- the worker side ------------------------------------------------------------------------


class RemoteLimits:
    """:class:`asyncfc_cli.limits.ModelLimits`'s interface over the cluster's actor."""

    def __init__(self, actor: Any, holder: str) -> None:
        self.actor, self.holder = actor, holder

    def gate(self, key: str, trace: Any = None) -> RemoteGate:
        return RemoteGate(self.actor, key, self.holder, trace)


class RemoteGate:
    def __init__(self, actor: Any, key: str, holder: str, trace: Any) -> None:
        self.actor, self.key, self.holder, self.trace = actor, key, holder, trace

    @asynccontextmanager
    async def attempt(self) -> AsyncIterator[None]:
        import ray
        import trio

        start = trio.current_time()
        reason = "concurrency"
        while True:
            # Shielded: a lease granted while this run is being cancelled must still be
            # held by the try/finally below, which gives it back.
            with trio.CancelScope(shield=True):
                lease, wait, why = await trio.to_thread.run_sync(
                    ray.get, self.actor.acquire.remote(self.key, self.holder))
            if lease is not None:
                break
            if why == "rate_limit":
                reason = why
            await trio.sleep(wait)
        waited = trio.current_time() - start
        record_wait(self.trace, waited, reason)
        outcome, asked = "ok", None
        try:
            yield
        except BaseException as exc:
            outcome = "rate_limit" if is_rate_limit(exc) else "other"
            asked = retry_after(exc) if outcome == "rate_limit" else None
            raise
        finally:
            self.actor.release.remote(lease, outcome, asked, waited)  # does not block


def _run_remote(run: PlannedRun, digest: str, actor: Any) -> dict[str, Any]:
    """A Ray task: one run, in its own trio run. Returns its report and trace bytes."""
    import trio

    from asyncfc_cli import runner
    from asyncfc_cli.model import AsyncioThread, import_litellm
    from asyncfc_cli.spec import resolve_run
    from asyncfc_cli.tools import ToolLoadError
    from asyncfc_cli.trace import new_run_id

    try:
        spec = resolve_run(run.task, agents_path=run.agents, model_override=run.model_override,
                           mode_override=run.mode, overrides=run.params, timeout_override=run.timeout)
    except SpecError as exc:
        return {"report": failed_report(run, f"on the Ray worker: {exc}", 2).as_dict(), "trace": None}
    if spec.digest != digest:
        return {"report": failed_report(run, f"on the Ray worker, {run.task} is not the file the driver read "
                                             "(its content differs): give every node the same files", 2).as_dict(),
                "trace": None}
    run = dataclasses.replace(run, spec=spec)
    litellm = import_litellm()
    if spec.model.is_sim:
        runner.register_sim_models(litellm)
    workdir = _note_run_dir(run.key, actor)
    path = workdir / "trace.jsonl"
    run_id = new_run_id()
    outcome: list[Any] = []
    try:
        os.mkdir(workdir, 0o700)  # fails on anything already there: a name nobody else may hold
        writer = runner.open_trace_file(path, spec, run_id)
        with AsyncioThread() as loop_thread:
            async def main() -> None:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_watch_stop, actor, nursery.cancel_scope)
                    outcome.append(await runner.run_spec(spec, writer, [], run_id, loop_thread,
                                                         limits=RemoteLimits(actor, run.key)))
                    nursery.cancel_scope.cancel()

            try:
                trio.run(main)
            except BaseExceptionGroup as group:
                leaf = group
                while isinstance(leaf, BaseExceptionGroup):
                    leaf = leaf.exceptions[0]
                raise leaf from None
        if outcome:
            report = report_from_outcome(run, outcome[0], writer.failed)
        else:
            report = interrupted_report(run)
    except (ToolLoadError, SpecError) as exc:
        report = failed_report(run, str(exc), 2)
    except Exception as exc:  # noqa: BLE001 - reported as the run's failure
        report = failed_report(run, f"internal error on the Ray worker: {type(exc).__name__}: {exc}")
    try:
        trace = path.read_bytes() if path.exists() else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        actor.trace_gone.remote(run.key)  # does not block
    return {"report": report.as_dict(), "trace": trace}


def _note_run_dir(key: str, actor: Any) -> Path:
    """A fresh directory name for this run's trace, told to the actor before it is
    made: if the worker dies from here on, the driver knows where to look."""
    import ray

    workdir = Path(tempfile.gettempdir()) / f"{RUN_DIR_PREFIX}{secrets.token_hex(8)}"
    ray.get(actor.note_trace.remote(key, ray.get_runtime_context().get_node_id(), str(workdir)))
    return workdir


def _salvage(directory: str) -> bytes | None:
    """A Ray task on a dead worker's node: what it wrote of its trace; removes its directory."""
    path = Path(directory)
    if not path.name.startswith(RUN_DIR_PREFIX):  # only ever a run directory of ours
        return None
    try:
        return (path / "trace.jsonl").read_bytes()
    except OSError:
        return None
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def _watch_stop(actor: Any, scope: Any) -> None:
    """Cancel the run when the driver says stop (Ctrl-C on the driver)."""
    import ray
    import trio

    while True:
        # Abandoned when the run ends first: the call itself returns within a second.
        stopped = await trio.to_thread.run_sync(ray.get, actor.wait_stop.remote(1.0), abandon_on_cancel=True)
        if stopped:
            scope.cancel()
            return


# --- the driver -----------------------------------------------------------------------------


class RayBackend:
    def __init__(self, address: str) -> None:
        self.address = address

    def _connect(self, ray: Any, max_runs: int, temp: Path | None) -> None:
        import logging

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report leaves the machine
        if temp is not None:
            try:
                ray.init(num_cpus=max_runs, include_dashboard=False, _node_ip_address="127.0.0.1",
                         _temp_dir=str(temp), log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
            except Exception as exc:  # noqa: BLE001 - Ray raises plain Exceptions (a start-up timeout)
                raise SpecError(None, "--ray", f"cannot start Ray on this machine: {' '.join(str(exc).split())}",
                                "try again when the machine is less loaded, or run the batch without --ray") from None
            return
        try:
            with bounded_gcs_connect(connect_timeout()):
                ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR)
        except Exception as exc:  # noqa: BLE001 - Ray raises several kinds; all mean "cannot reach it"
            raise SpecError(None, "--ray", f"cannot connect to Ray at {self.address}: {exc}",
                            "start the cluster (ray start --head), check the address, or use --ray local") from None

    def run(self, planned: Sequence[PlannedRun], max_runs: int, max_per_model: int | None,
            done: dict[str, RunReport], on_start: Callable[[PlannedRun], None],
            on_done: Callable[[RunReport], None], on_ready: Callable[[str], None] = lambda text: None) -> BatchOutcome:
        zero = time.monotonic()
        with _printable_stdout(), _sigterm_as_interrupt() as sigterm:
            return self._run(planned, max_runs, max_per_model, done, on_start, on_done, on_ready, zero, sigterm)

    def _run(self, planned: Sequence[PlannedRun], max_runs: int, max_per_model: int | None,
             done: dict[str, RunReport], on_start: Callable[[PlannedRun], None],
             on_done: Callable[[RunReport], None], on_ready: Callable[[str], None], zero: float,
             sigterm: Callable[[], None]) -> BatchOutcome:
        import ray

        # A short directory: Ray's socket paths must fit in 107 characters.
        temp = (Path(tempfile.mkdtemp(prefix="asyncfc-ray-", dir="/tmp" if Path("/tmp").is_dir() else None))
                if self.address == "local" else None)
        reports: dict[str, RunReport] = dict(done)
        interrupted = False
        limits: dict[str, Any] = {}
        actor = None
        try:
            try:
                self._connect(ray, max_runs, temp)
            finally:
                sigterm()  # ray.init puts a handler of its own in place, which ends the process on the spot
            cpus = ray.cluster_resources().get("CPU", 0)
            on_ready(f"Ray {'started on this machine' if temp else 'at ' + self.address}: "
                     f"{len(ray.nodes())} node(s), {cpus:g} CPUs")
            actor = ray.remote(LimitsActor).options(num_cpus=0).remote(max_per_model)
            task = ray.remote(_run_remote).options(num_cpus=1, max_retries=0)
            queue = deque(run for run in planned if run.key not in done)
            pending: dict[Any, tuple[PlannedRun, float]] = {}

            def collect(ref: Any) -> None:
                run, started = pending.pop(ref)
                report, stopped = self._collect(ray, ref, run, actor)
                report.started, report.ended = round(started, 6), round(time.monotonic() - zero, 6)
                reports[run.key] = report
                on_done(report)
                if stopped:  # Ctrl-C while its trace was being brought back: recorded, now stop
                    raise KeyboardInterrupt

            try:
                while queue or pending:
                    while queue and len(pending) < max_runs:
                        run = queue.popleft()
                        on_start(run)
                        # The spec holds tools and callables: the worker resolves its own.
                        job = dataclasses.replace(run, spec=None, task=run.task.resolve(),
                                                  agents=run.agents.resolve() if run.agents else None)
                        pending[task.remote(job, run.spec.digest, actor)] = (run, time.monotonic() - zero)
                    ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                    for ref in ready:
                        collect(ref)
            except KeyboardInterrupt:
                interrupted = True
                self._stop(ray, actor, pending, collect, zero, reports, on_done)
            try:
                limits = ray.get(actor.stats.remote(), timeout=10)
            except KeyboardInterrupt:
                interrupted = True
            except Exception:  # noqa: BLE001 - only the report's figures are lost
                limits = {}
        except KeyboardInterrupt:  # while Ray was starting: nothing ran
            interrupted = True
        finally:
            if actor is not None:
                try:
                    ray.kill(actor)
                except Exception:  # noqa: BLE001 - the cluster is going away anyway
                    pass
            ray.shutdown()  # disconnects; stops the instance --ray local started
            if temp is not None:
                shutil.rmtree(temp, ignore_errors=True)
        out = [reports.get(run.key) or skipped_report(run) for run in planned]
        return BatchOutcome(out, interrupted, time.monotonic() - zero, limits)

    def _stop(self, ray: Any, actor: Any, pending: dict[Any, tuple[PlannedRun, float]],
              collect: Callable[[Any], None], zero: float, reports: dict[str, RunReport],
              on_done: Callable[[RunReport], None]) -> None:
        """Ctrl-C: every run cancels itself and sends its closed trace back; what has not
        answered within STOP_GRACE (or at a second Ctrl-C) is cancelled by force."""
        actor.stop.remote()
        deadline = time.monotonic() + STOP_GRACE
        try:
            while pending and time.monotonic() < deadline:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in ready:
                    collect(ref)
        except KeyboardInterrupt:
            pass
        for ref, (run, started) in list(pending.items()):
            try:
                ray.cancel(ref, force=True)
                ray.wait([ref], timeout=5)  # the worker is gone: what it wrote stays as it is
            except Exception:  # noqa: BLE001 - already finished or gone
                pass
            report = interrupted_report(run, round(started, 6))
            report.error = "interrupted; the Ray task did not stop in time and was killed"
            _bring_back_trace(ray, actor, run, "interrupted", report.error)
            report.ended = round(time.monotonic() - zero, 6)
            reports[run.key] = report
            on_done(report)
        pending.clear()

    @staticmethod
    def _collect(ray: Any, ref: Any, run: PlannedRun, actor: Any) -> tuple[RunReport, bool]:
        """The run's report, and whether Ctrl-C came while a dead worker's trace was fetched."""
        try:
            answer = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - a worker that died, or a task Ray could not run
            actor.release_holder.remote(run.key)
            message = " ".join(str(exc).split())[:500]
            report = failed_report(run, f"the Ray task failed: {type(exc).__name__}: {message}")
            return report, _bring_back_trace(ray, actor, run, "error", report.error)
        report = RunReport.from_dict(answer["report"])
        report.label = run.label  # the driver's view of the path (the worker saw it absolute)
        report.task = str(run.task)
        if answer.get("trace"):
            try:
                run.trace.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(run.trace, answer["trace"])  # a link planted at the name is replaced
                report.trace = str(run.trace)
            except OSError as exc:
                report.trace = None
                report.error = (report.error + "; " if report.error else "") + f"trace not written: {exc}"
        else:
            report.trace = None
        return report, False


def _bring_back_trace(ray: Any, actor: Any, run: PlannedRun, status: str, error: str | None) -> bool:
    """The trace of a run whose worker died: what it wrote, read on its node (and its
    directory there removed), closed with ``status``; the driver's own two lines when
    nothing can be read. True if Ctrl-C cut the fetch short (the caller decides
    whether that stops the batch)."""
    written, stopped = None, False
    try:
        place = ray.get(actor.trace_of.remote(run.key), timeout=SALVAGE_WAIT)
        if place is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            node, directory = place
            task = ray.remote(_salvage).options(
                num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
            written = ray.get(task.remote(directory), timeout=SALVAGE_WAIT)
    except KeyboardInterrupt:
        stopped = True
    except Exception:  # noqa: BLE001 - the node or the actor is gone: nothing to read
        pass
    closed = _closed(written, status, error) if written else None
    if closed is None:
        _write_closed_trace(run, status, error)
        return stopped
    try:
        run.trace.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(run.trace, closed)  # a link planted at the name is replaced
    except OSError:
        pass
    return stopped


def _closed(written: bytes, status: str, error: str | None) -> bytes | None:
    """``written`` up to its last whole line, with a summary after it; None if it
    does not even hold its header line."""
    from asyncfc_cli.events import Summary, to_line

    whole = written[: written.rfind(b"\n") + 1]  # a line cut by the kill is dropped
    first, last = whole[: whole.find(b"\n")], whole[whole.rfind(b"\n", 0, len(whole) - 1) + 1:]
    try:
        if not whole or json.loads(first).get("type") != "header":
            return None
    except (ValueError, AttributeError):
        return None
    try:
        event = json.loads(last)
        if event.get("type") == "summary":  # it closed its trace and died after: keep its own end
            return whole
        t = float(event.get("t", 0.0))  # the summary comes after everything it wrote
    except (ValueError, TypeError, AttributeError):
        t = 0.0
    summary = Summary(t=t, status=status, error=error or status)
    return whole + (to_line(summary) + "\n").encode("utf-8")


def _write_closed_trace(run: PlannedRun, status: str, error: str | None) -> None:
    """A trace for a run whose own never came back: its header and a summary, so it reads."""
    from asyncfc_cli.events import Summary
    from asyncfc_cli.runner import open_trace_file
    from asyncfc_cli.trace import new_run_id

    try:
        writer = open_trace_file(run.trace, run.spec, new_run_id())
        writer(Summary(status=status, error=error or status))
        writer.close()
    except OSError:
        pass


class _PrintableStream(io.TextIOBase):
    """A text stream that passes on only printable text (:func:`asyncfc_cli.output.printable_lines`)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(printable_lines(text))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", None) or "utf-8"


@contextmanager
def _sigterm_as_interrupt() -> Iterator[Callable[[], None]]:
    """SIGTERM raises KeyboardInterrupt in the driver, as Ctrl-C does, while it runs; yields
    a function that installs the handler again (``ray.init`` replaces it with one that
    ends the process on the spot, without reports or traces)."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield lambda: None
        return
    try:
        yield lambda: signal.signal(signal.SIGTERM, interrupt)
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _printable_stdout() -> Iterator[None]:
    """While Ray runs: what Ray prints on the driver (a dead worker's notice from the
    raylet, in colour; our stdout is stderr until the report) passes the printable filter."""
    original = sys.stdout
    sys.stdout = _PrintableStream(original)
    try:
        yield
    finally:
        if isinstance(sys.stdout, _PrintableStream) and sys.stdout.stream is original:
            sys.stdout.flush()
            sys.stdout = original
