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

Tool calls are assembled incrementally (:class:`ToolCallAssembler`): a
call's arguments are complete when they parse as a JSON object, a higher
``tool_calls[].index`` or content begins, or a ``finish_reason`` arrives,
and :class:`ToolCallReady` is emitted at that moment, before the stream
ends, so the async executor can start the tool while the model decodes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from asyncfc_cli.redaction import Redactor, run_secrets

# Offline by default: without this, importing litellm tries to download its
# cost map and leaves a retrying thread that prints warnings.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


# --- events a model stream produces -------------------------------------------------


@dataclass(frozen=True)
class FirstToken:
    """The first content or tool-call byte arrived (time to first token ends)."""


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Decoding:
    """Progress: streamed chunks so far (about one token each), a few times a second."""

    chunks: int


@dataclass(frozen=True)
class ToolCallReady:
    """A streamed tool call whose arguments are complete."""

    index: int
    id: str
    name: str
    arguments: str  # raw JSON text as the model wrote it; may be malformed


@dataclass(frozen=True)
class StreamDone:
    finish_reason: str | None
    content: str
    tool_calls: list[ToolCallReady]
    prompt_tokens: int
    completion_tokens: int


ModelEvent = FirstToken | TextDelta | Decoding | ToolCallReady | StreamDone


PROGRESS_INTERVAL = 0.25  # seconds between Decoding events: enough for a 10 Hz display


class ModelError(Exception):
    """The model endpoint failed (after retries, where retrying made sense)."""


class ModelClient(Protocol):
    """What the agent loop needs from a model: one streamed request."""

    def stream(self, messages: list[dict], tools: list[dict]) -> AsyncIterator[ModelEvent]: ...


# --- streamed tool-call assembly ----------------------------------------------------


@dataclass
class _Partial:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ToolCallAssembler:
    """Rebuilds tool calls from OpenAI-style delta fragments.

    ``id`` and ``name`` come only on a call's first fragment; later fragments
    carry ``index`` and argument text. A call is complete, and reported at
    once, at the first of:

    - its arguments parse as a JSON object (nothing valid can follow it);
    - a higher index begins, or content arrives after it;
    - the finish reason arrives.

    The first rule matters when a model thinks between calls: the index rule
    alone would hold a finished call until the next call's header, after the
    thinking, and the tool would start that much later.
    """

    def __init__(self) -> None:
        self._open: dict[int, _Partial] = {}
        self._closed: set[int] = set()
        self._alias: dict[int, int] = {}  # index as sent -> slot, for reused indices
        self.done: list[ToolCallReady] = []

    def feed(self, fragments: list[Any], text: str | None = None) -> list[ToolCallReady]:
        ready: list[ToolCallReady] = []
        if text:
            ready.extend(self.finish())
        for frag in fragments:
            index = _get(frag, "index")
            if index is None:
                index = max(self._open, default=len(self.done))
            index = self._alias.get(index, index)
            new_id = _get(frag, "id")
            taken = index in self._closed or (index in self._open and self._open[index].id not in ("", new_id))
            if new_id and taken:
                # A new call reusing an index (some servers send none, and
                # LiteLLM fills in 0 for all): give it the next free slot.
                slot = max([*self._closed, *self._open]) + 1
                self._alias[_get(frag, "index") if _get(frag, "index") is not None else index] = slot
                index = slot
            elif index in self._closed:
                continue  # e.g. whitespace after a complete object
            for lower in sorted(i for i in self._open if i < index):
                ready.append(self._close(lower))
            part = self._open.setdefault(index, _Partial())
            if _get(frag, "id"):
                part.id = _get(frag, "id")
            fn = _get(frag, "function")
            if fn is not None:
                if _get(fn, "name"):
                    part.name = _get(fn, "name")
                piece = _get(fn, "arguments")
                if piece:
                    part.arguments.append(piece)
                    if piece.rstrip().endswith("}") and part.name and _is_object("".join(part.arguments)):
                        ready.append(self._close(index))
        return ready

    def finish(self) -> list[ToolCallReady]:
        return [self._close(i) for i in sorted(self._open)]

    def _close(self, index: int) -> ToolCallReady:
        part = self._open.pop(index)
        self._closed.add(index)
        call = ToolCallReady(
            index=index,
            id=part.id or f"call_{index}",
            name=part.name,
            arguments="".join(part.arguments),
        )
        self.done.append(call)
        return call


