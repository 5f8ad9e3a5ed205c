"""A small MCP server over stdio for tests/test_isolation.py, in the standard
library only, so that a run starts it in milliseconds (the SDK's server takes
a second or more): many runs of a batch each start their own.

It speaks the JSON-RPC of the specification's tools: ``initialize``,
``tools/list``, ``tools/call``, ``ping``. Every call is answered from its own
thread, so a run's concurrent calls overlap as they would on a real server.

Tools: ``slow(seconds, tag)`` sleeps, then answers ``"<tag> after <seconds>s"``;
``echo(text)``; ``fail(reason)`` reports an error (``isError``).
"""

import json
import sys
import threading
import time

_out = threading.Lock()

TOOLS = [
    {"name": "slow", "description": "Sleep, then answer with the tag.",
     "inputSchema": {"type": "object", "properties": {"seconds": {"type": "number"}, "tag": {"type": "string"}},
                     "required": ["seconds", "tag"]}},
    {"name": "echo", "description": "Answer with the text.",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}},
    {"name": "fail", "description": "Report an error.",
     "inputSchema": {"type": "object", "properties": {"reason": {"type": "string"}}, "required": ["reason"]}},
]


def send(message):
    with _out:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def text(value, error=False):
    return {"content": [{"type": "text", "text": value}], "isError": error}


def call(mid, name, args):
    if name == "slow":
        time.sleep(float(args["seconds"]))
        result = text(f"{args['tag']} after {float(args['seconds']):g}s")
    elif name == "echo":
        result = text(args["text"])
    elif name == "fail":
        result = text(f"refused: {args['reason']}", error=True)
    else:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32602, "message": f"unknown tool {name}"}})
        return
    send({"jsonrpc": "2.0", "id": mid, "result": result})


def handle(message):
    method, mid, params = message.get("method"), message.get("id"), message.get("params") or {}
    if mid is None:
        return  # notifications: initialized, cancelled
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"), "capabilities": {"tools": {}},
            "serverInfo": {"name": "asyncfc-isolation", "version": "1"}}})
    elif method == "ping":
        send({"jsonrpc": "2.0", "id": mid, "result": {}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        threading.Thread(target=call, args=(mid, params.get("name"), params.get("arguments") or {}),
                         daemon=True).start()
    else:
        send({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": f"method not found: {method}"}})


def main():
    for line in sys.stdin:
        if line.strip():
            handle(json.loads(line))


if __name__ == "__main__":
    main()
