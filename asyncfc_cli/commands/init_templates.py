"""The files ``asyncfc init`` writes: a project that runs offline at once.

Kept as strings (no package data to ship). ``tests/test_init.py`` runs the
generated project through ``asyncfc validate`` and ``asyncfc run`` on the
simulated model, so these files cannot rot unnoticed.
"""

from __future__ import annotations

AGENTS_TOML = '''\
# Agents, models and tools of this project (written by `asyncfc init`).
#
#   asyncfc run tasks/hello.toml                  run the task on the simulated model (offline)
#   asyncfc run tasks/hello.toml --set name=Ada   the same with another parameter
#   asyncfc run -a hello "Say hi"                 a prompt without a task file
#   asyncfc tools hello                           what the model is told about each tool
#   asyncfc validate agents.toml tasks/hello.toml check everything, run nothing
#
# ${VAR} and ${VAR:-default} in strings are read from the environment.

[models.sim]
# The embedded simulated model: a local OpenAI-compatible server that asyncfc
# starts for the run. It follows the [sim] plan in each task; no API key.
model = "sim"

# A real model: any LiteLLM model string. Run with --model openai (or set
# ASYNCFC_MODEL=openai); the key comes from OPENAI_API_KEY, never this file.
[models.openai]
model = "openai/gpt-4o-mini"
api_key_env = "OPENAI_API_KEY"

# A Python tool: the function in tools/hello.py, imported as it is. The model
# sees a JSON schema made from its signature and docstring.
[tools.greet]
python = "tools.hello:greet"
timeout = 10
expected_latency = 0.5        # seconds a call usually takes, until asyncfc has measured it

# A command tool: an argv list, never a shell. Each {param} is exactly one
# argument; a path param must resolve inside root. The model gets
# {"exit_code": ..., "stdout": "...", "stderr": "..."} back.
[tools.count_words]
description = "Count the words of a file in this project (wc -w)."
command = ["wc", "-w", "--", "{path}"]
root = "."                    # relative to this file
timeout = 10
[tools.count_words.params]
path = { type = "string", description = "File, relative to the project", path = true }

[agents.hello]
model = "sim"                 # or "openai", or any LiteLLM model string
instructions = "You greet people and count words with the tools, then answer in one sentence."
tools = ["greet", "count_words"]
mode = "async"                # sync | parallel | async
timeout = 60
'''

HELLO_TASK = '''\
# A task: which agent, the prompt, and what a good answer looks like.
#
#   asyncfc run tasks/hello.toml
#   asyncfc run tasks/hello.toml --set name=Ada --set file=agents.toml
#   asyncfc run tasks/hello.toml --mode sync      (the same answer, slower)

agent = "hello"
description = "Count the words of a file and greet someone with the count"
prompt = "Count the words in {file}, then greet {name} and tell them the count."

[params]                      # defaults for {name} in the prompt and the [sim] plan; override with --set
name = "world"
file = "tools/hello.py"

[expect]                      # checked after a successful run (exit 3 if not met)
contains = ["Hello, "]
tools_called = ["count_words", "greet"]

# What the simulated model does (a real model ignores this). {name} and {file}
# are the parameters above; {count.stdout} is a part of the result of step
# "count", which in async mode the model forwards to greet as a future.
[sim]
decode_tps = 60               # tokens per second
ttft = 0.2                    # seconds to the first token, plus prompt tokens / prefill_tps

[[sim.steps]]
id = "count"
think = 12                    # tokens of thinking before the call
tool = "count_words"
args = { path = "{file}" }

[[sim.steps]]
id = "greeting"
think = 8
tool = "greet"
args = { name = "{name}", wc_output = "{count.stdout}" }

[sim.final]
think = 10
answer = "{greeting}"
'''

HELLO_TOOLS = '''\
"""Python tools of this project: plain functions, imported as they are.

A tool's description and parameter schema come from its signature and
docstring (see them with `asyncfc tools hello`). A tool may be sync (it
runs in a worker thread) or `async def` (it runs on trio; one written for
asyncio needs async_backend = "asyncio" on its [tools.NAME] table).
"""

import time


def greet(name: str, wc_output: str) -> str:
    """Greet someone and tell them how many words a file has.

    Args:
        name: Who to greet.
        wc_output: What `wc -w FILE` printed, e.g. "57 tools/hello.py".
    """
    time.sleep(0.5)  # stands in for real work, so the timeline has something to show
    count, _, file = wc_output.strip().partition(" ")
    return f"Hello, {name}! {file or 'The file'} has {count} words."
'''

FILES: dict[str, str] = {
    "agents.toml": AGENTS_TOML,
    "tasks/hello.toml": HELLO_TASK,
    "tools/__init__.py": "",
    "tools/hello.py": HELLO_TOOLS,
}
