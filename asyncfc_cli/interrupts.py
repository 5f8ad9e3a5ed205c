"""Ctrl-C (or SIGTERM) that Python dropped during start-up.

Until a run's own handler takes over (:func:`asyncfc_cli.runner.run_until_signal`),
a signal raises ``KeyboardInterrupt`` wherever the main thread happens to be.
When that is inside a callback the interpreter runs on its own (the import
system's module-lock callbacks run for every import, finalizers for garbage),
Python cannot raise it: it prints "Exception ignored in ..." and drops it,
and the command went on to the end as if nobody had pressed Ctrl-C (seen on
a loaded machine, where the seconds of imports are long). The ``asyncfc``
command therefore notes every interrupt Python drops (:func:`watch`), and
the start-up honours a noted one at the next point it can: after the
imports, or as soon as the run's handler is in place.

Signals belong to the process, so the note does too; only the ``asyncfc``
command installs the hook, never a program that imports asyncfc.
"""

from __future__ import annotations

import sys

_dropped: list[BaseException] = []


def watch() -> None:
    """Note interrupts Python drops from now on (others go to the previous hook)."""
    previous = sys.unraisablehook

    def hook(unraisable: object) -> None:
        dropped = getattr(unraisable, "exc_value", None)
        if isinstance(dropped, KeyboardInterrupt):
            _dropped.append(dropped)  # handled, not printed: it is ours
            return
        previous(unraisable)

    sys.unraisablehook = hook


def take() -> bool:
    """True once for an interrupt Python dropped and nobody has honoured yet."""
    if not _dropped:
        return False
    _dropped.clear()
    return True
