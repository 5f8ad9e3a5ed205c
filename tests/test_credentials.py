"""Keys, through the CLI: a local server needs none, a missing key fails at
once (exit 2, one message naming the variable, --model sim as the way to try
offline), a refused key is not retried, and the trace, --json, trace list
and the OpenTelemetry export name the LiteLLM model string and provider, not
the [models] alias."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from asyncfc_cli.sim.plan import SimPlan
from asyncfc_cli.sim.server import SimServer
from asyncfc_cli.trace import read_trace

from conftest import Reply, ScriptedServer, invoke, text_stream

# Every variable LiteLLM could take a key from for the providers used here.
NO_KEYS = {name: None for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN",
                                   "GEMINI_API_KEY", "GOOGLE_API_KEY", "MY_CLAUDE_KEY")}
PLANTED = "sk-ant-PLANTED-key-0123456789"


def project(tmp_path: Path, models: str, agent_model: str) -> Path:
    (tmp_path / "agents.toml").write_text(f"{models}\n[agents.a]\nmodel = \"{agent_model}\"\n")
    task = tmp_path / "task.toml"
    task.write_text('agent = "a"\nprompt = "Say hello."\n')
    return task


def run(task: Path, *args: str, env: dict | None = None):
    trace = task.parent / "trace.jsonl"
    result = invoke("run", str(task), "--trace", str(trace), *args,
                    env={**NO_KEYS, **(env or {})}, catch_exceptions=False)
    return result, trace


# --- a local server needs no key -------------------------------------------------------


def test_the_readme_local_server_example_runs_without_any_key(tmp_path):
    """README: [models.local] with model = "openai/qwen2.5" and an api_base."""
    with ScriptedServer([Reply(chunks=text_stream("hello from the local model"))]) as server:
        task = project(tmp_path, f'[models.local]\nmodel = "openai/qwen2.5"\napi_base = "{server.base_url}"\n',
                       "local")
        result, trace = run(task, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["answer"] == "hello from the local model"
    # LiteLLM's client insists on a key: it got a placeholder, never a real one.
    assert server.requests[0]["headers"]["authorization"] == "Bearer asyncfc-no-key"
    # The model is named by its LiteLLM string and provider everywhere.
    assert (report["model"], report["model_alias"], report["provider"]) == ("openai/qwen2.5", "local", "openai")
    header = read_trace(trace).header
    assert (header["model"], header["model_alias"], header["provider"]) == ("openai/qwen2.5", "local", "openai")


def test_a_run_decides_its_key_once(tmp_path, monkeypatch):
    """The CLI's check before the run and the run's endpoint share one decision:
    LiteLLM is asked which provider (and key) the model needs once per run."""
    from asyncfc_cli import credentials

    asked = []
    real = credentials.provider_of
    monkeypatch.setattr(credentials, "provider_of", lambda *args: asked.append(args[0]) or real(*args))
    with ScriptedServer([Reply(chunks=text_stream("hello"))]) as server:
        task = project(tmp_path, f'[models.local]\nmodel = "openai/qwen2.5"\napi_base = "{server.base_url}"\n',
                       "local")
        result, _trace = run(task, "--json")
    assert result.exit_code == 0, result.output
    assert asked == ["openai/qwen2.5"]


def test_trace_list_and_the_otel_export_name_the_model_string_and_provider(tmp_path, monkeypatch):
    with ScriptedServer([Reply(chunks=text_stream("hi"))]) as server:
        # No provider prefix: LiteLLM knows gpt-4o-mini is OpenAI's, and so does the trace.
        task = project(tmp_path, f'[models.remote]\nmodel = "gpt-4o-mini"\napi_base = "{server.base_url}"\n',
                       "remote")
        monkeypatch.chdir(tmp_path)
        result = invoke("run", str(task), "-q", env=NO_KEYS, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    listed = invoke("trace", "list", "--json", catch_exceptions=True)
    entry = json.loads(listed.stdout.splitlines()[0])
    assert entry["model"] == "gpt-4o-mini"
    table = invoke("trace", "list", catch_exceptions=True)
    assert "gpt-4o-mini" in table.stdout and "remote" not in table.stdout
    out = tmp_path / "otel.json"
    exported = invoke("trace", "latest", "--export", "otel", "-o", str(out), catch_exceptions=True)
    assert exported.exit_code == 0, exported.output
    spans = [s for r in json.loads(out.read_text())["resourceSpans"] for ss in r["scopeSpans"] for s in ss["spans"]]
    chat = next(s for s in spans if s["name"].startswith("chat"))
    attrs = {a["key"]: next(iter(a["value"].values())) for a in chat["attributes"]}
    assert attrs["gen_ai.provider.name"] == "openai" and attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert chat["name"] == "chat gpt-4o-mini"


# --- a missing key fails at once --------------------------------------------------------


@pytest.mark.parametrize("model, variable", [
    ("openai/gpt-4o-mini", "OPENAI_API_KEY"),
    ("anthropic/claude-sonnet-4-5", "ANTHROPIC_API_KEY"),
    ("gemini/gemini-2.0-flash", "GEMINI_API_KEY"),
])
def test_a_missing_key_fails_at_once_with_exit_2_and_one_message(tmp_path, model, variable):
    task = project(tmp_path, f'[models.remote]\nmodel = "{model}"\n', "remote")
    result, trace = run(task)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"error: model: {model} needs an API key: " + lines[0].split(": ", 3)[3]
    assert variable in lines[0] and len(lines) == 2  # the message, then the fix line
    assert lines[1].strip().startswith(f"fix: export {variable}=") and "--model sim" in lines[1]
    assert "retry" not in result.stderr
    assert not trace.exists()  # nothing ran, not even the trace
    result, _ = run(task, "--json")
    report = json.loads(result.stdout)
    assert report["status"] == "spec_error" and report["exit_code"] == 2 and result.exit_code == 2
    assert variable in report["error"] and "--model sim" in report["fix"]


# --- ... and before LiteLLM's import, for known providers --------------------------------


def _key_variables() -> set[str]:
    from asyncfc_cli.credentials import KNOWN_KEYS

    return {name for accepted, missing in KNOWN_KEYS.values() for name in (*accepted, *missing)}


@pytest.mark.parametrize("provider", sorted(__import__("asyncfc_cli.credentials").credentials.KNOWN_KEYS))
def test_the_table_of_known_keys_says_what_litellm_says(litellm, monkeypatch, provider):
    """Each row against the installed LiteLLM: the provider its prefix selects, the
    variables that satisfy it, the ones reported missing, and the same error."""
    from asyncfc_cli import credentials
    from asyncfc_cli.spec import ResolvedModel, SpecError

    for name in _key_variables():
        monkeypatch.delenv(name, raising=False)
    accepted, missing = credentials.KNOWN_KEYS[provider]
    model = f"{provider}/some-model"
    assert litellm.get_llm_provider(model=model)[1] == provider
    assert litellm.validate_environment(model=model) == {"keys_in_environment": False, "missing_keys": list(missing)}
    resolved = ResolvedModel(name=model, model=model)
    with pytest.raises(SpecError) as early:
        credentials.precheck(resolved)
    with pytest.raises(SpecError) as late:
        credentials.resolve(resolved, litellm)
    assert str(early.value) == str(late.value) and early.value.fix == late.value.fix
    for name in accepted:
        monkeypatch.setenv(name, "k")
        assert litellm.validate_environment(model=model)["keys_in_environment"] is True
        credentials.precheck(resolved)  # a key is there: nothing to say early
        monkeypatch.delenv(name)


def test_a_missing_key_is_reported_without_importing_litellm(tmp_path):
    """Through the CLI, with a litellm on the path that fails if imported: the missing
    key is found and reported all the same (it used to wait seconds for the import)."""
    import subprocess
    import sys

    fake = tmp_path / "shadow" / "litellm"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("litellm was imported")\n')
    task = project(tmp_path, '[models.remote]\nmodel = "anthropic/claude-sonnet-4-5"\n', "remote")
    env = {k: v for k, v in __import__("os").environ.items() if k not in _key_variables()}
    env["PYTHONPATH"] = str(fake.parent)
    done = subprocess.run([sys.executable, "-m", "asyncfc_cli.cli", "run", str(task), "--json"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    report = json.loads(done.stdout)
    assert report["error"] == ("model: anthropic/claude-sonnet-4-5 needs an API key: ANTHROPIC_API_KEY is not set")
    assert "litellm was imported" not in done.stderr
    # The same task with a key goes on to LiteLLM, which this path cannot import.
    env["ANTHROPIC_API_KEY"] = "k"
    done = subprocess.run([sys.executable, "-m", "asyncfc_cli.cli", "run", str(task), "--json"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "litellm was imported" in done.stderr


def test_an_unknown_provider_is_a_usage_error(tmp_path):
    task = project(tmp_path, "", "claude-of-some-kind")
    result, _ = run(task)
    assert result.exit_code == 2 and "cannot tell which provider" in result.stderr


# --- a refused key is not retried -------------------------------------------------------


@pytest.mark.parametrize("quiet", [False, True])
def test_a_refused_key_exits_2_once_with_a_fix_naming_the_variable(tmp_path, quiet):
    plan = SimPlan.model_validate({"ttft": 0, "faults": [{"request": 1, "kind": "auth"}],
                                   "final": {"answer": "never"}})
    with SimServer(plan, protocol="anthropic") as server:
        task = project(tmp_path, f'[models.claude]\nmodel = "anthropic/claude-sonnet-4-5"\n'
                                 f'api_base = "{server.base_url}"\napi_key_env = "MY_CLAUDE_KEY"\n', "claude")
        result, trace = run(task, *(["-q"] if quiet else []), env={"MY_CLAUDE_KEY": PLANTED})
        requests = server.requests
    assert result.exit_code == 2, result.output
    assert requests == 1  # not retried
    assert result.stderr.count("invalid x-api-key") == 1  # the provider's words, once
    assert "fix: export MY_CLAUDE_KEY=" in result.stderr and "--model sim" in result.stderr
    assert result.stdout == ""
    assert PLANTED not in result.output + trace.read_text()
    data = read_trace(trace)
    assert data.summary["status"] == "error" and not data.of_type("retry")


# --- one decision for run, agents and models ----------------------------------------------


def _shipped_remote_table() -> str:
    """The repository's own [models.remote] table, as written (``${ASYNCFC_API_BASE:-}`` and all)."""
    text = (Path(__file__).parent.parent / "agents.toml").read_text()
    start = text.index("[models.remote]")
    return text[start:text.index("\n# ---", start)]


