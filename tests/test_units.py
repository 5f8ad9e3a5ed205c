"""Small pieces with exact rules, tested directly: the shared 429 cooldown
(``limits.Cooldown`` and the gate that applies it), the cut of what the model
is shown (``executor.cap`` and the record methods built on it), and the
batch's exit code when runs end differently (``batch.exit_code``).

The CLI tests meet these through whole runs; here each rule is pinned at its
edges, so that changing any of them fails a test by name.
"""

from __future__ import annotations

import itertools
import json

import pytest
import trio

from asyncfc_cli.batch import FAILED, INTERRUPTED, PASSED, SKIPPED, UNMET, BatchOutcome, RunReport, exit_code
from asyncfc_cli.executor import CallRecord, cap
from asyncfc_cli.limits import COOLDOWN_CAP, Cooldown, ModelLimits

# --- Cooldown: one pause per burst of 429s, doubling only across bursts ------------------------


def test_the_first_429_pauses_for_the_base():
    c = Cooldown(base=1.0)
    assert c.hit(10.0) == 11.0
    assert (c.until, c.strikes, c.hits) == (11.0, 1, 1)


def test_a_burst_of_429s_during_a_pause_costs_one_step_not_a_doubling_each():
    c = Cooldown(base=1.0)
    c.hit(10.0)
    # Nine more 429s from requests that started before the pause: each may push the
    # end to its own time plus the same step (1 s), never double it.
    for i in range(1, 10):
        c.hit(10.0 + i * 0.1)
    assert c.strikes == 1 and c.hits == 10
    assert c.until == pytest.approx(11.9)  # the last one, at 10.9, plus 1 s; not 10.9 + 2**9


def test_a_429_after_the_pause_ended_doubles_it_up_to_the_cap():
    c = Cooldown(base=1.0, cap=8.0)
    t = 0.0
    pauses = []
    for _ in range(6):
        t = c.until + 0.5  # each 429 comes after the previous pause ended
        pauses.append(c.hit(t) - t)
    assert pauses == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert c.strikes == 6


def test_a_429_exactly_when_the_pause_ends_is_a_new_strike():
    c = Cooldown(base=1.0)
    c.hit(0.0)
    assert c.hit(1.0) == 3.0 and c.strikes == 2


def test_a_success_starts_the_doubling_over():
    c = Cooldown(base=1.0)
    for t in (0.0, 1.5, 4.0):
        c.hit(t)
    assert c.strikes == 3
    c.ok()
    assert c.strikes == 0
    assert c.hit(100.0) == 101.0


def test_retry_after_is_the_pause_and_never_shortens_one():
    c = Cooldown(base=1.0)
    assert c.hit(0.0, asked=5.0) == 5.0
    # A later 429 asking for less does not cut the pause short.
    assert c.hit(1.0, asked=0.5) == 5.0
    assert c.strikes == 1 and c.hits == 2


def test_the_default_cap_bounds_any_streak():
    c = Cooldown()
    t = 0.0
    for _ in range(20):
        t = c.until
        c.hit(t)
    assert c.until - t == COOLDOWN_CAP


class RateLimited(Exception):
    status_code = 429


async def test_a_burst_of_429s_through_the_gate_pauses_every_run_once(autojump_clock):
    limits = ModelLimits(cooldown_base=1.0)

    async def request(fail: bool) -> None:
        try:
            async with limits.gate("m").attempt():
                await trio.sleep(0.1)
                if fail:
                    raise RateLimited("slow down")
        except RateLimited:
            pass

    # Five concurrent requests all get a 429: one pause of 1 s, not 2**4 s.
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(request, True)
    assert trio.current_time() == pytest.approx(0.1)
    await request(False)  # waits out the pause, then succeeds
    assert trio.current_time() == pytest.approx(1.2)
    stats = limits.stats()["m"]
    assert stats["rate_limits"] == 5 and stats["peak_requests"] == 5
    # The success reset the doubling: the next 429 pauses for the base again.
    start = trio.current_time()
    await request(True)
    await request(False)
    assert trio.current_time() - start == pytest.approx(0.1 + 1.0 + 0.1)


# --- cap: what the model is shown of a long result ------------------------------------------


def test_cap_leaves_text_within_the_limit_alone():
    assert cap("abc", None) == "abc"
    assert cap("abc", 3) == "abc"
    assert cap("", 0) == ""


