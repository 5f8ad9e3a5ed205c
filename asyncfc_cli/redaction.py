"""Secrets a run can know, and the one redactor every output goes through.

A run knows a secret when it holds it: the model's ``api_key`` (and a
password or credential-like query value in its ``api_base``); any credential
in the model's ``params`` (header values, at any depth under a ``*header*``
key, and ``*key*``/``*token*``/``*secret*``/``*password*`` entries); the
environment variables LiteLLM and tools read keys from (any variable whose
name looks like a credential, ``OPENAI_API_KEY`` and friends); and what a
tool source declares (a tool's ``secrets()``: an MCP server's header values,
credential ``env`` values, the password in its ``url`` and credential-like
query values, ``--token VALUE`` in its command).

Redaction happens before any text is cut: a key split by a cut would
otherwise leak in part (:meth:`Redactor.clip`; a window taken out of a
longer text, such as the end of a server's stderr, also has a secret cut at
its edge masked, :meth:`Redactor.text`). Every output boundary (trace
events, progress lines, errors on stderr, the answer, ``--json``, the MCP
SDK's log records) goes through :class:`Redactor`.

Values come from models, tools and servers: :meth:`Redactor.value` and
:func:`param_secrets` walk them without recursion, in time linear in their
size, however deeply they nest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus

MASK = "***"

# Names under which credentials live, in the environment, params, query strings and argv.
_CREDENTIAL_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE)", re.I)
# Whole words of a name that mean a credential (``sig=`` of a signed URL, ``DB_PASS``);
# as words only, so PATH or SIGNAL are not taken for one.
_CREDENTIAL_WORDS = frozenset({"pass", "pwd", "sig", "signature", "session", "sessionid", "sid", "bearer",
                               "pat", "jwt", "otp", "sas", "cert", "private", "privkey"})
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z0-9]+(?![a-z])")
# Shorter values are too likely to be ordinary text ("1", "true", a region name).
MIN_SECRET_CHARS = 8
_NOT_SECRET = {"true", "false", "none", "null", "enabled", "disabled", "yes", "no", "on", "off"}
# The redactor ignores shorter strings: masking every "ab" would mask ordinary text.
_MIN_MASKED = 4


def credential_name(name: Any) -> bool:
    """Does ``name`` (a variable, a key, a query parameter, a flag) look like it holds a credential?"""
    text = str(name)
    if _CREDENTIAL_NAME.search(text):
        return True
    return any(word.lower() in _CREDENTIAL_WORDS for word in _WORD.findall(text))


def plausible(value: Any) -> bool:
    """Could this value be a credential? Paths (``GOOGLE_APPLICATION_CREDENTIALS``,
    ``SSH_AUTH_SOCK``) name where a secret is, they are not one."""
    if not isinstance(value, str):
        return False
    value = value.strip()
    return (len(value) >= MIN_SECRET_CHARS and value.lower() not in _NOT_SECRET
            and not value.startswith(("/", "~")))


def env_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look like credentials."""
    environ = os.environ if environ is None else environ
    return [v for k, v in environ.items() if credential_name(k) and plausible(v)]


def param_secrets(params: Any, under_header: bool = False) -> list[str]:
    """Credentials inside LiteLLM params: every header value (at any depth under a
    ``*header*`` key), values under credential-like keys, and what URLs hold."""
    found: list[str] = []
    stack: list[tuple[Any, bool]] = [(params, under_header)]
    while stack:  # a loop, not recursion: params may nest deeper than the stack allows
        value, header = stack.pop()
        if isinstance(value, Mapping):
            for key, inner in value.items():
                inner_header = header or "header" in str(key).lower()
                if isinstance(inner, str):
                    if (inner_header or credential_name(key)) and plausible(inner):
                        found.append(inner)
                    found.extend(url_secrets(inner))
                else:
                    stack.append((inner, inner_header))
        elif isinstance(value, (list, tuple)):
            for inner in value:
                if isinstance(inner, str):
                    if header and plausible(inner):
                        found.append(inner)
                    found.extend(url_secrets(inner))
                else:
                    stack.append((inner, header))
    return found


