"""``asyncfc worker status|start|stop``: the warm-start worker (docs/warm-start.md)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Annotated, Any

import typer

worker_app = typer.Typer(
    help="The warm-start worker: a process per user that has imported LiteLLM and forks a fresh child "
    "for each run, batch, bench, validate and sim serve, so they start in a fraction of a second. "
    "The first such command starts it; it exits after ASYNCFC_WARM_IDLE seconds unused (default 300). "
    "--cold (anywhere on a command line) or ASYNCFC_WARM=0 runs a command without it.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _place() -> Any:
    from asyncfc_cli.warm import paths

    try:
        return paths.open_place(os.environ, create=False), None
    except paths.UnsafeDirectory as exc:
        return None, str(exc)


def _status() -> dict[str, Any]:
    """What a status request says, plus where it was asked (also without a worker)."""
    from asyncfc_cli.warm import client, context, paths, policy

    place, problem = _place()
    data: dict[str, Any] = {"running": False, "directory": str(paths.directory_for(os.environ)),
                            "warm_disabled": policy.warm_disabled(os.environ)}
    if place is None:
        data["problem"] = problem
        return data
    try:
        data["socket"] = place.shown(paths.SOCKET)
        reply = client.ask(place, context.capture(sys.argv, "status"))
        if reply is None or "pid" not in reply:
            starting = client.starting(place)
            if starting is not None:
                data["starting"] = starting
            return data
        data.update(reply, running=True)
        data["serves_this_environment"] = not reply["stale"] and not reply["refusing"] and not reply["retiring"]
        return data
    finally:
        place.close()


def _print(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(data))
        return
    if not data["running"]:
        line = f"no worker running (directory {data['directory']})"
        if data.get("starting"):
            line = f"a worker is starting (pid {data['starting'].get('pid')}, {data['starting'].get('phase')})"
        if data.get("problem"):
            line += f"; {data['problem']}"
        if data.get("warm_disabled"):
            line += "; ASYNCFC_WARM=0 is set here: commands run cold"
        print(line)
        return
    print(f"worker {data['pid']}: asyncfc {data['version']} on {data['executable']}")
    print(f"  socket: {data['socket']}")
    print(f"  up {data['uptime']:.0f} s, idle {data['idle_for']:.0f} s of {data['idle_timeout']:g} s; "
          f"{data['active']} running, {data['served']} served; "
          f"{data['preimported_modules']} modules imported in {data['import_seconds']:.1f} s")
    first = data.get("first_request") or {}
    if first.get("error"):
        print(f"  first model request: not rehearsed ({first['error']})")
    elif first:
        print(f"  first model request: rehearsed in {first['seconds']:.1f} s; {first['modules']} modules and "
              f"tiktoken encodings {', '.join(first['encodings']) or '(none)'} loaded ahead")
    if data["serves_this_environment"]:
        print("  serves this environment: yes")
    else:
        why = data["refusing"] or data["retiring"] or "; ".join(data["stale"])
        print(f"  serves this environment: no ({why})")
    print(f"  log: {data['log']}")


@worker_app.command("status")
def status(as_json: JsonOption = False) -> None:
    """Say whether a worker runs: its pid, socket, version, idle time, and whether it
    would serve a command run here (exit 1 if none runs)."""
    data = _status()
    _print(data, as_json)
    raise typer.Exit(0 if data["running"] else 1)


def _gone(pid: int, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        time.sleep(0.02)
    return False


@worker_app.command("stop")
def stop(as_json: JsonOption = False) -> None:
    """Stop the worker: it takes no new command at once and exits when the ones it runs have ended."""
    from asyncfc_cli.warm import client, context

    place, problem = _place()
    reply = None
    if place is not None:
        try:
            reply = client.ask(place, {**context.capture(sys.argv, "stop")})
        finally:
            place.close()
    if reply is None or "stopping" not in reply:
        data: dict[str, Any] = {"stopped": False, "running": False}
        if problem:
            data["problem"] = problem
        print(json.dumps(data) if as_json else "no worker running")
        raise typer.Exit(0)
    pid, active = reply["stopping"], reply["active"]
    exited = _gone(pid, 10.0) if active == 0 else False
    data = {"stopped": True, "pid": pid, "active": active, "exited": exited}
    if as_json:
        print(json.dumps(data))
    elif active:
        print(f"worker {pid} takes no new commands; it exits when its {active} running command(s) end")
    else:
        print(f"stopped worker {pid}" if exited else f"worker {pid} is stopping")
    raise typer.Exit(0)


@worker_app.command("start")
def start(
    as_json: JsonOption = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait until it serves.")] = 120.0,
) -> None:
    """Start a worker now (unless one serving this environment runs) and wait until it serves."""
    from asyncfc_cli.warm import client, paths

    data = _status()
    if not data["running"] or not data["serves_this_environment"]:
        try:
            place = paths.open_place(os.environ, create=True)
        except paths.UnsafeDirectory as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        try:
            if client.starting(place) is None:
                client.spawn(place, 0)
        finally:
            place.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.05)
            data = _status()
            if data["running"] and data["serves_this_environment"]:
                break
    _print(data, as_json)
    raise typer.Exit(0 if data["running"] and data.get("serves_this_environment") else 1)
