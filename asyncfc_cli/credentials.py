"""Which key a run's model needs, decided before the run starts.

- A model with ``api_key`` or ``api_key_env`` uses that key.
- A hosted model whose key LiteLLM reads from the environment
  (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY``, ...) and
  finds none fails at once: exit 2, one message naming the variable, and
  ``--model sim`` for trying asyncfc offline. Nothing is sent, nothing is
  retried.
- A model with an ``api_base`` (a local OpenAI-compatible server: Ollama,
  llama.cpp, vLLM) and no key gets a placeholder, because LiteLLM's clients
  refuse to send a request without one; a server that wants a real key
  refuses it, and that refusal is the same clear error.
- Providers that authenticate otherwise (AWS, Google Cloud credentials,
  Azure's key + base + version) are left to LiteLLM; a refusal at run time is
  reported the same way, once.

LiteLLM's import takes seconds, so :func:`precheck` decides the common case
without it: a model written ``provider/model`` for a provider of
:data:`KNOWN_KEYS` whose variables are all unset gets the same error at
once. Everything else (bare model names, other providers) still goes
through LiteLLM in :func:`resolve`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from asyncfc_cli.spec import ResolvedModel, SpecError

# Sent as the key to a server given by api_base when no key is configured;
# a server that ignores auth (the usual local one) never looks at it.
KEYLESS = "asyncfc-no-key"
SIM_KEY = "sim-no-key"

# Key variables by LiteLLM provider, for fix lines when LiteLLM found a key
# (it only names the ones that are missing).
_KEY_VARIABLES = {
    "gemini": "GEMINI_API_KEY", "together_ai": "TOGETHERAI_API_KEY", "azure": "AZURE_API_KEY",
    "bedrock": "AWS_ACCESS_KEY_ID", "vertex_ai": "GOOGLE_APPLICATION_CREDENTIALS",
}


# For providers named by prefix: the variables any one of which satisfies
# LiteLLM's validate_environment, and the ones it then reports missing, as
# litellm.utils.validate_environment has them (tests/test_credentials.py
# checks each row against the installed LiteLLM).
KNOWN_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "openai": (("OPENAI_API_KEY",), ("OPENAI_API_KEY",)),
    "anthropic": (("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"), ("ANTHROPIC_API_KEY",)),
    "gemini": (("GOOGLE_API_KEY", "GEMINI_API_KEY"), ("GOOGLE_API_KEY", "GEMINI_API_KEY")),
    "fireworks_ai": (("FIREWORKS_AI_API_KEY", "FIREWORKS_API_KEY", "FIREWORKSAI_API_KEY", "FIREWORKS_AI_TOKEN"),
                     ("FIREWORKS_AI_API_KEY",)),
    **{provider: ((name,), (name,)) for provider, name in (
        ("mistral", "MISTRAL_API_KEY"), ("groq", "GROQ_API_KEY"), ("deepseek", "DEEPSEEK_API_KEY"),
        ("together_ai", "TOGETHERAI_API_KEY"), ("openrouter", "OPENROUTER_API_KEY"), ("cohere", "COHERE_API_KEY"),
        ("xai", "XAI_API_KEY"), ("perplexity", "PERPLEXITYAI_API_KEY"), ("deepinfra", "DEEPINFRA_API_KEY"),
        ("cerebras", "CEREBRAS_API_KEY"), ("huggingface", "HUGGINGFACE_API_KEY"), ("replicate", "REPLICATE_API_KEY"),
        ("ai21", "AI21_API_KEY"), ("nvidia_nim", "NVIDIA_NIM_API_KEY"), ("codestral", "CODESTRAL_API_KEY"),
        ("moonshot", "MOONSHOT_API_KEY"), ("novita", "NOVITA_API_KEY"), ("nebius", "NEBIUS_API_KEY"),
        ("volcengine", "VOLCENGINE_API_KEY"), ("voyage", "VOYAGE_API_KEY"))},
}


@dataclass(frozen=True)
class Credentials:
    api_key: str | None  # what to pass to LiteLLM (None: LiteLLM reads its own variable)
    hint: str  # where the key comes from, for a fix line: a variable name or a spec key
    provider: str  # LiteLLM's provider name for the model ("openai", "anthropic", ...)


def provider_of(model: str, api_base: str | None, litellm: Any) -> str:
    """LiteLLM's provider for ``model``; SpecError (exit 2) if LiteLLM cannot tell."""
    try:
        return str(litellm.get_llm_provider(model=model, api_base=api_base)[1])
    except Exception:  # LiteLLM raises its BadRequestError, with a banner we do not want
        raise SpecError(
            None, "model", f"LiteLLM cannot tell which provider serves {model!r}",
            "write it as provider/model (openai/gpt-4o-mini, anthropic/..., gemini/..., ollama/...), "
            "or try asyncfc offline with --model sim") from None


