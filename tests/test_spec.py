"""Spec loading: every bad file gives an error naming the file, the key and a fix;
interpolation, --set, prompt parameters and how a task finds its agents file."""

from __future__ import annotations

import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from asyncfc_cli import spec
from asyncfc_cli.spec import SpecError, parse_set, resolve_run, validate_file
from conftest import DATA

AGENTS = """
[models.sim]
model = "sim"

[tools.echo]
python = "MODS:echo"

[agents.a]
model = "sim"
tools = ["echo"]
mode = "sync"
"""

MODS = '''
def echo(text: str) -> str:
    """Echo.

    Args:
        text: Anything.
    """
    return text
'''

SIM = """
[sim]
decode_tps = 2000
ttft = 0
[sim.final]
answer = "ok"
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@dataclass
class Project:
    """A directory with agents.toml and the module its tools import.

    The module's name is unique per test, because imports are cached by name.
    """

    dir: Path
    mod: str

    @property
    def agents(self) -> str:
        return AGENTS.replace("MODS", self.mod)

    def __truediv__(self, name: str) -> Path:
        return self.dir / name


@pytest.fixture
def project(tmp_path: Path, monkeypatch) -> Project:
    proj = Project(tmp_path, f"mods_{uuid.uuid4().hex[:8]}")
    write(proj / "agents.toml", proj.agents)
    write(proj / f"{proj.mod}.py", MODS)
    monkeypatch.chdir(tmp_path)  # the cwd's agents.toml must not be found instead
    return proj


def task(project: Project | Path, head: str, tail: str = "", name: str = "task.toml") -> Path:
    """A task: ``head`` holds top-level keys (before any table), ``tail`` tables."""
    return write(project / name, textwrap.dedent(head) + "\n" + textwrap.dedent(tail) + SIM)


def error_of(path: Path, **kwargs) -> SpecError:
    with pytest.raises(SpecError) as info:
        resolve_run(path, **kwargs)
    return info.value


def assert_names(err: SpecError, file: Path | str | None, key: str, *fix_words: str) -> str:
    """The rendered message names the file and the key; the fix line says what to do."""
    text = str(err)
    if file is not None:
        assert str(file) in text
    assert err.key == key
    assert f": {key}: " in text or text.startswith(f"{key}: ")
    assert err.fix, f"no fix in: {text}"
    assert f"\n  fix: {err.fix}" in text
    for word in fix_words:
        assert word in err.fix, f"{word!r} not in fix {err.fix!r}"
    return text


# --- one kind of bad file each --------------------------------------------------------


def test_toml_syntax_error_names_file_and_line(project):
    path = write(project / "task.toml", 'agent = "a"\nprompt = "unterminated\n')
    err = error_of(path)
    assert str(path) in str(err)
    assert "TOML syntax error" in err.message and "line 2" in err.message
    assert "syntax" in err.fix


def test_unknown_key_lists_valid_keys(project):
    err = error_of(task(project, 'agent = "a"\nprompt = "p"', '[expect]\ncontians = ["x"]'))
    text = assert_names(err, project / "task.toml", "expect.contians", "contains", "not_contains",
                        "matches", "tools_called")
    assert "unknown key" in text

    err = error_of(task(project, 'agnet = "a"\nprompt = "p"'))
    assert_names(err, project / "task.toml", "agnet", "agent", "prompt", "params", "sim")


def test_unknown_key_inside_an_inline_agent_is_reported_there(project):
    # Regression: pydantic's union errors made this "agent.str: should be a string".
    err = error_of(task(project, 'prompt = "p"', '[agent]\nmodel = "sim"\nmax_turn = 3'))
    assert_names(err, project / "task.toml", "agent.max_turn", "max_turns", "instructions", "mode")
    assert "str" not in err.key


def test_wrong_type_names_the_value_and_the_expected_type(project):
    err = error_of(task(project, 'prompt = "p"', '[agent]\nmodel = "sim"\nmax_turns = "ten"'))
    text = assert_names(err, project / "task.toml", "agent.max_turns", "an integer")
    assert "'ten'" in text

    # The same mistake in agents.toml is reported in agents.toml.
    write(project / "agents.toml", project.agents + 'max_turns = "ten"\n')
    err = error_of(task(project, 'agent = "a"\nprompt = "p"'))
    assert_names(err, project / "agents.toml", "agents.a.max_turns", "an integer")

    err = error_of(task(project, 'agent = 5\nprompt = "p"'))
    assert_names(err, project / "task.toml", "agent", "a string or a table")

    err = error_of(task(project, 'agent = "a"\nprompt = "p"', "[params]\nx = [1]"))
    assert_names(err, project / "task.toml", "params.x", "a string", "a number")


def test_bad_mode_lists_the_modes(project):
    err = error_of(task(project, 'prompt = "p"', '[agent]\nmodel = "sim"\nmode = "fast"'))
    text = assert_names(err, project / "task.toml", "agent.mode", "'sync'", "'parallel'", "'async'")
    assert "'fast'" in text

    err = error_of(task(project, 'agent = "a"\nprompt = "p"'), mode_override="fast")
    assert_names(err, None, "--mode", "sync", "parallel", "async")


def test_missing_required_key(project):
    err = error_of(task(project, 'agent = "a"'))
    text = assert_names(err, project / "task.toml", "prompt", "add prompt")
    assert "missing" in text


def test_bad_regex_in_expect(project):
    err = error_of(task(project, 'agent = "a"\nprompt = "p"', '[expect]\nmatches = "("'))
    text = assert_names(err, project / "task.toml", "expect.matches", "regular expression")
    assert "not a valid regular expression" in text


def test_missing_env_var_in_a_used_section(project, monkeypatch):
    monkeypatch.delenv("NOPE", raising=False)
    write(project / "agents.toml", project.agents + 'instructions = "${NOPE}"\n'
          '[agents.unused]\nmodel = "sim"\ninstructions = "${ALSO_NOPE}"\n')
    err = error_of(task(project, 'agent = "a"\nprompt = "p"'))
    text = assert_names(err, project / "agents.toml", "agents.a.instructions", "export NOPE=", "${NOPE:-")
    assert "NOPE is not set" in text

    # In the prompt too: it must not reach the model as literal "${NOPE}".
    err = error_of(task(project, 'agent = "a"\nprompt = "hello ${NOPE}"'))
    assert_names(err, project / "task.toml", "prompt", "export NOPE=")

    # An unset variable in an agent the run does not use is no error.
    write(project / "agents.toml", project.agents + '[agents.unused]\nmodel = "sim"\ninstructions = "${NOPE}"\n')
    assert resolve_run(task(project, 'agent = "a"\nprompt = "p"')).agent_name == "a"


def test_interpolation(project, monkeypatch):
    monkeypatch.setenv("SET_VAR", "from-env")
    monkeypatch.setenv("EMPTY_VAR", "")
    monkeypatch.delenv("UNSET_VAR", raising=False)
    path = task(project, '''
        agent = "a"
        prompt = "${SET_VAR} / ${UNSET_VAR:-fallback} / ${EMPTY_VAR:-empty counts as unset} / [${UNSET_VAR:-}] / {x}"
        ''', '[params]\nx = "${SET_VAR:-no}"')
    run = resolve_run(path)
    assert run.prompt == "from-env / fallback / empty counts as unset / [] / from-env"
    assert spec.interpolate({"k": ["${SET_VAR}", 3]}, None, "") == {"k": ["from-env", 3]}


def test_unknown_tool_name(project):
    write(project / "agents.toml", project.agents.replace('tools = ["echo"]', 'tools = ["echo", "ehco"]'))
    err = error_of(task(project, 'agent = "a"\nprompt = "p"'))
    text = assert_names(err, project / "agents.toml", "agents.a.tools[1]", "[tools.ehco]", "echo")
    assert "'ehco' is not defined" in text

    # An inline agent's unknown tool is reported in the task, not in agents.toml.
    err = error_of(task(project, 'prompt = "p"', '[agent]\nmodel = "sim"\ntools = ["nope"]'))
    assert_names(err, project / "task.toml", "agent.tools[0]", "[tools.nope]", "echo")


def test_unknown_agent_name(project):
    err = error_of(task(project, 'agent = "b"\nprompt = "p"'))
    text = assert_names(err, project / "task.toml", "agent", "use one of: a", "inline [agent]")
    assert str(project / "agents.toml") in text


def test_unknown_model_reference(project):
    write(project / "agents.toml", project.agents.replace('model = "sim"\ntools', 'model = "gpt4"\ntools'))
    err = error_of(task(project, 'agent = "a"\nprompt = "p"'))
    text = assert_names(err, project / "agents.toml", "agents.a.model", '"sim"', "openai/gpt-4o-mini")
    assert "'gpt4'" in text

    err = error_of(task(project, 'prompt = "p"', '[agent]\nmodel = "gpt4"'))
    assert_names(err, project / "task.toml", "agent.model", '"sim"')

    err = error_of(task(project, 'prompt = "p"', '[agent]\nmodel = "sim"'), model_override="gpt4")
    assert_names(err, None, "--model", '"sim"')


def test_python_tool_whose_import_fails(project):
    err = error_of(task(project, 'prompt = "p"', '[agent]\nmodel = "sim"\ntools = ["t"]\n'
                        '[tools.t]\npython = "no_such_module_xyz:f"'))
    text = assert_names(err, project / "task.toml", "tools.t", "no_such_module_xyz.py", str(project.dir))
    assert "No module named 'no_such_module_xyz'" in text

    err = error_of(task(project, 'prompt = "p"', '[agent]\nmodel = "sim"\ntools = ["t"]\n'
                        f'[tools.t]\npython = "{project.mod}:ecoh"'))
    text = assert_names(err, project / "task.toml", "tools.t", "echo")
    assert "no attribute 'ecoh'" in text

    err = error_of(task(project, 'prompt = "p"', '[agent]\nmodel = "sim"\ntools = ["t"]\n'
                        '[tools.t]\npython = "not an import path"'))
    assert err.key == "tools.t" and "module:function" in str(err)


def test_tool_table_with_unknown_key(project):
    err = error_of(task(project, 'prompt = "p"', '[agent]\nmodel = "sim"\ntools = ["t"]\n'
                        f'[tools.t]\npython = "{project.mod}:echo"\ntimout = 3'))
    assert err.key == "tools.t"
    assert "timout: unknown key" in str(err) and "timeout" in str(err)


def test_command_tool_with_undeclared_placeholder(project):
    err = error_of(task(project, 'prompt = "p"', '[agent]\nmodel = "sim"\ntools = ["t"]\n'
                        '[tools.t]\ncommand = ["echo", "{y}"]\ndescription = "d"'))
    text = str(err)
    assert str(project / "task.toml") in text and err.key == "tools.t"
    assert "placeholder {y} is not a declared param" in text
    assert "add [tools.NAME.params] y =" in text


def test_sim_plan_referencing_an_unknown_step(project):
    path = write(project / "task.toml", '''
        agent = "a"
        prompt = "p"
        [[sim.steps]]
        id = "s"
        tool = "echo"
        args = { text = "{zz}" }
        [sim.final]
        answer = "ok"
        ''')
    err = error_of(path)
    text = assert_names(err, path, "sim.steps[0].args.text", "valid ids", "--set zz=")
    assert "{zz} is neither a step of the plan nor a parameter" in text and "got a table" not in text

    path = write(project / "task.toml", 'agent = "a"\nprompt = "p"\n[sim]\ndecode = 3\n[sim.final]\nanswer = "x"\n')
    assert_names(error_of(path), path, "sim.decode", "decode_tps")


def test_a_simulated_run_without_a_plan_answers_that_it_is_simulated(project):
    from asyncfc_cli.sim.plan import NO_PLAN_ANSWER

    path = write(project / "task.toml", 'agent = "a"\nprompt = "p"\n')
    plan = resolve_run(path).sim_plan
    assert plan.steps == [] and plan.final.answer == NO_PLAN_ANSWER
    assert "simulated model" in NO_PLAN_ANSWER and "--model" in NO_PLAN_ANSWER


def sim_task(project: Project, args: str, answer: str = "ok", params: str = 'name = "Ann"\ncount = 3') -> Path:
    return write(project / "task.toml", f'''
        agent = "a"
        prompt = "p"
        [params]
        {params}
        [sim]
        [[sim.steps]]
        id = "first"
        tool = "echo"
        args = {args}
        [sim.final]
        answer = "{answer}"
        ''')


def test_params_reach_the_sim_plan(project):
    path = sim_task(project, '{ text = "hi {name}, {{literal}} {name}", n = "{count}", m = "n={count}" }',
                    answer="{first} for {name}")
    plan = resolve_run(path).sim_plan
    assert plan.steps[0].args == {"text": "hi Ann, {{literal}} Ann", "n": 3, "m": "n=3"}  # whole: typed
    assert plan.final.answer == "{first} for Ann"  # the step's result stays a reference
    plan = resolve_run(path, overrides={"name": "{Bob}"}).sim_plan
    assert plan.steps[0].args["text"] == "hi {{Bob}}, {{literal}} {{Bob}}"  # braces in a value stay literal
    # A --set for a name only the plan uses is not a typo.
    path = sim_task(project, '{ text = "{who}" }', params='name = "x"')
    assert resolve_run(path, overrides={"who": "Cy"}).sim_plan.steps[0].args == {"text": "Cy"}
    assert_names(error_of(path), path, "sim.steps[0].args.text", "--set who=")


def test_a_name_that_is_both_a_step_and_a_parameter_is_refused_where_used(project):
    path = sim_task(project, '{ text = "x" }', answer="{first}", params='first = "p"')
    assert_names(error_of(path), path, "sim.final.answer", "rename")
    path = sim_task(project, '{ text = "x" }', answer="done", params='first = "p"')
    assert resolve_run(path).sim_plan.final.answer == "done"
    path = sim_task(project, '{ text = "{name.x}" }')
    assert_names(error_of(path), path, "sim.steps[0].args.text", "{name}")


def test_set_parsing():
    assert parse_set([]) == {}
    assert parse_set(["a=1", " b =x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    for bad in ["novalue", "=x", " =x"]:
        with pytest.raises(SpecError) as info:
            parse_set([bad])
        assert info.value.key == "--set" and repr(bad) in str(info.value)
        assert "--set name=value" in info.value.fix


def test_set_overrides_params_and_rejects_unknown_names(project):
    path = task(project, 'agent = "a"\nprompt = "Hi {name}, {{literal}} {greeting}"',
                '[params]\nname = "Ann"\ngreeting = "hello"')
    assert resolve_run(path).prompt == "Hi Ann, {literal} hello"
    assert resolve_run(path, overrides={"name": "Bob"}).prompt == "Hi Bob, {literal} hello"
    err = error_of(path, overrides={"nmae": "Bob"})
    assert_names(err, None, "--set", "greeting", "name")
    assert "{nmae}" in err.message


def test_prompt_parameter_without_a_value(project):
    err = error_of(task(project, 'agent = "a"\nprompt = "Compare {url_a} and {url_b}"',
                        '[params]\nurl_a = "x"'))
    text = assert_names(err, project / "task.toml", "prompt", "[params]", "--set url_b=")
    assert "{url_b} has no value" in text


def test_inline_agent_needs_no_agents_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "solo" / "task.toml", 'prompt = "p"\n[agent]\nmodel = "sim"\n' + SIM)
    assert not any((d / "agents.toml").exists() for d in path.parents), "an agents.toml above tmp"
    run = resolve_run(path)
    assert run.agents_path is None and run.agent_name == "inline" and run.model.is_sim


def test_validate_file():
    assert validate_file(DATA / "agents.toml").startswith("agents ok")
    assert validate_file(DATA / "ok.toml").startswith("task ok")
    with pytest.raises(SpecError) as info:
        validate_file(DATA / "bad_spec.toml")
    assert_names(info.value, DATA / "bad_spec.toml", "agent.max_turns", "an integer")


# --- where a task finds its agents ------------------------------------------------------


def agents_with(instructions: str) -> str:
    return f'[agents.a]\nmodel = "sim"\ninstructions = "{instructions}"\n'


def test_agents_file_discovery_order(tmp_path, monkeypatch):
    root = tmp_path / "proj"
    assert not any((d / "agents.toml").exists() for d in root.parents), "an agents.toml above tmp"
    path = task(root / "tasks" / "deep", 'agent = "a"\nprompt = "p"')

    # 4. the current directory, when nothing is found next to the task or above it
    cwd = tmp_path / "elsewhere"
    write(cwd / "agents.toml", agents_with("cwd"))
    monkeypatch.chdir(cwd)
    assert resolve_run(path).agent.instructions == "cwd"

    # 3. the nearest parent directory with an agents.toml beats the cwd...
    write(root / "agents.toml", agents_with("grandparent"))
    assert resolve_run(path).agent.instructions == "grandparent"
    write(root / "tasks" / "agents.toml", agents_with("parent"))
    assert resolve_run(path).agent.instructions == "parent"
    # ...and the task's own directory beats its parents
    write(path.parent / "agents.toml", agents_with("task dir"))
    run = resolve_run(path)
    assert run.agent.instructions == "task dir" and run.agents_path == path.parent / "agents.toml"

    # 2. agents_file in the task, relative to the task file
    write(root / "other" / "custom.toml", agents_with("agents_file"))
    path = task(root / "tasks" / "deep", 'agents_file = "../../other/custom.toml"\nagent = "a"\nprompt = "p"')
    assert resolve_run(path).agent.instructions == "agents_file"

    # 1. --agents beats everything
    explicit = write(tmp_path / "explicit.toml", agents_with("explicit"))
    assert resolve_run(path, agents_path=explicit).agent.instructions == "explicit"

    err = error_of(path, agents_path=tmp_path / "missing.toml")
    assert str(tmp_path / "missing.toml") in str(err) and "--agents" in err.fix
    path = task(root / "tasks" / "deep", 'agents_file = "nope.toml"\nagent = "a"\nprompt = "p"')
    assert_names(error_of(path), path, "agents_file", "agents_file")


def test_discovery_order_is_what_the_module_docstring_says():
    doc = " ".join(spec.__doc__.split())
    steps = ["1. ``--agents FILE``", "2. ``agents_file = ", "3. ``agents.toml`` in the task's directory or the nearest parent",
             "4. ``agents.toml`` in the current directory"]
    positions = [doc.find(step) for step in steps]
    assert -1 not in positions, positions
    assert positions == sorted(positions)
    assert "first match wins" in doc


def test_the_loop_gets_every_setting_of_the_agent(project):
    """runner.agent_run hands the loop the agent as validated (the AgentSpec
    itself): every setting the loop reads arrives, none is dropped."""
    from asyncfc_cli import runner

    write(project / "agents.toml", project.agents + textwrap.dedent("""
        [agents.tuned]
        model = "sim"
        instructions = "Be terse."
        mode = "parallel"
        max_turns = 7
        max_result_chars = 500
        timeout = 12.5
        max_concurrency = 3
        futures_instruction = "Handles come back."
        """))
    path = task(project, 'agent = "tuned"\nprompt = "p"')
    run = runner.agent_run(resolve_run(path), latency_store=None)
    run_spec = resolve_run(path)
    assert runner.agent_run(run_spec, latency_store=None).agent is run_spec.agent  # the spec itself, not a copy
    assert (run.instructions, run.mode, run.max_turns, run.max_result_chars, run.timeout, run.max_concurrency,
            run.futures_instruction) == ("Be terse.", "parallel", 7, 500, 12.5, 3, "Handles come back.")
    assert run.prompt == "p" and run.tools == {} and run.latency is not None and run.latency.store is None


def test_a_model_table_is_validated_once(project, monkeypatch):
    """[models.NAME] is validated with the agents file; resolving the run's model
    interpolates it strictly (an unset ${VAR} is still an error) but does not
    validate it again."""
    from asyncfc_cli.spec import ModelSpec

    write(project / "agents.toml", project.agents.replace('[models.sim]\nmodel = "sim"',
                                                          '[models.sim]\nmodel = "${H2_MODEL:-sim}"\nretries = 2'))
    validated = []
    real = ModelSpec.model_validate.__func__
    monkeypatch.setattr(ModelSpec, "model_validate",
                        classmethod(lambda cls, data, **kw: validated.append(data) or real(cls, data, **kw)))
    path = task(project, 'agent = "a"\nprompt = "p"')
    run = resolve_run(path)
    assert (run.model.name, run.model.model, run.model.retries) == ("sim", "sim", 2)
    assert validated == []  # inside AgentsFile's validation, never on its own
    write(project / "agents.toml", project.agents.replace('[models.sim]\nmodel = "sim"',
                                                          '[models.sim]\nmodel = "sim"\napi_base = "${NOT_SET_H2}"'))
    monkeypatch.delenv("NOT_SET_H2", raising=False)
    err = error_of(path)
    assert "NOT_SET_H2" in str(err) and err.key.startswith("models.sim")


def test_a_tool_table_is_validated_once_into_its_typed_config(project, monkeypatch):
    """A run's [tools.NAME] goes through spec.tool_source: parsed into its typed
    config (tools.ToolConfig) there, and built from it without a second validation."""
    from asyncfc_cli import tools

    validated = []
    real = tools.PythonToolConfig.model_validate.__func__
    monkeypatch.setattr(tools.PythonToolConfig, "model_validate",
                        classmethod(lambda cls, data, **kw: validated.append(data) or real(cls, data, **kw)))
    run = resolve_run(task(project, 'agent = "a"\nprompt = "p"'))
    assert validated == [{"python": f"{project.mod}:echo"}]
    assert [source.name for source in run.tool_sources] == ["echo"] and set(run.tools) == {"echo"}
    config = tools.parse_tool_config({"python": f"{project.mod}:echo"}, "echo")
    assert tools.parse_tool_config(config, "echo") is config
