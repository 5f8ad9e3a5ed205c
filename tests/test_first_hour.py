"""The first hour with asyncfc, through the ``asyncfc`` command in a subprocess:
``init``, a prompt without a task file, ``--set`` reaching ``[sim]`` plans,
``tools`` / ``agents`` / ``models``, completion, ``-h``, choices and
environment defaults in help, ``--json`` on every outcome, and the hint for
async tools written for asyncio.

The runs that reach the model pay LiteLLM's import (seconds), so they start
together in one module fixture and each test reads its own result; the rest
stop before any model and are cheap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from asyncfc_cli.sim.plan import NO_PLAN_ANSWER
from asyncfc_cli.trace import read_trace
from conftest import DATA, REPO, Done, asyncfc_argv, cli_env, run_cli

# A project whose tools show everything `asyncfc tools` and the hints report.
AIO_AGENTS = """
[models.sim]
model = "sim"
[models.keyed]
model = "openai/gpt-4o-mini"
api_key_env = "AIO_TEST_KEY"
[models.written]
model = "openai/gpt-4o-mini"
api_key = "sk-written-in-the-file-0001"
[models.referenced]
model = "anthropic/claude-3-5-haiku-latest"
api_key = "${AIO_REF_KEY}"
[models.local]
model = "openai/qwen2.5"
api_base = "http://127.0.0.1:11434/v1"

[tools.aio]
python = "MOD:fetch_later"
[tools.aio_ok]
python = "MOD:fetch_later"
async_backend = "asyncio"
[tools.trio_ok]
python = "MOD:nap"
[tools.note]
description = "Append a note."
command = ["echo", "{text}"]
ordered = true
max_concurrency = 2
timeout = 5
expected_latency = 0.25
[tools.note.params]
text = { type = "string", description = "The note" }

[agents.aio]
model = "sim"
tools = ["aio", "note"]
[agents.fine]
model = "sim"
mode = "sync"
tools = ["aio_ok", "trio_ok"]
[agents.both]
model = "sim"
tools = ["aio", "aio_ok"]
[agents.remote]
model = "keyed"
[agents.claude]
model = "anthropic/claude-3-5-haiku-latest"
[agents.others]
model = "written"
[agents.ref]
model = "referenced"
[agents.ollama]
model = "local"
"""

AIO_MODULE = '''
import asyncio

import trio


async def fetch_later(url: str) -> str:
    """Fetch a page a little later (written for asyncio).

    Args:
        url: The page.
    """
    await asyncio.sleep(0.01)
    return url


async def nap(seconds: float) -> float:
    """Sleep on trio.

    Args:
        seconds: How long.
    """
    await trio.sleep(seconds)
    return seconds
'''

# The README's case: the same asyncio coroutine without and with async_backend = "asyncio".
AIO_TASK = """
agent = "both"
prompt = "Fetch the page twice."
[sim]
decode_tps = 2000
ttft = 0
[[sim.steps]]
id = "bad"
tool = "aio"
args = { url = "https://example.org/a" }
[[sim.steps]]
id = "good"
tool = "aio_ok"
args = { url = "https://example.org/b" }
[sim.final]
needs = ["bad"]
answer = "got {good}"
"""

SECRETS = {"AIO_TEST_KEY": "sk-env-secret-0002", "ANTHROPIC_API_KEY": "sk-ant-secret-0003"}


def cli(*args: str, cwd: Path, stdin: str | None = None, timeout: float = 300, **env: str) -> Done:
    return run_cli(*args, cwd=cwd, env=cli_env(**env), stdin=stdin, timeout=timeout)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A directory where `asyncfc init` ran."""
    path = tmp_path_factory.mktemp("hello")
    done = run_cli("init", cwd=path)
    assert done.code == 0, done.stderr
    return path


