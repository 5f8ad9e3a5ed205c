"""What a process inherits from whoever starts it, captured by the client and
adopted by a forked child, so the child is the process a cold start would
have been.

A cold ``asyncfc`` gets from its caller: argv, the environment, the working
directory, the umask, standard streams (and how Python wrapped them),
signal dispositions and mask, resource limits, niceness, CPU affinity and
its cgroup. :func:`capture` records all of them in the client;
:func:`adopt` applies them in the child. What a child cannot adopt after
the fact (the interpreter, its flags and path, what modules read from the
environment at import time, namespaces, credentials) is compared by
:mod:`asyncfc_cli.warm.freshness`, and a worker that differs is replaced.

Not adopted: the controlling terminal and the process group (the child
lives in the worker's session; the client forwards the terminal's signals),
and the parent (``os.getppid()`` in the child is the worker).
"""

from __future__ import annotations

import builtins
import io
import os
import signal
import sys
import time
import types
from typing import Any

# The descriptors passed along with a run request, in this order.
STDIO = (0, 1, 2)


class Refused(Exception):
    """The child cannot become the caller's process: run cold instead.

    ``stale``: a new worker started by this caller would not have the problem
    (e.g. it needs a higher hard limit than the worker has), so replace it.
    """

    def __init__(self, reason: str, stale: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.stale = stale


# --- captured by the client -------------------------------------------------------------


def interpreter_flags() -> dict[str, Any]:
    """sys.flags by name, except ``safe_path`` (the worker always runs with -P)."""
    return {name: getattr(sys.flags, name) for name in sys.flags.__match_args__ if name != "safe_path"}


def _stream_info(stream: Any) -> dict[str, Any] | None:
    if not isinstance(stream, io.TextIOWrapper):
        return None
    return {"encoding": stream.encoding, "errors": stream.errors, "line_buffering": stream.line_buffering,
            "write_through": stream.write_through, "raw": not hasattr(stream.buffer, "raw")}


def catchable_signals() -> list[int]:
    return sorted(int(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP))


def _rlimits() -> dict[str, list[int]]:
    import resource

    limits = {}
    for name in dir(resource):
        if name.startswith("RLIMIT_") and name != "RLIMIT_OFILE":  # OFILE is NOFILE's old name
            try:
                limits[name] = list(resource.getrlimit(getattr(resource, name)))
            except (OSError, ValueError):
                pass
    return limits


def read_cgroup() -> str:
    try:
        with open("/proc/self/cgroup") as f:
            return f.read()
    except OSError:
        return ""


def namespaces() -> dict[str, int]:
    found = {}
    for name in ("mnt", "net", "pid", "user", "ipc", "uts"):
        try:
            found[name] = os.stat(f"/proc/self/ns/{name}").st_ino
        except OSError:
            pass
    return found


def credentials() -> list[Any]:
    return [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), sorted(os.getgroups())]


def capture(argv: list[str], op: str) -> dict[str, Any]:
    """This process's inheritance, as a request for the worker."""
    import asyncfc_cli
    from asyncfc_cli.warm import protocol

    umask = os.umask(0o022)
    os.umask(umask)
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return {
        "op": op,
        "proto": protocol.VERSION,
        "version": asyncfc_cli.__version__,
        "package": os.path.dirname(os.path.abspath(asyncfc_cli.__file__)),
        "executable": sys.executable,
        "path": list(sys.path),
        "safe_path": bool(sys.flags.safe_path),
        "flags": interpreter_flags(),
        "warnoptions": list(sys.warnoptions),
        "xoptions": {str(k): v if isinstance(v, str) else True for k, v in sys._xoptions.items()},
        "argv": list(argv),
        "env": dict(os.environ),
        "umask": umask,
        "streams": [_stream_info(s) for s in (sys.stdin, sys.stdout, sys.stderr)],
        "ignored": [s for s in catchable_signals() if signal.getsignal(s) == signal.SIG_IGN],
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "rlimits": _rlimits(),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "affinity": sorted(os.sched_getaffinity(0)),
        "cgroup": read_cgroup(),
        "namespaces": namespaces(),
        "credentials": credentials(),
        "main": {"file": getattr(main, "__file__", None), "spec": spec.name if spec is not None else None},
    }


# --- adopted by the child ---------------------------------------------------------------


def adopt(request: dict[str, Any], fds: list[int], env_effects: dict[str, str | None]) -> None:
    """Become the caller's process. ``fds``: its stdin, stdout, stderr and working
    directory. ``env_effects``: what the worker's imports did to the environment,
    done again on the caller's (freshness.py made sure they would do the same).
    Raises Refused when something cannot be adopted."""
    if len(fds) != len(STDIO) + 1:
        raise Refused(f"expected {len(STDIO) + 1} descriptors, got {len(fds)}")
    if any(info is None for info in request["streams"]):
        raise Refused("a standard stream of the caller is not a regular text stream")
    for target, fd in zip(STDIO, fds):
        os.dup2(fd, target)  # inheritable, as a process's standard streams are
    try:
        os.fchdir(fds[-1])
    except OSError as exc:
        raise Refused(f"cannot enter the working directory: {exc.strerror}") from None
    for fd in fds:
        if fd not in STDIO:
            os.close(fd)
    os.umask(int(request["umask"]))
    _adopt_limits(request)
    _adopt_cgroup(request.get("cgroup", ""))
    _adopt_signals(request)
    _adopt_environment(request["env"], env_effects)
    sys.argv[:] = request["argv"]
    sys.path[:] = request["path"]
    _adopt_main(request.get("main") or {})
    _adopt_streams(request["streams"])


