"""Commands of the ``asyncfc`` CLI that live in their own modules.

Each module defines its typer command(s) and keeps the logic beside them;
``asyncfc_cli.cli`` registers them with a line each. Nothing here imports
LiteLLM.
"""