@pytest.fixture(scope="module")
def aio(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("aio")
    module = f"aiotools_{os.getpid()}"
    (path / "agents.toml").write_text(AIO_AGENTS.replace("MOD", module))
    (path / f"{module}.py").write_text(AIO_MODULE)
    (path / "both.toml").write_text(AIO_TASK)
    return path


@pytest.fixture(scope="module")
def runs(project, aio, tmp_path_factory) -> dict[str, Future]:
    """Every run that reaches the (simulated) model, started at once."""
    elsewhere, other = tmp_path_factory.mktemp("elsewhere"), tmp_path_factory.mktemp("other")
    jobs = {
        "hello": lambda: cli("run", "tasks/hello.toml", cwd=project),
        # --mode on the command line beats ASYNCFC_MODE.
        "hello_set": lambda: cli("run", "tasks/hello.toml", "--set", "name=Ada", "--set", "file=agents.toml",
                                 "--json", "--mode", "sync", cwd=project, ASYNCFC_MODE="parallel"),
        # From a subdirectory: the project's agents.toml is found upward.
        "prompt": lambda: cli("run", "-a", "hello", "Say hi to {everyone}", cwd=project / "tasks"),
        "stdin": lambda: cli("run", "-a", "quickstart", "-", "--json", "--agents", str(REPO / "agents.toml"),
                             cwd=elsewhere, stdin="Summarize structured\nconcurrency."),
        "env": lambda: cli("run", str(REPO / "tasks" / "research.toml"), "--json", cwd=other,
                           ASYNCFC_MODE="sync", ASYNCFC_MODEL="sim", ASYNCFC_RUNS_DIR=str(other / "my-runs")),
        "aio_task": lambda: cli("run", "both.toml", "--json", cwd=aio),
    }
    pool = ThreadPoolExecutor(len(jobs))
    futures = {name: pool.submit(job) for name, job in jobs.items()}
    futures["other"] = Future()
    futures["other"].set_result(other)
    yield futures
    pool.shutdown(wait=True)


def words(path: Path) -> int:
    return len(path.read_text().split())


# --- asyncfc init ---------------------------------------------------------------------------


def test_init_writes_a_project_that_validates(project):
    for name in ("agents.toml", "tasks/hello.toml", "tools/__init__.py", "tools/hello.py"):
        assert (project / name).is_file(), name
    done = run_cli("validate", "agents.toml", "tasks/hello.toml", cwd=project)
    assert done.code == 0, done.stderr
    assert "agents ok (1 agent, 2 models, 2 tools)" in done.stderr and "task ok (agent hello)" in done.stderr


def test_init_then_run_works_offline_on_the_simulated_model(runs, project):
    done = runs["hello"].result()
    assert done.code == 0, done.stderr
    assert done.stdout == f"Hello, world! tools/hello.py has {words(project / 'tools' / 'hello.py')} words.\n"
    assert "f1 count_words(" in done.stderr and "f2 greet(" in done.stderr


def test_set_reaches_the_sim_plan(runs, project):
    done = runs["hello_set"].result()
    assert done.code == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["answer"] == f"Hello, Ada! agents.toml has {words(project / 'agents.toml')} words."
    assert report["tool_calls"][0]["arguments"] == {"path": "agents.toml"}
    assert report["mode"] == "sync"  # --mode beats ASYNCFC_MODE


def test_init_never_overwrites(project, tmp_path):
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file() and ".asyncfc" not in p.parts}
    done = run_cli("init", cwd=project)
    assert done.code == 2 and "already exist" in done.stderr and "nothing written" in done.stderr
    assert {p: p.read_bytes() for p in before} == before
    # One existing file is enough to write nothing at all.
    (tmp_path / "agents.toml").write_text("# mine\n")
    done = run_cli("init", cwd=tmp_path)
    assert done.code == 2 and "agents.toml already exists" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agents.toml"]
    assert (tmp_path / "agents.toml").read_text() == "# mine\n"


def test_init_into_a_new_directory_and_its_help(tmp_path):
    done = run_cli("init", "new/project", cwd=tmp_path)
    assert done.code == 0, done.stderr
    assert (tmp_path / "new" / "project" / "tasks" / "hello.toml").is_file()
    assert "cd new/project && asyncfc run tasks/hello.toml" in done.stderr
    text = " ".join(run_cli("init", "-h", cwd=tmp_path).stdout.split())
    for needle in ("agents.toml", "tasks/hello.toml", "tools/hello.py", "one Python tool", "one command tool",
                   "never overwritten"):
        assert needle in text


