"""The parts of async mode's scheduler, each tested directly, and the mode registry.

``asyncfc_cli/futures/``: the future table (ids, dependencies, cycles,
arrival), delivery (exactly once, the finish rule) and the hold policies
(never / fixed / latency), without a model and mostly without trio. The end
to end behaviour is in test_hold.py, test_futures.py and test_async.py; here
each rule is pinned at its edges, so that changing one fails a test by name
(docs/reliability.md, "Changes the tests catch").

``asyncfc_cli/modes.py``: every list of modes derives from the registry, and
a mode added to it alone runs from the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import pytest
import trio

from asyncfc_cli import batch, modes, spec
from asyncfc_cli.bench import runner as bench_runner
from asyncfc_cli.commands.common import ModeChoice
from asyncfc_cli.decoding import ToolCallReady
from asyncfc_cli.executor import CallRecord, new_record
from asyncfc_cli.futures.delivery import Delivery
from asyncfc_cli.futures.hold import FixedHold, HoldPolicy, LatencyHold, hold_policy
from asyncfc_cli.futures.protocol import DELIVERY_PREFIX, FINISH_NOTE, WAIT_TOOL
from asyncfc_cli.futures.table import FutureTable
from asyncfc_cli.latency import LatencyBook, RequestCost
from asyncfc_cli.trace import Trace

# --- the future table ---------------------------------------------------------------------------


def call(table: FutureTable, args: dict | str = "{}", tool: str = "t", ordered: bool = False):
    """Issue one call with these arguments; (record, refs, error, after)."""
    raw = args if isinstance(args, str) else json.dumps(args)
    record = new_record(ToolCallReady(0, f"c{len(table.records) + 1}", tool, raw), 1)
    refs, error, after = table.issue(record, ordered)
    return record, refs, error, after


def resolve(record: CallRecord, status: str = "ok", value=None) -> None:
    record.status, record.value = status, value
    record.resolved.set()


def test_calls_are_numbered_in_issue_order_and_read_their_references_once():
    table = FutureTable()
    first, *_ = call(table)
    second, refs, error, _ = call(table, {"a": "$f1", "b": "${f1.x}", "c": ["$f1"]})
    assert (first.future, second.future) == ("f1", "f2")
    assert table.records == [first, second] and table.by_id == {"f1": first, "f2": second}
    assert second.deps == ["f1"] and len(refs) == 3 and error is None
    assert table.issued() == "f1..f2"


def test_issued_says_none_one_or_a_range():
    table = FutureTable()
    assert table.issued() == "none"
    call(table)
    assert table.issued() == "f1"
    call(table)
    assert table.issued() == "f1..f2"


def test_a_call_that_references_itself_is_an_error():
    table = FutureTable()
    record, _, error, _ = call(table, {"x": "$f1"})
    assert error == "$f1 refers to this call itself: a call cannot use its own result"
    assert record.deps == ["f1"]


@pytest.mark.parametrize("ref", ["$f0", "$f01"])
def test_an_id_that_no_call_can_have_is_an_error_at_once(ref):
    table = FutureTable()
    call(table)
    _, _, error, _ = call(table, {"x": ref})
    assert error == f"unknown future {ref}: future ids are f1, f2, ... (issued so far: f1)"


def test_a_checked_reference_to_a_call_of_another_tool_is_an_error():
    table = FutureTable()
    call(table, tool="search")
    _, _, error, _ = call(table, {"x": "${f1:search}"})
    assert error is None
    _, _, error, _ = call(table, {"x": "${f1:fetch}"})
    assert error == "${f1:fetch} names a call of fetch, but f1 is a call of search"


def test_a_reference_to_a_call_not_made_yet_is_allowed_while_the_response_streams():
    table = FutureTable()
    record, _, error, _ = call(table, {"x": "$f2"})
    assert error is None and record.deps == ["f2"]


@pytest.mark.parametrize("refs, path", [
    (["$f2", "$f1"], "f2 -> f1 -> f2"),  # two calls that reference each other
    (["$f3", "$f1", "$f2"], "f3 -> f2 -> f1 -> f3"),  # a longer cycle, named along its path
], ids=["two", "three"])
def test_calls_that_reference_each_other_in_a_ring_are_a_cycle_named_along_its_path(refs, path):
    table = FutureTable()
    for ref in refs[:-1]:
        call(table, {"x": ref})
    _, _, error, _ = call(table, {"x": refs[-1]})
    assert error == f"cyclic reference {path}: no call can start"


def test_shared_inputs_are_not_a_cycle():
    # f4 reads f2 and f3, which both read f1: a diamond, walked twice from f4, no cycle.
    table = FutureTable()
    call(table)
    call(table, {"x": "$f1"})
    call(table, {"x": "$f1"})
    _, _, error, _ = call(table, {"a": "$f2", "b": "$f3"})
    assert error is None


def test_a_cycle_at_the_end_of_a_long_chain_is_found_without_recursion():
    table = FutureTable()
    n = 5000
    call(table, {"x": f"$f{n}"})  # f1 reads the last call, which comes at the end
    for i in range(2, n):
        call(table, {"x": f"$f{i - 1}"})
    _, _, error, _ = call(table, {"x": f"$f{n - 1}"})
    assert error is not None and error.startswith(f"cyclic reference f{n} -> f{n - 1} -> ")
    assert error.count("->") == n


def test_a_call_that_failed_already_is_not_judged_again():
    table = FutureTable()
    record, _, error, _ = call(table, '{"x": "$f1"')  # malformed: its own error stands
    assert record.status == "error" and "not valid JSON" in record.error and error is None


def test_ordered_calls_chain_in_issue_order_and_others_do_not():
    table = FutureTable()
    a, _, _, after_a = call(table, ordered=True)
    b, _, _, after_b = call(table)
    c, _, _, after_c = call(table, ordered=True)
    assert (after_a, after_b, after_c) == (None, None, a)
    # c failed without running: the next ordered call follows a, not c.
    table.unchain(c, after_c)
    _, _, _, after_d = call(table, ordered=True)
    assert after_d is a
    # Unchaining a call that is not the last ordered one changes nothing.
    table.unchain(b, None)
    _, _, _, after_e = call(table, ordered=True)
    assert after_e is not None and after_e.future == "f4"


async def test_arrival_waits_for_the_call_to_be_issued_and_then_to_resolve(autojump_clock):
    table = FutureTable()
    arrived = []

    async def wait_for(fid):
        await table.arrival(fid)
        arrived.append((fid, trio.current_time()))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for, "f1")
            await trio.sleep(1)
            record, *_ = call(table)
            await trio.sleep(1)
            assert arrived == []  # issued, not resolved
            resolve(record)
    assert arrived == [("f1", 2.0)]


async def test_a_reference_the_response_never_made_fails_when_it_ends(autojump_clock):
    table = FutureTable()
    record, refs, _, _ = call(table, {"x": "$f9"})
    with trio.fail_after(10):  # a failure, not a hang, if the arrival is never told
        async with trio.open_nursery() as nursery:
            nursery.start_soon(table.arrival, "f9")
            await trio.sleep(1)
            table.close_response()  # the waiting arrival returns: nursery exits
    table.bind_inputs(record, refs)
    assert record.status == "error"
    assert record.error == "unknown future $f9: no call f9 was made (the response ended; calls so far: f1)"


def test_the_next_response_may_not_make_a_call_an_earlier_one_referenced():
    table = FutureTable()
    call(table, {"x": "$f2"})
    table.close_response()
    assert table._never.keys() == {"f2"}
    call(table)  # f2, made in a later response: too late for f1, which already failed
    table.close_response()
    assert table._never.keys() == {"f2"}


def test_inputs_are_substituted_once_their_calls_succeeded():
    table = FutureTable()
    source, *_ = call(table)
    reader, refs, _, _ = call(table, {"whole": "$f1", "part": "${f1.k}", "text": "id \\$f1"})
    resolve(source, value={"k": 7})
    table.bind_inputs(reader, refs)
    assert reader.arguments == {"whole": {"k": 7}, "part": 7, "text": "id $f1"}
    assert reader.status == "pending"


@pytest.mark.parametrize("status", ["error", "timeout", "cancelled"])
def test_a_failed_input_fails_its_reader_without_substitution(status):
    table = FutureTable()
    source, *_ = call(table, tool="search")
    reader, refs, _, _ = call(table, {"x": "$f1"})
    source.error = "boom" if status == "error" else None
    resolve(source, status)
    table.bind_inputs(reader, refs)
    expected = "boom" if status == "error" else status
    assert reader.status == "error" and reader.error == f"dependency $f1 (search) failed: {expected}"
    assert reader.arguments == {"x": "$f1"}


def test_a_path_the_value_does_not_have_fails_its_reader():
    table = FutureTable()
    source, *_ = call(table)
    reader, refs, _, _ = call(table, {"x": "${f1.missing}"})
    resolve(source, value={"k": 1})
    table.bind_inputs(reader, refs)
    assert reader.status == "error" and reader.error.startswith("bad reference in arguments: ")


def test_a_forward_reference_checked_against_the_tool_it_names_once_bound():
    table = FutureTable()
    reader, refs, error, _ = call(table, {"x": "${f2:search}"})
    assert error is None  # f2 is not issued yet: nothing to check against
    source, *_ = call(table, tool="fetch")
    resolve(source, value=1)
    table.bind_inputs(reader, refs)
    assert reader.error == "${f2:search} names a call of search, but f2 is a call of fetch"


# --- delivery and the finish rule ---------------------------------------------------------------


def delivery_with(*states: tuple[bool, str | None]) -> tuple[Delivery, Trace]:
    """A Delivery over calls f1.. that are (done, delivered)."""
    table = FutureTable()
    trace = Trace(clock=lambda: 0.0)
    for index, (done, delivered) in enumerate(states):
        record, *_ = call(table)
        record.delivered = delivered
        if done:
            resolve(record, value=index + 1)
    return Delivery(table, trace), trace


def events(trace: Trace, kind: str) -> list[dict]:
    return [e for e in trace.events if e["type"] == kind]


def test_marking_sets_how_each_outcome_was_seen_and_says_so_once():
    d, trace = delivery_with((True, None), (True, None))
    d.mark(d.table.records, "wait")
    d.mark([], "message")
    assert [r.delivered for r in d.table.records] == ["wait", "wait"]
    assert [(e["futures"], e["via"]) for e in events(trace, "delivery")] == [(["f1", "f2"], "wait")]
    assert d.outstanding() == []


def test_outstanding_is_every_outcome_not_seen_done_or_not():
    d, _ = delivery_with((True, "result"), (True, None), (False, None))
    assert d.outstanding() == ["f2", "f3"]


def test_the_next_request_carries_what_resolved_unseen_and_only_that():
    d, _ = delivery_with((True, "result"), (True, None), (False, None))
    messages: list[dict] = []
    d.before_request(messages)
    assert messages == [{"role": "user", "content": DELIVERY_PREFIX + '{"f2":2}'}]
    assert [r.delivered for r in d.table.records] == ["result", "message", None]
    d.before_request(messages)  # nothing new: no second message
    assert len(messages) == 1


async def test_an_answer_is_accepted_only_once_every_outcome_was_seen():
    d, trace = delivery_with((True, "result"), (True, "wait"))
    assert await d.accept_answer(cut=False) is True
    assert events(trace, "finish_held") == [] and not d.finishing


async def test_an_answer_with_an_outcome_unseen_is_held_then_confirmed_with_the_note():
    d, trace = delivery_with((True, "result"), (True, None))
    assert await d.accept_answer(cut=False) is False
    assert [e["outstanding"] for e in events(trace, "finish_held")] == [["f2"]]
    messages: list[dict] = []
    d.before_request(messages)
    assert messages[0]["content"] == DELIVERY_PREFIX + '{"f2":2}\n' + FINISH_NOTE
    assert not d.finishing
    assert await d.accept_answer(cut=False) is True


async def test_a_cut_answer_is_asked_again_without_the_confirm_note():
    d, trace = delivery_with((True, None))
    assert await d.accept_answer(cut=True) is False
    assert events(trace, "finish_held")[0]["cut"] is True
    messages: list[dict] = []
    d.before_request(messages)
    assert FINISH_NOTE not in messages[0]["content"]


async def test_the_finish_rule_waits_for_every_call_to_resolve(autojump_clock):
    d, _ = delivery_with((False, None), (False, None))
    first, second = d.table.records

    async def finish_later():
        await trio.sleep(1)
        resolve(first)
        await trio.sleep(2)
        resolve(second)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(finish_later)
            assert await d.accept_answer(cut=False) is False
            assert trio.current_time() == 3.0


async def test_a_held_answer_with_nothing_left_to_deliver_still_gets_the_note():
    # The outcomes went out through a wait while the answer was held: the note alone.
    d, _ = delivery_with((True, None))
    assert await d.accept_answer(cut=False) is False
    d.mark(d.table.records, "wait")
    messages: list[dict] = []
    d.before_request(messages)
    assert messages == [{"role": "user", "content": DELIVERY_PREFIX + "{}\n" + FINISH_NOTE}]


async def test_wait_without_futures_reads_its_siblings_but_not_those_given_in_their_own_messages():
    d, _ = delivery_with((True, None), (True, None))
    f1, f2 = d.table.records
    w = new_record(ToolCallReady(2, "w", WAIT_TOOL, "{}"), 1)
    d.mark([f1], "result")
    out = json.loads(await d.serve_wait(w, [f1, f2], [f1]))
    assert out == {"f2": 2} and f2.delivered == "wait"


async def test_wait_names_each_future_once_however_it_is_written():
    d, _ = delivery_with((True, None))
    w = new_record(ToolCallReady(1, "w", WAIT_TOOL, '{"futures": ["f1", "$f1", "${f1}"]}'), 1)
    assert json.loads(await d.serve_wait(w)) == {"f1": 1}


# --- the hold policies --------------------------------------------------------------------------


def running(tool: str, start: float | None = 0.0) -> CallRecord:
    return CallRecord("c", tool, "{}", 1, status="running", start=start)


def book(**durations: list[float]) -> LatencyBook:
    b = LatencyBook()
    for tool, seconds in durations.items():
        for s in seconds:
            b.observe(tool, s)
    return b


def test_never_holds_for_nothing():
    policy = hold_policy("never", LatencyBook(), RequestCost(0.5))
    assert type(policy) is HoldPolicy
    assert policy.plan([running("t")], 0.0) is None


def test_a_fixed_hold_is_for_every_running_call_for_its_seconds_every_time():
    policy = hold_policy(0.25, book(t=[10.0]), RequestCost(0.5))
    calls = [running("t"), running("u")]
    for _ in range(3):
        hold = policy.plan(calls, 0.0)
        assert hold is not None and hold.targets == calls and hold.budget == 0.25 and hold.expected is None
        policy.spent(0.25)  # no budget per run: the next hold is as long


@pytest.mark.parametrize("seconds", [0, -1.0])
def test_a_fixed_hold_of_no_time_holds_nothing(seconds):
    assert FixedHold(seconds).plan([running("t")], 0.0) is None


@pytest.mark.parametrize("policy", [FixedHold(1.0), LatencyHold(LatencyBook(), RequestCost(0.5)), HoldPolicy()])
def test_no_running_call_no_hold(policy):
    assert policy.plan([], 0.0) is None


@pytest.mark.parametrize("ttft", [None, 0.0])
def test_the_latency_policy_holds_nothing_before_a_time_to_first_token_is_known(ttft):
    assert LatencyHold(LatencyBook(), RequestCost(ttft)).plan([running("t")], 0.0) is None


def test_the_latency_policy_holds_for_a_tool_it_knows_nothing_about_up_to_one_ttft():
    hold = LatencyHold(LatencyBook(), RequestCost(0.5)).plan([running("t")], 0.0)
    assert hold is not None and hold.budget == 0.5 and hold.expected is None and len(hold.targets) == 1


def test_the_latency_policy_holds_for_a_call_expected_within_the_budget_edge_included():
    policy = LatencyHold(book(t=[0.5], u=[0.5001]), RequestCost(0.5))
    t, u = running("t"), running("u")
    hold = policy.plan([t, u], 0.0)
    assert hold is not None and hold.targets == [t] and hold.expected == 0.5


def test_the_latency_policy_counts_what_a_call_has_run_already():
    # Known to take 2 s, running for 1.8 s: expected in 0.2 s, within a 0.5 s budget.
    policy = LatencyHold(book(t=[2.0]), RequestCost(0.5))
    assert policy.plan([running("t", start=0.0)], 0.0) is None
    hold = policy.plan([running("t", start=0.0)], 1.8)
    assert hold is not None and abs(hold.expected - 0.2) < 1e-9
    # A call not started yet (queued for a slot) has run for nothing.
    assert policy.plan([running("t", start=None)], 1.8) is None


def test_the_latency_policy_skips_a_call_slower_than_every_known_run():
    policy = LatencyHold(book(t=[0.1, 0.2]), RequestCost(0.5))
    assert policy.plan([running("t", start=0.0)], 0.3) is None


def test_the_latency_policy_reports_the_longest_estimate_of_what_it_holds_for():
    policy = LatencyHold(book(a=[0.1], b=[0.3]), RequestCost(0.5))
    hold = policy.plan([running("a"), running("b"), running("new")], 0.0)
    assert hold is not None and len(hold.targets) == 3 and hold.expected == 0.3


def test_a_run_holds_one_time_to_first_token_in_all():
    cost = RequestCost(0.5)
    policy = LatencyHold(LatencyBook(), cost)
    policy.spent(0.2)
    assert policy.plan([running("t")], 0.0).budget == pytest.approx(0.3)
    # What is left follows the latest time to first token, not the first one.
    cost.observe(0.4)
    assert policy.plan([running("t")], 0.0).budget == pytest.approx(0.2)
    policy.spent(0.2)
    assert policy.plan([running("t")], 0.0) is None  # exactly used up
    # A call known to fit a budget that is no longer there is not held for either.
    assert LatencyHold(book(t=[0.1]), RequestCost(0.5), held=0.45).plan([running("t")], 0.0) is None


@pytest.mark.parametrize("given, kind", [("never", HoldPolicy), ("latency", LatencyHold), (0.05, FixedHold),
                                         (1, FixedHold)])
def test_hold_policies_by_name(given, kind):
    policy = hold_policy(given, LatencyBook(), RequestCost())
    assert type(policy) is kind
    if kind is FixedHold:
        assert policy.seconds == float(given)


@pytest.mark.parametrize("given", ["sometimes", True, None])
def test_an_unknown_hold_policy_is_refused(given):
    with pytest.raises(ValueError, match="unknown hold policy"):
        hold_policy(given, LatencyBook(), RequestCost())


# --- the mode registry --------------------------------------------------------------------------


def test_every_list_of_modes_is_the_registry():
    assert modes.NAMES == ("sync", "parallel", "async") and modes.DEFAULT in modes.NAMES
    assert typing.get_args(spec.Mode) == modes.NAMES
    assert spec.DEFAULT_MODE == modes.DEFAULT == spec.AgentSpec(model="m").mode
    assert tuple(c.value for c in ModeChoice) == modes.NAMES
    assert batch.MODES == bench_runner.MODES == modes.NAMES
    assert modes.listed() == "sync, parallel or async"


def test_the_tools_a_mode_adds_are_reserved_in_every_mode():
    assert [t.name for t in modes.get("async").tools] == [WAIT_TOOL]
    assert modes.get("sync").tools == modes.get("parallel").tools == ()
    assert spec.RESERVED_TOOL_NAMES == modes.RESERVED_TOOL_NAMES == (WAIT_TOOL,)
    wait = modes.WAIT.tool()
    assert wait.name == WAIT_TOOL and wait.openai_schema()["function"]["parameters"]["properties"]["futures"]


async def test_a_tool_source_may_not_bring_a_tool_named_like_a_mode_s_own():
    # A server's tools are known only once it is open: the run's opening refuses
    # a name a mode's tool takes (the runner passes the registry's names).
    from asyncfc_cli.tools import Tool, ToolLoadError, open_tools

    async def mine(_args):
        return None

    clash = Tool(name=WAIT_TOOL, description="mine", parameters={"type": "object", "properties": {}},
                 kind="builtin", runner=mine)
    with pytest.raises(ToolLoadError, match="asyncfc's own tool"):
        async with open_tools({WAIT_TOOL: clash}, Trace(), reserved=modes.RESERVED_TOOL_NAMES):
            pass
    async with open_tools({WAIT_TOOL: clash}, Trace(), reserved=()) as opened:
        assert list(opened) == [WAIT_TOOL]


def test_only_async_adds_an_instruction_and_an_override_replaces_it():
    from asyncfc_cli.futures.protocol import INSTRUCTION

    assert modes.get("async").instruction(None) == INSTRUCTION
    assert modes.get("async").instruction("mine") == "mine"
    assert modes.get("sync").instruction("mine") is None and modes.get("parallel").instruction(None) is None


def test_an_unknown_mode_is_refused_naming_the_modes():
    with pytest.raises(ValueError, match="unknown mode 'turbo': use sync, parallel or async"):
        modes.get("turbo")


def test_a_mode_added_to_the_registry_alone_runs_from_the_cli(tmp_path):
    # The registry is the one place a mode is named: a mode added there (here
    # before anything else reads it, as an edit of modes.py would) is a --mode
    # choice, a spec value and a batch mode, and runs its scheduler.
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent("""
        import dataclasses, sys
        from asyncfc_cli import modes
        modes.MODES["serial"] = dataclasses.replace(modes.MODES["sync"], name="serial", summary="sync, again")
        modes.NAMES = tuple(modes.MODES)
        from asyncfc_cli.cli import app
        app(sys.argv[1:])
    """))
    task = tmp_path / "task.toml"
    task.write_text(textwrap.dedent("""
        prompt = "go"
        [agent]
        model = "sim"
        mode = "serial"
        tools = ["nothing"]
        [tools.nothing]
        description = "Do nothing."
        command = ["true"]
        [sim]
        decode_tps = 5000
        ttft = 0.0
        [[sim.steps]]
        id = "a"
        tool = "nothing"
        [sim.final]
        answer = "done"
    """))
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}

    def asyncfc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(driver), *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=600)

    done = asyncfc("run", str(task), "--json", "--trace", str(tmp_path / "t.jsonl"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"] == "done"
    header = json.loads(Path(tmp_path / "t.jsonl").read_text().splitlines()[0])
    assert header["mode"] == "serial"
    listed = asyncfc("run", "--help")
    assert "sync|parallel|async|serial" in listed.stdout
