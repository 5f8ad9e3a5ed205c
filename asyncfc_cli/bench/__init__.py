"""``asyncfc bench``: measure sync, parallel and async modes side by side.

The instrument behind the project's claim (less end-to-end time, same
accuracy, no model change). Modules, one concept each:

``data``       find and read the BFCL files (never copied into the repository)
``checker``    AST-style comparison of the calls made with BFCL's possible answers
``latency``    seeded tool-latency distributions
``fs``         our own in-memory file system for BFCL multi-turn sessions
``workloads``  the cases: BFCL single-turn and multi-turn, DAGs, no-gain, code inspection
``ideal``      the ideal bound from a plan's critical path
``runner``     one case in one mode (in process or over HTTP), probes, aggregation
``overhead``   executor cost per call, 1 to 1,000 concurrent futures (real clock)
``report``     Rich table, JSON and the SVG charts
(the typer app registered as ``asyncfc bench`` is :mod:`asyncfc_cli.commands.bench`)

Nothing here imports litellm at module level: only the HTTP transport does,
inside the commands that use it.
"""