# --- a prompt without a task file ------------------------------------------------------------


def test_a_prompt_without_a_task_file(runs, project):
    done = runs["prompt"].result()
    assert done.code == 0, done.stderr
    assert done.stdout == NO_PLAN_ANSWER + "\n"  # braces in the prompt are text, not parameters
    # started in tasks/: recorded in the project's runs (issue 21 item 8)
    assert not (project / "tasks" / ".asyncfc").exists()
    (trace,) = [p for p in (project / ".asyncfc" / "runs").glob("*.jsonl")
                if read_trace(p).header["task"] == "prompt: Say hi to {everyone}"]
    data = read_trace(trace)
    assert data.header["task"] == "prompt: Say hi to {everyone}" and data.header["agent"] == "hello"


def test_a_prompt_from_stdin_with_json(runs):
    done = runs["stdin"].result()
    assert done.code == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "ok" and report["answer"] == NO_PLAN_ANSWER and report["agent"] == "quickstart"
    assert report["task"] == "prompt: Summarize structured concurrency."
    user = next(m for m in report["messages"] if m["role"] == "user")
    assert user["content"] == "Summarize structured\nconcurrency."  # as written, newline and all


def test_prompt_mistakes_are_spec_errors_with_a_fix(project, tmp_path):
    cases = [
        (("run", "-a", "nope", "hi"), project, "agent 'nope' is not defined", "use one of: hello"),
        (("run", "-a", "hello", "hi", "--set", "x=1"), project, "used as written", "write the values"),
        (("run", "-a", "hello", "  "), project, "the prompt is empty", "asyncfc run -a AGENT"),
        (("run", "-a", "hello", "tasks/hello.toml"), project, "is a file", "leave out --agent"),
        (("run", "Say hi please"), project, "Say hi please: file not found", 'asyncfc run -a AGENT "..."'),
        (("run", "-a", "hello", "hi"), tmp_path, "no agents.toml in", "asyncfc init"),
    ]
    for args, cwd, message, fix in cases:
        done = run_cli(*args, cwd=cwd)
        assert done.code == 2 and message in done.stderr and fix in done.stderr, (args, done.stderr)
        assert done.stdout == ""
        report = json.loads(run_cli(*args, "--json", cwd=cwd).stdout)
        assert report["status"] == "spec_error" and report["exit_code"] == 2
        assert message in report["error"] and fix in report["fix"]


# --- --json on every outcome -------------------------------------------------------------------


def test_spec_and_usage_errors_with_json_are_one_json_object(project, tmp_path):
    done = run_cli("run", DATA / "bad_spec.toml", "--json", cwd=tmp_path)
    assert done.code == 2
    report = json.loads(done.stdout)
    assert report == {"status": "spec_error", "exit_code": 2, "error": report["error"], "fix": "expected an integer",
                      "file": str(DATA / "bad_spec.toml"), "key": "agent.max_turns"}
    assert report["error"].startswith(f"{DATA / 'bad_spec.toml'}: agent.max_turns: input should be a valid integer")
    assert "error:" in done.stderr  # the human message still goes to stderr

    for args, env, needle in [(("run", "tasks/hello.toml", "--mode", "fast", "--json"), {}, "'fast' is not one of"),
                              (("run", "tasks/hello.toml", "--json"), {"ASYNCFC_MODE": "fast"}, "ASYNCFC_MODE"),
                              (("run", "--json"), {}, "missing argument TASK|PROMPT"),
                              (("trace", "list", "--json", "--limit", "-1"), {}, "--limit")]:
        done = cli(*args, cwd=project, **env)
        assert done.code == 2, (args, done.stderr)
        report = json.loads(done.stdout)
        assert report["status"] == "usage_error" and report["exit_code"] == 2 and needle in report["error"]
        assert "--help" in report["fix"]

    for args in (("trace", "nope", "--json"), ("trace", "compare", "nope", "latest", "--json")):
        done = cli(*args, cwd=tmp_path)
        report = json.loads(done.stdout)
        assert done.code == 2 and report["status"] == "usage_error" and "no trace at nope" in report["error"]

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = run_cli("run", "tasks/hello.toml", "--json", "--trace", blocker / "t.jsonl", cwd=project)
    report = json.loads(done.stdout)
    assert done.code == 2 and report["status"] == "usage_error" and "cannot write the trace" in report["error"]
    assert "--trace" in report["fix"]


