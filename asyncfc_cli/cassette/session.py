"""A run's cassette: recording it, or replaying it in place of the model.

The CLI (``asyncfc run``, ``asyncfc batch``) turns its options into a
:class:`CassettePlan` per run, checked before anything starts (a cassette
that cannot be read, or was recorded in another mode or with another
model, is exit 2 at once). The run then opens its session with its own
redactor (:meth:`CassettePlan.start`): a :class:`Recording` or a
:class:`Replaying`, both asked by the model bridge before every request
attempt (:meth:`request`), and owned by that run alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from asyncfc_cli.cassette.format import VERSION, Cassette, CassetteError, CassetteWriter, read_cassette
from asyncfc_cli.cassette.match import difference, summarize
from asyncfc_cli.model import ModelError

SPEEDS = ("recorded", "instant")
MATCHES = ("request", "sequence")
RERECORD = "re-record the cassette: asyncfc run TASK --record FILE"


class Diverged(ModelError):
    """A request that does not match the cassette's next one: the run stops, exit 2."""


def parse_speed(text: str) -> float:
    """``--replay-speed`` as the factor every recorded time is multiplied by."""
    if text == "recorded":
        return 1.0
    if text == "instant":
        return 0.0
    try:
        speed = float(text)
    except ValueError:
        speed = math.nan
    if not math.isfinite(speed) or speed <= 0:
        raise CassetteError(f"--replay-speed {text!r} is not recorded, instant or a positive number",
                            "use --replay-speed recorded, instant, or a factor such as 2 (twice as fast)")
    return 1.0 / speed


def wire_format(spec: Any) -> tuple[str, str, str]:
    """(wire format, LiteLLM model string, provider) of the run's model; a
    CassetteError for a provider whose format asyncfc cannot serve back."""
    from asyncfc_cli.runner import model_identity

    m = spec.model
    identity = model_identity(spec)
    if m.is_sim:
        protocol = m.sim_protocol or (spec.sim_plan.protocol if spec.sim_plan is not None else "openai")
        return protocol, identity["litellm_model"], identity["provider"]
    provider = identity["provider"]
    if m.model.startswith("openai/responses/"):
        return "responses", m.model, provider
    if provider in ("anthropic", "gemini"):
        return provider, m.model, provider
    from asyncfc_cli.model import import_litellm

    compatible = getattr(import_litellm(), "openai_compatible_providers", ())
    if provider in ("openai", "custom_openai") or provider in compatible:
        return "openai", m.model, provider
    raise CassetteError(f"cannot record {m.model}: its provider ({provider or 'unknown'}) streams in a format "
                        "a cassette cannot replay",
                        "record a model of an OpenAI-compatible server or provider, anthropic/..., gemini/... "
                        "or openai/responses/...")


@dataclass
class CassettePlan:
    """What one run does with a cassette, checked before the run starts."""

    record: Path | None = None
    replay: Cassette | None = None
    scale: float = 1.0
    match: str = "request"
    wire: tuple[str, str, str] | None = None  # recording: the model's wire format, LiteLLM string, provider
    speed: str = "recorded"  # --replay-speed as given

    @property
    def replaying(self) -> bool:
        return self.replay is not None

    def header(self) -> dict[str, str]:
        """What the run's trace header says of its cassette (``cassette``)."""
        if self.replay is not None:
            return {"replayed": str(self.replay.path), "speed": self.speed, "match": self.match}
        return {"recorded": str(self.record)}

    def report(self) -> dict[str, Any]:
        """What ``run --json`` says of it: the fields ``batch --json`` has for each run, and the replay's settings."""
        replayed = self.replay is not None
        return {"cassette": str(self.replay.path if self.replay is not None else self.record),
                "recorded": not replayed, "replayed": replayed,
                "replay_speed": self.speed if replayed else None, "replay_match": self.match if replayed else None}

    def start(self, spec: Any, redactor: Any) -> Recording | Replaying:
        session: Recording | Replaying
        if self.replay is not None:
            session = Replaying(self.replay, self.scale, self.match, spec)
        else:
            assert self.record is not None and self.wire is not None
            session = Recording(self.record, spec, self.wire, redactor)
        session.plan = self
        return session


def plan(spec: Any, record: Path | None = None, replay: Path | None = None, speed: str = "recorded",
         match: str = "request") -> CassettePlan | None:
    """The run's cassette plan from the CLI's options (None: neither); CassetteError if unusable."""
    if record is not None and replay is not None:
        raise CassetteError("--record and --replay are given together", "record once, then replay: use one of them")
    if match not in MATCHES:
        raise CassetteError(f"--replay-match {match!r} is not one of {', '.join(MATCHES)}",
                            "use --replay-match request (the default) or sequence")
    scale = parse_speed(speed)
    if replay is not None:
        cassette = read_cassette(replay)
        check_fits(cassette, spec)
        return CassettePlan(replay=cassette, scale=scale, match=match, speed=speed)
    if record is not None:
        from asyncfc_cli.trace import check_writable

        try:
            check_writable(record)
        except OSError as exc:
            raise CassetteError(f"cannot write the cassette to {record}: {exc.strerror or exc}",
                                "choose a writable path for --record") from None
        return CassettePlan(record=Path(record), wire=wire_format(spec))
    return None


