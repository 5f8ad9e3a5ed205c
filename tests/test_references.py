"""The reference grammar (asyncfc_cli/references.py): what reads as a future, what stays text.

Property tests put references next to adversarial text (digits, dots,
dashes, underscores, braces, dollars, unicode, references back to back) and
check that what was written is what is read: never another future, never a
silent guess.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncfc_cli.references import (MAX_PROBLEMS, MAX_REFERENCES, Literal, PathError, Reference, escape, parse, pick,
                                    scan, substitute)

# Text that is hard to tell from a reference's surroundings.
NEIGHBOURS = st.text(alphabet=st.sampled_from(list("0123456789.-_ab{}$ féç🙂\\\"'\n")), max_size=6)
IDS = st.integers(1, 120).map(lambda n: f"f{n}")
KEYS = st.text(alphabet=st.sampled_from(list("abcxyz_-0123456789é ")), min_size=1, max_size=5).filter(
    lambda k: "." not in k and "}" not in k)


@st.composite
def written(draw):
    """What a model means: literal text and braced references, in any order."""
    parts: list = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            parts.append(Reference(draw(IDS), tuple(draw(st.lists(KEYS, max_size=2)))))
        else:
            parts.append(Literal(draw(NEIGHBOURS)))
    return parts


def merged(parts: list) -> list:
    """Adjacent literals joined, empty ones dropped."""
    out: list = []
    for part in parts:
        if isinstance(part, Literal) and out and isinstance(out[-1], Literal):
            out[-1] = Literal(out[-1].text + part.text)
        elif not (isinstance(part, Literal) and not part.text):
            out.append(part)
    return out


def render(parts: list) -> str:
    """How it is written: literal text escaped, knowing what follows it."""
    parts = merged(parts)
    out = []
    for i, part in enumerate(parts):
        if isinstance(part, Literal):
            following = parts[i + 1] if i + 1 < len(parts) else None
            out.append(escape(part.text, then_reference=isinstance(following, Reference)))
        else:
            out.append(part.text)
    return "".join(out)


@settings(max_examples=400, deadline=None)
@given(written())
def test_braced_references_read_back_exactly_whatever_surrounds_them(parts):
    parsed = parse(render(parts))
    assert parsed.problems == []
    assert parsed.references == [p for p in parts if isinstance(p, Reference)]
    # And the text between them, exactly.
    assert merged(parsed.parts) == merged(parts)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_escaped_text_is_read_back_literally_and_never_as_a_reference(text):
    parsed = parse(escape(text))
    assert parsed.references == [] and parsed.problems == []
    assert "".join(p.text for p in parsed.parts) == text
    assert substitute(escape(text), {}) == text


@settings(max_examples=300, deadline=None)
@given(NEIGHBOURS, IDS, NEIGHBOURS)
def test_a_bare_reference_inside_text_is_refused_never_guessed(before, future, after):
    text = f"{escape(before)}X${future}{escape(after)}"  # X: never the whole string
    parsed = parse(text)
    assert parsed.references == []
    assert parsed.problems and "ambiguous reference" in parsed.problems[0]
    assert "${" + future in parsed.problems[0] or f"${{{future}" in parsed.problems[0]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=6), max_size=3), IDS)
def test_a_whole_string_reference_keeps_the_json_type(value, future):
    assert substitute(f"${future}", {future: value}) == value
    assert substitute("${" + future + "}", {future: value}) == value
    assert substitute({"a": [f"${future}"]}, {future: value}) == {"a": [value]}  # nested in lists and objects


@pytest.mark.parametrize("text, meaning", [
    ("id ${f1}1", ["id ", "f1", "1"]),            # f1 then "1", never f11
    ("${f1}.sum.5", ["f1", ".sum.5"]),            # the path ends with the brace
    ("a${f1}${f2}b", ["a", "f1", "f2", "b"]),     # back to back
    ("${f1.h-end}", ["f1.h-end"]),
    ("${f12:fetch.rows.-1}", ["f12:fetch.rows.-1"]),
    ("$${f1}", ["$", "f1"]),                      # a dollar sign, then f1
    ("\\${f1} and \\$f2", ["${f1} and $f2"]),      # escapes
    ("C:\\\\${f1}", ["C:\\", "f1"]),                # an escaped backslash, then f1
    ("${HOME} $HOME $$ $5 ${f}", ["${HOME} $HOME $$ $5 ${f}"]),  # not references at all
])
def test_examples(text, meaning):
    parsed = parse(text)
    got = [p.text if isinstance(p, Literal) else p.text[2:-1] for p in parsed.parts]
    assert got == meaning and parsed.problems == []


def test_whole_string_forms_and_tool_checks():
    assert parse("$f3").whole and parse("$f3.rows.0").references[0].path == ("rows", "0")
    assert parse("${f3:fetch}").references[0] == Reference("f3", (), "fetch")
    assert parse("$f1.h-end").references[0].path == ("h-end",)  # the whole string: a part named h-end


def test_malformed_braces_are_reported():
    assert "unterminated" in parse("x ${f1").problems[0]
    assert "ambiguous" in parse("id $f11").problems[0]
    refs, problems = scan({"a": ["ok", {"b": "see $f2 here"}], "c": 3})
    assert refs == [] and len(problems) == 1


def test_paths_that_do_not_exist_say_what_is_there():
    with pytest.raises(PathError, match="has no part 'x'.*keys: a, b"):
        substitute("${f1.x}", {"f1": {"a": 1, "b": 2}})
    with pytest.raises(PathError, match="3 items"):
        substitute("$f1.7", {"f1": [1, 2, 3]})
    assert substitute("$f1.-1", {"f1": [1, 2, 3]}) == 3
    assert substitute("n=${f1.a}", {"f1": {"a": [1, "x"]}}) == 'n=' + json.dumps([1, "x"])


# --- hostile text: linear time, any depth, every list bound --------------------------------------

TEN_MB = 10_000_000
HOSTILE = {  # built when a test asks: 140 MB held by every worker that imports this file is not free
    "backslashes": lambda: "\\" * TEN_MB,
    "backslashes then a dollar": lambda: "\\" * TEN_MB + "$HOME",
    "backslashes then a reference": lambda: "\\" * TEN_MB + "${f1}",
    "text, backslashes, a reference": lambda: "x" + "\\" * TEN_MB + "$f1",
    "dollars": lambda: "$" * TEN_MB,
    "${ runs": lambda: "${" * (TEN_MB // 2),
    "${f runs": lambda: "${f" * (TEN_MB // 3),
    "${f1. with a long path, never closed": lambda: "${f1." + "a." * (TEN_MB // 2),
    "${f1. with a long path": lambda: "${f1." + "key." * (TEN_MB // 4) + "end}",
    "text, then ${f1. with a long path": lambda: "x ${f1." + "a." * (TEN_MB // 2),
    "a long id": lambda: "$f" + "1" * TEN_MB,
    "a long tool": lambda: "x ${f1:" + "t" * TEN_MB + "}",
    "escaped references": lambda: "\\${f1}" * (TEN_MB // 6),
    "mixed": lambda: ("\\${f1.a\\$" + "\\" * 37 + "${" + "$" * 20 + "${f1." + "b." * 30 + "$f1 ") * (TEN_MB // 200),
}


@pytest.mark.parametrize("shape", list(HOSTILE))
def test_ten_megabytes_of_hostile_text_scan_in_linear_time(shape):
    # The scanner once retried a regex at every backslash of a run: 16,000 took
    # 2 s, 32,000 took 8 s, on the thread that runs the event loop. Linear, 10 MB
    # of any shape takes a fraction of a second; the budget is CPU time of this
    # thread (not the wall clock), so a loaded machine does not move it.
    text = HOSTILE[shape]()
    start = time.thread_time()
    parsed = parse(text)
    refs, problems = scan({"args": [text]})
    took = time.thread_time() - start
    assert took < 2.0, f"{shape}: {took:.2f}s of CPU"
    assert len(problems) <= MAX_PROBLEMS and all(len(p) < 300 for p in problems)
    assert len(parsed.references) <= MAX_REFERENCES and len(refs) <= MAX_REFERENCES


def test_escaping_ten_megabytes_is_linear_and_reads_back():
    for text in ("\\" * TEN_MB + "${f1}", "$f1 " * (TEN_MB // 4), ("a\\" * 3 + "${f2}") * (TEN_MB // 12)):
        start = time.thread_time()
        escaped = escape(text)
        assert time.thread_time() - start < 2.0
        assert "".join(p.text for p in parse(escaped, limit=len(text)).parts) == text


def test_more_references_than_the_limit_are_a_problem_not_a_stall():
    text = "${f1}" * (MAX_REFERENCES + 1)
    parsed = parse(text)
    assert parsed.over and "more than 10000 references" in parsed.problems[-1]
    refs, problems = scan({"a": ["${f1}"] * MAX_REFERENCES + ["x ${f2}"]})
    assert len(refs) == MAX_REFERENCES and "more than 10000 references" in problems[0]
    assert scan({"a": ["${f1}"] * MAX_REFERENCES})[1] == []  # exactly the limit is fine


@pytest.mark.parametrize("depth", [600, 5_000, 200_000])
def test_values_nested_past_the_recursion_limit_are_scanned_and_substituted(depth):
    # An argument nested 600 deep crashed substitute with RecursionError.
    value: object = ["${f1.a}", "$f2"]
    for _ in range(depth):
        value = {"k": [value]}
    refs, problems = scan(value)
    assert [r.future for r in refs] == ["f1", "f2"] and problems == []
    out = substitute(value, {"f1": {"a": 7}, "f2": "two"})
    for _ in range(depth):
        out = out["k"][0]
    assert out == [7, "two"]


def test_a_value_too_deep_to_write_as_text_is_a_path_error():
    deep: object = []
    for _ in range(100_000):
        deep = [deep]
    assert substitute("$f1", {"f1": deep}) is deep  # whole: passed on as the value it is
    with pytest.raises(PathError, match="nested too deeply to insert into text"):
        substitute("x ${f1}", {"f1": deep})


def test_list_indices_are_bounded_on_both_ends():
    # A mutation of either bound (index <= len, or -len < index) must fail here:
    # one past the end once let an IndexError escape instead of a PathError.
    items = {"f1": {"items": ["a", "b", "c"]}}
    assert substitute("${f1.items.2}", items) == "c"
    assert substitute("${f1.items.-3}", items) == "a"
    for bad in ("3", "-4", "99", "-99"):
        with pytest.raises(PathError, match=f"has no part '{bad}' \\(it is a list; 3 items\\)"):
            substitute("${f1.items." + bad + "}", items)
    assert pick([], ()) == []
    with pytest.raises(PathError, match="0 items"):
        pick([], ("0",))


def test_index_keys_that_are_not_small_numbers_are_no_index():
    items = ["a", "b"]
    assert pick(items, ("0001",)) == "b" and pick(items, ("-0",)) == "a"
    for key in ("9" * 5000, "-" + "9" * 5000, "1.0", "+1", "", "-", " 1"):
        with pytest.raises(PathError):  # never int()'s ValueError on 5,000 digits
            pick(items, (key,))
    assert pick(items, ("0" * 5000 + "1",)) == "b"
