"""A command tool for the real-model tests: count the words of a file, and log the execution.

With REAL_MODEL_TOOL_HOLD set, it writes its pid there and then blocks: the
Ctrl-C test interrupts a run while this tool runs."""

import json
import os
import sys
import time

path = sys.argv[1]
log = os.environ.get("REAL_MODEL_TOOL_LOG")
if log:
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps({"tool": "count_words", "args": {"path": path}}) + "\n")
hold = os.environ.get("REAL_MODEL_TOOL_HOLD")
if hold:
    with open(hold + ".tmp", "w", encoding="utf-8") as f:
        f.write(str(os.getpid()))
    os.replace(hold + ".tmp", hold)
    time.sleep(300)
with open(path, encoding="utf-8", errors="replace") as f:
    print(len(f.read().split()), path)
