"""The reference grammar (asyncfc_cli/references.py): what reads as a future, what stays text.

Property tests put references next to adversarial text (digits, dots,
dashes, underscores, braces, dollars, unicode, references back to back) and
check that what was written is what is read: never another future, never a
silent guess.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncfc_cli.references import Literal, PathError, Reference, escape, parse, scan, substitute

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
