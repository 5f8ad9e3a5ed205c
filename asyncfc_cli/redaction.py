"""Secrets a run can know, and the one redactor every output goes through.

A run knows a secret when it holds it: the model's ``api_key``; any
credential in the model's ``params`` (header values, ``*key*``/``*token*``/
``*secret*``/``*password*`` entries); the environment variables LiteLLM and
tools read keys from (any variable whose name looks like a credential,
``OPENAI_API_KEY`` and friends); and what a tool source declares (a tool's
``secrets()``, e.g. an MCP server's header values or a command's credential
``env``).

Redaction happens before any text is cut: a key split by a cut would
otherwise leak in part. Every output boundary (trace events, progress lines,
errors on stderr, the answer, ``--json``) goes through :class:`Redactor`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"

# Names under which credentials live, in the environment and in params.
_CREDENTIAL_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE)", re.I)
# Shorter values are too likely to be ordinary text ("1", "true", a region name).
MIN_SECRET_CHARS = 8
_NOT_SECRET = {"true", "false", "none", "null", "enabled", "disabled"}


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
    return [v for k, v in environ.items() if _CREDENTIAL_NAME.search(k) and plausible(v)]


def param_secrets(params: Any, under_header: bool = False) -> list[str]:
    """Credentials inside LiteLLM params: every header value, and values under credential-like keys."""
    found: list[str] = []
    if isinstance(params, Mapping):
        for key, value in params.items():
            header = under_header or "header" in str(key).lower()
            if isinstance(value, str):
                if (header or _CREDENTIAL_NAME.search(str(key))) and plausible(value):
                    found.append(value)
            else:
                found.extend(param_secrets(value, header))
    elif isinstance(params, (list, tuple)):
        for value in params:
            found.extend(param_secrets(value, under_header))
    return found


class Redactor:
    """Replaces every known secret with ``***`` in text and in JSON-like values."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str | None]) -> None:
        for secret in secrets:
            secret = (secret or "").strip()
            if len(secret) >= 4 and secret not in self._secrets:
                self._secrets.append(secret)
        # Longest first: a key that contains another is masked whole.
        self._secrets.sort(key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value with secrets masked in every string, keys included."""
        if not self._secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.value(k) if isinstance(k, str) else k: self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value


def run_secrets(model: Any, tools: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret a run can know: its model's key and params, the environment, its tools."""
    found: list[str | None] = [getattr(model, "api_key", None)]
    found.extend(param_secrets(getattr(model, "params", None) or {}))
    found.extend(env_secrets(environ))
    for tool in (tools or {}).values():
        declared = getattr(tool, "secrets", None)
        if callable(declared):
            found.extend(declared())
    return [s for s in found if s]
