"""The per-user private directory of the warm worker, and the files in it.

``$XDG_RUNTIME_DIR/asyncfc`` when the runtime directory is usable (the
user's own, not writable by others), else ``/tmp/asyncfc-<uid>``. Either
way the directory must be a real directory (not a symlink) owned by this
user with no access for group or others; anything else is refused, and
the invocation runs cold: a socket in a directory someone else controls
could be theirs.

The directory is opened once and checked through its descriptor; its files
are reached through that descriptor too (``/proc/self/fd/N/worker.sock``),
so the directory checked is the one used, and a deep ``$XDG_RUNTIME_DIR``
cannot exceed the 108 bytes a socket address may have.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping

SOCKET = "worker.sock"
LOCK = "worker.lock"  # held by a starting worker until it serves (see worker.py)
STARTING = "worker.starting"  # what the starting worker is doing (see worker.py)
LOG = "worker.log"


class UnsafeDirectory(Exception):
    """The private directory is missing, not ours, or open to others."""


class Place:
    """The opened private directory. (Plain class and ``str`` paths: the client
    imports this, and dataclasses or pathlib would add a tenth of its start.)"""

    def __init__(self, directory: str, fd: int):
        self.directory = directory
        self.fd = fd

    def address(self, name: str) -> str:
        """A path to ``name`` in the directory that goes through the checked descriptor."""
        via_fd = f"/proc/self/fd/{self.fd}"
        return f"{via_fd}/{name}" if os.path.isdir(via_fd) else os.path.join(self.directory, name)

    def shown(self, name: str) -> str:
        """The path to show a user."""
        return os.path.join(self.directory, name)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _usable_runtime_dir(value: str | None) -> str | None:
    if not value or not os.path.isabs(value):
        return None
    try:
        info = os.stat(value)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        return None
    return value


def directory_for(environ: Mapping[str, str]) -> str:
    runtime = _usable_runtime_dir(environ.get("XDG_RUNTIME_DIR"))
    if runtime is not None:
        return os.path.join(runtime, "asyncfc")
    return f"/tmp/asyncfc-{os.getuid()}"


def check_private(info: os.stat_result, path: str) -> None:
    """Raise UnsafeDirectory unless ``info`` is a directory of ours that only we can enter."""
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory(f"{path} is not a directory")
    if info.st_uid != os.getuid():
        raise UnsafeDirectory(f"{path} belongs to uid {info.st_uid}, not to this user")
    if info.st_mode & 0o077:
        raise UnsafeDirectory(f"{path} has mode {stat.S_IMODE(info.st_mode):o}; it must be 700")


def open_place(environ: Mapping[str, str], create: bool) -> Place:
    """The worker's directory for this user, opened and checked; with ``create``,
    made (mode 700) if missing."""
    path = directory_for(environ)
    if create:
        try:
            os.mkdir(path, 0o700)  # the umask can only take bits away
        except FileExistsError:
            pass
        except OSError as exc:
            raise UnsafeDirectory(f"cannot create {path}: {exc.strerror or exc}") from None
    try:
        # O_NOFOLLOW: a symlink planted in place of the directory is refused, not followed.
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UnsafeDirectory(f"{path} does not exist") from None
    except OSError as exc:
        raise UnsafeDirectory(f"{path}: {exc.strerror or exc}") from None
    try:
        check_private(os.fstat(fd), path)
    except UnsafeDirectory:
        os.close(fd)
        raise
    return Place(path, fd)