def test_validate_json(project):
    done = run_cli("validate", "agents.toml", DATA / "bad_spec.toml", "--json", cwd=project)
    assert done.code == 2
    report = json.loads(done.stdout)
    assert report["status"] == "spec_error" and report["exit_code"] == 2
    good, bad = report["files"]
    assert good["ok"] and good["summary"].startswith("agents ok") and good["hints"] == []
    assert not bad["ok"] and "agent.max_turns" in bad["error"] and bad["fix"] == "expected an integer"


# --- environment defaults ---------------------------------------------------------------------


def test_environment_defaults_for_mode_model_and_runs_dir(runs):
    done = runs["env"].result()
    elsewhere = runs["other"].result()
    assert done.code == 0, done.stderr
    report = json.loads(done.stdout)
    # The assistant agent is async on a real model: the environment made it sync on the sim.
    assert report["mode"] == "sync" and report["model"] == "sim" and report["agent"] == "assistant"
    assert Path(report["trace"]).parent == elsewhere / "my-runs"
    assert not (elsewhere / ".asyncfc" / "runs").exists()
    listed = cli("trace", "list", "--json", cwd=elsewhere, ASYNCFC_RUNS_DIR=str(elsewhere / "my-runs"))
    assert [json.loads(line)["path"] for line in listed.stdout.splitlines()] == [report["trace"]]


# --- tools, agents, models ----------------------------------------------------------------------


def test_tools_shows_kind_schema_timeout_and_limits(project, aio):
    done = run_cli("tools", "hello", cwd=project)
    assert done.code == 0, done.stderr
    out = done.stdout
    assert "greet  python  tools.hello:greet" in out and "count_words  command  wc -w -- {path}" in out
    assert "timeout 10s · ordered no · max_concurrency none · expected_latency 0.5s" in out
    assert '"wc_output": {' in out and "wait  builtin" in out  # async mode's own tool

    report = json.loads(run_cli("tools", "hello", "--json", cwd=project).stdout)
    assert report["agent"] == "hello" and report["mode"] == "async"
    greet = next(t for t in report["tools"] if t["name"] == "greet")
    params = greet["schema"]["function"]["parameters"]
    assert params["required"] == ["name", "wc_output"] and params["properties"]["name"]["type"] == "string"
    assert greet["schema"]["function"]["description"] == "Greet someone and tell them how many words a file has."

    note = next(t for t in json.loads(run_cli("tools", "--json", cwd=aio).stdout)["tools"] if t["name"] == "note")
    assert (note["kind"], note["timeout"], note["ordered"], note["max_concurrency"], note["expected_latency"]) == \
        ("command", 5.0, True, 2, 0.25)
    every = json.loads(run_cli("tools", "--json", cwd=aio).stdout)
    assert every["agent"] is None and [t["name"] for t in every["tools"]] == ["aio", "aio_ok", "trio_ok", "note"]
    sync_agent = json.loads(run_cli("tools", "fine", "--json", cwd=aio).stdout)
    assert "wait" not in [t["name"] for t in sync_agent["tools"]]  # sync mode has no wait tool
    assert json.loads(run_cli("tools", "tasks/hello.toml", "--json", cwd=project).stdout)["agent"] == "hello"

    done = run_cli("tools", "nope", "--json", cwd=project)
    assert done.code == 2 and json.loads(done.stdout)["status"] == "spec_error"


