"""Why a model server could not be reached, in words a user can act on.

LiteLLM wraps the HTTP client's error its own way per route (OpenAI's as
"InternalServerError: Connection error.", with no host; Ollama's and
Anthropic's quoting aiohttp, ``ssl:<ssl.SSLContext object at 0x...>``). The
cause is further down the exception chain: :func:`unreachable` reads it and
says which URL could not be reached, why, and what to check; and whether a
retry can help (a refusal by this machine means no server is running there).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from asyncfc_cli.output import printable
from asyncfc_cli.redaction import Redactor, mask_url

if TYPE_CHECKING:
    from asyncfc_cli.model import ModelConfig


@dataclass
class Unreachable:
    """Why the model server could not be reached, read from the exception chain."""

    reason: str  # "refused", "unresolved", "timeout", "silent", "proxy" or "connect"
    url: str  # the URL asked for (credentials masked), or the configured api_base
    host: str | None
    detail: str  # the operating system's words: "Name or service not known", ...
    timeout: float = 0.0
    permanent: bool = False  # retrying cannot help (see LiteLLMClient.stream)

    def message(self, redactor: Redactor) -> str:
        if self.reason == "timeout":
            text = f"the model server at {self.url} did not answer within {self.timeout:g}s (request_timeout)"
        elif self.reason == "silent":  # our own timer: no response yet, or one of keep-alives only
            text = (f"the model server at {self.url} sent no tokens for {self.timeout:g}s (request_timeout): "
                    "no answer, or only empty chunks or keep-alives (StreamStalled)")
        else:
            why = {
                "refused": "connection refused (nothing listens at that address)",
                "unresolved": f"the host name {self.host!r} does not resolve ({self.detail})",
            }.get(self.reason, self.detail)
            text = f"cannot reach the model server at {self.url}: {why}"
        return printable(redactor.text(text))

    def fix(self, config: "ModelConfig") -> str:
        table = f"[models.{config.alias}]" if config.alias and config.alias != config.model else ""
        where = (f"api_base in {table}" if table
                 else f'api_base (a [models.NAME] table with model = "{config.model}" and api_base = "http://HOST:PORT")')
        if self.reason == "refused":
            start = "start Ollama (ollama serve)" if config.model.startswith(("ollama/", "ollama_chat/")) \
                else "start the model server"
            if table:
                return f"{start}, or set api_base in {table} to the address it listens on"
            return f"{start}, or give the address it listens on: {where}, then --model NAME"
        if self.reason == "unresolved":
            return f"check the host name in {where}, and this machine's network and DNS"
        if self.reason in ("timeout", "silent"):
            return ("check that the server at that address is up and answers; if it is slow to start or to "
                    f"answer, raise request_timeout{' in ' + table if table else ' on the model'}")
        if self.reason == "proxy":
            return "check the proxy settings (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) or start the proxy"
        return f"check that the server at that address is up and that {where} is right (scheme, host, port)"


_CONNECT_ERRORS = ("ClientConnectorError", "ClientConnectorDNSError", "ConnectError", "APIConnectionError",
                   "ServerDisconnectedError", "ClientOSError")
_TIMEOUTS = ("Timeout", "ConnectTimeout", "ReadTimeout", "PoolTimeout", "ConnectionTimeoutError",
             "ServerTimeoutError", "APITimeoutError")
_CHAIN_LIMIT = 64  # exceptions read of one chain: a cycle or a hostile depth ends here


def unreachable(exc: BaseException, config: "ModelConfig") -> Unreachable | None:
    """What kept the request from reaching the server, if that is what failed.

    LiteLLM wraps the HTTP client's error (often as "InternalServerError:
    Connection error."); the cause is further down the chain (``__cause__``,
    ``__context__``, LiteLLM's ``original_exception``). The URL is the one
    the HTTP client asked for: LiteLLM's own exceptions carry a placeholder.
    """
    # What each error in the chain says, the most telling kept: a wrapper's
    # class name only says "connect"; the OS error under it says why.
    reason, rank, detail, permanent = None, 0, None, False
    host = url = None
    port = None
    pending, seen = [exc], set()
    while pending and len(seen) < _CHAIN_LIMIT:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        found = _classify(node)
        if found is not None and found[1] > rank:
            reason, rank, detail = found[0], found[1], found[2] or detail
            permanent = isinstance(node, socket.gaierror) and node.errno != socket.EAI_AGAIN
        if not type(node).__module__.startswith("litellm"):
            found = _request_url(node)
            url = found or url  # the deepest one wins: LiteLLM's wrappers are on top
        if isinstance(getattr(node, "host", None), str):  # aiohttp's: the address it connected to
            host, port = node.host, getattr(node, "port", None)
        for attr in ("__cause__", "__context__", "original_exception"):
            inner = getattr(node, attr, None)
            if isinstance(inner, BaseException):
                pending.append(inner)
    if reason is None:
        return None
    if url is None:
        url = config.api_base or (f"{host}:{port}" if host else "the model endpoint")
    url = mask_url(url)
    url_host = _hostname(url)
    host = host or url_host
    failure = Unreachable(reason, url, host, detail or "cannot connect", timeout=config.stream_timeout)
    if reason == "refused":
        # The address refused is the one connected to: a proxy's, when one is set.
        failure.permanent = is_loopback(host)
        if host and url_host and host.strip("[]") != url_host.strip("[]"):
            failure.detail = f"connection refused by {host}:{port}, a proxy"
            failure.reason = "proxy"
    elif reason == "unresolved":
        failure.permanent = permanent
    elif reason == "connect" and rank == 2:
        failure.detail = f"cannot connect ({detail})"
    return failure


def _classify(node: BaseException) -> tuple[str, int, str | None] | None:
    """(reason, how telling, the OS's words) for one error of a chain, or None."""
    from asyncfc_cli.model import StreamStalled

    name = type(node).__name__
    if isinstance(node, socket.gaierror):
        return "unresolved", 5, node.strerror or str(node)
    if isinstance(node, ConnectionRefusedError) or (isinstance(node, OSError) and node.errno == errno.ECONNREFUSED):
        return "refused", 4, None
    if name in _TIMEOUTS or (isinstance(node, TimeoutError) and not isinstance(node, StreamStalled)):
        return "timeout", 3, None
    if isinstance(node, StreamStalled) and not node.answered:
        return "silent", 3, None  # our own silence timer ran out before any token
    if isinstance(node, OSError) and node.strerror:
        return "connect", 2, node.strerror
    if name in _CONNECT_ERRORS:
        return "connect", 1, f"the connection failed ({name})"
    return None


def _hostname(url: str) -> str | None:
    try:
        return urlsplit(url).hostname if "://" in url else None
    except ValueError:
        return None


def _request_url(node: BaseException) -> str | None:
    try:  # httpx raises when an error has no request
        request = getattr(node, "request", None)
    except Exception:
        return None
    url = getattr(request, "url", None)
    return str(url) if url is not None else None


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1, localhost: this machine, where a refused connection means no server."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def keep_off_proxies(api_base: str | None, environ=None) -> None:
    """Add a loopback ``api_base``'s host to ``no_proxy``/``NO_PROXY``.

    The HTTP clients LiteLLM uses (httpx, aiohttp) send every request through
    ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY`` unless ``NO_PROXY`` names the
    host, and a proxy cannot reach this machine's loopback: with a proxy set,
    as on many company networks, the embedded simulated model, a replayed
    cassette and a local llama.cpp or Ollama server all failed as
    "connection refused". Only loopback hosts are added (a proxy is never
    the way to them), to both spellings, since clients differ in which they read.
    Idempotent; the same for every run of the process."""
    environ = os.environ if environ is None else environ
    host = _hostname(api_base or "")
    if not is_loopback(host):
        return
    for name in ("no_proxy", "NO_PROXY"):
        entries = [e.strip() for e in environ.get(name, "").split(",") if e.strip()]
        if host not in entries and "*" not in entries:
            environ[name] = ",".join([*entries, host])
