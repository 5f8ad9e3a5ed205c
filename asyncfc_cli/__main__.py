"""The ``asyncfc`` command's entry point (also ``python -m asyncfc_cli``).

It only imports the CLI, inside a guard: Ctrl-C during the fraction of a
second that the imports take exits 130 like any other interruption, instead
of Python's KeyboardInterrupt traceback, also when Python dropped it
(:mod:`asyncfc_cli.interrupts`).
"""

import sys


def main() -> None:
    try:
        from asyncfc_cli import interrupts

        interrupts.watch()
        from asyncfc_cli.cli import main as cli_main
    except KeyboardInterrupt:
        sys.exit(130)
    if interrupts.take():  # a Ctrl-C Python dropped inside the imports
        sys.exit(130)
    cli_main()


if __name__ == "__main__":
    main()
