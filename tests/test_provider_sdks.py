"""The providers' own Python SDKs as clients of ``asyncfc sim serve --protocol P``.

asyncfc reaches the simulated model through LiteLLM, which may be lenient
where a provider's SDK is not. Here each official SDK (``openai`` for chat
completions and for Responses, ``anthropic``, ``google-genai``) streams a whole
conversation from the sim with tools, through its own stream parser and
accumulator, and runs the tools itself; the text, the tool calls and their
arguments it ends up with must be exactly what ``asyncfc run --model sim:P``
gets on the same plan. The arguments are made to be hard on a streaming
parser: fragments of three characters split escapes, quotes and multi-byte
characters, and the values nest objects, lists, numbers, booleans and null.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import invoke, wait_until

openai = pytest.importorskip("openai", reason="pip install -e '.[test]' brings the openai SDK")
anthropic = pytest.importorskip("anthropic", reason="pip install -e '.[test]' brings the anthropic SDK")
genai = pytest.importorskip("google.genai", reason="pip install -e '.[test]' brings google-genai")

TOOLS_PY = '''
def lookup(key: str, options: dict) -> dict:
    """Look a key up.

    Args:
        key: What to look up.
        options: How to look it up.
    """
    return {"value": f"<{key}:{sorted(options)}>", "size": len(key)}


def combine(left: str, right: str, count: int) -> dict:
    """Join two values.

    Args:
        left: First value.
        right: Second value.
        count: How many times.
    """
    return {"text": f"{left}+{right}x{count}"}
'''

# Arguments a streaming parser must get exactly right: every JSON escape,
# quotes, a backslash, a newline, non-ASCII text and an emoji (a surrogate
# pair when escaped), split three characters at a time.
KEY = 'café ☕ "quoted" back\\slash new\nline tab\t \u00e9 \U0001F600 {braces} $f1'
KEY_TOML = json.dumps(KEY.replace("{", "{{").replace("}", "}}"), ensure_ascii=False)  # a template: braces doubled
PLAN = f"""
[sim]
decode_tps = 4000
ttft = 0
chunk_chars = 3

[[sim.steps]]
id = "a"
think = 5
tool = "lookup"
args = {{ key = {KEY_TOML}, options = {{ depth = 2, ratio = 0.5, flags = [true, false], note = "", nested = {{ list = [1, 2.5, -3, "x"] }} }} }}

[[sim.steps]]
id = "b"
tool = "lookup"
args = {{ key = "plain", options = {{}} }}

[[sim.steps]]
id = "c"
think = 3
tool = "combine"
args = {{ left = "{{a.value}}", right = "{{b.value}}", count = 3 }}

[sim.final]
think = 4
answer = "Combined: {{c.text}} (sizes {{a.size}} and {{b.size}}) — done ✓"
"""
PROMPT = "Look up the two keys and combine them."


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sdk")
    (root / "sdktools.py").write_text(TOOLS_PY)
    (root / "agents.toml").write_text(textwrap.dedent("""
        [tools.lookup]
        python = "sdktools:lookup"
        [tools.combine]
        python = "sdktools:combine"
        """))
    (root / "task.toml").write_text(textwrap.dedent(f"""
        prompt = "{PROMPT}"
        [agent]
        model = "sim"
        tools = ["lookup", "combine"]
        mode = "sync"
        """) + PLAN)
    return root


def local_tools(project: Path) -> dict[str, Callable[..., Any]]:
    namespace: dict[str, Any] = {}
    exec((project / "sdktools.py").read_text(), namespace)
    return {"lookup": namespace["lookup"], "combine": namespace["combine"]}


def schemas(project: Path) -> list[dict[str, Any]]:
    """The tools' schemas as asyncfc sends them (OpenAI function tools)."""
    shown = invoke("tools", str(project / "task.toml"), "--json", catch_exceptions=True)
    assert shown.exit_code == 0, shown.output
    listed = json.loads(shown.stdout)["tools"]
    return [t["schema"] for t in listed if t["name"] in ("lookup", "combine")]