def test_cap_cuts_to_the_limit_and_says_how_much_was_cut():
    assert cap("abcd", 3) == "abc\n[... 1 more characters cut]"
    assert cap("x" * 1000, 10) == "x" * 10 + "\n[... 990 more characters cut]"
    assert cap("abc", 0) == "\n[... 3 more characters cut]"


def test_cap_counts_characters_not_bytes():
    text = "é" * 5 + "\U0001f600" * 5
    assert cap(text, 5) == "é" * 5 + "\n[... 5 more characters cut]"
    assert cap(text, 10) == text


def finished(status: str, value=None, error=None, max_chars=None) -> CallRecord:
    return CallRecord("c1", "t", "{}", 1, status=status, value=value, error=error, max_chars=max_chars)


def test_a_tool_message_shows_at_most_max_chars_of_the_result():
    assert finished("ok", "y" * 50, max_chars=20).content() == "y" * 20 + "\n[... 30 more characters cut]"
    assert finished("ok", {"k": "v"}, max_chars=20).content() == '{"k": "v"}'
    long_value = {"k": "v" * 40}
    text = json.dumps(long_value)
    assert finished("ok", long_value, max_chars=20).content() == cap(text, 20)
    assert finished("ok", "y" * 50).content() == "y" * 50  # no limit set
    error = json.loads(finished("error", error="e" * 50, max_chars=10).content())
    assert error == {"error": "e" * 10 + "\n[... 40 more characters cut]"}


def test_a_wait_or_delivery_shows_the_value_whole_within_the_limit_and_cut_past_it():
    assert finished("ok", {"k": "v"}, max_chars=20).outcome() == {"k": "v"}  # a JSON value, not text
    assert finished("ok", "y" * 21, max_chars=20).outcome() == "y" * 20 + "\n[... 1 more characters cut]"
    assert finished("ok", "y" * 20, max_chars=20).outcome() == "y" * 20
    assert finished("timeout", error="timed out after 1s", max_chars=5).outcome() == {
        "error": "timed\n[... 13 more characters cut]"}
    assert finished("cancelled", max_chars=None).outcome() == {"error": "cancelled"}


# --- the batch's exit code: 130, then 2, then 1, then 3, then 0 ------------------------------


def report(status: str, code: int | None) -> RunReport:
    return RunReport(key=f"k-{status}-{code}", label="l", task="t.toml", params={}, mode="async", model="sim",
                     repeat=1, status=status, exit_code=code)


KINDS = {
    "passed": report(PASSED, 0),
    "unmet": report(UNMET, 3),
    "failed": report(FAILED, 1),
    "refused key": report(FAILED, 2),   # a key refused, a server that would not start
    "interrupted": report(INTERRUPTED, 130),
}
# README "Exit codes" of `asyncfc batch`: the first that applies.
PRECEDENCE = [("interrupted", 130), ("refused key", 2), ("failed", 1), ("unmet", 3), ("passed", 0)]


@pytest.mark.parametrize("kinds", [c for n in range(1, 6) for c in itertools.combinations(KINDS, n)],
                         ids=lambda kinds: "+".join(kinds))
def test_the_batch_exit_code_is_the_first_that_applies(kinds):
    expected = next(code for kind, code in PRECEDENCE if kind in kinds)
    reports = [KINDS[k] for k in kinds]
    assert exit_code(BatchOutcome(reports, interrupted=False, wall=1.0)) == expected
    assert exit_code(BatchOutcome(list(reversed(reports)), interrupted=False, wall=1.0)) == expected


def test_one_run_exit_2_among_failures_makes_the_batch_exit_2():
    reports = [report(FAILED, 1)] * 5 + [report(FAILED, 2)] + [report(UNMET, 3)] * 5
    assert exit_code(BatchOutcome(reports, interrupted=False, wall=1.0)) == 2


def test_an_interrupted_batch_is_130_whatever_ran():
    reports = [report(FAILED, 2), report(PASSED, 0), report(SKIPPED, None)]
    assert exit_code(BatchOutcome(reports, interrupted=True, wall=1.0)) == 130
    assert exit_code(BatchOutcome([], interrupted=True, wall=0.0)) == 130
    assert exit_code(BatchOutcome([], interrupted=False, wall=0.0)) == 0