def check_fits(cassette: Cassette, spec: Any) -> None:
    """Refuse a cassette recorded in another mode or with another model: its conversation is not this run's."""
    from asyncfc_cli.output import printable

    header, path = cassette.header, cassette.path
    if header["mode"] != spec.agent.mode:
        raise CassetteError(f"{path} was recorded in {header['mode']} mode and this run is in {spec.agent.mode} "
                            "mode: the conversation differs by design",
                            f"replay it with --mode {header['mode']}, or record one in {spec.agent.mode} mode")
    if header["model"] != spec.model.model:
        shown = printable(header["model"])[:200]
        raise CassetteError(f"{path} was recorded with the model {shown} and this run's model is {spec.model.model}",
                            f"replay it with --model {shown}, or re-record it with this model")


class Recording:
    """Writes the run's model exchanges to its cassette, through the run's redactor."""

    replaying = False
    failure: str | None = None
    plan: CassettePlan | None = None

    def __init__(self, path: Path, spec: Any, wire: tuple[str, str, str], redactor: Any) -> None:
        from asyncfc_cli import __version__
        from asyncfc_cli.cassette import capture

        capture.install()
        self.path = path
        self.redactor = redactor
        self.model = spec.model.model
        self.params = dict(spec.model.params)
        self.n = 0
        # Async mode: what each request carries depends on the tools' timing, so
        # the cassette says it (the scheduler tells, futures.hold.Script).
        self.deliveries: dict | None = {} if spec.agent.mode == "async" else None
        self.writer = CassetteWriter(path, redactor)
        self.writer.write({"type": "cassette", "version": VERSION, "asyncfc": __version__, "model": self.model,
                           "litellm_model": wire[1], "provider": wire[2], "wire": wire[0], "mode": spec.agent.mode,
                           "task": spec.task_name,
                           "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})

    def request(self, messages: list[dict], tools: list[dict]) -> Any:
        """Record what this attempt sends; the returned tap records what comes back."""
        from asyncfc_cli.cassette.capture import Tap

        self.n += 1
        record = {"type": "request", "n": self.n, **summarize(self.model, messages, tools, self.params)}
        if self.deliveries is not None:
            record["futures"], self.deliveries = self.deliveries, {}  # a retry of the request carries no more
        self.writer.write(record)
        return Tap(self.n, self.writer.write, self.redactor)

    def recorded(self) -> None:
        return None  # recording: the tools' timing decides

    def delivered(self, deliveries: Any) -> None:
        """What the request about to be sent carries (async mode): written with it."""
        self.deliveries = deliveries.as_record()

    def close(self) -> None:
        self.writer.close()


class Replaying:
    """Answers the run's requests from a cassette, through the simulated model's server."""

    replaying = True
    plan: CassettePlan | None = None

    def __init__(self, cassette: Cassette, scale: float, match: str, spec: Any) -> None:
        self.cassette = cassette
        self.scale = scale
        self.match = match
        self.model = spec.model.model
        self.mode = spec.agent.mode
        self.params = dict(spec.model.params)
        self.n = 0
        self.failure: str | None = None
        self.server: Any = None

    @contextmanager
    def endpoint(self, spec: Any) -> Iterator[Any]:
        """The LiteLLM configuration that reaches the replay server, through the recorded provider's adapter."""
        from asyncfc_cli.cassette.replay import ReplayServer
        from asyncfc_cli.runner import sim_config

        m = spec.model
        with ReplayServer(self.cassette.header["wire"], self.scale) as server:
            self.server = server
            yield sim_config(server, m.retries, m.request_timeout, eager=False)

    def request(self, messages: list[dict], tools: list[dict]) -> None:
        """Check this attempt against the cassette's next one and have the server answer with it."""
        self.n += 1
        exchanges = self.cassette.exchanges
        where = f"{self.cassette.path}: request {self.n}"
        if self.n > len(exchanges):
            self._fail(f"{where} is one more than the cassette holds ({len(exchanges)})")
        exchange = exchanges[self.n - 1]
        if self.match == "request":
            found = difference(exchange.request, summarize(self.model, messages, tools, self.params))
            if found is not None:
                if self.mode == "async" and exchange.request.get("futures") is None:
                    found += (" (the cassette does not say which tool results each request carried, as those "
                              "recorded by an earlier asyncfc do not, so its async replay depends on the tools' "
                              "timing: re-record it)")
                self._fail(f"{where} does not match the recorded one: {found}")
        self.server.expect(exchange)
        return None

    def recorded(self) -> Any:
        """What the recorded request the next one is checked against carried (async
        mode; futures.hold.Script): the scheduler delivers exactly that. None when
        the cassette does not say (recorded in another mode, or by an older asyncfc)."""
        from asyncfc_cli.futures.hold import Deliveries

        exchanges = self.cassette.exchanges
        if self.n >= len(exchanges) or exchanges[self.n].request.get("futures") is None:
            return None
        return Deliveries.from_record(exchanges[self.n].request["futures"])

    def delivered(self, deliveries: Any) -> None:
        pass  # what was sent is checked against the cassette with the request itself

    def _fail(self, message: str) -> None:
        self.failure = (f"{message}\n  fix: {RERECORD}, or replay with --replay-match sequence to serve the "
                        "recorded responses in order")
        raise Diverged(message)

    def close(self) -> None:
        pass