class SimServe:
    """``asyncfc sim serve TASK --protocol P --port 0`` as a process, as a user starts it."""

    def __init__(self, task: Path, protocol: str):
        self.log = task.parent / f"serve-{protocol}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "asyncfc_cli", "sim", "serve", str(task), "--protocol", protocol, "--port", "0"],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "w"), env=dict(os.environ, COLUMNS="400"))
        assert wait_until(lambda: " at http://" in self.log.read_text() or self.proc.poll() is not None, 60), \
            self.log.read_text()
        text = " ".join(self.log.read_text().split())
        assert self.proc.poll() is None, text
        self.base_url = text.split(" at ", 1)[1].split(";", 1)[0]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def asyncfc_run(project: Path, protocol: str) -> dict[str, Any]:
    result = invoke("run", str(project / "task.toml"), "--model", f"sim:{protocol}", "--json",
                    "--trace", str(project / f"trace-{protocol}.jsonl"),
                    catch_exceptions=False)
    report = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    return report


class Outcome:
    """What an SDK made of the conversation: the calls in order, the final text, output tokens."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.text = ""
        self.tokens_out = 0
        self.responses = 0
        self.thinking = ""  # thinking text the SDK surfaced (where it was asked for)


# --- one driver per SDK: the SDK's own streaming helper does the parsing ----------------------


def drive_openai_chat(base_url: str, tools: list[dict], run_tool) -> Outcome:
    client = openai.OpenAI(base_url=base_url, api_key="sim", max_retries=0)
    messages: list[dict[str, Any]] = [{"role": "user", "content": PROMPT}]
    out = Outcome()
    while True:
        with client.chat.completions.stream(model="asyncfc-sim", messages=messages, tools=tools,
                                            stream_options={"include_usage": True}) as stream:
            ready = []
            for event in stream:
                if event.type == "tool_calls.function.arguments.done":
                    ready.append(json.loads(event.arguments))  # each call complete before the stream ends
            completion = stream.get_final_completion()
        out.responses += 1
        out.tokens_out += completion.usage.completion_tokens
        message = completion.choices[0].message
        calls = message.tool_calls or []
        assert [json.loads(c.function.arguments) for c in calls] == ready
        if not calls:
            assert completion.choices[0].finish_reason == "stop"
            out.text = message.content
            return out
        assert completion.choices[0].finish_reason == "tool_calls"
        messages.append({"role": "assistant", "content": message.content,
                         "tool_calls": [{"id": c.id, "type": "function",
                                         "function": {"name": c.function.name, "arguments": c.function.arguments}}
                                        for c in calls]})
        for call in calls:
            args = json.loads(call.function.arguments)
            out.calls.append((call.function.name, args))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": run_tool(call.function.name, args)})


def drive_openai_responses(base_url: str, tools: list[dict], run_tool) -> Outcome:
    client = openai.OpenAI(base_url=base_url, api_key="sim", max_retries=0)
    flat = [{"type": "function", "name": t["function"]["name"], "description": t["function"]["description"],
             "parameters": t["function"]["parameters"]} for t in tools]
    items: list[Any] = [{"type": "message", "role": "user", "content": PROMPT}]
    out = Outcome()
    while True:
        with client.responses.stream(model="asyncfc-sim", input=items, tools=flat,
                                     reasoning={"summary": "auto"}) as stream:
            done_args = [json.loads(e.arguments) for e in stream
                         if e.type == "response.function_call_arguments.done"]
            response = stream.get_final_response()
        out.responses += 1
        out.tokens_out += response.usage.output_tokens
        assert response.status == "completed"
        calls = [item for item in response.output if item.type == "function_call"]
        assert [json.loads(c.arguments) for c in calls] == done_args
        out.thinking += "".join(s.text for item in response.output if item.type == "reasoning"
                                for s in item.summary)
        if not calls:
            out.text = response.output_text
            return out
        items += [item.model_dump(exclude_none=True) for item in response.output]
        for call in calls:
            args = json.loads(call.arguments)
            out.calls.append((call.name, args))
            items.append({"type": "function_call_output", "call_id": call.call_id,
                          "output": run_tool(call.name, args)})


def drive_anthropic(base_url: str, tools: list[dict], run_tool) -> Outcome:
    client = anthropic.Anthropic(base_url=base_url, api_key="sim", max_retries=0)
    declared = [{"name": t["function"]["name"], "description": t["function"]["description"],
                 "input_schema": t["function"]["parameters"]} for t in tools]
    messages: list[dict[str, Any]] = [{"role": "user", "content": PROMPT}]
    out = Outcome()
    while True:
        with client.messages.stream(model="asyncfc-sim", max_tokens=1024, messages=messages, tools=declared,
                                    thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
            for _ in stream:
                pass
            message = stream.get_final_message()
        out.responses += 1
        out.tokens_out += message.usage.output_tokens
        uses = [b for b in message.content if b.type == "tool_use"]
        for block in message.content:
            if block.type == "thinking":
                assert block.signature  # the client must send it back; the SDK keeps it
                out.thinking += block.thinking
        if not uses:
            assert message.stop_reason == "end_turn"
            out.text = "".join(b.text for b in message.content if b.type == "text")
            return out
        assert message.stop_reason == "tool_use"
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]})
        results = []
        for use in uses:
            out.calls.append((use.name, use.input))
            results.append({"type": "tool_result", "tool_use_id": use.id, "content": run_tool(use.name, use.input)})
        messages.append({"role": "user", "content": results})


def drive_gemini(base_url: str, tools: list[dict], run_tool) -> Outcome:
    from google.genai import types

    root, version = base_url.rsplit("/", 1)
    client = genai.Client(api_key="sim", http_options=types.HttpOptions(base_url=root + "/", api_version=version))
    declarations = [types.FunctionDeclaration(name=t["function"]["name"], description=t["function"]["description"],
                                              parameters_json_schema=t["function"]["parameters"]) for t in tools]
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=declarations)],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        thinking_config=types.ThinkingConfig(include_thoughts=True))
    contents: list[Any] = [types.Content(role="user", parts=[types.Part(text=PROMPT)])]
    out = Outcome()
    while True:
        parts: list[Any] = []
        usage = None
        for chunk in client.models.generate_content_stream(model="asyncfc-sim", contents=contents, config=config):
            candidate = chunk.candidates[0]
            parts += [p for p in (candidate.content.parts if candidate.content else None) or []]
            usage = chunk.usage_metadata or usage
        out.responses += 1
        out.tokens_out += (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
        calls = [p.function_call for p in parts if p.function_call]
        out.thinking += "".join(p.text for p in parts if p.text and p.thought)
        if not calls:
            out.text = "".join(p.text for p in parts if p.text and not p.thought)
            return out
        contents.append(types.Content(role="model", parts=parts))
        answers = []
        for call in calls:
            out.calls.append((call.name, call.args))
            result = json.loads(run_tool(call.name, call.args))
            answers.append(types.Part(function_response=types.FunctionResponse(id=call.id, name=call.name,
                                                                               response=result)))
        contents.append(types.Content(role="user", parts=answers))


DRIVERS = {
    "openai": drive_openai_chat,
    "responses": drive_openai_responses,
    "anthropic": drive_anthropic,
    "gemini": drive_gemini,
}


@pytest.mark.parametrize("protocol", list(DRIVERS))
def test_the_providers_sdk_parses_the_sims_stream_as_asyncfc_does(project, protocol):
    tools = schemas(project)
    functions = local_tools(project)

    def run_tool(name: str, args: dict) -> str:
        return json.dumps(functions[name](**args), ensure_ascii=False)

    server = SimServe(project / "task.toml", protocol)
    try:
        sdk = DRIVERS[protocol](server.base_url, tools, run_tool)
    finally:
        server.stop()
    report = asyncfc_run(project, protocol)
    ours = [(c["tool"], c["arguments"]) for c in report["tool_calls"]]
    assert sdk.calls == ours
    assert sdk.text == report["answer"]
    assert sdk.responses == report["usage"]["requests"] == 3
    assert sdk.tokens_out == report["usage"]["tokens_out"]
    if protocol != "openai":  # asked for, thinking comes apart from the answer (chat always streams it apart)
        assert len(sdk.thinking.split()) >= 5 and sdk.thinking not in sdk.text
    # And both are what the plan says, so neither side agrees with the other by accident.
    key = KEY
    assert ours[0] == ("lookup", {"key": key, "options": {"depth": 2, "ratio": 0.5, "flags": [True, False],
                                                           "note": "", "nested": {"list": [1, 2.5, -3, "x"]}}})
    assert ours[1] == ("lookup", {"key": "plain", "options": {}})
    left = functions["lookup"](key, ours[0][1]["options"])["value"]
    assert ours[2] == ("combine", {"left": left, "right": "<plain:[]>", "count": 3})
    assert report["answer"] == f"Combined: {left}+<plain:[]>x3 (sizes {len(key)} and 5) — done ✓"


def first_reply_unstreamed(protocol: str, base_url: str, tools: list[dict]) -> list[tuple[str, Any]]:
    """The first response's calls, asked for without streaming, as the SDK parses the whole body."""
    if protocol == "openai":
        client = openai.OpenAI(base_url=base_url, api_key="sim", max_retries=0)
        reply = client.chat.completions.create(model="asyncfc-sim", messages=[{"role": "user", "content": PROMPT}],
                                               tools=tools)
        assert reply.choices[0].finish_reason == "tool_calls"
        return [(c.function.name, json.loads(c.function.arguments)) for c in reply.choices[0].message.tool_calls]
    if protocol == "responses":
        client = openai.OpenAI(base_url=base_url, api_key="sim", max_retries=0)
        flat = [{"type": "function", "name": t["function"]["name"], "description": t["function"]["description"],
                 "parameters": t["function"]["parameters"]} for t in tools]
        reply = client.responses.create(model="asyncfc-sim", input=PROMPT, tools=flat)
        assert reply.status == "completed"
        return [(o.name, json.loads(o.arguments)) for o in reply.output if o.type == "function_call"]
    if protocol == "anthropic":
        client = anthropic.Anthropic(base_url=base_url, api_key="sim", max_retries=0)
        reply = client.messages.create(model="asyncfc-sim", max_tokens=1024, messages=[{"role": "user", "content": PROMPT}],
                                       tools=[{"name": t["function"]["name"], "description": t["function"]["description"],
                                               "input_schema": t["function"]["parameters"]} for t in tools])
        assert reply.stop_reason == "tool_use"
        return [(b.name, b.input) for b in reply.content if b.type == "tool_use"]
    from google.genai import types

    root, version = base_url.rsplit("/", 1)
    client = genai.Client(api_key="sim", http_options=types.HttpOptions(base_url=root + "/", api_version=version))
    declarations = [types.FunctionDeclaration(name=t["function"]["name"], description=t["function"]["description"],
                                              parameters_json_schema=t["function"]["parameters"]) for t in tools]
    reply = client.models.generate_content(model="asyncfc-sim", contents=PROMPT, config=types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=declarations)],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)))
    return [(p.function_call.name, p.function_call.args) for p in reply.candidates[0].content.parts if p.function_call]


@pytest.mark.parametrize("protocol", list(DRIVERS))
def test_the_providers_sdk_parses_an_unstreamed_reply_too(project, protocol):
    server = SimServe(project / "task.toml", protocol)
    try:
        calls = first_reply_unstreamed(protocol, server.base_url, schemas(project))
    finally:
        server.stop()
    assert calls == [("lookup", {"key": KEY, "options": {"depth": 2, "ratio": 0.5, "flags": [True, False], "note": "",
                                                        "nested": {"list": [1, 2.5, -3, "x"]}}}),
                     ("lookup", {"key": "plain", "options": {}})]
