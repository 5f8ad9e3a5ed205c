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

__all__ = ["CassetteError", "batch_name", "divergence", "failure_of", "for_batch", "for_run", "in_report",
           "note_in_report", "write_failure"]


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


NO_CASSETTE = {"cassette": None, "recorded": False, "replayed": False, "replay_speed": None, "replay_match": None}


def in_report(outcome) -> dict:  # type: ignore[no-untyped-def]
    """The cassette fields of ``run --json`` (a run without one has them too, empty)."""
    plan = getattr(getattr(outcome, "cassette", None), "plan", None)
    return plan.report() if plan is not None else dict(NO_CASSETTE)


def write_failure(outcome) -> tuple[str, str] | None:  # type: ignore[no-untyped-def]
    """(message, fix) when the run's cassette could not be written whole (a full disk,
    a file that could not be created), or None: the run's verdict makes it an error."""
    session = getattr(outcome, "cassette", None)
    writer = getattr(session, "writer", None)
    failed = getattr(writer, "failed", None)
    if failed is None:
        return None
    return (f"cannot write the cassette to {writer.path}: {failed.strerror or failed} (the cassette stops there "
            "and cannot be replayed; the run went on)",
            "free space on its disk, or choose another path with --record (--record-dir for a batch)")


def divergence(outcome, report=None):  # type: ignore[no-untyped-def]
    """The message of a replay that diverged, and ``report`` (the run's --json object) saying so; both redacted."""
    redact = outcome.redactor
    failure = redact.text(failure_of(outcome))
    if report is None:
        return failure, None
    message, _, fix = failure.partition("\n  fix: ")
    return failure, redact.value({**report, "status": "cassette_diverged", "error": message, "fix": fix})


def batch_name(run) -> str:  # type: ignore[no-untyped-def]
    """The cassette file of a batch run: its task, mode and a key of what the run is (the task
    as given, relative to where the batch starts, its content, parameters, model and repeat),
    so the same batch started from the same directory finds it on any machine."""
    import hashlib
    import json
    import re
    from pathlib import Path

    task = Path(run.task)
    try:
        task = task.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    text = json.dumps([task.as_posix(), run.spec.digest, sorted(run.params.items()), run.mode, run.model, run.repeat])
    key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{task.stem}-{run.mode}")[:80] + f"-{key}.jsonl"


def for_batch(planned, record_dir=None, replay_dir=None, speed="recorded", match="request",  # type: ignore[no-untyped-def]
              ray=None) -> None:
    """Give every planned run of a batch its cassette plan (``run.cassette``): one
    cassette per run in ``record_dir`` or ``replay_dir``; SpecError before anything runs."""
    from asyncfc_cli.spec import SpecError

    if record_dir is None and replay_dir is None:
        for_run(None, None, None, speed, match)  # --replay-speed/--replay-match alone: the same error as run's
        return
    if record_dir is not None and replay_dir is not None:
        raise SpecError(None, "--record-dir", "--record-dir and --replay-dir are given together",
                        "record once, then replay: use one of them")
    if ray is not None:
        raise SpecError(None, "--ray", "cassettes are recorded and replayed by runs in this process",
                        "leave out --ray to record or replay a batch")
    if record_dir is not None:
        try:
            record_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpecError(record_dir, "--record-dir", f"cannot create the directory: {exc.strerror or exc}",
                            "choose a writable directory") from None
    for run in planned:
        name = batch_name(run)
        if replay_dir is not None and not (replay_dir / name).is_file():
            raise SpecError(replay_dir / name, "--replay-dir", f"no cassette for the run {run.label}",
                            "record the batch first: asyncfc batch ... --record-dir DIR (the same tasks, "
                            "parameters, modes and model, started from the same directory)")
        where = f"{run.label}: " if len(planned) > 1 else ""
        try:
            run.cassette = for_run(run.spec, record_dir / name if record_dir is not None else None,
                                   replay_dir / name if replay_dir is not None else None, speed, match)
        except SpecError as exc:
            raise SpecError(exc.file, exc.key, where + exc.message, exc.fix) from None


def note_in_report(report, outcome, plan) -> None:  # type: ignore[no-untyped-def]
    """What a batch run's report says about its cassette; a divergence makes the run exit 2."""
    if plan is None:
        return
    if plan.replaying:
        report.cassette, report.replayed = str(plan.replay.path), True
    else:
        report.cassette, report.recorded = str(plan.record), True
    failure = failure_of(outcome)
    if failure:
        message, _, fix = failure.partition("\n  fix: ")
        report.status, report.exit_code = "failed", 2
        report.error, report.fix = outcome.redactor.text(message), fix