def test_agents_and_models_say_where_keys_come_from_never_the_keys(aio):
    env = {**SECRETS}
    agents = cli("agents", cwd=aio, **env)
    models = cli("models", "--json", cwd=aio, **env)
    agents_json = cli("agents", "--json", cwd=aio, ASYNCFC_MODEL="sim", **env)
    for done in (agents, models, agents_json):
        assert done.code == 0, done.stderr
        for secret in [*SECRETS.values(), "sk-written-in-the-file-0001"]:
            assert secret not in done.stdout and secret not in done.stderr
    by_ref = {m["ref"]: m for m in json.loads(models.stdout)["models"]}
    assert by_ref["keyed"]["model"] == "openai/gpt-4o-mini"
    assert by_ref["keyed"]["key"] | {"text": ""} == {"source": "env", "variable": "AIO_TEST_KEY", "set": True, "text": ""}
    assert by_ref["written"]["key"]["source"] == "file"
    assert (by_ref["referenced"]["key"]["variable"], by_ref["referenced"]["key"]["set"]) == ("AIO_REF_KEY", False)
    claude = by_ref["anthropic/claude-3-5-haiku-latest"]
    assert not claude["defined_in_file"] and claude["key"]["variable"] == "ANTHROPIC_API_KEY" and claude["key"]["set"]
    assert by_ref["local"]["api_base"] == "http://127.0.0.1:11434/v1" and by_ref["sim"]["key"]["source"] == "none"
    assert by_ref["keyed"]["used_by"] == ["remote"]

    assert "remote  mode async" in agents.stdout and "model  keyed = openai/gpt-4o-mini" in agents.stdout
    assert "key    $AIO_TEST_KEY (api_key_env)" in agents.stdout
    report = json.loads(agents_json.stdout)
    assert report["model_override"] == "sim" and {a["name"] for a in report["agents"]} >= {"aio", "claude"}


# --- async tools written for asyncio --------------------------------------------------------------


def test_an_asyncio_tool_gets_a_hint_from_validate_tools_and_run(aio, runs):
    keys = {**SECRETS, "AIO_REF_KEY": "sk-ref-0004"}  # validate resolves every agent, keys included
    done = cli("validate", "agents.toml", cwd=aio, **keys)
    assert done.code == 0, done.stderr  # a hint, not an error
    hints = [line for line in done.stderr.splitlines() if line.startswith("hint:")]
    assert len(hints) == 1 and "tool 'aio' is an async function that uses asyncio" in hints[0]
    assert 'async_backend = "asyncio" to [tools.aio]' in hints[0]
    report = json.loads(cli("validate", "agents.toml", "--json", cwd=aio, **keys).stdout)
    assert len(report["files"][0]["hints"]) == 1
    assert json.loads(run_cli("tools", "fine", "--json", cwd=aio).stdout)["hints"] == []  # asyncio backend, trio
    assert "hint: tool 'aio'" in run_cli("tools", "aio", cwd=aio).stderr

    # A prompt run warns too, before anything starts (here it then stops at a trace path that cannot be).
    (aio / "blocker").write_text("")
    done = run_cli("run", "-a", "aio", "x", "--trace", aio / "blocker" / "t.jsonl", cwd=aio)
    assert done.code == 2 and "warning: tool 'aio' is an async function that uses asyncio" in done.stderr

    done = runs["aio_task"].result()
    report = json.loads(done.stdout)
    assert done.code == 0 and report["answer"] == "got https://example.org/b", done.stderr
    calls = {c["tool"]: c for c in report["tool_calls"]}
    assert calls["aio_ok"]["status"] == "ok"  # async_backend = "asyncio": the same code works
    assert calls["aio"]["status"] == "error" and 'async_backend = "asyncio"' in calls["aio"]["error"]
    assert "warning: tool 'aio'" in done.stderr


def test_the_readme_says_how_asyncio_tools_run():
    readme = (REPO / "README.md").read_text()
    assert 'async_backend = "asyncio"' in readme


# --- shell habits -----------------------------------------------------------------------------------


