"""Processes a tool starts, and making sure none of them outlives its call or the run.

What Linux offers, and what each layer here is for:

* **A process group** (``start_new_session``): the command and every child
  that stays in its group die with one ``killpg`` when the call ends.
* **A token in the environment**: every process of a call carries
  ``ASYNCFC_TOOL_TOKEN=<run>:<call>``, inherited by whatever it starts. When
  the call ends, every process whose environment holds that token is killed,
  wherever it went (``setsid``, a double fork). A process that clears its
  environment before it escapes its group is not found this way.
* **A child subreaper** (``PR_SET_CHILD_SUBREAPER`` on the ``asyncfc``
  process, not on a program that imports asyncfc): orphaned descendants are
  re-parented to asyncfc rather than to init, so the ones the sweep kills are
  reaped here instead of lingering as zombies.
* **A parent-death signal** (``PR_SET_PDEATHSIG`` in the direct child, set
  by util-linux's ``setpriv`` or else in a ``preexec_fn``): if asyncfc dies,
  even by ``kill -9``, the command itself gets SIGKILL. The signal belongs to
  the thread that forked the child, so commands are forked from the thread
  running the trio loop (which lives as long as the run), not from a worker
  thread that may exit while the command still runs.
* **A guard process** per run (:func:`guard`): it waits for EOF on a pipe
  that only asyncfc holds, which comes however asyncfc ends, then kills every
  process still carrying the run's token. This is what covers the children of
  a command after ``kill -9`` of asyncfc.

The run token belongs to the run, not to the trio run or the process:
``asyncfc batch`` runs many runs in one ``trio.run``, and the first of them
to end must sweep only its own processes. :func:`guard` keeps the token in a
:class:`~contextvars.ContextVar` set in the task that opens the run's tools;
every task the run starts inherits it, a sibling run's tasks never see it.
A sweep reaps only orphans it adopted, never a command whose :class:`Child`
is waiting for it (reaping it would make that ``wait`` read exit 0); an MCP
stdio server, which trio starts and waits for, is swept only once its session
has closed, and the run's token only once every source has.

cgroups would be the complete answer (nothing escapes a cgroup), but a normal
user's session has no cgroup it may create children in; docs/reliability.md
says how to run asyncfc inside one (``systemd-run --user --scope``).
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import trio

TOKEN_VAR = "ASYNCFC_TOOL_TOKEN"

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36

# The token of the run the current task belongs to (set by guard() in the run's
# own task, so its child tasks inherit it and other runs never see it); outside
# a guarded run, one per process.
_RUN_TOKEN: ContextVar[str | None] = ContextVar("asyncfc_run_token", default=None)
_PROCESS_TOKEN = secrets.token_hex(6)
_calls = itertools.count(1)
# Pids of commands spawn() started whose Child has not reaped them yet: a sweep
# kills them like any holder of its token but leaves the waiting to their Child.
# Process state (pids are the process's), not a run's.
_waited: set[int] = set()
_waited_lock = threading.Lock()
_prctl = None
_subreaper = False


def _renew_after_fork() -> None:
    """A forked child is a new process: its own process token, call numbers and
    pids (the warm worker imports this module once and forks a child per
    command). A child subreaper is not inherited by fork, and setpriv is looked
    for again on the child's PATH."""
    global _PROCESS_TOKEN, _calls, _waited, _waited_lock, _subreaper, _SETPRIV
    _PROCESS_TOKEN = secrets.token_hex(6)
    _calls = itertools.count(1)
    _waited = set()
    _waited_lock = threading.Lock()
    _subreaper = False
    _SETPRIV = False


