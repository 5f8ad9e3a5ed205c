"""What a finished run came to: its status, exit code and redacted texts.

Decided here once for ``asyncfc run``, every run of ``asyncfc batch`` (in
this process or on a Ray worker) and nothing else: the two cannot drift
apart. The engine's modules call it, so it lives below the commands and
imports nothing at module level but the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_EXPECT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# What became of a run, for the batch's exit code and reports.
PASSED, FAILED, UNMET, INTERRUPTED, SKIPPED = "passed", "failed", "unmet", "interrupted", "skipped"


@dataclass
class Verdict:
    """A run's outcome judged: every text in it has the run's secrets masked."""

    status: str  # passed | failed | unmet | interrupted
    run_status: str  # the agent loop's (ok | error | max_turns | timeout | interrupted); error if the trace failed
    exit_code: int  # 0, 1, 2 (a key missing or refused), 3 (expectations unmet), 130
    answer: str | None
    error: str | None
    failures: list[str] = field(default_factory=list)  # expectations not met
    fix: str | None = None  # how to fix a refused key, an unreachable model server or an unwritable trace


def trace_failure(path: Any, exc: OSError) -> str:
    """The message for a trace that stopped being written mid-run (a full disk)."""
    return f"cannot write the trace to {path}: {exc.strerror or exc} (the trace stops there; the run went on)"


TRACE_FIX = "free space on its disk, or choose another path with --trace (another runs dir with ASYNCFC_RUNS_DIR)"


def judge(outcome: Any, expect: Any, trace_failed: OSError | None = None) -> Verdict:
    """The verdict on ``outcome`` (:class:`asyncfc_cli.runner.RunOutcome`) against the
    task's expectations.

    A key the endpoint refused (or never got) is exit 2, like a bad spec: a
    setup problem. A trace that failed mid-run (``trace_failed``, from
    ``TraceWriter.failed``: a disk that filled up) makes a run that otherwise
    passed an error, exit 1 (a run whose record is cut short is not a pass),
    and its message joins the error either way; so does a cassette that could
    not be written whole (``--record``). Precedence as the batch's:
    130, 2, 1, 3.
    """
    from asyncfc_cli.expectations import unmet

    result, redact = outcome.result, outcome.redactor
    failures = unmet(expect, result.answer, [c.tool for c in result.calls]) if result.status == "ok" else []
    status, run_status, code = PASSED, result.status, EXIT_OK
    error = outcome.credentials_failure or result.error
    fix = getattr(result, "fix", None)  # what to do about a model error, when it is known
    if result.status == "interrupted":
        status, code = INTERRUPTED, EXIT_INTERRUPTED
    elif result.status != "ok":
        status, code = FAILED, EXIT_FAILED
    elif failures:
        status, code = UNMET, EXIT_EXPECT
    from asyncfc_cli.cassette import write_failure

    cut_short = [(trace_failure(outcome.trace_path, trace_failed), TRACE_FIX)] if trace_failed is not None else []
    cut_short += [found] if (found := write_failure(outcome)) is not None else []
    for failure, failure_fix in cut_short:
        if code in (EXIT_OK, EXIT_EXPECT):
            status, run_status, code = FAILED, "error", EXIT_FAILED
        error, fix = (f"{error}; {failure}" if error else failure), (f"{fix}; {failure_fix}" if fix else failure_fix)
    if outcome.credentials_failure:
        from asyncfc_cli.credentials import fix_line

        status, code, fix = FAILED, EXIT_USAGE, fix_line(outcome.key_hint)
    return Verdict(status, run_status, code,
                   answer=None if result.answer is None else redact.text(result.answer),
                   error=redact.text(error) if error else None,
                   failures=[redact.text(f) for f in failures], fix=redact.text(fix) if fix else None)
