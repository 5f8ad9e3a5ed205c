"""Warm start: a resident worker per user that has paid LiteLLM's import and
forks a fresh child for each ``asyncfc`` invocation that needs it.

The pieces, one module each:

- :mod:`.policy` decides from the command line and the environment whether
  an invocation may go warm (``--cold`` and ``ASYNCFC_WARM=0`` turn it off).
- :mod:`.paths` finds the private directory that holds the socket.
- :mod:`.protocol` frames messages (and passes file descriptors) on the socket.
- :mod:`.context` is what a cold process would have inherited (environment,
  directory, umask, streams, signals, limits) and what makes a worker stale.
- :mod:`.client` is the ``asyncfc`` side: connect, pass everything over,
  forward signals, exit as the child did; or start a worker and run cold.
- :mod:`.worker` is the resident process; :mod:`.child` is what a forked
  child does before it runs the CLI exactly as a cold process would.

docs/warm-start.md explains the design and its guarantees. Nothing here
imports typer, rich or LiteLLM: the client must stay as light as ``--help``.
"""
