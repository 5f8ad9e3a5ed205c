"""Cassettes: a model's streamed responses recorded once, replayed offline with their timing.

``asyncfc run TASK --record FILE`` writes one; ``--replay FILE`` serves it
back through the simulated model's HTTP server in the recorded provider's
wire format, so LiteLLM decodes it as it did live while the tools really run.
See docs/cassettes.md. The pieces:

- :mod:`.format`: the JSONL file, its writer and its careful reader;
- :mod:`.match`: what a request sent, as digests, and where two differ;
- :mod:`.capture`: the raw response body taken at the HTTP level;
- :mod:`.replay`: the server that plays it back;
- :mod:`.session`: a run's plan and session (recording or replaying).
"""

from asyncfc_cli.cassette.format import CassetteError

__all__ = ["CassetteError", "for_run", "failure_of"]


def for_run(spec, record=None, replay=None, speed="recorded", match="request"):  # type: ignore[no-untyped-def]
    """The run's :class:`~.session.CassettePlan` from the CLI's options, or None;
    a cassette problem is a ``SpecError`` (exit 2, with its fix), like a bad spec."""
    if record is None and replay is None and speed == "recorded" and match == "request":
        return None
    from asyncfc_cli.cassette.session import plan
    from asyncfc_cli.spec import SpecError

    if replay is None and (speed != "recorded" or match != "request"):
        raise SpecError(None, "--replay-speed" if speed != "recorded" else "--replay-match",
                        "only applies with --replay", "add --replay FILE (or --replay-dir DIR for a batch)")
    try:
        return plan(spec, record, replay, speed, match)
    except CassetteError as exc:
        raise SpecError(None, "", exc.message, exc.fix) from None


def failure_of(outcome) -> str | None:  # type: ignore[no-untyped-def]
    """Why a replay stopped (a request that diverged from the cassette), or None."""
    session = getattr(outcome, "cassette", None)
    return getattr(session, "failure", None)
