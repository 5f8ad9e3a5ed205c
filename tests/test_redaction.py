"""The redactor (asyncfc_cli/redaction.py) on its own, and the two places a
review's mutations showed the suite did not watch: a tool error cut to 500
characters for the trace (redacted before the cut, or a key cut in half leaks),
and header values nested under ``params`` (every value under a ``*header*`` key
is a secret, whatever its own name)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from asyncfc_cli.redaction import (
    MASK,
    Redactor,
    argv_secrets,
    credential_name,
    env_secrets,
    mask_argv,
    mask_url,
    param_secrets,
    run_secrets,
    url_secrets,
)
from asyncfc_cli.trace import read_trace

from conftest import Reply, ScriptedServer, chunk, invoke, tool_call_stream

SECRET = "sk-Rd8Kq2Vx7Lm4Pz9T"


def fragments(text: str, secret: str = SECRET, size: int = 6) -> list[str]:
    """Every ``size``-character piece of ``secret`` in ``text``: a key cut in part still leaks."""
    return sorted({secret[i:i + size] for i in range(len(secret) - size + 1) if secret[i:i + size] in text})


# --- text --------------------------------------------------------------------------------


def test_text_masks_every_secret_longest_first_and_ignores_short_ones():
    redact = Redactor(["abcd1234", "abcd1234-long-form", "", None, "ab", "  padded-secret  "])
    assert redact.text("a abcd1234-long-form b abcd1234 c padded-secret") == "a *** b *** c ***"
    assert redact.text("ab stays, so does abc") == "ab stays, so does abc"
    assert not Redactor(["abc"]) and Redactor(["abcd"])


@pytest.mark.parametrize("at", range(480, 505))
def test_clip_redacts_before_the_cut_wherever_the_secret_falls(at):
    text = "x" * at + SECRET + " and then more text"
    clipped = Redactor([SECRET]).clip(text, 500)
    assert len(clipped) <= 500 and fragments(clipped, size=4) == []
    assert Redactor([SECRET]).clip("start " + SECRET + "y" * 600, 20, tail=True) == "y" * 20


def test_a_window_cut_out_of_a_longer_text_has_the_secret_at_its_edges_masked():
    redact = Redactor([SECRET])
    window = SECRET[7:] + " middle " + SECRET[:9]  # what two cuts left of it
    assert redact.text(window) == window  # whole-secret matching cannot see these
    assert redact.text(window, cut_before=True, cut_after=True) == f"{MASK} middle {MASK}"
    # Under four characters is noise, not a secret's part; an edge that matches nothing stays.
    assert redact.text("T tail", cut_before=True) == "T tail"
    assert redact.text("plain text", cut_before=True, cut_after=True) == "plain text"


# --- values ------------------------------------------------------------------------------


def test_value_masks_keys_and_strings_at_every_level_and_copies():
    original = {SECRET: [1, 2.5, None, True, f"x {SECRET}", ("t", SECRET)], "k": {"deep": [{"v": SECRET}]}}
    before = json.dumps(original)
    got = Redactor([SECRET]).value(original)
    assert got == {MASK: [1, 2.5, None, True, "x ***", ["t", MASK]], "k": {"deep": [{"v": MASK}]}}
    assert json.dumps(original) == before  # the input is not changed
    assert Redactor().value(original) is original  # nothing to mask: no copy


@pytest.mark.parametrize("kind", ["list", "dict", "mixed"])
def test_value_walks_100k_levels_without_recursion(kind):
    depth = 100_000
    root: object = SECRET
    for level in range(depth):
        root = [root] if kind == "list" or (kind == "mixed" and level % 2) else {"k": root}
    got = Redactor([SECRET]).value(root)
    for _ in range(depth):
        got = got[0] if isinstance(got, list) else got["k"]
    assert got == MASK


def test_value_of_a_wide_value_and_of_shared_and_cyclic_containers():
    wide = [{"a": SECRET, "b": [SECRET, 3]} for _ in range(100_000)]
    got = Redactor([SECRET]).value(wide)
    assert got[0] == {"a": MASK, "b": [MASK, 3]} and got[-1] == got[0] and len(got) == 100_000
    shared = [SECRET]
    both = Redactor([SECRET]).value([shared, shared])
    assert both == [[MASK], [MASK]] and both[0] is both[1]  # copied once, not once per path
    cycle: list = [SECRET]
    cycle.append(cycle)
    looped = Redactor([SECRET]).value(cycle)  # terminates
    assert looped[0] == MASK and looped[1] is looped


# --- where secrets come from ---------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("OPENAI_API_KEY", True), ("GITHUB_TOKEN", True), ("client_secret", True), ("DB_PASSWORD", True),
    ("DB_PASS", True), ("GITHUB_PAT", True), ("sig", True), ("X-Amz-Signature", True), ("apiKey", True),
    ("Authorization", True), ("sessionId", True),
    ("PATH", False), ("SIGNAL", False), ("HOME", False), ("page", False), ("passthrough", False),
])
def test_credential_names(name, expected):
    assert credential_name(name) is expected


def test_env_secrets_are_plausible_values_of_credential_names():
    env = {"MY_API_KEY": "k-12345678", "GITHUB_PAT": "ghp_abcdefgh", "AUTH_ENABLED": "true",
           "SSH_AUTH_SOCK": "/tmp/agent.sock", "SHORT_TOKEN": "abc", "HOME": "/root", "GREETING": "hello-there"}
    assert sorted(env_secrets(env)) == ["ghp_abcdefgh", "k-12345678"]


@pytest.mark.parametrize("params", [
    {"extra_headers": {"X-Org-Tenant": SECRET}},                    # a header whatever its name
    {"extra_headers": {"group": {"X-Org-Tenant": SECRET}}},         # nested header dicts
    {"headers": [{"X-Org-Tenant": SECRET}]},                        # a list of them
    {"extra_headers": [SECRET]},                                     # a bare value under a header key
    {"vertex": {"credentials": {"private": SECRET}}},                # a credential-like key anywhere
    {"api_base_override": f"https://user:{SECRET}@proxy.example/v1"},  # what a URL holds
])
def test_param_secrets_find_header_values_at_any_depth(params):
    assert SECRET in param_secrets(params)


def test_param_secrets_leave_ordinary_params_and_walk_deep_ones():
    assert param_secrets({"temperature": 0.2, "stop": ["\n\nHuman"], "user": "someone-long"}) == []
    deep: object = {"X-Org": SECRET}
    for _ in range(100_000):
        deep = {"headers_group": deep}
    assert param_secrets(deep) == [SECRET]


def test_url_secrets_and_the_masked_url():
    url = f"http://me:p%40ss-{SECRET}@host:8080/mcp?page=2&access_token={SECRET}x&sig=sig-0123456#token=frag-9876543"
    assert url_secrets(url) == [f"p%40ss-{SECRET}", f"p@ss-{SECRET}", f"{SECRET}x", "sig-0123456", "frag-9876543"]
    assert mask_url(url) == "http://me:***@host:8080/mcp?page=2&access_token=***&sig=***#token=***"
    assert url_secrets(f"https://{SECRET}@github.com/org/repo") == [SECRET]  # a token as the user name
    assert mask_url(f"https://{SECRET}@github.com/org/repo") == "https://***@github.com/org/repo"
    assert mask_url("http://127.0.0.1:8000/mcp?page=2") == "http://127.0.0.1:8000/mcp?page=2"
    assert url_secrets("not a url") == [] and url_secrets(None) == []


def test_argv_secrets_and_the_masked_command():
    argv = ["server", "--api-key", SECRET, f"--token={SECRET}2", f"DB_PASSWORD={SECRET}3", "--verbose",
            "--port", "8000", f"https://u:{SECRET}4@h/x"]
    assert argv_secrets(argv) == [SECRET, f"{SECRET}2", f"{SECRET}3", f"{SECRET}4"]
    assert mask_argv(argv) == ["server", "--api-key", MASK, "--token=***", "DB_PASSWORD=***", "--verbose",
                               "--port", "8000", "https://u:***@h/x"]


def test_run_secrets_gathers_every_source():
    class Model:
        api_key = "sk-model-key-1"
        api_base = "https://proxy:proxy-pass-22@example.com/v1"
        params = {"extra_headers": {"X-Org": "org-header-333"}}

    class Source:
        def secrets(self) -> list[str]:
            return ["mcp-header-4444"]

    found = run_secrets(Model(), {"srv": Source()}, environ={"SERVICE_TOKEN": "env-token-55555"})
    assert found == ["sk-model-key-1", "proxy-pass-22", "org-header-333", "env-token-55555", "mcp-header-4444"]


# --- the two mutations, through what the user sees --------------------------------------------


def test_a_tool_error_cut_for_the_trace_is_redacted_before_the_cut():
    # executor.finish cuts an error to 500 characters for the trace; redaction after
    # the cut would leave the first half of a key that straddles it.
    from asyncfc_cli.executor import CallRecord, finish
    from asyncfc_cli.trace import Trace

    for at in (488, 492, 496):
        trace = Trace(redactor=Redactor([SECRET]))
        record = CallRecord("c1", "tool", "{}", 1, status="error", error="x" * at + SECRET + " trailing")
        finish(record, trace)
        (event,) = trace.events
        assert len(event["error"]) <= 500 and fragments(event["error"], size=4) == [], at


def _project(tmp_path: Path, header_name: str) -> Path:
    (tmp_path / "leaktools.py").write_text(
        "import os\n\n\ndef fail() -> str:\n    \"\"\"Fail with a long message that quotes a key.\"\"\"\n"
        "    raise ValueError('x' * 482 + os.environ['LEAK_SERVICE_TOKEN'] + ' and more')\n")
    (tmp_path / "agents.toml").write_text(f"""
