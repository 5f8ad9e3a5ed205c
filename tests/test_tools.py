"""Tool registry: config validation, schemas, invocation, command safety."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
import pytest
import trio

from asyncfc_cli.tools import (
    CommandToolConfig,
    PythonToolConfig,
    Tool,
    ToolError,
    ToolLoadError,
    build_tool,
    build_tools,
    parse_docstring,
    parse_tool_config,
)
from conftest import invoke

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def write_module(directory: Path, source: str) -> str:
    """Write a uniquely named module so sys.modules caching never mixes tests."""
    name = f"tmod_{uuid.uuid4().hex[:10]}"
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


def py_tool(tmp_path: Path, source: str, func: str, **extra) -> Tool:
    mod = write_module(tmp_path, source)
    return build_tool(func, {"python": f"{mod}:{func}", **extra}, tmp_path)


def cmd_tool(base: Path, command: list[str], params: dict | None = None, **extra) -> Tool:
    raw = {"command": command, "description": "test command", **extra}
    if params is not None:
        raw["params"] = params
    return build_tool("cmd", raw, base)


def alive(pid: int) -> bool:
    # Zombies count as dead: in a container PID 1 may never reap orphans.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


# ---------------------------------------------------------------- schemas

TYPED_SOURCE = '''
from typing import Literal, Optional

def typed(count: int, ratio: float, flag: bool, name: str, tags: list[str],
          mode: Literal["fast", "slow"] = "fast", limit: Optional[int] = None,
          anything=None, level: int = 3) -> dict:
    """Do typed things
    across two lines.

    This second paragraph is not part of the summary.

    Args:
        count: How many.
        ratio (float): A ratio
            that wraps onto a second line.
        flag: A flag.
        name: A name.
        tags: Some tags.
        mode: Speed mode.
        limit: Optional cap.
        anything: Whatever you like.
        level: A level.

    Returns:
        Everything it got.
    """
    return dict(count=count, ratio=ratio, flag=flag, name=name, tags=tags,
                mode=mode, limit=limit, anything=anything, level=level)
'''


def test_schema_from_signature_and_google_docstring(tmp_path):
    tool = py_tool(tmp_path, TYPED_SOURCE, "typed")
    schema = tool.parameters
    props = schema["properties"]
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["count", "ratio", "flag", "name", "tags"]
    assert list(props) == [
        "count", "ratio", "flag", "name", "tags", "mode", "limit", "anything", "level",
    ]
    assert props["count"] == {"type": "integer", "description": "How many."}
    assert props["ratio"] == {
        "type": "number",
        "description": "A ratio that wraps onto a second line.",
    }
    assert props["flag"]["type"] == "boolean"
    assert props["name"]["type"] == "string"
    assert props["tags"]["type"] == "array"
    assert props["tags"]["items"] == {"type": "string"}
    assert props["mode"]["enum"] == ["fast", "slow"]
    assert props["mode"]["default"] == "fast"
    assert {"type": "integer"} in props["limit"]["anyOf"]
    assert {"type": "null"} in props["limit"]["anyOf"]
    assert props["limit"]["default"] is None
    assert "type" not in props["anything"]  # unannotated: any JSON value
    assert props["anything"]["description"] == "Whatever you like."
    assert props["level"]["default"] == 3
    assert not any("title" in p for p in props.values())
    assert tool.description == "Do typed things across two lines."
    assert tool.kind == "python"
    assert tool.openai_schema() == {
        "type": "function",
        "function": {
            "name": "typed",
            "description": tool.description,
            "parameters": schema,
        },
    }


def test_schema_from_rest_docstring_and_description_override(tmp_path):
    source = '''
    def rest(path: str, depth: int = 1):
        """Walk a tree.

        :param path: Where to start
            walking.
        :param int depth: How deep to go.
        :returns: nothing
        """
    '''
    tool = py_tool(tmp_path, source, "rest")
    assert tool.parameters["properties"]["path"]["description"] == "Where to start walking."
    assert tool.parameters["properties"]["depth"]["description"] == "How deep to go."
    assert tool.description == "Walk a tree."
    mod = write_module(tmp_path, source)
    over = build_tool("rest", {"python": f"{mod}:rest", "description": "Custom."}, tmp_path)
    assert over.description == "Custom."


def test_parse_docstring_numpy_style():
    summary, params = parse_docstring(
        """Sum things.

        Parameters
        ----------
        a : int
            First one.
        b : int
            Second one.

        Returns
        -------
        int
        """
    )
    assert summary == "Sum things."
    assert params == {"a": "First one.", "b": "Second one."}


def test_param_names_that_clash_with_pydantic_still_work(tmp_path):
    source = '''
    def odd(schema: str, model_config: int = 1, _hidden: bool = False):
        return [schema, model_config, _hidden]
    '''
    tool = py_tool(tmp_path, source, "odd")
    assert list(tool.parameters["properties"]) == ["schema", "model_config", "_hidden"]

    async def go():
        return await tool.invoke({"schema": "s", "_hidden": True})

    assert trio.run(go) == ["s", 1, True]


def test_tool_config_fields_are_carried(tmp_path):
    mod = write_module(tmp_path, "def f():\n    return 1\n")
    tool = build_tool(
        "f",
        {"python": f"{mod}:f", "timeout": 2.5, "ordered": True, "max_concurrency": 3},
        tmp_path,
    )
    assert (tool.timeout, tool.ordered, tool.max_concurrency) == (2.5, True, 3)
    assert tool.parameters["properties"] == {}
    plain = build_tool("f", {"python": f"{mod}:f"}, tmp_path)
    assert (plain.timeout, plain.ordered, plain.max_concurrency) == (None, False, None)


# ---------------------------------------------------------------- python invoke

async def test_typed_tool_validates_and_coerces(tmp_path):
    tool = py_tool(tmp_path, TYPED_SOURCE, "typed")
    out = await tool.invoke(
        {"count": "3", "ratio": 2, "flag": True, "name": "n", "tags": ["a"], "limit": 4}
    )
    assert out == {
        "count": 3, "ratio": 2.0, "flag": True, "name": "n", "tags": ["a"],
        "mode": "fast", "limit": 4, "anything": None, "level": 3,
    }


@pytest.mark.parametrize(
    "arguments, fragments",
    [
        ({"ratio": 1, "flag": True, "name": "n", "tags": []}, ["missing required argument 'count'", "integer"]),
        ({"count": "many", "ratio": 1, "flag": True, "name": "n", "tags": []}, ["argument 'count'", "expected integer"]),
        ({"count": 1, "ratio": 1, "flag": True, "name": "n", "tags": [1]}, ["argument 'tags'[0]", "array of string"]),
        ({"count": 1, "ratio": 1, "flag": True, "name": "n", "tags": [], "mode": "warp"}, ["argument 'mode'", '"fast", "slow"']),
        ({"count": 1, "ratio": 1, "flag": True, "name": "n", "tags": [], "bogus": 1}, ["unknown argument 'bogus'", "valid: count"]),
    ],
)
async def test_argument_errors_name_argument_and_expectation(tmp_path, arguments, fragments):
    tool = py_tool(tmp_path, TYPED_SOURCE, "typed")
    with pytest.raises(ToolError) as info:
        await tool.invoke(arguments)
    assert info.value.message.startswith("invalid arguments for 'typed': ")
    for fragment in fragments:
        assert fragment in info.value.message


async def test_non_object_arguments_rejected(tmp_path):
    tool = py_tool(tmp_path, "def f():\n    return 1\n", "f")
    with pytest.raises(ToolError, match="JSON object"):
        await tool.invoke(["x"])
    assert await tool.invoke(None) == 1


async def test_async_tool_is_awaited_in_trio(tmp_path):
    source = '''
    import trio
    async def slow_double(x: int) -> int:
        await trio.sleep(0.01)
        return 2 * x
    '''
    tool = py_tool(tmp_path, source, "slow_double")
    assert await tool.invoke({"x": 21}) == 42


async def test_sync_tool_runs_in_worker_thread_without_blocking_loop(tmp_path):
    # The tool blocks until the loop has ticked ten times: it can only return
    # (True) if the loop kept running while it blocked, however slow the machine.
    source = '''
    import threading
    ticked = threading.Event()
    def block() -> list:
        return [ticked.wait(30), threading.get_ident()]
    '''
    mod = write_module(tmp_path, source)
    tool = build_tool("block", {"python": f"{mod}:block"}, tmp_path)

    async def ticker():
        for _ in range(10):
            await trio.sleep(0.01)
        sys.modules[mod].ticked.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        ticked_in_time, ident = await tool.invoke({})
    assert ticked_in_time, "the loop did not run while the tool blocked"
    assert ident != threading.get_ident()


async def test_tool_exception_becomes_tool_error(tmp_path):
    source = '''
    def boom(x: int):
        raise ValueError(f"bad x {x}")
    async def aboom():
        raise KeyError("k")
    '''
    mod = write_module(tmp_path, source)
    with pytest.raises(ToolError) as info:
        await build_tool("boom", {"python": f"{mod}:boom"}, tmp_path).invoke({"x": 1})
    assert info.value.message == "ValueError: bad x 1"
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(ToolError, match="^KeyError: 'k'$"):
        await build_tool("aboom", {"python": f"{mod}:aboom"}, tmp_path).invoke({})


async def test_return_value_must_be_json_serialisable(tmp_path):
    source = '''
    import dataclasses
    @dataclasses.dataclass
    class Point:
        x: int
        y: int
    def bad():
        return object()
    def point():
        return Point(1, 2)
    def tup():
        return (1, "a")
    '''
    mod = write_module(tmp_path, source)
    with pytest.raises(ToolError, match="not JSON-serialisable") as info:
        await build_tool("bad", {"python": f"{mod}:bad"}, tmp_path).invoke({})
    assert info.value.message.startswith("tool 'bad' returned a object that is not JSON-serialisable")
    assert await build_tool("point", {"python": f"{mod}:point"}, tmp_path).invoke({}) == {"x": 1, "y": 2}
    assert await build_tool("tup", {"python": f"{mod}:tup"}, tmp_path).invoke({}) == [1, "a"]


async def test_async_tool_is_cancelled(tmp_path):
    source = '''
    import trio
    state = {"cancelled": False}
    async def wait_long():
        try:
            await trio.sleep(30)
        except trio.Cancelled:
            state["cancelled"] = True
            raise
    '''
    mod = write_module(tmp_path, source)
    tool = build_tool("wait_long", {"python": f"{mod}:wait_long"}, tmp_path)
    start = time.monotonic()
    with trio.move_on_after(0.1) as scope:
        await tool.invoke({})
    assert scope.cancelled_caught
    assert time.monotonic() - start < 15  # cancelled, not the 30 s sleep (wide: a loaded machine is slow)
    assert sys.modules[mod].state["cancelled"]


async def test_sync_tool_is_abandoned_on_cancel(tmp_path):
    # The tool blocks until the test releases it: a cancelled call that waited
    # for its thread would never return here.
    source = '''
    import threading
    release, finished = threading.Event(), threading.Event()
    def nap():
        release.wait(60)
        finished.set()
    '''
    mod = write_module(tmp_path, source)
    tool = build_tool("nap", {"python": f"{mod}:nap"}, tmp_path)
    with trio.move_on_after(0.1) as scope:
        await tool.invoke({})
    assert scope.cancelled_caught
    state = sys.modules[mod]
    assert not state.finished.is_set()  # the call returned while its thread still ran
    state.release.set()
    assert await trio.to_thread.run_sync(state.finished.wait, 30)  # and the thread then ended


async def test_asyncio_backend_runs_and_cancels_asyncio_code(tmp_path):
    source = '''
    import asyncio, threading
    started, cancelled = threading.Event(), threading.Event()
    async def aio(x: int) -> int:
        await asyncio.sleep(0.01)
        return x + 1
    async def aio_long():
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
    '''
    mod = write_module(tmp_path, source)
    trio_tool = build_tool("aio", {"python": f"{mod}:aio"}, tmp_path)
    with pytest.raises(ToolError, match='async_backend = "asyncio"'):
        await trio_tool.invoke({"x": 1})
    tool = build_tool("aio", {"python": f"{mod}:aio", "async_backend": "asyncio"}, tmp_path)
    assert await tool.invoke({"x": 1}) == 2
    long = build_tool("aio_long", {"python": f"{mod}:aio_long", "async_backend": "asyncio"}, tmp_path)
    state = sys.modules[mod]
    # Cancelled once it runs (on a loaded machine it may take a while to start).
    async with trio.open_nursery() as nursery:
        nursery.start_soon(long.invoke, {})
        assert await trio.to_thread.run_sync(state.started.wait, 30)
        nursery.cancel_scope.cancel()
    assert await trio.to_thread.run_sync(state.cancelled.wait, 30)


async def test_example_tools(tmp_path):
    sample = tmp_path / "sample.txt"
    sample.write_text("one two\nthree\n")
    word_count = build_tool("word_count", {"python": "tools.textstats:word_count"}, REPO)
    assert await word_count.invoke({"path": str(sample)}) == {
        "path": str(sample), "lines": 2, "words": 3, "chars": 14,
    }
    top = build_tool("top_words", {"python": "tools.textstats:top_words"}, REPO)
    assert top.parameters["properties"]["n"]["default"] == 5
    assert await top.invoke({"text": "a b a c a b", "n": 2}) == [
        {"word": "a", "count": 3}, {"word": "b", "count": 2},
    ]
    slow = build_tools(
        {
            "fetch": {"python": "tools.slow:fetch"},
            "compute": {"python": "tools.slow:compute"},
            "lookup": {"python": "tools.slow:lookup"},
        },
        REPO,
    )
    page = await slow["fetch"].invoke({"url": "https://example.org/a-b", "delay": 0})
    assert page == await slow["fetch"].invoke({"url": "https://example.org/a-b", "delay": 0})
    assert page["title"] == "A B"
    assert await slow["compute"].invoke({"x": 2, "y": 3, "delay": 0}) == 8
    assert "France" in await slow["lookup"].invoke({"key": "Paris", "delay": 0})
    for tool in slow.values():
        assert tool.description and all(
            p.get("description") for p in tool.parameters["properties"].values()
        )


# ---------------------------------------------------------------- python load errors

def test_import_error_names_path_error_and_fix(tmp_path):
    with pytest.raises(ToolLoadError) as info:
        build_tool("nope", {"python": "no_such_pkg_xyz.mod:func"}, tmp_path)
    msg = str(info.value)
    assert "'nope'" in msg and "no_such_pkg_xyz.mod:func" in msg
    assert "ModuleNotFoundError" in msg
    assert "Fix:" in msg and str(tmp_path) in msg


def test_import_time_exception_and_missing_attribute(tmp_path):
    broken = write_module(tmp_path, "raise RuntimeError('kaboom at import')\n")
    with pytest.raises(ToolLoadError, match="RuntimeError: kaboom at import"):
        build_tool("b", {"python": f"{broken}:f"}, tmp_path)
    mod = write_module(tmp_path, "import os\ndef real_one():\n    pass\nVALUE = 3\n")
    with pytest.raises(ToolLoadError, match="has no attribute 'typo'.*real_one") as info:
        build_tool("t", {"python": f"{mod}:typo"}, tmp_path)
    assert "getcwd" not in str(info.value)  # imported names are not suggested
    with pytest.raises(ToolLoadError, match="not a callable"):
        build_tool("t", {"python": f"{mod}:VALUE"}, tmp_path)


def test_sys_path_is_restored_after_import(tmp_path):
    before = list(sys.path)
    mod = write_module(tmp_path, "def f():\n    pass\n")
    build_tool("f", {"python": f"{mod}:f"}, tmp_path)
    with pytest.raises(ToolLoadError):
        build_tool("f", {"python": "missing_mod_q:f"}, tmp_path)
    assert sys.path == before


def test_unschemable_parameter_is_a_load_error(tmp_path):
    source = '''
    class Opaque:
        pass
    def f(thing: Opaque):
        pass
    '''
    with pytest.raises(ToolLoadError, match="parameter 'thing'"):
        py_tool(tmp_path, source, "f")


# ---------------------------------------------------------------- config validation

def test_parse_tool_config_kinds():
    assert isinstance(parse_tool_config({"python": "a.b:c"}), PythonToolConfig)
    cfg = parse_tool_config({"command": ["ls"], "description": "List."})
    assert isinstance(cfg, CommandToolConfig)
    assert cfg.ok_codes == [0] and cfg.max_output == 65536


@pytest.mark.parametrize(
    "raw, fragments",
    [
        ({"python": "a:b", "command": ["ls"]}, ["both python and command"]),
        ({"description": "x"}, ["exactly one of python", "command"]),
        ({"python": "not an import path"}, ["module:function", "tools.textstats:word_count"]),
        ({"python": "a:b", "colour": "red"}, ["colour: unknown key", "valid keys", "timeout"]),
        ({"python": "a:b", "timeout": -1}, ["timeout"]),
        ({"command": ["ls"]}, ["description"]),
        ({"command": [], "description": "d"}, ["command"]),
        (
            {"command": ["echo", "{who}"], "description": "d"},
            ["placeholder {who}", "not a declared param", "params", "{{who}}"],
        ),
        (
            {"command": ["echo", "hi"], "description": "d", "params": {"who": {}}},
            ["param 'who'", "never used", "\"{who}\""],
        ),
        (
            {"command": ["echo", "{who"], "description": "d", "params": {"who": {}}},
            ["bad placeholder", "'{{'"],
        ),
        (
            {"command": ["echo", "a}b"], "description": "d"},
            ["unmatched '}'", "'}}'"],
        ),
        (
            {"command": ["{prog}", "x"], "description": "d", "params": {"prog": {}}},
            ["executable", "cannot contain placeholders"],
        ),
        (
            {"command": ["echo", "{n}"], "description": "d", "params": {"n": {"type": "int"}}},
            ["params.n.type", "'string'", "'integer'"],
        ),
        (
            {"command": ["echo", "{n}"], "description": "d", "params": {"n": {"type": "integer", "default": "x"}}},
            ["default 'x' is not a valid integer"],
        ),
        (
            {"command": ["echo", "{n}"], "description": "d", "params": {"n": {"type": "integer", "path": True}}},
            ["path = true needs type = \"string\""],
        ),
        (
            {"command": ["echo", "{p}"], "description": "d", "root": ".", "params": {"p": {}}},
            ["root is set but no param has path = true"],
        ),
    ],
)
def test_config_errors_are_clear(tmp_path, raw, fragments):
    with pytest.raises(ToolLoadError) as info:
        build_tool("t", raw, tmp_path)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_bad_tool_name_and_build_tools_reports_all(tmp_path):
    with pytest.raises(ToolLoadError, match="letters, digits"):
        build_tool("has space", {"command": ["ls"], "description": "d"}, tmp_path)
    with pytest.raises(ToolLoadError) as info:
        build_tools({"a": {}, "b": {"python": "x", "command": []}}, tmp_path)
    assert "tool 'a'" in str(info.value) and "tool 'b'" in str(info.value)


def test_literal_braces_and_embedded_placeholders(tmp_path):
    tool = cmd_tool(
        tmp_path,
        ["echo", "{{literal}}", "--max-count={n}", "{{{n}}}"],
        {"n": {"type": "integer"}},
    )
    assert tool.parameters == {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }

    async def go():
        return await tool.invoke({"n": 7})

    assert trio.run(go)["stdout"] == "{literal} --max-count=7 {7}\n"


# ---------------------------------------------------------------- command tools

ECHO_ARGV = [PY, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))"]

HOSTILE = [
    "x; rm -rf /",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a'b\"c",
    "line1\nline2",
    "-rf",
    "--help",
    "two words",
    "*",
    "| touch PWNED &",
    "",
    "ünï €",
]


@pytest.mark.parametrize("value", HOSTILE)
async def test_hostile_values_stay_one_argv_element(tmp_path, value):
    tool = cmd_tool(
        tmp_path, ECHO_ARGV + ["{value}", "--opt={value}"], {"value": {"type": "string"}}
    )
    before = set(os.listdir(tmp_path))
    out = await tool.invoke({"value": value})
    assert json.loads(out["stdout"]) == [value, f"--opt={value}"]
    assert out["exit_code"] == 0
    assert not (tmp_path / "PWNED").exists()
    assert set(os.listdir(tmp_path)) == before


async def test_typed_params_render_as_json_text(tmp_path):
    tool = cmd_tool(
        tmp_path,
        ECHO_ARGV + ["{i}", "{f}", "{b}", "{d}"],
        {
            "i": {"type": "integer"},
            "f": {"type": "number"},
            "b": {"type": "boolean"},
            "d": {"type": "number", "default": 0.5, "description": "Half."},
        },
    )
    assert tool.parameters["properties"]["d"] == {"type": "number", "description": "Half.", "default": 0.5}
    assert tool.parameters["required"] == ["i", "f", "b"]
    out = await tool.invoke({"i": 3, "f": 2.5, "b": True})
    assert json.loads(out["stdout"]) == ["3", "2.5", "true", "0.5"]
    out = await tool.invoke({"i": "4", "f": 2, "b": False, "d": 1e-7})
    assert json.loads(out["stdout"]) == ["4", "2", "false", "1e-07"]
    with pytest.raises(ToolError, match="argument 'i'"):
        await tool.invoke({"i": True, "f": 1, "b": True})
    with pytest.raises(ToolError, match="argument 'f'"):
        await tool.invoke({"i": 1, "f": float("nan"), "b": True})
    with pytest.raises(ToolError, match="argument 'i'.*expected integer"):
        await tool.invoke({"i": "3; ls", "f": 1, "b": True})


async def test_nul_in_value_is_an_argument_error(tmp_path):
    tool = cmd_tool(tmp_path, ECHO_ARGV + ["{v}"], {"v": {}})
    with pytest.raises(ToolError, match="NUL") as info:
        await tool.invoke({"v": "a\x00b"})
    assert info.value.message.startswith("invalid arguments for ")
    assert "argument 'v' contains a NUL character" in info.value.message


async def test_cwd_and_minimal_env(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    monkeypatch.setenv("ASYNCFC_TEST_SECRET", "hunter2")
    tool = cmd_tool(
        tmp_path,
        [PY, "-c", "import os, json; print(json.dumps([os.getcwd(), dict(os.environ)]))"],
        cwd="sub",
        env={"LC_ALL": "C"},
    )
    out = await tool.invoke({})
    cwd, env = json.loads(out["stdout"])
    assert cwd == str((tmp_path / "sub").resolve())
    assert env["LC_ALL"] == "C"
    assert "ASYNCFC_TEST_SECRET" not in env
    assert set(env) <= {"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "ASYNCFC_TOOL_TOKEN"}
    assert env["ASYNCFC_TOOL_TOKEN"].count(":") == 1  # <run>:<call>, for the process sweep


def test_missing_cwd_is_a_load_error(tmp_path):
    with pytest.raises(ToolLoadError, match="cwd"):
        cmd_tool(tmp_path, ["ls"], cwd="does-not-exist")


async def test_ok_codes_and_failure_message(tmp_path):
    (tmp_path / "f.txt").write_text("hello\n")
    grep = ["grep", "-n", "-e", "{pattern}", "--", "f.txt"]
    strict = cmd_tool(tmp_path, grep, {"pattern": {}})
    with pytest.raises(ToolError, match="exited with code 1") as info:
        await strict.invoke({"pattern": "absent"})
    assert info.value.message == "command exited with code 1 (ok codes: [0]); stdout tail: (empty)"
    lenient = cmd_tool(tmp_path, grep, {"pattern": {}}, ok_codes=[0, 1])
    assert await lenient.invoke({"pattern": "absent"}) == {"exit_code": 1, "stdout": "", "stderr": ""}
    assert (await lenient.invoke({"pattern": "hel"}))["stdout"] == "1:hello\n"
    failing = cmd_tool(
        tmp_path,
        [PY, "-c", "import sys; sys.stderr.write('early\\n' + 'x' * 5000 + '\\nthe real reason\\n'); sys.exit(3)"],
        ok_codes=[0, 1],
    )
    with pytest.raises(ToolError) as info:
        await failing.invoke({})
    assert "exited with code 3" in info.value.message
    assert "the real reason" in info.value.message
    assert "early" not in info.value.message  # only the tail


def test_missing_executable_is_a_load_error(tmp_path):
    with pytest.raises(ToolLoadError, match="program 'definitely-not-a-program-xyz' is not found on PATH"):
        cmd_tool(tmp_path, ["definitely-not-a-program-xyz", "a"])
    with pytest.raises(ToolLoadError, match="on the PATH set in its env"):
        cmd_tool(tmp_path, ["ls"], env={"PATH": str(tmp_path)})
    with pytest.raises(ToolLoadError, match="'./nope.sh' does not exist"):
        cmd_tool(tmp_path, ["./nope.sh"])
    (tmp_path / "plain.sh").write_text("echo hi\n")
    with pytest.raises(ToolLoadError, match="'./plain.sh' is not executable"):
        cmd_tool(tmp_path, ["./plain.sh"])


async def test_executable_gone_at_run_time_is_a_tool_error_without_the_path(tmp_path, monkeypatch):
    script = tmp_path / "gone.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    tool = cmd_tool(tmp_path, ["gone.sh"])
    script.unlink()
    with pytest.raises(ToolError, match="'gone.sh' not found") as info:
        await tool.invoke({})
    assert info.value.message.endswith("the tool cannot run on this machine")
    assert str(tmp_path) not in info.value.message and "/usr/bin" not in info.value.message


async def test_relative_executable_resolves_against_base_dir(tmp_path):
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\necho hi from script\n")
    script.chmod(0o755)
    (tmp_path / "elsewhere").mkdir()
    tool = cmd_tool(tmp_path, ["./hello.sh"], cwd="elsewhere")
    assert (await tool.invoke({}))["stdout"] == "hi from script\n"


async def test_output_is_capped_and_marked(tmp_path):
    tool = cmd_tool(
        tmp_path,
        [PY, "-c", "import sys; sys.stdout.write('a' * 300000); sys.stderr.write('e' * 50)"],
        max_output=1000,
    )
    out = await tool.invoke({})
    assert out["stdout"] == "a" * 1000 + "\n[... 299000 bytes cut]"
    assert out["stderr"] == "e" * 50


async def test_invalid_utf8_is_replaced(tmp_path):
    tool = cmd_tool(tmp_path, [PY, "-c", "import sys; sys.stdout.buffer.write(b'ok\\xff')"])
    assert (await tool.invoke({}))["stdout"] == "ok\ufffd"


async def test_cancel_kills_command_and_its_children(tmp_path):
    tool = cmd_tool(tmp_path, ["sh", "-c", "sleep 30 & echo $! > pids.tmp; echo $$ >> pids.tmp; mv pids.tmp pids; wait"])
    pidfile = tmp_path / "pids"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tool.invoke, {})
        with trio.fail_after(60):
            while not pidfile.exists():  # both processes run: now cancel
                await trio.sleep(0.02)
        cancelled = time.monotonic()
        nursery.cancel_scope.cancel()
    # Cancelled, not the 30 s sleep (wide: a loaded machine is slow).
    assert time.monotonic() - cancelled < 15
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 15
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        await trio.sleep(0.02)
    assert not any(alive(p) for p in pids)


async def test_background_child_does_not_hold_up_a_finished_command(tmp_path):
    tool = cmd_tool(tmp_path, ["sh", "-c", "sleep 60 & echo $! > pid; echo done"])
    start = time.monotonic()
    out = await tool.invoke({})
    # About a second (the grace for the pipes), not the child's 60 s; wide for a loaded machine.
    assert time.monotonic() - start < 20
    assert out["stdout"] == "done\n"
    pid = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + 15
    while alive(pid) and time.monotonic() < deadline:
        await trio.sleep(0.02)
    assert not alive(pid)


@pytest.fixture
def rooted(tmp_path):
    root = tmp_path / "root"
    (root / "inner").mkdir(parents=True)
    (root / "inner" / "ok.txt").write_text("fine\n")
    (tmp_path / "secret.txt").write_text("secret\n")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    (root / "inner_link").symlink_to(root / "inner")
    tool = cmd_tool(
        tmp_path,
        ["cat", "--", "{path}"],
        {"path": {"type": "string", "path": True, "default": "inner/ok.txt"}},
        cwd="root",
        root="root",
    )
    return tool


async def test_path_inside_root_is_allowed(rooted):
    assert (await rooted.invoke({}))["stdout"] == "fine\n"
    assert (await rooted.invoke({"path": "inner_link/ok.txt"}))["stdout"] == "fine\n"
    assert (await rooted.invoke({"path": "inner/../inner/ok.txt"}))["stdout"] == "fine\n"


@pytest.mark.parametrize("path", ["../secret.txt", "inner/../../secret.txt", "escape", "/etc/passwd"])
async def test_path_escaping_root_is_refused(rooted, path):
    with pytest.raises(ToolError, match="outside the allowed root") as info:
        await rooted.invoke({"path": path})
    assert info.value.message.startswith("argument 'path': path ")
    assert info.value.message.endswith("use a path inside it")


def test_tool_dataclass_can_wrap_any_runner():
    async def runner(arguments):
        return {"got": arguments}

    tool = Tool(name="echo", description="Echo.", parameters={"type": "object", "properties": {}}, kind="builtin", runner=runner)
    assert dataclasses.asdict(tool)["name"] == "echo"

    async def go():
        return await tool.invoke({"a": 1})

    assert trio.run(go) == {"got": {"a": 1}}


def test_same_module_name_from_another_dir_is_refused(tmp_path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "__init__.py").write_text("")
    (tmp_path / "tools" / "textstats.py").write_text("def word_count():\n    return 'impostor'\n")
    build_tool("word_count", {"python": "tools.textstats:word_count"}, REPO)
    with pytest.raises(ToolLoadError, match="already imported from"):
        build_tool("word_count", {"python": "tools.textstats:word_count"}, tmp_path)


async def test_failed_command_says_its_exit_code_and_output(tmp_path):
    tool = cmd_tool(tmp_path, [PY, "-c", "print('out'); raise SystemExit(4)"])
    with pytest.raises(ToolError) as info:
        await tool.invoke({})
    assert "exited with code 4" in info.value.message
    assert info.value.message.endswith("stdout tail: out")


# ---------------------------------------------------------------- validate and run refuse what cannot work

UNWORKABLE = {
    "*args": ('[tools.t]\npython = "{mod}:star"\n', "takes *values, which a model's JSON arguments cannot fill"),
    "**kwargs": ('[tools.t]\npython = "{mod}:kw"\n', "takes **options"),
    "missing program": ('[tools.t]\ndescription = "d"\ncommand = ["no-such-program-xyz", "a"]\n',
                        "program 'no-such-program-xyz' is not found on PATH"),
    "missing script": ('[tools.t]\ndescription = "d"\ncommand = ["./absent.sh"]\n', "'./absent.sh' does not exist"),
}


@pytest.mark.parametrize("kind", list(UNWORKABLE))
def test_validate_and_run_refuse_tools_that_can_never_work(tmp_path, kind):
    mod = write_module(tmp_path, "def star(*values):\n    return values[0]\n\n"
                                 "def kw(query: str, **options):\n    return query\n")
    table, needle = UNWORKABLE[kind]
    agents = tmp_path / "agents.toml"
    agents.write_text(table.format(mod=mod) + '[agents.a]\nmodel = "sim"\ntools = ["t"]\n')
    result = invoke("validate", str(agents), catch_exceptions=True)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr and "fix:" in result.stderr and "tools.t" in result.stderr
    # run refuses it the same way, before anything runs.
    task = tmp_path / "task.toml"
    task.write_text('agent = "a"\nprompt = "p"\n[sim.final]\nanswer = "x"\n')
    result = invoke("run", str(task), "--trace", str(tmp_path / "t.jsonl"), catch_exceptions=True)
    assert result.exit_code == 2 and needle in result.stderr
    assert not (tmp_path / "t.jsonl").exists()
