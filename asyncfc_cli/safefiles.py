"""Files asyncfc writes, and the state files it reads back, whatever was planted at their paths.

Every file asyncfc writes goes through here: run traces, ``results.jsonl``,
``--junit``, exports, charts, the latency store, the files of ``asyncfc
init``. A directory asyncfc writes into may hold links someone else put
there (a cloned repository, a shared ``--out``), so:

- **A file is never written through a symbolic link.** It is written under
  a temporary name in the same directory (created exclusively) and renamed
  over whatever held the name: a link there is replaced and its target left
  alone. A directory, FIFO, socket or block device at the name is refused.
  Character devices (``/dev/null``, ``/dev/full``, a terminal) and the
  aliases in ``/dev`` and ``/proc/PID/fd`` (``/dev/stdout``) are written in
  place: only root can put those there, and a user who names one means it.
- **Directories asyncfc adds below one the user named** (``traces/`` in
  ``--out``, ``.asyncfc/runs`` in the current directory) are created where
  missing; one that exists may be a symbolic link only to a directory inside
  the one the user named.
- **State files read back** (the latency store, ``results.jsonl`` for
  ``--resume``) are read only when they are regular files, without following
  a link, without blocking (a FIFO) and up to a size limit.

The checks are made when the path is used: a process that can write into the
same directory *at the same time* can still race them (see "Path roots" in
docs/reliability.md); what was planted before asyncfc ran cannot.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from pathlib import Path
from typing import TextIO

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISCHR, "a character device"), (stat.S_ISLNK, "a symbolic link"))


def kind(mode: int) -> str:
    """What a file of this ``st_mode`` is, in words."""
    return next((name for test, name in _KINDS if test(mode)), "a regular file" if stat.S_ISREG(mode) else "a special file")


def inside(path: Path | str, root: Path | str) -> bool:
    """True if ``path``, every link followed, is ``root`` or below it."""
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    return os.path.commonpath([real, real_root]) == real_root


def make_dirs(root: Path, relative: Path | str) -> Path:
    """``root / relative``, with every missing directory created.

    ``root`` is the user's choice: created if missing, followed if a link.
    Each part of ``relative`` is asyncfc's: an existing one must be a
    directory, or a symbolic link to a directory inside ``root``; otherwise
    ``OSError`` naming that part.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    shown_root = "the current directory" if root == Path(".") else str(root)
    current = root
    for part in Path(relative).parts:
        if part in ("", "."):
            continue
        if part == ".." or os.sep in part:
            raise OSError(errno.EINVAL, "a path that climbs out of its directory", str(root / relative))
        current = current / part
        try:
            os.mkdir(current)
            continue
        except FileExistsError:
            pass
        mode = os.lstat(current).st_mode
        if stat.S_ISLNK(mode):
            target = os.readlink(current)
            if not inside(current, root):
                raise OSError(errno.ELOOP, f"{current} is a symbolic link to {target}, outside {shown_root}",
                              str(current))
            if not os.path.isdir(current):
                raise OSError(errno.ENOTDIR, f"{current} is a symbolic link to {target}, which is not a directory",
                              str(current))
        elif not stat.S_ISDIR(mode):
            raise OSError(errno.ENOTDIR, f"{current} is {kind(mode)}, not a directory", str(current))
    return current


_FD_DIR = re.compile(r"/proc/(\d+|self|thread-self)(/task/\d+)?/fd")


def written_in_place(path: Path) -> bool:
    """A device the user named: written in place, not replaced."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    if stat.S_ISCHR(mode):
        return True
    if stat.S_ISLNK(mode):
        parent = os.path.realpath(path.parent)
        return parent == "/dev" or _FD_DIR.fullmatch(parent) is not None
    return False


def check_replaceable(path: Path, own: bool = False) -> None:
    """``OSError`` if what is at ``path`` is something asyncfc must not replace:
    a directory, FIFO, socket or block device. Nothing there, a regular file, a
    symbolic link (replaced, not followed) or a device the user named are fine.
    ``own``: the name is asyncfc's (a state file), so anything but a directory
    is replaced."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode) or (own and not stat.S_ISDIR(mode)) or written_in_place(path):
        return
    code = errno.EISDIR if stat.S_ISDIR(mode) else errno.EEXIST
    raise OSError(code, f"{path} is {kind(mode)}, not a regular file (asyncfc does not replace it)", str(path))


def _temp_beside(path: Path) -> tuple[int, Path]:
    """A new file next to ``path``, created exclusively (never through a link)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(100):
        tmp = path.with_name(f".{path.name[:200]}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no free temporary name", str(path))


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def create(path: Path, initial: bytes = b"", own: bool = False) -> TextIO:
    """A fresh file at ``path`` holding ``initial``, open for appending text (UTF-8).

    The file is written under a temporary name and renamed over ``path``, so
    what was there (a symbolic link too) is replaced, never followed, and a
    reader sees the old file or the new one. For files written as they grow
    (traces, ``results.jsonl``). ``own`` as for :func:`check_replaceable`.
    """
    path = Path(path)
    if not own and written_in_place(path):
        stream = open(path, "w", encoding="utf-8")
        stream.write(initial.decode("utf-8", "surrogateescape"))
        return stream
    check_replaceable(path, own)
    fd, tmp = _temp_beside(path)
    try:
        view = memoryview(initial)
        while view:
            view = view[os.write(fd, view):]
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp)
        raise
    return os.fdopen(fd, "a", encoding="utf-8")


def write_atomically(path: Path, data: str | bytes, own: bool = False) -> None:
    """``path`` holds ``data``, all or nothing: a reader never sees half a file,
    and a symbolic link at ``path`` is replaced, never followed. ``own`` as for
    :func:`check_replaceable`."""
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if not own and written_in_place(path):
        with open(path, "wb") as stream:
            stream.write(raw)
        return
    check_replaceable(path, own)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(raw)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def write_new(path: Path, data: str | bytes) -> None:
    """Create ``path`` holding ``data``; ``FileExistsError`` if anything (a link
    too, even a dangling one) already has the name. A file left half written
    by a failure is removed."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(raw)
    except BaseException:
        _unlink_quietly(Path(path))
        raise


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``limit`` bytes.

    The name is not followed if it is a symbolic link, and a FIFO does not
    block the open: both, and anything else that is not a regular file, are
    ``OSError`` saying what was found. ``FileNotFoundError`` if nothing is there.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, f"{path} is a symbolic link (not followed)", str(path)) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, f"{path} is {kind(info.st_mode)}, not a regular file", str(path))
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"{path} is larger than {limit:,} bytes", str(path))
        chunks, size = [], 0
        while size <= limit:  # the file may grow while it is read
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise OSError(errno.EFBIG, f"{path} is larger than {limit:,} bytes", str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)