def _adopt_limits(request: dict[str, Any]) -> None:
    import resource

    for name, (soft, hard) in request.get("rlimits", {}).items():
        which = getattr(resource, name, None)
        if which is None:
            continue
        try:
            if list(resource.getrlimit(which)) != [soft, hard]:
                resource.setrlimit(which, (soft, hard))
        except (OSError, ValueError) as exc:
            raise Refused(f"cannot set {name} to {soft}/{hard}: {exc}", stale=True) from None
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) != request["nice"]:
            os.setpriority(os.PRIO_PROCESS, 0, request["nice"])
    except OSError as exc:
        raise Refused(f"cannot set the nice value {request['nice']}: {exc.strerror}", stale=True) from None
    try:
        wanted = set(request["affinity"])
        if os.sched_getaffinity(0) != wanted:
            os.sched_setaffinity(0, wanted)
    except OSError as exc:
        raise Refused(f"cannot set the CPU affinity: {exc.strerror}") from None


def _cgroup2_mount() -> str | None:
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if " - cgroup2 " in line and len(fields) > 4:
                    return fields[4]
    except OSError:
        pass
    return None


def _adopt_cgroup(wanted: str) -> None:
    """Join the caller's cgroup (unified hierarchy), so a limit or a kill of
    the caller's scope (``systemd-run --user --scope``) covers the run too."""
    current = read_cgroup()
    if current == wanted:
        return
    mine = dict(line.split(":", 2)[::2] for line in current.splitlines() if line.count(":") >= 2)
    theirs = dict(line.split(":", 2)[::2] for line in wanted.splitlines() if line.count(":") >= 2)
    mount = _cgroup2_mount()
    if mine.keys() != theirs.keys() or any(mine[h] != theirs[h] for h in mine if h != "0") or mount is None:
        raise Refused("the caller is in another cgroup, which this process cannot join")
    try:
        with open(os.path.join(mount, theirs["0"].lstrip("/"), "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    except OSError as exc:
        raise Refused(f"cannot join the caller's cgroup {theirs['0']}: {exc.strerror}") from None
    if read_cgroup() != wanted:
        raise Refused("the caller's cgroup could not be joined")


def _adopt_signals(request: dict[str, Any]) -> None:
    """Dispositions as a fresh Python started by the caller has them: what the
    caller ignored stays ignored, SIGINT raises KeyboardInterrupt, the rest default."""
    signal.set_wakeup_fd(-1)
    ignored = set(request.get("ignored", []))
    for signum in catchable_signals():
        if signum in ignored:
            handler: Any = signal.SIG_IGN
        elif signum == signal.SIGINT:
            handler = signal.default_int_handler
        else:
            handler = signal.SIG_DFL
        try:
            signal.signal(signum, handler)
        except (OSError, ValueError):  # e.g. signals reserved by the C library
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, request.get("blocked", []))


def _adopt_environment(env: dict[str, str], effects: dict[str, str | None]) -> None:
    os.environ.clear()
    os.environ.update(env)
    for name, value in effects.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    time.tzset()


def _adopt_main(main: dict[str, Any]) -> None:
    """A ``__main__`` like the caller's (its file and module name), not the
    worker's: multiprocessing's spawn re-imports ``__main__`` by these."""
    module = types.ModuleType("__main__")
    module.__builtins__ = builtins  # type: ignore[attr-defined]
    if main.get("file"):
        module.__file__ = main["file"]
    module.__spec__ = None
    if main.get("spec"):
        from importlib.machinery import ModuleSpec

        module.__spec__ = ModuleSpec(main["spec"], None, origin=main.get("file"))
    sys.modules["__main__"] = module


def _stream(fd: int, info: dict[str, Any], name: str) -> io.TextIOWrapper:
    """The text stream Python's start-up builds on ``fd`` (pylifecycle's create_stdio)."""
    writing = fd != 0
    mode = "wb" if writing else "rb"
    raw = info["raw"] and writing
    binary = open(fd, mode, buffering=0 if raw else -1, closefd=False)
    inner = binary if raw else binary.raw
    try:
        inner.name = name
    except AttributeError:
        pass
    return io.TextIOWrapper(binary, encoding=info["encoding"], errors=info["errors"], newline="\n",
                            line_buffering=info["line_buffering"], write_through=info["write_through"])


def _adopt_streams(streams: list[dict[str, Any]]) -> None:
    for fd, info, name in zip(STDIO, streams, ("<stdin>", "<stdout>", "<stderr>")):
        stream = _stream(fd, info, name)
        attr = ("stdin", "stdout", "stderr")[fd]
        setattr(sys, attr, stream)
        setattr(sys, f"__{attr}__", stream)
