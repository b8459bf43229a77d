"""PromQL templating: variables substituted, label values escaped so none breaks out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phasegate.api.templates import TemplateError, escape_string, render, template_variables

VALUES = {"service": "web", "namespace": "shop", "weight": 10}


def test_variables_are_substituted() -> None:
    query = 'rate(x{service="{{service}}",ns="{{ namespace }}"}[1m]) * {{weight}}'
    assert render(query, VALUES) == 'rate(x{service="web",ns="shop"}[1m]) * 10'


def test_template_variables_are_listed_in_order() -> None:
    assert template_variables('{{a}} "{{ b.c }}"') == ["a", "b.c"]


@pytest.mark.parametrize(
    ("hostile", "expected"),
    [
        ('a"}) or vector(1) #', 'a\\"}) or vector(1) #'),
        ("back\\slash", "back\\\\slash"),
        ("new\nline", "new\\nline"),
        ("brace}", "brace}"),
    ],
)
def test_hostile_values_stay_inside_double_quotes(hostile: str, expected: str) -> None:
    assert render('x{service="{{service}}"}', {"service": hostile}) == f'x{{service="{expected}"}}'


def test_single_quoted_strings_escape_single_quotes() -> None:
    assert render("x{s='{{service}}'}", {"service": "it's"}) == "x{s='it\\'s'}"


def test_a_backtick_cannot_end_a_raw_string() -> None:
    with pytest.raises(TemplateError, match="backtick"):
        render("x{s=`{{service}}`}", {"service": "a`b"})


def test_values_outside_quotes_must_be_plain() -> None:
    with pytest.raises(TemplateError, match="outside quotes"):
        render("x * {{service}}", {"service": "1) or vector(1"})
    assert render("x * {{weight}}", {"weight": 10}) == "x * 10"


def test_unknown_variables_are_refused() -> None:
    with pytest.raises(TemplateError, match="unknown"):
        render("{{nope}}", VALUES)


def test_escaped_quotes_in_the_template_do_not_confuse_the_scanner() -> None:
    query = r'x{a="say \"hi\" {{service}}"}'
    assert render(query, {"service": 'q"'}) == r'x{a="say \"hi\" q\""}'


def _unquote(literal: str) -> str:
    """Decode a PromQL double-quoted string literal (Go escapes), strictly."""
    assert literal[0] == literal[-1] == '"'
    out, i, body = [], 0, literal[1:-1]
    simple = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"'}
    while i < len(body):
        ch = body[i]
        assert ch != '"', "an unescaped quote would end the string early"
        if ch == "\\":
            nxt = body[i + 1]
            if nxt == "x":
                out.append(chr(int(body[i + 2 : i + 4], 16)))
                i += 4
                continue
            out.append(simple[nxt])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


@given(st.text())
def test_any_value_round_trips_through_a_double_quoted_label(value: str) -> None:
    rendered = render('x{service="{{service}}"}', {"service": value})
    literal = rendered[len("x{service=") : -1]
    assert _unquote(literal) == value


@given(st.text())
def test_escape_never_leaves_a_bare_quote(value: str) -> None:
    escaped = escape_string(value, '"')
    i = 0
    while i < len(escaped):
        if escaped[i] == "\\":
            i += 2
            continue
        assert escaped[i] != '"'
        assert escaped[i] != "\n"
        i += 1