[models.echoing]
model = "openai/echoing"
api_base = "${{ASYNCFC_TEST_API_BASE}}"
api_key = "not-a-real-key"
retries = 0
params = {{ extra_headers = {{ "{header_name}" = "${{LEAK_HEADER}}" }} }}

[tools.fail]
python = "leaktools:fail"

[agents.a]
model = "echoing"
tools = ["fail"]
""")
    task = tmp_path / "task.toml"
    task.write_text('agent = "a"\nprompt = "go"\n')
    return task


def test_a_header_value_nested_in_params_and_a_key_across_the_error_cut_never_show(tmp_path, monkeypatch):
    # A header whose name says nothing of credentials, nested in params.extra_headers,
    # echoed by the endpoint; a tool error 500+ characters long with a key across the cut.
    header = "hdr-Wq5Nz8Lc3Rv6"

    def script(request):
        got = request["headers"].get("x-org-tenant", "")
        if not any(m["role"] == "assistant" for m in request["body"]["messages"]):
            return Reply(chunks=tool_call_stream([("call_1", "fail", "{}"), ("call_2", "fail", "{}")]))
        return Reply(chunks=[chunk({"role": "assistant", "content": f"tenant {got}"}), chunk({}, "stop")])

    monkeypatch.syspath_prepend(str(tmp_path))
    task = _project(tmp_path, "X-Org-Tenant")
    with ScriptedServer([script]) as server:
        env = {"ASYNCFC_TEST_API_BASE": server.base_url, "LEAK_HEADER": header, "LEAK_SERVICE_TOKEN": SECRET}
        trace = tmp_path / "t.jsonl"
        result = invoke("run", str(task), "--json", "--trace", str(trace), env=env,
                        catch_exceptions=False)
        plain = invoke("run", str(task), "--trace", str(tmp_path / "p.jsonl"), env=env,
                       catch_exceptions=False)
    assert server.requests[0]["headers"]["x-org-tenant"] == header  # it was sent...
    assert result.exit_code == 0 and plain.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["answer"] == "tenant ***"
    ends = read_trace(trace).of_type("tool_end")
    assert ends and all(len(e["error"]) <= 500 for e in ends)
    everything = result.output + plain.output + trace.read_text() + (tmp_path / "p.jsonl").read_text()
    assert fragments(everything, header) == [] and fragments(everything) == []  # ...and never shown


def test_agents_and_models_show_an_api_base_with_its_credentials_masked(tmp_path):
    agents = tmp_path / "agents.toml"
    agents.write_text('[models.proxy]\nmodel = "openai/gpt-4o-mini"\n'
                      f'api_base = "https://me:{SECRET}@proxy.example/v1?api_key={SECRET}q"\n'
                      '[agents.a]\nmodel = "proxy"\n')
    for command in ("models", "agents"):
        for extra in ([], ["--json"]):
            result = invoke(command, "--agents", str(agents), *extra, catch_exceptions=False)
            assert result.exit_code == 0, result.output
            assert fragments(result.output) == [] and "https://me:***@proxy.example/v1?api_key=***" in result.output
