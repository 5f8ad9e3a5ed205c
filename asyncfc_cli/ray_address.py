"""Where ``asyncfc batch --ray ADDRESS`` connects, checked before Ray is asked to.

``ray.init`` retries an address that refuses, drops or ignores connections for
minutes (20 attempts of 30 s); the batch instead checks the address's form,
opens a connection and expects a gRPC server's answer to the HTTP/2 preface
within :func:`connect_timeout` seconds, and bounds Ray's own attempt to the same
time (:func:`bounded_gcs_connect`). Used by :mod:`asyncfc_cli.ray_batch`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from asyncfc_cli.output import printable
from asyncfc_cli.spec import SpecError

CONNECT_TIMEOUT_ENV = "ASYNCFC_RAY_CONNECT_TIMEOUT"
CONNECT_TIMEOUT = 5.0  # seconds the cluster's address gets to answer before the batch gives up (the env var overrides)
ADDRESS_FIX = "pass --ray local, --ray auto, --ray HOST:6379 (the head's GCS) or --ray ray://HOST:10001 (Ray Client)"
# The HTTP/2 client preface and an empty SETTINGS frame: what a gRPC server (Ray's GCS
# and its client server both are) must answer with a SETTINGS frame of its own.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_SETTINGS = 0x04


def connect_timeout() -> float:
    """Seconds a cluster's address gets to answer: :data:`CONNECT_TIMEOUT`, or ``$ASYNCFC_RAY_CONNECT_TIMEOUT``."""
    text = os.environ.get(CONNECT_TIMEOUT_ENV, "").strip()
    if not text:
        return CONNECT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:  # also refuses nan and inf
        raise SpecError(None, CONNECT_TIMEOUT_ENV, f"{text[:40]!r} is not a number of seconds",
                        f"set it to a number of seconds between 0 and 3600 (default {CONNECT_TIMEOUT:g}), or unset it")
    return value


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``ray://HOST:PORT`` (an IPv6 host in brackets) as (host, port);
    SpecError naming the address when it is neither."""
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    shown = printable(address)[:200]
    if rest.startswith("["):
        host, sep, port = rest[1:].partition("]:")
        ok = bool(sep) and ":" in host
    else:
        host, sep, port = rest.rpartition(":")
        ok = bool(sep) and ":" not in host
    if not (ok and host and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise SpecError(None, "--ray", f"{shown!r} is not a Ray address (HOST:PORT, ray://HOST:PORT, an IPv6 host "
                        "in brackets)", ADDRESS_FIX)
    return host, int(port)


def check_reachable(address: str, timeout: float) -> None:
    """SpecError unless the cluster at ``address`` (``auto``: the one Ray would find)
    accepts a connection and answers as a gRPC server within ``timeout`` seconds."""
    target = address
    if address == "auto":
        target = os.environ.get("RAY_ADDRESS", "").strip()
        if not target or target == "auto":
            from ray._private import services

            try:
                target = services.canonicalize_bootstrap_address_or_die("auto")
            except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, or others on odd files
                raise SpecError(None, "--ray", f"--ray auto found no Ray cluster: {printable(str(exc))[:300]}",
                                "start one (ray start --head), set RAY_ADDRESS, pass its address, or use --ray local") \
                    from None
    host, port = parse_address(target)
    if not target.startswith("ray://"):
        # Ray itself connects to this machine's address when given localhost or 127.0.0.1.
        from ray._private.services import resolve_ip_for_localhost

        try:
            host = resolve_ip_for_localhost(host)
        except Exception:  # noqa: BLE001 - keep the host as given
            pass
    where = f"{printable(address)[:200]}" + (f" ({printable(target)[:200]})" if target != address else "")
    fix = (f"start the cluster (ray start --head) or check the address and port; for a slow network raise "
           f"{CONNECT_TIMEOUT_ENV} (now {timeout:g}s); or use --ray local")
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return  # a TLS cluster answers the handshake first: the open port is all that can be checked here
            sock.settimeout(timeout)
            sock.sendall(_H2_PREFACE)
            head = _read_exactly(sock, 9)
    except socket.timeout:
        raise SpecError(None, "--ray", f"cannot connect to Ray at {where}: no answer within {timeout:g}s", fix) \
            from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise SpecError(None, "--ray", f"cannot connect to Ray at {where}: {printable(reason)[:200]}", fix) from None
    if len(head) < 9 or head[3] != _H2_SETTINGS:
        raise SpecError(None, "--ray", f"cannot connect to Ray at {where}: something answers there, but not Ray "
                        "(not a gRPC server)",
                        "pass the head node's GCS port (6379 by default) or its Ray Client port (ray://HOST:10001)")


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


@contextmanager
def bounded_gcs_connect(timeout: float) -> Iterator[None]:
    """While ``ray.init`` connects: one attempt of ``timeout`` seconds at the GCS, not
    Ray's default of 20 attempts of 30 s (something that answers at the address but is
    not Ray's GCS would hold the batch for ten minutes). Ray reads these settings
    when it connects; values the user set are kept."""
    settings = {"RAY_py_gcs_connect_timeout_s": str(max(1, round(timeout))), "RAY_gcs_server_port_wait_time_s": "1"}
    added = [name for name in settings if name not in os.environ]
    for name in added:
        os.environ[name] = settings[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
