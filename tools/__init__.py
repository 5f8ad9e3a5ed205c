"""Example tools for agents.toml and the examples: ordinary, unmodified callables."""
