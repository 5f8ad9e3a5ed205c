"""When a worker may serve a request, and when it must be replaced.

A forked child adopts the caller's environment, but the modules the worker
imported read parts of it once, at import time (LiteLLM alone reads about
three hundred variables: ``LITELLM_*``, ``SSL_*``, its constants, ``NO_COLOR``
...). Which ones is not a list anyone maintains, so the worker records it:
while it imports, ``os.environ`` is a :class:`RecordingEnviron` that notes
every name read. A request is served only if the caller's value of each of
those names (and of the :data:`FIXED_NAMES` and :data:`FIXED_PREFIXES`,
read by C code or by Python's own start-up) equals the worker's; then the
imports would have done in the caller exactly what they did in the worker.

Besides the environment: the same asyncfc (version, package directory and a
fingerprint of its files, so an edited checkout is never served old code),
the same interpreter (executable, flags, path, installed packages), the
same user and groups, the same namespaces.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from asyncfc_cli.warm import context

# Read outside Python's os.environ (OpenSSL, the C library, the loader, the
# interpreter's start-up), or decisive for what an import does.
FIXED_NAMES = frozenset({"LANG", "LANGUAGE", "TZ", "HOME", "TMPDIR", "TEMP", "TMP", "GLIBC_TUNABLES",
                         "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NO_COLOR"})
FIXED_PREFIXES = ("LITELLM_", "PYTHON", "LC_", "SSL_", "OPENSSL_", "LD_", "MALLOC_")


def _fixed(name: str) -> bool:
    return name in FIXED_NAMES or name.startswith(FIXED_PREFIXES) or name.upper().endswith("_PROXY")


class RecordingEnviron(os._Environ):  # type: ignore[name-defined,misc]
    """``os.environ`` that notes each name read, sharing the real one's data."""

    def __init__(self, real: Any, names: set[str], iterations: list[str]):
        super().__init__(real._data, real.encodekey, real.decodekey, real.encodevalue, real.decodevalue)
        self._names = names
        self._iterations = iterations

    def __getitem__(self, key: Any) -> Any:
        self._names.add(key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else str(key))
        return super().__getitem__(key)

    def __iter__(self) -> Iterator[Any]:
        import traceback

        frame = traceback.extract_stack(limit=3)[0]
        self._iterations.append(f"{frame.filename}:{frame.lineno}")
        return super().__iter__()


@contextmanager
def recording_environ_reads() -> Iterator[tuple[set[str], list[str]]]:
    """For the duration, note every environment name read and every walk over all of them."""
    names: set[str] = set()
    iterations: list[str] = []
    real, real_b = os.environ, getattr(os, "environb", None)
    os.environ = RecordingEnviron(real, names, iterations)
    if real_b is not None:
        os.environb = RecordingEnviron(real_b, names, iterations)
    try:
        yield names, iterations
    finally:
        os.environ = real
        if real_b is not None:
            os.environb = real_b


def package_files(package_dir: str) -> Iterator[os.DirEntry]:
    """Every file under the package (not ``__pycache__``), walked without recursion."""
    stack = [package_dir]
    while stack:
        top = stack.pop()
        with os.scandir(top) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != "__pycache__":
                        stack.append(entry.path)
                else:
                    yield entry


