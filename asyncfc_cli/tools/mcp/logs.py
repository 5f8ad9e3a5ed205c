"""The MCP SDK's log records: redacted with the secrets of the session that logged them."""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass
from typing import Any

from asyncfc_cli.events import ToolSourceError
from asyncfc_cli.output import printable
from asyncfc_cli.redaction import Redactor, env_secrets
from asyncfc_cli.tools.mcp.errors import describe, without_inputs


@dataclass
class LogContext:
    """Whose session a log record of the SDK comes from (see :class:`SdkLogs`)."""

    name: str
    redactor: Redactor
    trace: Any


# Set by the session's task (the SDK's tasks inherit it) and by each call's task:
# per task, never shared between runs.
LOG_CONTEXT: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar("asyncfc_mcp_log", default=None)


class SdkLogs(logging.Handler):
    """Every record of the MCP SDK's loggers, redacted and printable before it goes anywhere.

    The SDK logs what servers send (a body it could not parse, a handler's
    error): a record is rewritten here with the secrets of the session that
    logged it masked, on one line without a traceback. A session's record
    (warnings and up) goes into that run's trace, not onto stderr under the
    run's progress; any other goes on to the root logger's handlers, as
    before (the CLI: warnings on stderr), with the environment's secrets masked.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            context = LOG_CONTEXT.get()
            redactor = context.redactor if context is not None else Redactor(env_secrets())
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f": {describe(record.exc_info[1])}"
            text = printable(redactor.clip(without_inputs(text), 500))
            if context is not None:
                # A session's problem: its calls already told the model; the trace keeps the detail.
                if record.levelno >= logging.WARNING:
                    context.trace.emit(ToolSourceError(name=context.name, error=f"MCP SDK: {text}"))
                return
            clean = logging.makeLogRecord({**record.__dict__, "msg": text, "args": None, "exc_info": None,
                                           "exc_text": None, "stack_info": None})
            root = logging.getLogger()
            if root.isEnabledFor(clean.levelno):
                root.handle(clean)
        except Exception:
            self.handleError(record)


def route_sdk_logs() -> None:
    """Send the SDK's log records through :class:`SdkLogs`. Idempotent; one handler per
    process (logging is configured per process), holding no run's state."""
    for name in ("mcp", "mcp_types"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, SdkLogs) for h in logger.handlers):
            logger.addHandler(SdkLogs())
        logger.propagate = False  # again each time: a library's logging setup may have reset it
