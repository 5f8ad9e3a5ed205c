"""The resident worker: imports once, then forks a fresh child per invocation.

Started by a client (``client.spawn``) as ``python -P -c BOOT DIR PARENT``:
its own session, standard streams on /dev/null and the log file, working
directory ``/``, the client's environment and interpreter options. Its life:

1. Take ``worker.lock`` (another worker starting: leave), and leave if a
   worker that would serve this environment already answers on the socket.
2. With ``PARENT`` set, wait until that process (the invocation that started
   the worker and runs cold meanwhile) has exited, or 30 s, so the two never
   compete for the CPU: the first invocation is never slower than without a
   worker. ``worker.starting`` says ``waiting`` then ``importing``.
3. Import what asyncfc's modules import (LiteLLM, the MCP SDK, trio, typer,
   Rich, pydantic) and asyncfc's own modules except the few whose import
   makes state for one process (modules.py), recording the environment
   names read (freshness.py); then register the simulated model with
   LiteLLM (:func:`warm_up`). Per-process state of a preimported module is
   renewed in each child by ``os.register_at_fork`` (tools/processes.py).
4. Listen on ``worker.sock`` (mode 600 in the 700 directory) and serve:
   check the caller (same uid by SO_PEERCRED, same configuration by
   freshness.py), fork, let the child adopt the caller (child.py), relay
   signals to it and its exit status back.

It exits after ``ASYNCFC_WARM_IDLE`` seconds without an invocation (default
300), on ``asyncfc worker stop``, or when its socket is replaced or removed;
always after the invocations it serves have ended.
"""

from __future__ import annotations

import fcntl
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from asyncfc_cli.warm import context, freshness, modules, paths, protocol, rehearsal

IDLE_ENV = "ASYNCFC_WARM_IDLE"
DEFAULT_IDLE = 300.0
DEFER_LIMIT = 30.0  # seconds to wait for the starting invocation to end
GRACE = 5.0  # seconds between SIGTERM and SIGKILL for a child whose caller is gone
TICK = 2.0
REQUEST_TIMEOUT = 10.0


def log(message: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{os.getpid()}] {message}\n")
    sys.stderr.flush()


def preimport(names: list[str]) -> int:
    """Import each name that is a module (``from m import f`` gives ``m.f``, which may
    be a function); returns how many imported."""
    count = 0
    for name in names:
        parent = name.rpartition(".")[0]
        if parent in sys.modules and not hasattr(sys.modules[parent], "__path__"):
            continue  # m.f where m is a module, not a package: f is an attribute
        try:
            importlib.import_module(name)
            count += 1
        except ImportError:
            pass
        except Exception as exc:  # a module that fails to import is imported (and fails) in the child
            log(f"pre-import of {name} failed: {type(exc).__name__}: {exc}")
    return count


def warm_up(package: str) -> None:
    """Once per process, and the same for every command, what a command that talks to
    a model would otherwise spend a noticeable fraction of a second on: LiteLLM set
    up as asyncfc uses it, the simulated model's fixed entries in its model map
    (under asyncfc's own model names, ``<provider>/asyncfc-sim``), and the CLI's
    command tree (cli.command)."""
    runner, model = sys.modules.get(f"{package}.runner"), sys.modules.get(f"{package}.model")
    cli = sys.modules.get(f"{package}.cli")
    try:
        if runner is not None and model is not None:
            runner.register_sim_models(model.import_litellm())
        if cli is not None:
            cli.command()  # typer's command tree, built from the declarations
    except Exception as exc:  # noqa: BLE001  (a child then does it itself, and meets the same error)
        log(f"warming up failed: {type(exc).__name__}: {exc}")