def test_agents_and_models_say_what_run_decides_about_the_key(tmp_path):
    """The shipped ``remote`` model with ASYNCFC_API_BASE unset: run refuses
    without OPENAI_API_KEY, so agents and models say it is needed and unset
    (they used to test the raw ``${ASYNCFC_API_BASE:-}`` and call it a server).
    With ASYNCFC_API_BASE set, all three agree no key is needed."""
    task = project(tmp_path, _shipped_remote_table(), "remote")
    plain = {**NO_KEYS, "ASYNCFC_API_BASE": None, "ASYNCFC_API_KEY": None, "ASYNCFC_REMOTE_MODEL": None,
             "ASYNCFC_MODEL": None}

    def listed(env: dict) -> tuple[dict, dict]:
        models = invoke("models", "--agents", tmp_path / "agents.toml", "--json", env=env)
        agents = invoke("agents", "--agents", tmp_path / "agents.toml", "--json", env=env)
        assert models.exit_code == 0 and agents.exit_code == 0, models.output + agents.output
        model = {m["ref"]: m for m in json.loads(models.stdout)["models"]}["remote"]
        agent = {a["name"]: a for a in json.loads(agents.stdout)["agents"]}["a"]
        return model["key"], agent

    key, agent = listed(plain)
    assert (key["source"], key["variable"], key["set"]) == ("provider", "OPENAI_API_KEY", False)
    assert "refuses" in key["text"] and json.dumps(key) in json.dumps(agent)
    result, _ = run(task, env=plain)
    assert result.exit_code == 2 and "OPENAI_API_KEY is not set" in result.output

    with ScriptedServer([Reply(chunks=text_stream("served"))]) as server:
        served = {**plain, "ASYNCFC_API_BASE": server.base_url}
        key, agent = listed(served)
        assert key["set"] is False and "if the server at api_base asks" in key["text"]
        assert json.dumps(key) in json.dumps(agent)
        result, _ = run(task, "--json", env=served)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["answer"] == "served"
