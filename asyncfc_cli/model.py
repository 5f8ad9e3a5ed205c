"""The model bridge: LiteLLM streaming, driven from trio.

``litellm.acompletion`` is asyncio code and does not run under trio. Every
request therefore runs on one asyncio event loop that lives in a dedicated
thread for the duration of a run (:class:`AsyncioThread`); chunks cross into
trio through a memory channel. Cancelling the trio side cancels the asyncio
task, which closes the HTTP connection even when the stream is stalled, for
any provider.

Measured on this project's 2-core machine against the local simulated
server with ``benchmarks/bridge.py`` (a 1,500-chunk stream, median of 5):

- plain ``litellm.acompletion`` under ``asyncio.run``: 1.12 ms per chunk;
  through this bridge into trio: 1.66 ms per chunk, so the bridge (thread
  hand-off, trio scheduling, tool-call assembly) adds ~0.5 ms per chunk;
- a stalled stream cancelled from trio: the scope exits at once and the
  client socket has left ESTABLISHED ~12 ms later (the HTTP connection is
  really closed, so the server stops generating);
- threads: the same count before and after a run (the loop thread is joined).

The alternatives (sync ``completion`` in ``trio.to_thread``, trio-asyncio)
were worse: a blocked read on a stalled stream does not wake on close, and
trio-asyncio needs private patches (see DESIGN.md, "Measured facts").

Chunks are decoded by :class:`~asyncfc_cli.decoding.StreamDecoder`, the
one decoder every path shares: a call's arguments are complete when they
close a JSON object, a higher ``tool_calls[].index`` or content begins, or a
``finish_reason`` arrives, and :class:`ToolCallReady` is emitted at that
moment, before the stream ends, so the async executor can start the tool
while the model decodes.

``stream_timeout`` bounds silence, not bytes: a stream that sends only empty
deltas or SSE comments keeps the HTTP read timeout happy forever, so the
bridge also ends a request when no chunk has carried anything for that long
(:class:`StreamStalled`, retried like any timeout).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from asyncfc_cli.decoding import (  # noqa: F401  (the events are this module's interface too)
    PROGRESS_INTERVAL,
    Decoding,
    FirstToken,
    ModelEvent,
    StreamDecoder,
    StreamDone,
    TextDelta,
    ToolCallAssembler,
    ToolCallReady,
)
from asyncfc_cli.model_reach import keep_off_proxies, unreachable
from asyncfc_cli.redaction import Redactor, run_secrets

# Offline by default: without this, importing litellm tries to download its
# cost map and leaves a retrying thread that prints warnings.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


class ModelError(Exception):
    """The model endpoint failed (after retries, where retrying made sense).

    ``fix`` is what the user can do about it, when that is known (a server that
    cannot be reached: start it, or correct ``api_base``); the CLI prints it as
    the fix line.
    """

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


class CredentialsError(ModelError):
    """The endpoint refused the key, or there was none: retrying cannot help."""


class StreamStalled(TimeoutError):
    """Nothing but empty deltas or keep-alives for ``stream_timeout`` seconds.

    ``answered`` is False when nothing at all came back (no response, not even
    an empty chunk): the server did not answer, which :func:`unreachable` says
    naming its address.
    """

    def __init__(self, message: str, answered: bool = True) -> None:
        super().__init__(message)
        self.answered = answered


class StreamTruncated(ConnectionError):
    """The stream ended without a finish reason: the connection was cut."""


class ModelClient(Protocol):
    """What the agent loop needs from a model: one streamed request."""

    def stream(self, messages: list[dict], tools: list[dict]) -> AsyncIterator[ModelEvent]: ...


# --- the asyncio loop thread ---------------------------------------------------------


class AsyncioThread:
    """One asyncio event loop running in its own thread, for the life of a run.

    Used as a context manager; leaving it stops the loop, cancels what is
    still pending on it, and joins the thread.
    """

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def __enter__(self) -> AsyncioThread:
        self._thread = threading.Thread(target=self._main, name="asyncfc-asyncio", daemon=True)
        self._thread.start()
        self._ready.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self.loop
        if loop is not None and self._thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join()

    def _main(self) -> None:
        # The loop is created inside the thread that runs it: LiteLLM's
        # cached HTTP clients bind to the loop that first used them.
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self.loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(_close_litellm_clients())
            _forget_litellm_clients()
            loop.close()


async def _close_litellm_clients() -> None:
    # Connections are kept alive between the requests of a run; when the run's
    # loop ends, so do they (a server would otherwise keep a thread, and the
    # process a socket, for each until they time out).
    litellm = sys.modules.get("litellm")
    if litellm is None:
        return
    try:
        from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients

        await close_litellm_async_clients()
    except Exception:  # a client we cannot close costs a socket until the process ends
        pass


def _forget_litellm_clients() -> None:
    # LiteLLM caches async HTTP clients process-wide; a client bound to a
    # closed loop fails the next run in the same process (tests, benches).
    import sys

    litellm = sys.modules.get("litellm")
    cache = getattr(litellm, "in_memory_llm_clients_cache", None) if litellm else None
    if cache is not None:
        try:
            cache.flush_cache()
        except Exception:  # a cache we cannot flush only costs a reconnect
            pass


def start_litellm_import() -> None:
    """Begin importing LiteLLM in a background thread, so its seconds of import
    overlap the spec, the tools' imports and the simulated server's start.

    A later :func:`import_litellm` waits for it (the module's import lock).
    The thread is a daemon on purpose: a run that stops early (a spec error)
    must not wait seconds for an import it will never use, and the CLI ends
    with ``os._exit`` (see ``cli.main``), which does not wait for it either.
    """
    import threading

    if "litellm" in sys.modules:
        return
    threading.Thread(target=_import_quietly, name="asyncfc-import-litellm", daemon=True).start()


def _import_quietly() -> None:
    try:
        import_litellm()
    except BaseException:  # the run's own import reports it
        pass


def import_litellm() -> Any:
    """Import LiteLLM lazily (it takes seconds) with stdout and stderr kept clean.

    LiteLLM logs its own trouble (e.g. a traceback when it cannot rebuild a
    hostile stream for its usage logging) on stderr; asyncfc reports every
    failure that matters itself, so LiteLLM's loggers are silenced.
    """
    import logging

    import litellm

    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.CRITICAL + 1)
        logger.propagate = False
    litellm.suppress_debug_info = True
    litellm.drop_params = True
    litellm.telemetry = False
    return litellm


# --- LiteLLM client ------------------------------------------------------------------

def encodable(value: Any) -> Any:
    """``value`` with every lone surrogate replaced by U+FFFD, so it encodes as
    UTF-8 (:func:`asyncfc_cli.output.without_surrogates`; any depth)."""
    from asyncfc_cli.output import without_surrogates

    return without_surrogates(value)


@dataclass
class ModelConfig:
    """Everything LiteLLM needs for one model; ``api_key`` never leaves here."""

    model: str
    api_base: str | None = None
    api_key: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    retries: int = 3
    backoff: float = 0.5
    stream_timeout: float = 120.0
    # Anthropic's fine-grained tool streaming: mark every tool
    # ``eager_input_streaming`` so its arguments stream without server buffering.
    eager_input_streaming: bool = False
    # Where the key comes from, for the fix line of a credentials error
    # (e.g. "export OPENAI_API_KEY=..."); never the key itself.
    key_hint: str = ""
    # The [models] key the model was chosen by ("" for a --model string), for fix lines.
    alias: str = ""

    def __repr__(self) -> str:  # keeps keys out of tracebacks and logs
        return f"ModelConfig(model={self.model!r}, api_base={self.api_base!r})"


_TRANSIENT = (
    "MidStreamFallbackError",  # LiteLLM: the stream ended before a finish_reason
    "RateLimitError",
    "APIConnectionError",
    "InternalServerError",
    "ServiceUnavailableError",
    "Timeout",
    "APIError",
    "BadGatewayError",
)

# How providers (through LiteLLM) say the key is missing or wrong. A missing
# key is not always an AuthenticationError: LiteLLM reports OpenAI's as an
# InternalServerError and Gemini's as an APIConnectionError, which would
# otherwise be retried; Gemini answers a bad key with a 400.
_CREDENTIAL_CLASSES = ("AuthenticationError", "PermissionDeniedError")
_CREDENTIAL_MESSAGES = (
    "missing credentials", "api_key client option must be set", "missing anthropic api key",
    "missing gemini api key", "api key not valid", "api_key_invalid", "invalid x-api-key",
    "incorrect api key", "invalid api key", "invalid_api_key",
)


def is_transient(exc: BaseException) -> bool:
    if is_credentials_error(exc):
        return False
    return type(exc).__name__ in _TRANSIENT or isinstance(exc, (ConnectionError, TimeoutError))


def is_credentials_error(exc: BaseException) -> bool:
    """The endpoint refused the key, or the client had none to send."""
    if type(exc).__name__ in _CREDENTIAL_CLASSES:
        return True
    text = str(exc).lower()
    return any(marker in text for marker in _CREDENTIAL_MESSAGES)


class LiteLLMClient:
    """Streams chat completions through LiteLLM on an :class:`AsyncioThread`.

    ``credentials_failure`` holds the message of a request that failed on its
    key (missing or refused): the run stops at once, and the CLI exits 2 with
    a fix line instead of 1.
    """

    def __init__(
        self,
        config: ModelConfig,
        loop_thread: AsyncioThread,
        on_retry: Callable[[int, str], None] | None = None,
        redactor: Redactor | None = None,
        gate: Any = None,
        cassette: Any = None,
    ) -> None:
        self.config = config
        # The run's cassette session (asyncfc_cli.cassette.session): asked before every attempt.
        self._cassette = cassette
        # Limits shared with other runs of the same model (asyncfc_cli.limits.RequestGate):
        # every attempt, retries included, goes through it and it sees a 429 on the way out.
        self._gate = gate
        self._loop_thread = loop_thread
        self._on_retry = on_retry
        # The run passes its own (every secret it knows); alone, the client
        # still knows its key, its params' credentials and the environment's.
        self.redactor = redactor or Redactor(run_secrets(config))
        self._litellm = import_litellm()
        self.credentials_failure: str | None = None
        keep_off_proxies(config.api_base)  # before the run's first request makes its HTTP client

    async def stream(self, messages: list[dict], tools: list[dict]) -> AsyncIterator[ModelEvent]:
        attempt = 0
        # Model output is untrusted: a lone surrogate it wrote (in a tool name,
        # an argument, an answer) cannot be encoded into the next request.
        # Nor can tool schemas an MCP server or an environment variable wrote:
        # every request passes here, so nothing reaches one unencodable.
        messages, tools = encodable(messages), encodable(tools)
        if self.config.eager_input_streaming:
            tools = [{**tool, "eager_input_streaming": True} for tool in tools]
        while True:
            emitted_calls = False
            state = _Attempt()
            try:
                async with self._gate.attempt() if self._gate is not None else _no_gate():
                    async for event in self._stream_once(messages, tools, state):
                        if isinstance(event, ToolCallReady):
                            emitted_calls = True
                        yield event
                return
            except ModelError:
                raise
            except Exception as exc:
                if is_credentials_error(exc):
                    self.credentials_failure = describe_error(exc, self.redactor)
                    raise CredentialsError(self.credentials_failure) from None
                # A server that answered and then failed was reached: its error says what happened.
                failure = None if state.answered else unreachable(exc, self.config)
                if failure is not None:
                    message, fix = failure.message(self.redactor), failure.fix(self.config)
                else:
                    message, fix = describe_error(exc, self.redactor), None
                # Tool calls already handed out may be running; replaying the
                # request would issue them twice, so only a clean failure retries.
                # Nor is a failure retried that a second try cannot change: a
                # server on this machine that refuses the connection is not
                # running (retrying cost seconds of nothing), a name that does not exist.
                if (emitted_calls or not is_transient(exc) or attempt >= self.config.retries
                        or (failure is not None and failure.permanent)):
                    raise ModelError(message, fix) from None
                attempt += 1
                delay = self.config.backoff * (2 ** (attempt - 1)) * (1 + random.random() / 4)
                if self._on_retry:
                    self._on_retry(attempt, message)
                await trio.sleep(delay)

    async def _stream_once(self, messages: list[dict], tools: list[dict],
                           state: _Attempt | None = None) -> AsyncIterator[ModelEvent]:
        loop = self._loop_thread.loop
        assert loop is not None, "the asyncio thread is not running"
        token = trio.lowlevel.current_trio_token()
        send, receive = trio.open_memory_channel[tuple[str, Any]](float("inf"))

        def deliver(item: tuple[str, Any]) -> None:
            # Runs in trio. The reader may be gone (cancelled, stream closed):
            # an exception here would crash trio itself, so the item is dropped.
            try:
                send.send_nowait(item)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        def hand_over(kind: str, value: Any) -> None:
            # Runs in the asyncio thread; never blocks it.
            try:
                token.run_sync_soon(deliver, (kind, value))
            except trio.RunFinishedError:
                pass

        kwargs: dict[str, Any] = dict(self.config.params)
        kwargs.update(
            model=self.config.model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            timeout=self.config.stream_timeout,
            num_retries=0,
        )
        if tools:
            kwargs["tools"] = tools
        if self.config.api_base:
            kwargs["api_base"] = self.config.api_base
        if self.config.api_key:
            kwargs["api_key"] = self.config.api_key
        litellm = self._litellm
        # Recording: a tap for this attempt's HTTP response; replaying: the check
        # against the cassette (a divergence raises here, before anything is sent).
        tap = self._cassette.request(messages, tools) if self._cassette is not None else None

        async def pump() -> None:
            if tap is not None:
                from asyncfc_cli.cassette.capture import CURRENT

                CURRENT.set(tap)  # this task's context only: the request's own
            try:
                response = await litellm.acompletion(**kwargs)
                async for chunk in response:
                    hand_over("chunk", chunk)
                hand_over("end", None)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # crosses to trio, re-raised there
                hand_over("error", exc)
            finally:
                if tap is not None:
                    tap.end("cut" if tap.claimed else "failed")  # a no-op if the body already ended it

        future = asyncio.run_coroutine_threadsafe(pump(), loop)
        decoder = StreamDecoder(clock=trio.current_time)
        silence = self.config.stream_timeout
        deadline = trio.current_time() + silence
        answered = False
        try:
            async with receive:
                while True:
                    # Only the wait is under the deadline: yielding inside a
                    # cancel scope from an async generator is not safe in trio.
                    item: tuple[str, Any] | None = None
                    with trio.move_on_at(deadline):
                        item = await receive.receive()
                    if item is None:
                        raise StreamStalled(f"no tokens for {silence:g}s (request_timeout): the stream "
                                            "sent nothing, or only empty chunks or keep-alives", answered)
                    answered = True
                    kind, value = item
                    if kind == "error":
                        raise value
                    if kind == "end":
                        break
                    if state is not None:
                        state.answered = True
                    for event in decoder.feed(value):
                        yield event
                    if decoder.progressed:
                        deadline = trio.current_time() + silence
        finally:
            if not future.done():
                loop.call_soon_threadsafe(future.cancel)
        if decoder.finish_reason is None or not decoder.carried:
            # LiteLLM raises for most cut streams, but makes up a "stop" for
            # one cut before its first event (an empty body): that is no answer.
            raise StreamTruncated("the stream ended without an answer or a finish reason (the connection was cut?)")
        for event in decoder.end():
            yield event


@dataclass
class _Attempt:
    answered: bool = False  # a chunk came back: the server was reached


@asynccontextmanager
async def _no_gate() -> AsyncIterator[None]:
    yield


def describe_error(exc: BaseException, redactor: Redactor) -> str:
    """A one-line message for a model failure, with every secret removed
    before it is cut (a key across the cut would leak in part), and without
    the reprs of Python objects an HTTP client puts in its messages
    (aiohttp's ``ssl:<ssl.SSLContext object at 0x...>``)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    text = _SSL_REPR.sub("", text)
    text = _OBJECT_REPR.sub(lambda m: m.group(1), text)
    text = redactor.text(text)
    if len(text) > 400:
        text = text[:400] + "..."
    return text


# What aiohttp adds to "Cannot connect to host H:P": the TLS setting it used,
# as a repr (an object's address means nothing to a user). Linear: no
# quantifier here can backtrack over text another one has read.
_SSL_REPR = re.compile(r" ssl:(?:default|None|True|False|<[^<>]{0,200}>)")
_OBJECT_REPR = re.compile(r"<([A-Za-z_][\w.]{0,100}) object at 0x[0-9a-fA-F]{1,16}>")
