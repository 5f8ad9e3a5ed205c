"""The ``asyncfc`` command's entry point (also ``python -m asyncfc_cli``).

A command that talks to a model (run, batch, bench, validate, sim serve)
goes to the warm worker when there is one (docs/warm-start.md): a forked
child of a process that has imported LiteLLM already runs it, on this
process's terminal, directory and environment. ``--cold`` (anywhere on the
command line) or ``ASYNCFC_WARM=0`` runs it in this process instead, as
does everything else.

The imports are inside a guard: Ctrl-C during the fraction of a second that
they take exits 130 like any other interruption, instead of Python's
KeyboardInterrupt traceback, also when Python dropped it
(:mod:`asyncfc_cli.interrupts`).
"""

import os
import sys


def main() -> None:
    try:
        from asyncfc_cli import interrupts

        interrupts.watch()
        from asyncfc_cli.warm import policy

        argv, cold = policy.strip_cold_flag(sys.argv)
        sys.argv[:] = argv
        if not cold and policy.wants_warm(argv, os.environ):
            from asyncfc_cli.warm import client

            code = client.run(argv)
            if code is not None:
                os._exit(code)
        from asyncfc_cli.cli import main as cli_main
    except KeyboardInterrupt:
        sys.exit(130)
    if interrupts.take():  # a Ctrl-C Python dropped inside the imports
        sys.exit(130)
    cli_main()


if __name__ == "__main__":
    main()