def fingerprint(package_dir: str) -> str:
    """A digest of every file of the package (path, size, modification time)."""
    digest = hashlib.sha256()
    entries = []
    try:
        for entry in package_files(package_dir):
            try:
                info = entry.stat()
            except OSError:
                continue
            entries.append(f"{os.path.relpath(entry.path, package_dir)}\0{info.st_size}\0{info.st_mtime_ns}")
    except OSError as exc:
        entries.append(f"unreadable\0{exc}")
    for line in sorted(entries):
        digest.update(line.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()[:20]


def path_mtimes(path: list[str]) -> dict[str, int]:
    """Modification times of the import path's directories: installing or
    removing a package changes its site-packages directory."""
    found = {}
    for entry in path:
        try:
            found[entry] = os.stat(entry).st_mtime_ns
        except OSError:
            pass
    return found


@dataclass
class Snapshot:
    """What the worker is: compared with each request."""

    version: str
    package: str
    executable: str
    base_path: list[str]  # sys.path without an entry for a script or the working directory
    flags: dict[str, Any]
    warnoptions: list[str]
    xoptions: dict[str, Any]
    env: dict[str, str]  # the environment as it was before the imports
    env_names: set[str] = field(default_factory=set)  # read by the imports
    namespaces: dict[str, int] = field(default_factory=dict)
    credentials: list[Any] = field(default_factory=list)
    fingerprint: str = ""
    mtimes: dict[str, int] = field(default_factory=dict)
    hard_limits: dict[str, int] = field(default_factory=dict)
    nice: int = 0


def take(env_before: dict[str, str], package: str, base_path: list[str]) -> Snapshot:
    import sys

    import asyncfc_cli

    limits = {name: hard for name, (_, hard) in context._rlimits().items()}
    return Snapshot(
        version=asyncfc_cli.__version__, package=package, executable=sys.executable, base_path=list(base_path),
        flags=context.interpreter_flags(), warnoptions=list(sys.warnoptions),
        xoptions={str(k): v if isinstance(v, str) else True for k, v in sys._xoptions.items()},
        env=dict(env_before), namespaces=context.namespaces(), credentials=context.credentials(),
        fingerprint=fingerprint(package), mtimes=path_mtimes(base_path), hard_limits=limits,
        nice=os.getpriority(os.PRIO_PROCESS, 0))


def request_base_path(request: dict[str, Any]) -> list[str]:
    path = list(request.get("path", []))
    return path if request.get("safe_path") else path[1:]


def _unlimited(value: int) -> int:
    return 1 << 63 if value < 0 else value  # RLIM_INFINITY is -1 here


def stale_reasons(snap: Snapshot, request: dict[str, Any]) -> list[str]:
    """Why this worker cannot serve ``request`` as a cold process would (empty: it can).
    Names of environment variables are given, never their values."""
    from asyncfc_cli.warm import protocol

    reasons = []
    if request.get("proto") != protocol.VERSION:
        return [f"warm protocol {request.get('proto')} != {protocol.VERSION}"]
    if request.get("version") != snap.version:
        reasons.append(f"asyncfc {request.get('version')} != {snap.version}")
    if request.get("package") != snap.package:
        reasons.append(f"asyncfc from {request.get('package')}, the worker's from {snap.package}")
    if request.get("executable") != snap.executable:
        reasons.append(f"interpreter {request.get('executable')}, the worker's is {snap.executable}")
    if request_base_path(request) != snap.base_path:
        reasons.append("another import path (sys.path)")
    if request.get("flags") != snap.flags or request.get("warnoptions") != snap.warnoptions \
            or request.get("xoptions") != snap.xoptions:
        reasons.append("other interpreter options (-X, -W, -O, ...)")
    env = request.get("env", {})
    names = snap.env_names | {n for n in (*env, *snap.env) if _fixed(n)}
    differing = sorted(n for n in names if env.get(n) != snap.env.get(n))
    if differing:
        shown = ", ".join(differing[:8]) + (f" and {len(differing) - 8} more" if len(differing) > 8 else "")
        reasons.append(f"environment variables read at import time differ: {shown}")
    if request.get("namespaces") != snap.namespaces:
        reasons.append("other Linux namespaces")
    if request.get("credentials") != snap.credentials:
        reasons.append("other user or group ids")
    if fingerprint(snap.package) != snap.fingerprint:
        reasons.append("asyncfc's files changed since the worker started")
    if path_mtimes(snap.base_path) != snap.mtimes:
        reasons.append("installed packages changed since the worker started")
    for name, (_, hard) in request.get("rlimits", {}).items():
        if name in snap.hard_limits and _unlimited(hard) > _unlimited(snap.hard_limits[name]):
            reasons.append(f"a higher hard limit {name}")
    if request.get("nice", 0) < snap.nice:
        reasons.append("a lower nice value")
    return reasons