def _is_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


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
            _forget_litellm_clients()
            loop.close()


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
    """Import LiteLLM lazily (it takes seconds) with stdout kept clean."""
    import litellm

    litellm.suppress_debug_info = True
    litellm.drop_params = True
    litellm.telemetry = False
    return litellm


# --- LiteLLM client ------------------------------------------------------------------


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


def is_transient(exc: BaseException) -> bool:
    return type(exc).__name__ in _TRANSIENT or isinstance(exc, (ConnectionError, TimeoutError))


class LiteLLMClient:
    """Streams chat completions through LiteLLM on an :class:`AsyncioThread`."""

    def __init__(
        self,
        config: ModelConfig,
        loop_thread: AsyncioThread,
        on_retry: Callable[[int, str], None] | None = None,
        redactor: Redactor | None = None,
    ) -> None:
        self.config = config
        self._loop_thread = loop_thread
        self._on_retry = on_retry
        # The run passes its own (every secret it knows); alone, the client
        # still knows its key, its params' credentials and the environment's.
        self.redactor = redactor or Redactor(run_secrets(config))
        self._litellm = import_litellm()

    async def stream(self, messages: list[dict], tools: list[dict]) -> AsyncIterator[ModelEvent]:
        attempt = 0
        while True:
            emitted_calls = False
            try:
                async for event in self._stream_once(messages, tools):
                    if isinstance(event, ToolCallReady):
                        emitted_calls = True
                    yield event
                return
            except ModelError:
                raise
            except Exception as exc:
                # Tool calls already handed out may be running; replaying the
                # request would issue them twice, so only a clean failure retries.
                if emitted_calls or not is_transient(exc) or attempt >= self.config.retries:
                    raise ModelError(describe_error(exc, self.redactor)) from None
                attempt += 1
                delay = self.config.backoff * (2 ** (attempt - 1)) * (1 + random.random() / 4)
                if self._on_retry:
                    self._on_retry(attempt, describe_error(exc, self.redactor))
                await trio.sleep(delay)

    async def _stream_once(self, messages: list[dict], tools: list[dict]) -> AsyncIterator[ModelEvent]:
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

        async def pump() -> None:
            try:
                response = await litellm.acompletion(**kwargs)
                async for chunk in response:
                    hand_over("chunk", chunk)
                hand_over("end", None)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # crosses to trio, re-raised there
                hand_over("error", exc)

        future = asyncio.run_coroutine_threadsafe(pump(), loop)
        assembler = ToolCallAssembler()
        content: list[str] = []
        finish_reason: str | None = None
        usage: Any = None
        first = True
        chunks, next_progress = 0, trio.current_time() + PROGRESS_INTERVAL
        try:
            async with receive:
                async for kind, value in receive:
                    if kind == "error":
                        raise value
                    if kind == "end":
                        break
                    chunk = value
                    if _get(chunk, "usage"):
                        usage = _get(chunk, "usage")
                    for choice in _get(chunk, "choices") or []:
                        delta = _get(choice, "delta")
                        text = _get(delta, "content") if delta is not None else None
                        fragments = (_get(delta, "tool_calls") if delta is not None else None) or []
                        thinking = _get(delta, "reasoning_content") if delta is not None else None
                        if text or fragments or thinking:
                            chunks += 1
                            if first:
                                first = False
                                yield FirstToken()
                            elif trio.current_time() >= next_progress:
                                next_progress = trio.current_time() + PROGRESS_INTERVAL
                                yield Decoding(chunks)
                        if text:
                            content.append(text)
                            yield TextDelta(text)
                        for call in assembler.feed(fragments, text):
                            yield call
                        if _get(choice, "finish_reason"):
                            finish_reason = _get(choice, "finish_reason")
                            for call in assembler.finish():
                                yield call
        finally:
            if not future.done():
                loop.call_soon_threadsafe(future.cancel)
        for call in assembler.finish():
            yield call
        yield StreamDone(
            finish_reason=finish_reason,
            content="".join(content),
            tool_calls=list(assembler.done),
            prompt_tokens=int(_get(usage, "prompt_tokens") or 0) if usage else 0,
            completion_tokens=int(_get(usage, "completion_tokens") or 0) if usage else 0,
        )


def describe_error(exc: BaseException, redactor: Redactor) -> str:
    """A one-line message for a model failure, with every secret removed
    before it is cut (a key across the cut would leak in part)."""
    text = redactor.text(" ".join(f"{type(exc).__name__}: {exc}".split()))
    if len(text) > 400:
        text = text[:400] + "..."
    return text