def _libc_prctl():
    global _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        try:
            fn = ctypes.CDLL(None, use_errno=True).prctl
            fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
            fn.restype = ctypes.c_int
            _prctl = fn
        except (OSError, AttributeError):
            _prctl = False
    return _prctl or None


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); idempotent.

    Only in the ``asyncfc`` command's own process: a program that runs asyncfc
    inside itself (a test runner, a notebook) would otherwise collect every
    orphan of every child it ever starts, as zombies nobody waits for.
    """
    global _subreaper
    import asyncfc_cli

    if not _subreaper and asyncfc_cli.OWN_PROCESS:
        prctl = _libc_prctl()
        _subreaper = bool(prctl) and prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    return _subreaper


def run_token() -> str:
    """The current run's token (see :func:`guard`); the process's outside a guarded run."""
    return _RUN_TOKEN.get() or _PROCESS_TOKEN


def new_call_token() -> str:
    """A token that names one call of the current run."""
    return f"{run_token()}:{next(_calls)}"


def _pdeathsig_setup(parent: int):
    prctl = _libc_prctl()
    if prctl is None:
        return None

    def setup() -> None:  # runs in the child between fork and exec: keep it tiny
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # asyncfc died before the line above took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return setup


_SETPRIV: str | None | bool = False  # False: not looked for yet
os.register_at_fork(after_in_child=_renew_after_fork)


def _setpriv() -> str | None:
    """util-linux's setpriv, if it can set a parent-death signal.

    Preferred over a ``preexec_fn``: any ``preexec_fn`` makes Python fork()
    instead of vfork(), which holds the GIL (and so the trio loop) for about
    10 ms in a process of asyncfc's size; setpriv costs one more exec, in the
    child.
    """
    global _SETPRIV
    if _SETPRIV is False:
        found = shutil.which("setpriv") if sys.platform.startswith("linux") else None
        if found is not None:
            try:
                probe = subprocess.run([found, "--pdeathsig", "KILL", "--", "true"],
                                       capture_output=True, timeout=5)
                found = found if probe.returncode == 0 else None
            except (OSError, subprocess.SubprocessError):
                found = None
        _SETPRIV = found
    return _SETPRIV  # type: ignore[return-value]


def _resolve(program: str, env: dict[str, str]) -> str:
    # Resolved here rather than by exec, so a missing or non-executable
    # program is the same OSError with or without the setpriv wrapper.
    if "/" in program:
        path = program
    else:
        found = shutil.which(program, mode=os.F_OK, path=env.get("PATH", os.defpath))
        if found is None:
            raise FileNotFoundError(errno.ENOENT, "program not found", program)
        path = found
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "program not found", program)
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise PermissionError(errno.EACCES, "not executable", program)
    return path


@dataclass
class Child:
    """A started command: its Popen, trio streams for its output, its call token."""

    popen: subprocess.Popen
    stdout: trio.lowlevel.FdStream
    stderr: trio.lowlevel.FdStream
    token: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    async def wait(self) -> int:
        """Wait for the direct child to exit, without a thread."""
        try:
            return await self._wait()
        finally:
            if self.popen.returncode is not None:  # reaped: a sweep may treat the pid as anyone's
                with _waited_lock:
                    _waited.discard(self.popen.pid)

    async def _wait(self) -> int:
        if self.popen.poll() is not None:
            return self.popen.returncode
        try:
            fd = os.pidfd_open(self.popen.pid)
        except (AttributeError, OSError):
            fd = None
        if fd is None:  # old kernel: poll
            while self.popen.poll() is None:
                await trio.sleep(0.02)
            return self.popen.returncode
        try:
            await trio.lowlevel.wait_readable(fd)
        finally:
            os.close(fd)
        return self.popen.wait()


def spawn(argv: list[str], cwd: str, env: dict[str, str]) -> Child:
    """Start ``argv`` in its own session with the call's token and a parent-death signal.

    Called from the trio thread on purpose (see the module docstring); it
    blocks only for the fork and exec. Raises OSError like ``subprocess``.
    """
    become_subreaper()
    if not os.path.isdir(cwd):
        raise FileNotFoundError(errno.ENOENT, "no such directory", cwd)
    program = _resolve(argv[0], env)
    wrapper = _setpriv()
    if wrapper is not None:
        argv, setup = [wrapper, "--pdeathsig", "KILL", "--", program, *argv[1:]], None
    else:
        argv, setup = [program, *argv[1:]], _pdeathsig_setup(os.getpid())
    token = new_call_token()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            cwd=cwd,
            env={**env, TOKEN_VAR: token},
            start_new_session=True,  # its own process group: one killpg reaches its children
            preexec_fn=setup,
        )
    except BaseException:
        for fd in (out_r, err_r):
            os.close(fd)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    with _waited_lock:
        _waited.add(popen.pid)
    return Child(popen, trio.lowlevel.FdStream(out_r), trio.lowlevel.FdStream(err_r), token)


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def holders(token: str, prefix: bool = False) -> list[int]:
    """Pids of the live processes whose environment holds ``TOKEN_VAR=token``
    (or, with ``prefix``, a token that starts with ``token``)."""
    needle = f"{TOKEN_VAR}={token}".encode()
    me = os.getpid()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                data = f.read()
        except OSError:  # gone, or not ours to read
            continue
        for var in data.split(b"\0"):
            if var == needle or (prefix and var.startswith(needle)):
                found.append(int(entry))
                break
    return found


def _is_my_child(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return int(stat.rsplit(b")", 1)[1].split()[1]) == os.getpid()


def sweep(token: str, prefix: bool = False) -> list[int]:
    """Kill every process carrying ``token``; reap the ones this process adopted.

    Several rounds, because a process may fork while its siblings are being
    killed. Returns the pids killed.
    """
    killed: list[int] = []
    for _ in range(5):
        pids = [p for p in holders(token, prefix) if p not in killed]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        killed.extend(pids)
    # An orphan adopted through the subreaper is our child now: reap it, or it
    # stays a zombie. Anything else is not ours to wait for, least of all a
    # command whose Child is waiting (it would read exit 0 instead of SIGKILL).
    with _waited_lock:
        waited = set(_waited)
    adopted = [pid for pid in killed if pid not in waited and _is_my_child(pid)]
    for _ in range(200):  # SIGKILL takes effect within microseconds; bound it anyway
        for pid in list(adopted):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    continue
            except ChildProcessError:
                pass
            adopted.remove(pid)
        if not adopted:
            break
        time.sleep(0.001)
    return killed


_GUARD = r"""
import os, signal, sys
sys.stdin.buffer.read()  # EOF: the asyncfc process is gone, or its run is over
needle = ("%s=" + sys.argv[1] + ":").encode()
me = os.getpid()
for _ in range(5):
    hit = False
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open("/proc/%%s/environ" %% entry, "rb") as f:
                data = f.read()
        except OSError:
            continue
        if any(v.startswith(needle) for v in data.split(b"\0")):
            try:
                os.kill(int(entry), signal.SIGKILL)
                hit = True
            except OSError:
                pass
    if not hit:
        break