def _missing_key(model: ResolvedModel, missing: list[str]) -> SpecError:
    return SpecError(
        None, "model", f"{model.model} needs an API key: {' or '.join(missing)} is not set",
        f"export {missing[-1]}=<your key> (or name the variable with api_key_env in a [models] entry); "
        "to try asyncfc without a key, run with --model sim")


@dataclass(frozen=True)
class KeyNeed:
    """Whether a run of a model needs a key from the environment, decided
    without LiteLLM: what ``asyncfc run`` refuses to start without and what
    ``asyncfc agents`` / ``models`` say, from one decision.

    ``kind``: ``"sim"`` (none), ``"spec"`` (the model's own api_key),
    ``"server"`` (an api_base and no key: a placeholder is sent, the server
    decides), ``"provider"`` (one of ``accepted`` must be set, else the run
    refuses; ``report`` names what to set) or ``"litellm"`` (a provider this
    table does not know: LiteLLM decides when the run resolves it).
    """

    kind: str
    accepted: tuple[str, ...] = ()
    report: tuple[str, ...] = ()
    present: bool | None = None  # for "provider": whether one of ``accepted`` is set (even empty, as LiteLLM counts it)


def key_need(model: str, api_key: str | None, api_base: str | None,
             env: Any = None) -> KeyNeed:
    """The decision for a model string with its api_key and api_base as a run
    has them: after ``${VAR}`` substitution, an empty value being none."""
    env = os.environ if env is None else env
    if model == "sim" or model.startswith("sim:"):
        return KeyNeed("sim")
    if api_key:
        return KeyNeed("spec")
    if api_base:
        return KeyNeed("server")
    provider, slash, rest = model.partition("/")
    known = KNOWN_KEYS.get(provider) if slash and rest else None
    if known is None:
        return KeyNeed("litellm")
    accepted, report = known
    return KeyNeed("provider", accepted, report, any(name in env for name in accepted))


def precheck(model: ResolvedModel) -> None:
    """:func:`resolve`'s missing-key error, decided without importing LiteLLM, for a
    ``provider/model`` of :data:`KNOWN_KEYS`; anything else passes, for resolve to decide."""
    need = key_need(model.model, model.api_key, model.api_base)
    if need.kind == "provider" and not need.present:
        raise _missing_key(model, list(need.report))


def resolve(model: ResolvedModel, litellm: Any) -> Credentials:
    """The key (or placeholder) a run passes, or SpecError when a needed key is missing.

    Decided once per resolved model (kept on it): the CLI decides it before the
    run to fail early, the run's endpoint then uses that decision."""
    if model.credentials is None:
        model.credentials = _decide(model, litellm)
    return model.credentials


def _decide(model: ResolvedModel, litellm: Any) -> Credentials:
    if model.is_sim:
        return Credentials(SIM_KEY, "", "asyncfc.sim")
    provider = provider_of(model.model, model.api_base, litellm)
    if model.api_key:
        hint = model.key_env or f"api_key in [models.{model.name}]"
        return Credentials(model.api_key, hint, provider)
    try:
        needed = litellm.validate_environment(model=model.model, api_base=model.api_base)
    except Exception:  # a provider LiteLLM cannot check: its own error, at the first request
        needed = {"keys_in_environment": True, "missing_keys": []}
    missing = [name for name in needed.get("missing_keys") or [] if name.endswith(("_API_KEY", "_AUTH_TOKEN"))]
    hint = " or ".join(missing) or _KEY_VARIABLES.get(provider, f"{provider.upper()}_API_KEY")
    if not missing or needed.get("keys_in_environment"):
        return Credentials(None, hint, provider)
    if model.api_base:
        return Credentials(KEYLESS, hint, provider)
    if len(missing) < len(needed.get("missing_keys") or []):
        # Something other than a key is missing too (Azure's base and version):
        # LiteLLM's own message says what, at the first request.
        return Credentials(None, hint, provider)
    raise _missing_key(model, missing)


def fix_line(hint: str) -> str:
    """How to fix a key the endpoint refused (or never got)."""
    if not hint:
        return "check the model's api_key / api_key_env in agents.toml; to try asyncfc offline, run with --model sim"
    if " " in hint or "[" in hint:
        return f"check the {hint}; to try asyncfc offline, run with --model sim"
    return f"export {hint.split(' or ')[-1]}=<a valid key> (or set api_key_env in a [models] entry); " \
           "to try asyncfc offline, run with --model sim"
