"""The commands of the ``asyncfc`` CLI, one module per command or command group.

Each module defines its typer command(s) and keeps the logic beside them;
:mod:`asyncfc_cli.cli` only assembles the app. What several commands share
(exit codes, the ``--json`` error objects, the stdout discipline) is in
:mod:`~asyncfc_cli.commands.common`. Engine modules never import from here;
nothing here imports LiteLLM at module level.
"""
