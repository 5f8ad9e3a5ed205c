"""MCP tasks (specification 2025-11-25): a ``tools/call`` the server runs as a task.

When the server declares task-augmented ``tools/call`` and a tool allows it,
the call asks for a task and the future follows it with ``tasks/get`` until it
is terminal, then reads ``tasks/result``; cancelling the call sends
``tasks/cancel``; each state is a ``tool_progress`` event in the trace. SDK 2.3
has the task types but no client for them, so these requests go through the
session's dispatcher; see docs/reliability.md for what is and is not covered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from asyncfc_cli.events import ToolProgress
from asyncfc_cli.tools.core import CURRENT_CALL, ToolError

if TYPE_CHECKING:
    from asyncfc_cli.tools.mcp.session import Session

TERMINAL = frozenset({"completed", "failed", "cancelled"})


async def call_as_task(session: "Session", name: str, exposed: str, arguments: dict[str, Any]) -> Any:
    """``tools/call`` as an MCP task (2025-11-25): create, follow, read, or cancel.

    The SDK validates a ``tools/call`` answer as a CallToolResult, which a
    task is not, so these requests go through the dispatcher as raw JSON-RPC.
    """
    from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
    from mcp.types import CallToolResult

    def opts() -> dict[str, Any]:
        return {"headers": {MCP_PROTOCOL_VERSION_HEADER: session.client.protocol_version}}

    send = session.dispatcher.send_raw_request
    call_id = CURRENT_CALL.get()
    raw = await send("tools/call", {"name": name, "arguments": arguments, "task": {}}, opts())
    if not isinstance(raw.get("task"), dict):  # the server answered at once
        return CallToolResult.model_validate(raw, by_name=False)
    task = raw["task"]
    task_id = str(task.get("taskId"))
    status: str | None = None

    def note(state: dict[str, Any]) -> None:
        nonlocal status
        if state.get("status") != status:
            status = str(state.get("status"))
            message = state.get("statusMessage")
            session.run.trace.emit(ToolProgress(call_id=call_id, tool=exposed, mcp_task=task_id, status=status,
                                                message=session.redactor.clip(str(message), 200) if message else None))

    note(task)
    try:
        while status not in TERMINAL:
            if status == "input_required":
                raise ToolError(f"the MCP task for {exposed!r} asks for input, which asyncfc cannot "
                                "give; it was cancelled")
            interval = task.get("pollInterval")
            await trio.sleep(min(max((interval or 250) / 1000, 0.05), 5.0))
            task = await send("tasks/get", {"taskId": task_id}, opts())
            note(task)
        if status == "cancelled":
            raise ToolError(f"the server cancelled the MCP task for {exposed!r}")
        result = await send("tasks/result", {"taskId": task_id}, opts())
        return CallToolResult.model_validate(result, by_name=False)
    except BaseException:
        if status not in TERMINAL:
            # Our future was cancelled (a timeout, the run ending) or gave up:
            # the server's task must stop too. Bounded, and shielded so it
            # runs while we are being cancelled.
            with trio.move_on_after(2, shield=True):
                try:
                    await send("tasks/cancel", {"taskId": task_id}, opts())
                    note({"status": "cancelled"})
                except Exception:
                    pass
        raise
