"""The futures protocol of async mode, in one package: what the model is told,
and the scheduler that keeps those promises.

What the model sees (docs/futures.md has a real transcript):

- its calls are numbered ``f1``, ``f2``, ... in the order it makes them,
  across the whole conversation (``wait`` calls are not counted), so it knows
  a call's id before any reply: it can use a future in the same message;
- a call that is still running comes back as a handle, ``{"future":"f3"}``;
  one that already finished comes back as its result;
- ``"$f3"`` / ``"${f3.key}"`` in an argument is a dataflow edge (grammar in
  :mod:`asyncfc_cli.references`): the call waits for f3 and runs with its
  value; a reference to a call later in the same message waits for it to
  appear, and fails when the message ends without it;
- ``wait(futures=[...], timeout=...)`` returns chosen values; values that
  resolve while the model decodes come with the next request as one plain
  user message;
- every outcome reaches the model exactly once (its own tool message, a
  ``wait`` result, or a delivery), and an answer is accepted only when the
  model has seen every outcome.

The parts, each with its own rules and tests:

:mod:`.protocol`   the words: instruction, ``wait``'s name and schema, handle,
                   delivery message (plain data, imported by the spec and the sim)
:mod:`.table`      the future table: ids, dependencies, cycles, arrival
:mod:`.delivery`   delivery exactly once, ``wait``, the finish rule, the cut
:mod:`.hold`       the hold policies: never, fixed, latency
:mod:`.scheduler`  :class:`AsyncScheduler`, which puts them together behind
                   the loop's :class:`~asyncfc_cli.executor.Scheduler` seam

This module imports only the words, so naming them costs no trio import.
"""

from asyncfc_cli.futures.protocol import (  # noqa: F401  (the protocol's words are this package's interface)
    DELIVERY_PREFIX,
    FINISH_NOTE,
    INSTRUCTION,
    WAIT_DESCRIPTION,
    WAIT_PARAMETERS,
    WAIT_TOOL,
    delivery_message,
    handle,
    instruction_for,
    parse_future_id,
)
