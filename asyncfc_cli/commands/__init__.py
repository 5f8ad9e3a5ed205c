"""Commands that live in their own module, registered by :mod:`asyncfc_cli.cli`."""