def compile_modules(files: list[str]) -> dict[str, tuple[bytes, Any]]:
    """The modules each child imports itself (modules.per_command), compiled
    (not run): without a ``.pyc`` (an editable install under
    PYTHONDONTWRITEBYTECODE) compiling them was most of their import. Keyed by
    path; child.py uses an entry only for the same source bytes."""
    codes = {}
    for path in files:
        try:
            with open(path, "rb") as f:
                source = f.read()
            codes[path] = (source, compile(source, path, "exec", dont_inherit=True))
        except (OSError, SyntaxError, ValueError):
            pass
    return codes


def own_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


@dataclass
class Invocation:
    conn: socket.socket
    channel: protocol.Channel
    pid: int
    pidfd: int
    command: str
    started: float
    kill_at: float | None = None  # SIGKILL deadline once the caller is gone
    done: bool = False  # the caller got the child's exit code and left
    abandoned: bool = False  # the caller went away before that


@dataclass
class Worker:
    place: paths.Place
    snapshot: freshness.Snapshot
    env_effects: dict[str, str | None]
    codes: dict[str, tuple[bytes, Any]]
    idle_timeout: float
    refusing: str | None  # why nothing can be served warm (threads, output at import)
    preimported: int
    import_seconds: float
    rehearsed: rehearsal.Learned = field(default_factory=rehearsal.Learned)  # what the first request loads
    listener: socket.socket | None = None
    inode: int = 0
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    invocations: dict[int, Invocation] = field(default_factory=dict)  # by pid
    served: int = 0
    started: float = field(default_factory=time.time)
    last_active: float = field(default_factory=time.monotonic)
    retiring: str | None = None
    wake_r: socket.socket | None = None
    wake_w: socket.socket | None = None

    # --- setting up ---------------------------------------------------------------------

    def listen(self) -> None:
        """Bind under a temporary name and rename it into place: a client sees
        either the old socket or the new one, never a missing or half-made one."""
        temporary = f".{paths.SOCKET}.{os.getpid()}"
        try:
            os.unlink(temporary, dir_fd=self.place.fd)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.place.address(temporary))
        os.chmod(temporary, 0o600, dir_fd=self.place.fd)
        listener.listen(64)
        os.rename(temporary, paths.SOCKET, src_dir_fd=self.place.fd, dst_dir_fd=self.place.fd)
        self.inode = os.stat(paths.SOCKET, dir_fd=self.place.fd).st_ino
        listener.setblocking(False)
        self.listener = listener
        self.selector.register(listener, selectors.EVENT_READ, ("listen", None))
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        # A plain function, not the bound method: the signal module looks each
        # handler up among its enum's values, and for an unhashable object (this
        # dataclass) that ends in its repr, megabytes with ``codes``, every time a
        # child replaces or reads the handler (tens of milliseconds per run).
        def on_signal(signum: int, frame: Any) -> None:
            self._on_signal(signum)

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, on_signal)
        self.selector.register(self.wake_r, selectors.EVENT_READ, ("wake", None))

    def _on_signal(self, signum: int) -> None:
        # The loop sees the wakeup descriptor; here only the decision is noted.
        if self.retiring is None:
            self.retiring = f"signal {signal.Signals(signum).name}"
            for inv in self.invocations.values():  # they end as they would on Ctrl-C
                self._signal_child(inv, signal.SIGTERM)

    # --- the loop -----------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            if self.retiring is not None and self.listener is not None:
                self._stop_listening()
            if not self.invocations:
                if self.retiring is not None:
                    log(f"exiting: {self.retiring}")
                    return
                if time.monotonic() - self.last_active > self.idle_timeout:
                    self.retiring = f"idle for {self.idle_timeout:g} s"
                    continue
            if self.listener is not None and not self._socket_is_mine():
                self.retiring = "the socket was removed or replaced"
                continue
            for key, _ in self.selector.select(self._timeout()):
                kind, inv = key.data
                if kind == "listen":
                    self._accept()
                elif kind == "wake":
                    try:
                        self.wake_r.recv(4096)  # type: ignore[union-attr]
                    except BlockingIOError:
                        pass
                try:
                    if kind == "conn":
                        self._from_client(inv)
                    elif kind == "pid":
                        self._reap(inv)
                except Exception:  # noqa: BLE001  (one invocation's bug must not end every later command's warm start)
                    import traceback

                    log(f"child {inv.pid}: {traceback.format_exc(limit=5)}")
                    try:  # not reported again: a broken invocation must not spin the loop
                        self.selector.unregister(key.fileobj)
                    except (KeyError, ValueError):
                        pass
            now = time.monotonic()
            for inv in list(self.invocations.values()):
                if inv.kill_at is not None and now >= inv.kill_at:
                    self._signal_child(inv, signal.SIGKILL)
                    inv.kill_at = None

    def _timeout(self) -> float:
        timeout = TICK
        now = time.monotonic()
        for inv in self.invocations.values():
            if inv.kill_at is not None:
                timeout = min(timeout, max(0.0, inv.kill_at - now))
        if not self.invocations:
            timeout = min(timeout, max(0.0, self.last_active + self.idle_timeout - now) + 0.01)
        return timeout

    def _socket_is_mine(self) -> bool:
        try:
            return os.stat(paths.SOCKET, dir_fd=self.place.fd).st_ino == self.inode
        except OSError:
            return False

    def _stop_listening(self) -> None:
        """No new invocations: close the listener and remove the socket if it is still this one's."""
        assert self.listener is not None
        self.selector.unregister(self.listener)
        if self._socket_is_mine():
            try:
                os.unlink(paths.SOCKET, dir_fd=self.place.fd)
            except OSError:
                pass
        self.listener.close()
        self.listener = None
        log(f"no longer accepting: {self.retiring}")

    # --- requests -----------------------------------------------------------------------

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log(f"accept failed: {exc}")
            return
        channel = protocol.Channel(conn, max_fds=protocol.MAX_FDS)
        keep = False
        try:
            conn.setblocking(True)
            conn.settimeout(REQUEST_TIMEOUT)
            if protocol.peer_uid(conn) != os.getuid():
                log("refused a connection from another user")
                return
            request = channel.read()
            if request is None:
                return
            op = request.get("op")
            if op == "run":
                keep = self._run(conn, channel, request)
            elif op == "status":
                self._reply(conn, self.status(request))
            elif op == "stop":
                self.retiring = "asyncfc worker stop"
                self._reply(conn, {"stopping": os.getpid(), "active": len(self.invocations)})
            else:
                self._reply(conn, {"error": f"unknown request {op!r}"})
        except (OSError, protocol.ProtocolError, ValueError, KeyError, TypeError) as exc:
            log(f"bad request: {type(exc).__name__}: {exc}")
        finally:
            channel.close_fds()
            if not keep:
                conn.close()

    def _reply(self, conn: socket.socket, message: dict[str, Any]) -> None:
        try:
            conn.sendall(protocol.encode(message))
        except OSError:
            pass

    def status(self, request: dict[str, Any] | None) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "pid": os.getpid(),
            "version": self.snapshot.version,
            "executable": self.snapshot.executable,
            "package": self.snapshot.package,
            "directory": str(self.place.directory),
            "socket": self.place.shown(paths.SOCKET),
            "log": self.place.shown(paths.LOG),
            "started": self.started,
            "uptime": round(time.time() - self.started, 3),
            "idle_for": 0.0 if self.invocations else round(now - self.last_active, 3),
            "idle_timeout": self.idle_timeout,
            "active": len(self.invocations),
            "children": [{"pid": inv.pid, "command": inv.command, "seconds": round(now - inv.started, 3)}
                         for inv in self.invocations.values()],
            "served": self.served,
            "preimported_modules": self.preimported,
            "import_seconds": round(self.import_seconds, 3),
            "first_request": {"modules": len(self.rehearsed.modules), "encodings": self.rehearsed.encodings,
                              "seconds": round(self.rehearsed.seconds, 3), "error": self.rehearsed.error},
            "refusing": self.refusing,
            "retiring": self.retiring,
            "stale": freshness.stale_reasons(self.snapshot, request) if request else [],
        }

    def _run(self, conn: socket.socket, channel: protocol.Channel, request: dict[str, Any]) -> bool:
        """Serve one invocation; True if the connection now belongs to it."""
        fds = channel.take_fds()
        try:
            if self.retiring is not None:
                self._reply(conn, {"refused": f"the worker is stopping ({self.retiring})", "stale": False})
                return False
            if self.refusing is not None:
                self._reply(conn, {"refused": self.refusing, "stale": False})
                return False
            reasons = freshness.stale_reasons(self.snapshot, request)
            if reasons:
                log("stale for a caller: " + "; ".join(reasons))
                # Gone from the socket before the caller starts a replacement,
                # which must not find this one still answering.
                self.retiring = "replaced: " + "; ".join(reasons)
                self._stop_listening()
                self._reply(conn, {"stale": reasons})
                return False
            if own_threads() != 1:
                # fork() copies only the calling thread: locks another one held stay held.
                self.refusing = f"the worker has {own_threads()} threads; fork would be unsafe"
                log(self.refusing)
                self._reply(conn, {"refused": self.refusing, "stale": False})
                return False
            return self._fork(conn, channel, request, fds)
        finally:
            for fd in fds:
                os.close(fd)

    def _fork(self, conn: socket.socket, channel: protocol.Channel, request: dict[str, Any], fds: list[int]) -> bool:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._become_child(conn, request, fds)  # never returns
        # Blocking, like the child's copy (they share the descriptor's mode): the
        # loop reads it only when the selector says there is something to read.
        conn.settimeout(None)
        pidfd = os.pidfd_open(pid)
        argv = request.get("argv") or []
        command = next((a for a in argv[1:] if not a.startswith("-")), "")
        inv = Invocation(conn, channel, pid, pidfd, command, time.monotonic())
        self.invocations[pid] = inv
        self.selector.register(conn, selectors.EVENT_READ, ("conn", inv))
        self.selector.register(pidfd, selectors.EVENT_READ, ("pid", inv))
        self.served += 1
        self.last_active = time.monotonic()
        log(f"serving {command or '?'} in child {pid}")
        return True

    def _become_child(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        from asyncfc_cli.warm import child

        code = child.EXIT_SETUP_FAILED
        try:
            worker_pid = os.getppid()
            # What belongs to the worker closes in the child; the objects stay
            # (closed), so nothing closes a reused descriptor number later.
            self.selector.close()
            for sock in (self.listener, self.wake_r, self.wake_w):
                if sock is not None:
                    sock.close()
            for inv in self.invocations.values():
                inv.conn.close()
                os.close(inv.pidfd)
            self.place.close()
            child.main(conn, request, fds, self.env_effects, worker_pid, self.codes)
        except BaseException:  # noqa: BLE001  (a bug here: say where, on whatever stderr is now)
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(code)

    def _from_client(self, inv: Invocation) -> None:
        """A signal to forward, or the end of the caller."""
        if inv.conn.fileno() < 0:
            # One select() can report both the child's end and its caller's socket:
            # the child was reaped first and its connection closed with it.
            return
        try:
            alive = inv.channel.fill()
            inv.channel.close_fds()  # nobody sends descriptors now; close any that came
            while alive:
                message = inv.channel.next()
                if message is None:
                    break
                if message.get("done"):
                    inv.done = True
                signum = message.get("signal")
                if isinstance(signum, int) and signum in context.catchable_signals() + [signal.SIGSTOP]:
                    self._signal_child(inv, signum, group=message.get("group", False))
        except (BlockingIOError, InterruptedError):
            return
        except (OSError, protocol.ProtocolError) as exc:
            log(f"child {inv.pid}: bad message from its caller: {exc}")
            alive = False
        if not alive:
            self.selector.unregister(inv.conn)
            inv.conn.close()
            if inv.done:
                return  # the child has its exit code out and is leaving on its own
            # The caller is gone (killed, even by SIGKILL): stop its run as
            # SIGTERM would, then for sure.
            log(f"child {inv.pid}: its caller is gone; terminating it")
            inv.abandoned = True
            self._signal_child(inv, signal.SIGTERM)
            inv.kill_at = time.monotonic() + GRACE

    def _signal_child(self, inv: Invocation, signum: int, group: bool = False) -> None:
        try:
            # A pidfd cannot hit a recycled pid: the child is not reaped before its pidfd fires.
            if group:
                os.killpg(inv.pid, signum)
            else:
                signal.pidfd_send_signal(inv.pidfd, signum)
        except (ProcessLookupError, PermissionError, OSError):
            pass

    def _reap(self, inv: Invocation) -> None:
        if inv.abandoned:
            # Its caller is gone: what is left in its process group goes with it
            # (the group's id is still reserved: the child is a zombie until waited for).
            self._signal_child(inv, signal.SIGKILL, group=True)
        _, status = os.waitpid(inv.pid, 0)
        self.selector.unregister(inv.pidfd)
        os.close(inv.pidfd)
        del self.invocations[inv.pid]
        self.last_active = time.monotonic()
        outcome: dict[str, Any] = {"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status) \
            else {"code": os.waitstatus_to_exitcode(status)}
        log(f"child {inv.pid} ({inv.command or '?'}) ended: {outcome}")
        if inv.conn.fileno() >= 0:
            self.selector.unregister(inv.conn)
            try:
                inv.conn.setblocking(True)
                inv.conn.settimeout(1.0)
                inv.conn.sendall(protocol.encode({"status": outcome}))
            except OSError:
                pass
            inv.conn.close()


# --- start-up ---------------------------------------------------------------------------


def _lock(place: paths.Place) -> int | None:
    fd = os.open(paths.LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600, dir_fd=place.fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _say_starting(place: paths.Place, phase: str) -> None:
    temporary = f".{paths.STARTING}.{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600, dir_fd=place.fd)
    with os.fdopen(fd, "w") as f:
        json.dump({"pid": os.getpid(), "phase": phase, "since": time.time()}, f)
    os.rename(temporary, paths.STARTING, src_dir_fd=place.fd, dst_dir_fd=place.fd)


def _wait_for(pid: int, limit: float) -> None:
    if pid <= 1:
        return
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # already gone
        return
    try:
        selector = selectors.DefaultSelector()
        selector.register(fd, selectors.EVENT_READ)
        selector.select(limit)
        selector.close()
    finally:
        os.close(fd)


def _serving_peer(place: paths.Place) -> bool:
    """True if a worker answers on the socket and would serve this environment."""
    from asyncfc_cli.warm.client import ask

    reply = ask(place, context.capture(sys.argv, "status"))
    return reply is not None and not reply.get("stale") and not reply.get("refusing")


def _log_size() -> int:
    try:
        return os.fstat(2).st_size
    except OSError:
        return 0


def main(argv: list[str]) -> int:
    """``argv``: [program, directory BOOT put first on sys.path or "", pid to wait for or "0"]."""
    os.umask(0o077)
    try:  # a name ps and top show (its command line is python's)
        import ctypes

        ctypes.CDLL(None).prctl(15, b"asyncfc-worker", 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass
    parent = int(argv[2]) if len(argv) > 2 and argv[2].isdigit() else 0
    try:
        place = paths.open_place(os.environ, create=True)
    except paths.UnsafeDirectory as exc:
        log(f"not starting: {exc}")
        return 1
    lock_fd = _lock(place)
    if lock_fd is None:
        return 0  # another worker is starting
    if _serving_peer(place):
        return 0
    _say_starting(place, "waiting")
    _wait_for(parent, DEFER_LIMIT)
    _say_starting(place, "importing")
    log(f"importing (asyncfc from {os.path.dirname(context.__file__)})")

    import asyncfc_cli

    package = os.path.dirname(os.path.abspath(asyncfc_cli.__file__))
    inserted = argv[1] if len(argv) > 1 else ""  # by BOOT (client.py), for a package found only that way
    base_path = sys.path[1:] if inserted and sys.path[:1] == [inserted] else list(sys.path)
    env_before = dict(os.environ)
    # As asyncfc_cli.model does before any import of LiteLLM: its cost map from
    # the package, not downloaded (a download leaves a retrying thread).
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    output_before = _log_size()
    started = time.monotonic()
    found = modules.scan(asyncfc_cli.__name__, package)
    per_command = modules.per_command(found)
    with freshness.recording_environ_reads() as (names, iterations):
        count = preimport(sorted(found.libraries))
        count += preimport(modules.preimported(found))
        warm_up(asyncfc_cli.__name__)
        # What the first model request loads on demand (rehearsal.py): learned in a
        # forked child, since the request itself would leave threads here.
        learned = rehearsal.Learned(error="not rehearsed: more than one thread was running")
        if own_threads() == 1:
            learned = rehearsal.rehearse(asyncfc_cli.__name__)
        count += preimport(learned.modules)
        rehearsal.load_encodings(learned)
    import_seconds = time.monotonic() - started
    leaked = sorted(name for name in per_command if name in sys.modules)
    sys.stdout.flush()
    sys.stderr.flush()
    after = dict(os.environ)
    effects: dict[str, str | None] = {n: after.get(n) for n in set(env_before) | set(after)
                                      if env_before.get(n) != after.get(n)}
    snapshot = freshness.take(env_before, package, base_path)
    snapshot.env_names = set(names) | set(effects)
    refusing = None
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        refusing = "this kernel has no pidfd_open (Linux 5.3 or later is needed)"
    if refusing:
        pass
    elif iterations:
        refusing = "an import walked the whole environment (" + ", ".join(sorted(set(iterations))[:3]) + ")"
    elif _log_size() != output_before:
        refusing = "the imports printed something, which a cold start would show and a warm one would not"
    elif own_threads() != 1:
        refusing = f"the imports left {own_threads()} threads running; fork would be unsafe"
    elif leaked:
        # Their state would be the worker's, shared by every child (modules.PER_PROCESS).
        refusing = "the imports loaded " + ", ".join(leaked[:3]) + ", which each command must import itself"
    log(f"imported {count} modules in {import_seconds:.2f} s; {len(snapshot.env_names)} environment names read"
        + (f"; refusing to serve: {refusing}" if refusing else ""))
    log(f"rehearsed a first model request in {learned.seconds:.2f} s: " + (
        f"nothing learned ({learned.error})" if learned.error else
        f"{len(learned.modules)} modules, tiktoken encodings {', '.join(learned.encodings) or 'none'}"))
    codes = compile_modules([found.modules[name] for name in sorted(per_command)])
    # Objects that exist now are never collected: children do not touch their
    # pages for the GC, so they stay shared with the worker.
    gc.collect()
    gc.freeze()
    idle = os.environ.get(IDLE_ENV, "")
    try:
        idle_timeout = float(idle) if idle else DEFAULT_IDLE
    except ValueError:
        idle_timeout = DEFAULT_IDLE
    worker = Worker(place, snapshot, effects, codes, max(idle_timeout, 0.0), refusing, count, import_seconds,
                    rehearsed=learned)
    worker.listen()
    try:
        os.unlink(paths.STARTING, dir_fd=place.fd)
    except OSError:
        pass
    os.close(lock_fd)
    log(f"serving on {place.shown(paths.SOCKET)} (idle timeout {worker.idle_timeout:g} s)")
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
