"""The ``asyncfc`` side of the warm start, run before typer, Rich or LiteLLM load.

:func:`run` hands the invocation to the worker and returns the exit code the
process must end with, or None: run cold (no worker yet, a stale or
refusing one, anything unexpected). Without a worker it starts one in the
background, which waits until this process has exited before importing.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sys
import time
from typing import Any

from asyncfc_cli.warm import context, paths, protocol

START_TIMEOUT = 30.0  # for the worker to fork and the child to adopt this process
WAIT_FOR_STARTING = 60.0  # a worker already importing is ahead of a cold start
POLL = 0.025
LOG_LIMIT = 1 << 20

# The worker runs this; runpy gives __main__ a __file__, as a script has, so
# what imports look at in __main__ (python-dotenv, called by LiteLLM, searches
# for .env from the calling file only then) is as in a cold process.
BOOT = ("import sys\n"
        "if sys.argv[1]:\n"
        "    sys.path.insert(0, sys.argv[1])\n"
        "import runpy\n"
        "runpy.run_module('asyncfc_cli.warm.worker', run_name='__main__', alter_sys=True)\n")

# Signals the client passes on, and whether to the child's whole process
# group (as the terminal sends them to a foreground job) or to the child alone
# (as kill does).
_FORWARD = {signal.SIGINT: True, signal.SIGQUIT: True, signal.SIGHUP: True, signal.SIGWINCH: True,
            signal.SIGCONT: True, signal.SIGTERM: False, signal.SIGUSR1: False, signal.SIGUSR2: False,
            signal.SIGTSTP: True}


def connect(place: paths.Place) -> socket.socket | None:
    """A connection to a worker of this user, or None if none answers."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(place.address(paths.SOCKET))
        if protocol.peer_uid(sock) != os.getuid():  # the directory is ours; be sure anyway
            raise ConnectionRefusedError
    except OSError:
        sock.close()
        return None
    return sock


def ask(place: paths.Place, request: dict[str, Any], timeout: float = 10.0) -> dict[str, Any] | None:
    """One request and its reply (status, stop), or None without a worker."""
    sock = connect(place)
    if sock is None:
        return None
    try:
        sock.settimeout(timeout)
        protocol.send(sock, request)
        return protocol.Channel(sock).read()
    except (OSError, protocol.ProtocolError):
        return None
    finally:
        sock.close()


def starting(place: paths.Place) -> dict[str, Any] | None:
    """What a starting worker is doing ({"pid", "phase": "waiting"|"importing"}), or None."""
    try:
        fd = os.open(paths.LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600, dir_fd=place.fd)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return None  # nobody holds it: nothing is starting
    except OSError:
        pass
    finally:
        os.close(fd)
    try:
        fd = os.open(paths.STARTING, os.O_RDONLY | os.O_CLOEXEC, dir_fd=place.fd)
        with os.fdopen(fd) as f:
            state = json.load(f)
        return state if isinstance(state, dict) else {"phase": "unknown"}
    except (OSError, ValueError):
        return {"phase": "unknown"}


