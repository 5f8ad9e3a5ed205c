"""Which invocations go warm, decided from argv and the environment alone
(before typer, Rich or LiteLLM are imported)."""

from __future__ import annotations

from collections.abc import Mapping

COLD_FLAG = "--cold"
ENV_SWITCH = "ASYNCFC_WARM"
_OFF = {"0", "false", "no", "off"}

# The commands whose start is dominated by heavy imports (LiteLLM, the MCP
# SDK, pydantic models of the engine). Anything else starts in a fraction of
# a second cold and is not worth a socket round trip.
WARM_COMMANDS = frozenset({"run", "batch", "bench", "validate"})
WARM_SUBCOMMANDS = frozenset({("sim", "serve")})

# Root options that print something and exit without running a command.
_EXITING_OPTIONS = frozenset({"-h", "--help", "--version", "--install-completion", "--show-completion"})


def strip_cold_flag(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--cold`` (accepted anywhere before a ``--``), and whether it was there."""
    out: list[str] = []
    found = False
    for index, arg in enumerate(argv):
        if arg == "--":
            out.extend(argv[index:])
            break
        if arg == COLD_FLAG and index > 0:
            found = True
            continue
        out.append(arg)
    return out, found


def warm_disabled(environ: Mapping[str, str]) -> bool:
    return environ.get(ENV_SWITCH, "").strip().lower() in _OFF


def wants_warm(argv: list[str], environ: Mapping[str, str]) -> bool:
    """True if this command line (``argv[0]`` is the program) may be served warm."""
    if warm_disabled(environ) or "_ASYNCFC_COMPLETE" in environ:  # shell completion: cold and instant
        return False
    args = argv[1:]
    if "--" in args:
        args = args[:args.index("--")]
    if any(arg in _EXITING_OPTIONS for arg in args):
        return False
    positional = [arg for arg in args if not arg.startswith("-")]
    if not positional:
        return False
    if positional[0] in WARM_COMMANDS:
        return True
    return tuple(positional[:2]) in WARM_SUBCOMMANDS
