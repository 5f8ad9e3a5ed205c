"""An MCP server with tasks (specification 2025-11-25), for tests/test_mcp.py.

The SDK (2.3) carries the task types but serves no task methods, so this
server speaks the specification's JSON-RPC over stdio directly: it declares
task-augmented ``tools/call``, answers such a call with a task, runs the job
in a thread, and serves ``tasks/get``, ``tasks/result`` (blocking until the
task ends, as the specification says) and ``tasks/cancel``.

Tools: ``job(seconds, marker="", fail=False)`` (tasks optional; a plain call
runs it inline), ``quick(text)`` (no tasks).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

_out = threading.Lock()
_tasks: dict[str, dict] = {}
_done: dict[str, threading.Event] = {}
_results: dict[str, dict] = {}
_state = threading.Lock()


def send(message: dict) -> None:
    with _out:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def text_result(text: str, error: bool = False) -> dict:
    return {"content": [{"type": "text", "text": text}], "isError": error}


TOOLS = [
    {"name": "job", "description": "A long job that runs as an MCP task.",
     "inputSchema": {"type": "object", "properties": {"seconds": {"type": "number"}, "marker": {"type": "string"},
                                                      "fail": {"type": "boolean"}}, "required": ["seconds"]},
     "execution": {"taskSupport": "optional"}},
    {"name": "quick", "description": "Answers at once.",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
]


def set_status(task_id: str, status: str, message: str | None = None) -> None:
    with _state:
        task = _tasks[task_id]
        if task["status"] in ("completed", "failed", "cancelled"):
            return
        task.update(status=status, lastUpdatedAt=now())
        if message:
            task["statusMessage"] = message
        if status in ("completed", "failed", "cancelled"):
            _done[task_id].set()


def run_job(task_id: str, args: dict) -> None:
    seconds = float(args.get("seconds", 1))
    marker = args.get("marker") or ""
    if marker:
        Path(marker + ".started").write_text(task_id)
    deadline = time.monotonic() + seconds
    halfway = False
    while time.monotonic() < deadline:
        if _tasks[task_id]["status"] == "cancelled":
            if marker:
                Path(marker + ".cancelled").write_text(task_id)
            return
        if not halfway and time.monotonic() > deadline - seconds / 2:
            set_status(task_id, "working", "halfway")
            halfway = True
        time.sleep(0.02)
    if args.get("fail"):
        _results[task_id] = text_result("the job failed on purpose", error=True)
        set_status(task_id, "failed", "failed on purpose")
    else:
        _results[task_id] = text_result(f"done after {seconds:g}s")
        set_status(task_id, "completed")


def handle(message: dict) -> None:
    method, mid, params = message.get("method"), message.get("id"), message.get("params") or {}
    if mid is None:
        return  # notifications
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}, "tasks": {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}},
            "serverInfo": {"name": "asyncfc-task-server", "version": "1"}}})
    elif method == "ping":
        send({"jsonrpc": "2.0", "id": mid, "result": {}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        name, args = params.get("name"), params.get("arguments") or {}
        if name == "quick":
            send({"jsonrpc": "2.0", "id": mid, "result": text_result(args.get("text", ""))})
        elif name == "job" and "task" in params:
            task_id = uuid.uuid4().hex[:12]
            with _state:
                _tasks[task_id] = {"taskId": task_id, "status": "working", "createdAt": now(),
                                   "lastUpdatedAt": now(), "ttl": 600000, "pollInterval": 50}
                _done[task_id] = threading.Event()
                task = dict(_tasks[task_id])
            send({"jsonrpc": "2.0", "id": mid, "result": {"task": task}})
            threading.Thread(target=run_job, args=(task_id, args), daemon=True).start()
        elif name == "job":
            time.sleep(float(args.get("seconds", 1)))
            send({"jsonrpc": "2.0", "id": mid, "result": text_result("done inline")})
        else:
            send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32602, "message": f"unknown tool {name}"}})
    elif method == "tasks/get":
        with _state:
            task = _tasks.get(params.get("taskId"))
        if task is None:
            send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32602, "message": "unknown task"}})
        else:
            send({"jsonrpc": "2.0", "id": mid, "result": dict(task)})
    elif method == "tasks/result":
        task_id = params.get("taskId")

        def answer() -> None:
            _done[task_id].wait()
            if _tasks[task_id]["status"] == "cancelled":
                send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32603, "message": "task cancelled"}})
            else:
                send({"jsonrpc": "2.0", "id": mid, "result": _results[task_id]})

        threading.Thread(target=answer, daemon=True).start()
    elif method == "tasks/cancel":
        task_id = params.get("taskId")
        set_status(task_id, "cancelled", "cancelled by the client")
        send({"jsonrpc": "2.0", "id": mid, "result": dict(_tasks[task_id])})
    else:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": f"method not found: {method}"}})


def main() -> None:
    for line in sys.stdin:
        if line.strip():
            handle(json.loads(line))


if __name__ == "__main__":
    main()
