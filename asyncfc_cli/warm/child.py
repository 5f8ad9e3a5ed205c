"""A forked child of the worker: become the caller's process, then run the
CLI exactly as a cold ``asyncfc`` does (``asyncfc_cli.cli.main``).

The CLI's modules are imported here, after the caller's environment, streams
and directory are in place, so what they set up at import time (Rich
consoles sized to the caller's terminal, colour from its ``NO_COLOR`` or
``FORCE_COLOR``) is the caller's.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
from typing import Any, NoReturn

from asyncfc_cli.warm import context, protocol

EXIT_SETUP_FAILED = 70  # never seen by a caller: it runs cold on a refusal
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    try:
        conn.sendall(protocol.encode(message))
    except OSError:  # the caller is gone: the worker stops this child
        pass


def _end_with_worker(worker_pid: int) -> None:
    """SIGTERM if the worker dies: the run ends as on Ctrl-C, not orphaned."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        libc.prctl(_PR_SET_NAME, b"asyncfc", 0, 0, 0)  # what ps and top show, as for a cold asyncfc
    except (OSError, AttributeError):
        pass
    if os.getppid() != worker_pid:  # it died before the line above took effect
        os._exit(EXIT_SETUP_FAILED)


def _use_compiled(codes: dict[str, tuple[bytes, Any]]) -> None:
    """Imports of asyncfc's modules take the worker's compiled code for the same source bytes."""
    from importlib import _bootstrap_external

    loader = _bootstrap_external.SourceLoader
    original = loader.source_to_code

    def source_to_code(self: Any, data: bytes, path: str, *, _optimize: int = -1) -> Any:
        hit = codes.get(path)
        if hit is not None and _optimize == -1 and hit[0] == data:
            return hit[1]
        return original(self, data, path, _optimize=_optimize)

    loader.source_to_code = source_to_code


def _let_go_of_streams() -> None:
    """Everything is written: the caller's terminal or pipes are released now, so
    whoever reads them (``$(asyncfc run ...)``) sees their end when the caller
    exits, not after this process's teardown of a worker-sized address space."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in context.STDIO:
            os.dup2(null, fd)
        os.close(null)
    except OSError:
        pass


def main(conn: socket.socket, request: dict[str, Any], fds: list[int], env_effects: dict[str, str | None],
         worker_pid: int, codes: dict[str, tuple[bytes, Any]]) -> NoReturn:
    conn.settimeout(None)
    try:
        _end_with_worker(worker_pid)
        os.setpgid(0, 0)  # its own group: the caller's Ctrl-C reaches it and what it starts in its group
        context.adopt(request, fds, env_effects)
        _use_compiled(codes)
    except context.Refused as exc:
        _send(conn, {"refused": exc.reason, "stale": exc.stale})
        os._exit(EXIT_SETUP_FAILED)
    except BaseException as exc:  # noqa: BLE001  (anything here means: run cold instead)
        _send(conn, {"refused": f"{type(exc).__name__}: {exc}", "stale": False})
        os._exit(EXIT_SETUP_FAILED)

    def finish(code: int) -> NoReturn:
        # The caller exits with this code; the worker's report of the same exit
        # comes after and is only needed if this one never arrives. A signal
        # now must not turn an exit into a traceback.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        _let_go_of_streams()
        _send(conn, {"exit": code})
        os._exit(code)

    # From here on this is asyncfc_cli.__main__.main, as a cold process runs it
    # (Ctrl-C can come as soon as the caller hears that this child started).
    try:
        _send(conn, {"started": os.getpid()})
        from asyncfc_cli.cli import main as cli_main
    except KeyboardInterrupt:
        finish(130)
    except SystemExit as exc:
        finish(exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1))
    except BaseException:  # noqa: BLE001  (a broken install: the traceback a cold start prints)
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        finish(1)
    cli_main(exit_with=finish)
    finish(0)