""" % TOKEN_VAR


@asynccontextmanager
async def guard() -> AsyncIterator[None]:
    """For the run's duration: a fresh run token, and a guard process that
    kills every process carrying it once asyncfc is gone (even by ``kill -9``).

    One per run: entered again inside the same run (two tool kinds need it),
    it does nothing. Enter it in the run's own task, before the run starts the
    tasks that spawn processes: they inherit the token from it.
    """
    if _RUN_TOKEN.get() is not None:
        yield
        return
    token = secrets.token_hex(6)
    reset = _RUN_TOKEN.set(token)
    try:
        async with _guard(token):
            yield
    finally:
        _RUN_TOKEN.reset(reset)


@asynccontextmanager
async def _guard(token: str) -> AsyncIterator[None]:
    become_subreaper()
    read_end, write_end = os.pipe()  # both close-on-exec: no tool inherits the write end
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _GUARD, token],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session: Ctrl-C on the terminal must not stop it before it
            # has done its job.
            start_new_session=True,
        )
    except OSError:
        proc = None
    finally:
        os.close(read_end)
    try:
        yield
    finally:
        # Normal end: nothing should be left, but sweep anyway; then the guard
        # sees EOF, finds nothing, and exits.
        sweep(token + ":", prefix=True)
        os.close(write_end)
        if proc is not None:
            with trio.move_on_after(5, shield=True):
                while proc.poll() is None:
                    await trio.sleep(0.005)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