# --- URLs and command lines ------------------------------------------------------------------

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<authority>[^/?#]*)(?P<rest>.*)$", re.S)


def _secret_text(value: str) -> bool:
    return len(value) >= _MIN_MASKED and value.lower() not in _NOT_SECRET


def _pairs(query: str) -> Iterable[tuple[str, str, str]]:
    """(key, separator, raw value) of each ``key=value`` of a query string or fragment."""
    for pair in re.split(r"[&;]", query):
        key, sep, value = pair.partition("=")
        yield key, sep, value


def _split_url(url: str) -> tuple[str, str, str, str, str] | None:
    """(scheme://, userinfo, host, path, query-and-fragment tail) or None if ``url`` is no URL."""
    match = _URL.match(url) if isinstance(url, str) else None
    if match is None:
        return None
    userinfo, at, host = match["authority"].rpartition("@")
    path, _, _ = match["rest"].partition("?")
    path = path.partition("#")[0]
    return match["scheme"], userinfo if at else "", host, path, match["rest"][len(path):]


def url_secrets(url: Any) -> list[str]:
    """What a URL holds that is a credential: the password of its userinfo (or a
    userinfo without one: a token used as the user name), and the values of
    credential-like query and fragment parameters (``access_token=``,
    ``api_key=``, ``sig=``...); each as written and percent-decoded."""
    parts = _split_url(url)
    if parts is None:
        return []
    _, userinfo, _, _, tail = parts
    raw: list[str] = []
    if userinfo:
        user, colon, password = userinfo.partition(":")
        raw.append(password if colon else user)
    for key, sep, value in _pairs(re.sub(r"^[?#]", "", tail).replace("#", "&")):
        if sep and credential_name(unquote_plus(key)):
            raw.append(value)
    found: list[str] = []
    for value in raw:
        for form in (value, unquote_plus(value)):
            if _secret_text(form) and form not in found:
                found.append(form)
    return found


def mask_url(url: str) -> str:
    """``url`` for display: its password (or a user-name token) and credential-like
    query values replaced by ``***``, whatever their length."""
    parts = _split_url(url)
    if parts is None:
        return url
    scheme, userinfo, host, path, tail = parts
    if userinfo:
        user, colon, _ = userinfo.partition(":")
        userinfo = f"{user}:{MASK}@" if colon else f"{MASK}@"

    def masked(section: str) -> str:
        return "&".join(f"{key}{sep}{MASK if sep and value and credential_name(unquote_plus(key)) else value}"
                        for key, sep, value in _pairs(section))

    query, hash_, fragment = tail.partition("#")
    out = scheme + userinfo + host + path
    if query:
        out += "?" + masked(query[1:])
    if hash_:
        out += "#" + masked(fragment)
    return out


def _flag_secret(argv: list[str], index: int) -> str | None:
    """The credential ``argv[index]`` gives, if it is one: ``--token=X``, ``TOKEN=X``,
    or the value after ``--token``."""
    arg = argv[index]
    name, sep, value = arg.partition("=")
    if sep and re.fullmatch(r"-{0,2}[A-Za-z][A-Za-z0-9_.-]*", name) and credential_name(name):
        return value
    if arg.startswith("-") and not sep and credential_name(arg) and index + 1 < len(argv):
        return argv[index + 1]
    return None


def argv_secrets(argv: Iterable[str]) -> list[str]:
    """Credentials on a command line: flag values (``--api-key X``, ``--token=X``),
    ``NAME=value`` with a credential-like name, and what URLs in it hold."""
    argv = [str(a) for a in argv]
    found: list[str] = []
    for index, arg in enumerate(argv):
        value = _flag_secret(argv, index)
        if value is not None and _secret_text(value):
            found.append(value)
        found.extend(url_secrets(arg))
    return found


def mask_argv(argv: Iterable[str]) -> list[str]:
    """``argv`` for display, its credentials (see :func:`argv_secrets`) as ``***``."""
    argv = [str(a) for a in argv]
    shown = list(argv)
    for index, arg in enumerate(argv):
        value = _flag_secret(argv, index)
        if value is not None and value:
            if value == arg.partition("=")[2] and "=" in arg:
                shown[index] = arg[: len(arg) - len(value)] + MASK
            elif index + 1 < len(argv):
                shown[index + 1] = MASK
        shown[index] = mask_url(shown[index])
    return shown


# --- the redactor ----------------------------------------------------------------------------


class Redactor:
    """Replaces every known secret with ``***`` in text and in JSON-like values."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str | None]) -> None:
        for secret in secrets:
            secret = (secret or "").strip()
            if len(secret) >= _MIN_MASKED and secret not in self._secrets:
                self._secrets.append(secret)
        # Longest first: a key that contains another is masked whole.
        self._secrets.sort(key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, text: str, *, cut_before: bool = False, cut_after: bool = False) -> str:
        """``text`` with every secret masked. ``cut_before``/``cut_after``: the text
        was cut out of a longer one there, so a secret may straddle that edge;
        the part of it inside (4 characters or more) is masked too."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if cut_before or cut_after:
            text = self._edges(text, cut_before, cut_after)
        return text

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where secrets are in ``text``, as (start, end) ranges: for a caller that masks
        text whose pieces live apart (a streamed answer, token by token, in many events)."""
        found = []
        for secret in self._secrets:
            start = text.find(secret)
            while start >= 0:
                found.append((start, start + len(secret)))
                start = text.find(secret, start + 1)
        return found

    def open_tail(self, text: str) -> int:
        """How many of the last characters of ``text`` could be the start of a
        secret (0: none): text streamed out piece by piece holds them back until
        the next piece, so no secret leaves in two halves."""
        best = 0
        for secret in self._secrets:
            for size in range(min(len(secret) - 1, len(text)), best, -1):
                if text.endswith(secret[:size]):
                    best = size
                    break
        return best

    def _edges(self, text: str, before: bool, after: bool) -> str:
        for secret in self._secrets:
            for size in range(len(secret) - 1, _MIN_MASKED - 1, -1):
                if before and text.startswith(secret[-size:]):
                    text = MASK + text[size:]
                    break
            for size in range(len(secret) - 1, _MIN_MASKED - 1, -1):
                if after and text.endswith(secret[:size]):
                    text = text[: len(text) - size] + MASK
                    break
        return text

    def clip(self, text: str, limit: int, *, tail: bool = False) -> str:
        """At most ``limit`` characters of ``text`` (its last ones with ``tail``),
        redacted before the cut: a secret is never cut in part."""
        text = self.text(text)
        return text[-limit:] if tail else text[:limit]

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value with secrets masked in every string, keys included.

        A loop with its own stack, not recursion: a value nested 100,000 deep
        is redacted like a flat one, in time linear in its size. A container
        met twice (shared, or a cycle) is copied once.
        """
        if not self._secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if not isinstance(value, (Mapping, list, tuple)):
            return value
        text = self.text
        containers = (Mapping, list, tuple)
        root: list[Any] = [None]
        copies: dict[int, Any] = {}
        stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]
        while stack:
            item, parent, slot = stack.pop()
            if id(item) in copies:
                parent[slot] = copies[id(item)]
                continue
            if isinstance(item, Mapping):
                copy: Any = {}
                pairs: Iterable[tuple[Any, Any]] = ((text(k) if isinstance(k, str) else k, v) for k, v in item.items())
            else:
                copy = [None] * len(item)
                pairs = enumerate(item)
            copies[id(item)] = parent[slot] = copy
            for key, child in pairs:
                if isinstance(child, str):
                    copy[key] = text(child)
                elif isinstance(child, containers):
                    copy[key] = None  # filled in when the stack reaches it
                    stack.append((child, copy, key))
                else:
                    copy[key] = child
        return root[0]


def run_secrets(model: Any, tools: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret a run can know: its model's key, api_base and params, the environment, its tools."""
    found: list[str | None] = [getattr(model, "api_key", None)]
    found.extend(url_secrets(getattr(model, "api_base", None)))
    found.extend(param_secrets(getattr(model, "params", None) or {}))
    found.extend(env_secrets(environ))
    for tool in (tools or {}).values():
        declared = getattr(tool, "secrets", None)
        if callable(declared):
            found.extend(declared())
    return [s for s in found if s]
