"""asyncfc: an agent runner with future-based asynchronous function calling."""

__version__ = "0.1.0"

# True when this process is the `asyncfc` command itself (set by cli.main), not
# a program that imported asyncfc: only then may it adopt its tools' orphans
# (asyncfc_cli/tools/processes.py), which a long-lived host would collect.
OWN_PROCESS = False
