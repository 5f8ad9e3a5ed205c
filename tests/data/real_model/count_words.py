"""A command tool for the real-model tests: count the words of a file, and log the execution."""

import json
import os
import sys

path = sys.argv[1]
log = os.environ.get("REAL_MODEL_TOOL_LOG")
if log:
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps({"tool": "count_words", "args": {"path": path}}) + "\n")
with open(path, encoding="utf-8", errors="replace") as f:
    print(len(f.read().split()), path)
