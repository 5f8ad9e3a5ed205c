"""Make docs/images/live-run.svg: one frame of the live timeline, taken mid-run.

    LITELLM_LOCAL_MODEL_COST_MAP=True python docs/images/live_run.py [--future f4 --delay 0.3 | --at SECONDS]

Runs tasks/quickstart.toml for real (the simulated model over LiteLLM's HTTP
path, the same path as ``asyncfc run``) with the same live display sink
``asyncfc run`` uses on a terminal, here on a recording console 110 columns
wide, and saves the frame the display shows ``--delay`` seconds after the
future ``--future`` starts running (default: 0.3 s into ``compute``, f4,
while the model decodes its next request), or ``--at`` seconds into the
run. The trace goes to .asyncfc/runs/ like any run's.
"""

from __future__ import annotations

import argparse
import io
import os
import threading
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from rich.console import Console  # noqa: E402

from asyncfc_cli import runner, spec  # noqa: E402
from asyncfc_cli.timeline import LiveTimeline  # noqa: E402
from asyncfc_cli.trace import default_trace_path, new_run_id  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--future", default="f4", help="take the picture after this future starts")
    parser.add_argument("--delay", type=float, default=0.3, help="seconds after --future starts")
    parser.add_argument("--at", type=float, default=None, help="seconds into the run instead")
    parser.add_argument("--mode", default="async")
    parser.add_argument("--task", default="tasks/quickstart.toml")
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "images" / "live-run.svg"))
    args = parser.parse_args()

    os.chdir(ROOT)
    run_spec = spec.resolve_run(Path(args.task), mode_override=args.mode)
    run_id = new_run_id()
    writer = runner.open_trace_file(default_trace_path(run_id))
    terminal = Console(file=FakeTerminal(), force_terminal=True, force_interactive=True, width=110, height=24)
    display = LiveTimeline(terminal)
    picture = Console(file=io.StringIO(), record=True, width=110, force_terminal=True, color_system="truecolor")
    taken = threading.Event()

    def take() -> None:
        picture.print(f"[bold]asyncfc[/] {run_spec.agent_name} · model {run_spec.model.name} · mode {args.mode}")
        picture.print(display.renderable())
        taken.set()

    def clock(event: dict) -> None:
        # A trace sink like the display: it schedules the picture from the events.
        if args.at is not None and event["type"] == "header":
            threading.Timer(max(args.at - event["t"], 0.0), take).start()
        elif args.at is None and event["type"] == "tool_begin" and event.get("future") == args.future:
            threading.Timer(args.delay, take).start()

    with display:
        runner.execute(run_spec, writer, [display, clock], run_id)
    taken.wait(5)
    moment = f"{args.at:g}s in" if args.at is not None else f"{args.future} running"
    picture.save_svg(args.output, title=f"asyncfc run {args.task}  (live, {moment})")
    print(f"saved {args.output}; trace {writer.path}")


if __name__ == "__main__":
    main()