def test_show_completion_for_bash_and_completing_choices(tmp_path):
    # Run under bash, as from a terminal: the shell is detected from the parent process.
    command = " ".join(f"'{a}'" for a in asyncfc_argv("--show-completion")) + "; true"
    proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
                          timeout=60)
    assert "_ASYNCFC_COMPLETE=complete_bash" in proc.stdout, proc.stderr
    assert "complete -o default -F _asyncfc_completion asyncfc" in proc.stdout

    def complete(words: str) -> list[str]:
        env = cli_env(_ASYNCFC_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(len(words.split(" ")) - 1))
        proc = subprocess.run(asyncfc_argv(), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        return proc.stdout.split()

    assert complete("asyncfc run --mode ") == ["sync", "parallel", "async"]
    assert complete("asyncfc trace show --export ") == ["chrome", "otel"]
    assert {"tools", "trace"} <= set(complete("asyncfc t")) and "run" not in complete("asyncfc t")
    assert {"init", "agents", "models"} <= set(complete("asyncfc "))


def test_short_help_choices_and_env_vars_in_help(tmp_path):
    for args in (("-h",), ("run", "-h"), ("trace", "-h"), ("trace", "list", "-h"), ("tools", "-h"), ("init", "-h")):
        done = run_cli(*args, cwd=tmp_path)
        assert done.code == 0 and done.stdout.startswith("Usage: asyncfc"), (args, done.stdout, done.stderr)
    run_help = " ".join(run_cli("run", "-h", cwd=tmp_path).stdout.split())
    assert "--mode <sync|parallel|async>" in run_help and "[env var: ASYNCFC_MODE]" in run_help
    assert "[env var: ASYNCFC_MODEL]" in run_help and "$ASYNCFC_RUNS_DIR" in run_help and "-a, --agent" in run_help
    assert "--export <chrome|otel>" in " ".join(run_cli("trace", "show", "-h", cwd=tmp_path).stdout.split())
    assert "[env var: ASYNCFC_RUNS_DIR]" in " ".join(run_cli("trace", "list", "-h", cwd=tmp_path).stdout.split())
    root = " ".join(run_cli("-h", cwd=tmp_path).stdout.split())
    for command in ("init", "tools", "agents", "models", "--install-completion", "--show-completion"):
        assert command in root


def test_tools_lists_an_mcp_servers_tools_by_starting_it():
    # The server's tools exist only once it runs: asyncfc tools starts it, lists, stops it.
    done = run_cli("tools", "librarian", "--json", cwd=REPO)
    assert done.code == 0, done.stderr
    report = json.loads(done.stdout)
    mcp = [t for t in report["tools"] if t["kind"] == "mcp"]
    assert {"search", "book", "copies"} <= {t["name"] for t in mcp}


def test_validate_with_no_file_checks_the_project_found_from_the_current_directory(tmp_path):
    """``asyncfc validate`` alone, from anywhere inside a project: its agents.toml
    and every task under tasks/ (nested too; hidden directories skipped), a
    summary, exit 2 if one is bad; outside a project, exit 2 saying so."""
    assert run_cli("init", cwd=tmp_path).code == 0
    (tmp_path / "tasks" / "more").mkdir()
    bad = tmp_path / "tasks" / "more" / "bad.toml"
    bad.write_text('agent = "nobody"\nprompt = "p"\n')
    (tmp_path / "tasks" / ".drafts").mkdir()
    (tmp_path / "tasks" / ".drafts" / "draft.toml").write_text("not toml [")

    done = cli("validate", cwd=tmp_path / "tasks")
    assert done.code == 2, done.stderr
    assert "agents.toml and 2 tasks" in done.stderr and "draft" not in done.stderr
    assert "agent 'nobody' is not defined" in done.stderr and "3 files: 2 ok, 1 with errors" in done.stderr
    doc = json.loads(cli("validate", "--json", cwd=tmp_path / "tasks").stdout)
    assert doc["exit_code"] == 2 and Path(doc["project"]) == tmp_path.resolve()
    assert [(Path(f["path"]).name, f["ok"]) for f in doc["files"]] == \
        [("agents.toml", True), ("hello.toml", True), ("bad.toml", False)]

    bad.unlink()
    done = cli("validate", cwd=tmp_path)
    assert done.code == 0 and "2 files: 2 ok, 0 with errors" in done.stderr, done.stderr
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "agents.toml").rename(tmp_path / "agents.saved")
    done = cli("validate", "--json", cwd=outside)
    assert done.code == 2 and "no agents.toml in" in json.loads(done.stdout)["error"]
