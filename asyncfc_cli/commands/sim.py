"""``asyncfc sim``: the embedded simulated model, served on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from asyncfc_cli.commands.common import EXIT_USAGE, err, fail

sim_app = typer.Typer(help="The embedded simulated model.", no_args_is_help=True)


@sim_app.command("serve")
def sim_serve(
    task: Annotated[Path, typer.Argument(help="A task file whose [sim] plan the model follows.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 8765,
    protocol: Annotated[Optional[str], typer.Option(
        # sim/plan.py PROTOCOLS (not imported here: --help stays light; a test keeps them equal)
        "--protocol", metavar="<openai|anthropic|gemini|responses>", help="Wire format: openai (chat completions), anthropic (Messages), gemini "
        "(generateContent) or responses (OpenAI Responses). Default: the plan's [sim] protocol, "
        "openai unless set.")] = None,
    sets: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Set a parameter of the task: --set key=value (repeatable), as run has; "
        "the others keep their [params] values.")] = None,
) -> None:
    """Serve the simulated model on 127.0.0.1, in one provider's wire format.

    Prints the base URL and the LiteLLM model string that reach it; any
    client of that provider's API can use it (model name and key: anything).
    The plan's {name} parameters are filled from the task's [params] and
    --set, as in a run.
    """
    from asyncfc_cli import spec as spec_mod
    from asyncfc_cli.sim.server import SimServer

    try:
        from asyncfc_cli.sim.plan import PROTOCOLS

        if protocol is not None and protocol not in PROTOCOLS:
            raise spec_mod.SpecError(None, "--protocol", f"unknown protocol {protocol!r}",
                                     "use one of: " + ", ".join(PROTOCOLS))
        plan = spec_mod.task_sim_plan(task, spec_mod.parse_set(sets or []))
    except spec_mod.SpecError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    try:
        server = SimServer(plan, port=port, protocol=protocol)
    except OSError as exc:
        raise fail(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}; choose another --port",
                   EXIT_USAGE) from None
    with server:
        err.print(f"simulated model ({server.protocol} format) at {server.base_url}; "
                  f"LiteLLM model string {server.litellm_model} (model name: anything; api key: anything). "
                  "Ctrl-C stops.")
        try:
            while True:
                import time

                time.sleep(3600)
        except KeyboardInterrupt:
            pass