def spawn(place: paths.Place, wait_for: int) -> int:
    """Start a worker in the background; it imports once ``wait_for`` (a pid, 0: none) has exited."""
    import subprocess

    import asyncfc_cli

    package = os.path.dirname(os.path.abspath(asyncfc_cli.__file__))
    parent = os.path.dirname(package)
    # Found only through the script's directory or the working directory
    # (python -m from a checkout): the worker needs it first on its path too.
    base = sys.path if sys.flags.safe_path else sys.path[1:]
    inserted = "" if parent in base else parent
    log = os.open(paths.LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600, dir_fd=place.fd)
    try:
        if os.fstat(log).st_size > LOG_LIMIT:
            os.ftruncate(log, 0)
        proc = subprocess.Popen(
            [sys.executable, *subprocess._args_from_interpreter_flags(), "-P", "-c", BOOT, inserted, str(wait_for)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/",
            # Its own session: the terminal's signals and hang-up never reach it.
            start_new_session=True, close_fds=True)
    finally:
        os.close(log)
    return proc.pid


def _usable_streams() -> bool:
    for fd in context.STDIO:
        try:
            os.fstat(fd)
        except OSError:
            return False
    return all(context._stream_info(s) is not None for s in (sys.stdin, sys.stdout, sys.stderr))


def _in_background() -> bool:
    """True for a background job of a terminal: a cold process would be stopped
    when it reads the terminal, a warm child (another session) would not."""
    for fd in context.STDIO:
        try:
            if os.isatty(fd) and os.tcgetpgrp(fd) != os.getpgrp():
                return True
        except OSError:  # a terminal that is not our controlling one
            pass
    return False


class Forwarder:
    """Passes the signals this process gets to the child, once it has started."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.started = False
        self.pending: list[int] = []
        self.previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in _FORWARD:
            previous = signal.getsignal(signum)
            if previous == signal.SIG_IGN:
                continue  # ignored here, so ignored in the child too (context.adopt)
            self.previous[signum] = previous
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGTSTP:
            # Ctrl-Z: stop the child, then this process, as the terminal would
            # stop a cold one; SIGCONT (fg, bg) continues both.
            self._forward(signal.SIGSTOP)
            signal.signal(signal.SIGTSTP, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTSTP)
            signal.signal(signal.SIGTSTP, self._handle)
            return
        self._forward(signum)

    def _forward(self, signum: int) -> None:
        if not self.started:
            self.pending.append(signum)
            return
        try:
            self.sock.sendall(protocol.encode({"signal": int(signum), "group": _FORWARD.get(signum, True)}))
        except OSError:
            pass

    def start(self) -> None:
        self.started = True
        for signum in self.pending:
            self._forward(signum)
        self.pending = []

    def give_back(self) -> None:
        """Restore the handlers and deliver what came meanwhile, as if no worker had been asked."""
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)
        for signum in self.pending:
            if signum not in (signal.SIGSTOP, signal.SIGCONT):
                os.kill(os.getpid(), signum)


def _end_like(outcome: dict[str, Any]) -> int:
    """The exit code for the child's end; a child killed by a signal kills this process the same way."""
    if "signal" in outcome:
        signum = int(outcome["signal"])
        try:
            signal.signal(signum, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
            os.kill(os.getpid(), signum)
        except (OSError, ValueError):
            pass
        return 128 + signum
    return int(outcome.get("code", 1))


def _hand_over(sock: socket.socket, place: paths.Place, argv: list[str]) -> int | None:
    try:
        cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    forwarder = Forwarder(sock)
    forwarder.install()
    channel = protocol.Channel(sock)
    try:
        sock.settimeout(START_TIMEOUT)
        protocol.send(sock, context.capture(argv, "run"), fds=[*context.STDIO, cwd])
        reply = channel.read()
    except (OSError, protocol.ProtocolError):
        reply = None
    finally:
        os.close(cwd)
    if reply is None or "started" not in reply:
        sock.close()  # a child that started after all sees its caller gone and is stopped
        forwarder.give_back()
        if reply is not None and reply.get("stale"):
            spawn(place, os.getpid())
        return None
    forwarder.start()
    sock.settimeout(None)
    while True:
        try:
            message = channel.read()
        except (OSError, protocol.ProtocolError):
            message = None
        if message is None:
            sys.stderr.write("asyncfc: lost the warm worker and the command's exit status; "
                             "ASYNCFC_WARM=0 runs without it\n")
            return 1
        if "exit" in message:
            # The child is in os._exit: tell the worker this is an end, not a
            # caller that died (which it would stop), and end the same way.
            try:
                sock.sendall(protocol.encode({"done": True}))
            except OSError:
                pass
            return int(message["exit"])
        if "status" in message:
            return _end_like(message["status"])


def run(argv: list[str]) -> int | None:
    """Run ``argv`` in a child of the worker: its exit code, or None to run cold."""
    try:
        place = paths.open_place(os.environ, create=True)
    except paths.UnsafeDirectory:
        return None
    try:
        if not _usable_streams() or _in_background():
            return None
        sock = connect(place)
        if sock is None:
            state = starting(place)
            if state is None:
                spawn(place, os.getpid())
                return None
            if state.get("phase") != "importing":
                return None
            deadline = time.monotonic() + WAIT_FOR_STARTING
            while sock is None and time.monotonic() < deadline:
                time.sleep(POLL)
                sock = connect(place)
                if sock is None and starting(place) is None:
                    sock = connect(place)  # it is serving now, or it failed
                    break
            if sock is None:
                return None
        return _hand_over(sock, place, argv)
    finally:
        place.close()
