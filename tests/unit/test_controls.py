"""The control annotation's canonical form: what the writers produce, what the admission
policy matches, and why anything else must be refused (the operator reads any JSON)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phasegate.api import controls

names = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
users = st.text(min_size=1, max_size=40).filter(
    lambda u: not any(c in u for c in '"\\') and all(ord(c) >= 0x20 for c in u)
)
reasons = st.text(max_size=60).filter(lambda r: not any(0xD800 <= ord(c) <= 0xDFFF for c in r))


def policy_reads(value: str) -> tuple[str, str]:
    """The group and by the chart's policy extracts from a canonical value (its CEL, here
    in Python): the text after the first '"group":"' / '"by":"', up to the next quote."""
    group = value.split('"group":"')[1].split('"')[0] if '"group":"' in value else ""
    return group, value.split('"by":"')[1].split('"')[0]


@given(
    action=st.sampled_from(controls.ACTIONS),
    phase=names,
    group=names,
    by=users,
    reason=reasons,
)
def test_what_the_policy_reads_is_what_the_operator_reads(
    action: str, phase: str, group: str, by: str, reason: str
) -> None:
    try:
        ((_, value),) = controls.annotation(
            action, by=by, phase=phase, group=group, reason=reason
        ).items()
    except controls.ControlError:
        return  # a reason the canonical form cannot carry: the writer refuses it
    assert controls.is_canonical(value)
    body = json.loads(value)
    expected_group = group if action in controls.GATED else ""
    assert policy_reads(value) == (expected_group, by) == (body.get("group", ""), body["by"])
    assert body.get("reason", "") == reason


# Values Python's json.loads reads as finance's approval by fiona, which a CEL regex reading
# a non-canonical form could see otherwise: each must be refused.
EVASIONS = [
    '{"action": "approve","phase":"ramp","group":"finance","by":"fiona"}',
    '{"action":"appr\\u006fve","phase":"ramp","group":"finance","by":"fiona"}',
    '{"action":"approve","phase":"ramp","group":"fin\\u0061nce","by":"fiona"}',
    '{"action":"approve","phase":"ramp","group":"finance","by":"fion\\u0061"}',
    '{"action":"approve","phase":"ramp","group":"finance","by":"mallory","by":"fiona"}',
    '{"action":"approve","phase":"ramp","group":"product","group":"finance","by":"fiona"}',
    '{"phase":"ramp","action":"approve","group":"finance","by":"fiona"}',
    '{"action":"approve","phase":"ramp","by":"fiona","group":"finance"}',
    '{"action":"approve","phase":"ramp","group":"finance","by":"fiona","x":1}',
    '{"action":"approve","phase":"ramp","group":"finance","by":"fiona"}\n',
    ' {"action":"approve","phase":"ramp","group":"finance","by":"fiona"}',
    '\ufeff{"action":"approve","phase":"ramp","group":"finance","by":"fiona"}',
    '{"action":"approve","phase":"ramp","group":"finance","by":"fiona\\"x"}',
    '{"action":"approve","phase":"ramp","by":"finance"}',
]


@pytest.mark.parametrize("value", EVASIONS)
def test_a_value_in_another_form_is_not_canonical(value: str) -> None:
    assert not controls.is_canonical(value)


def test_the_operator_reads_an_older_approval_with_by_as_its_group() -> None:
    requests, problems = controls.parse(
        {"control.phasegate.dev/x": '{"action":"approve","by":"finance","phase":"ramp"}'}
    )
    assert problems == []
    assert requests == [
        ("x", {"action": "approve", "by": "finance", "phase": "ramp", "group": "finance"})
    ]


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('{"action":"reject","group":"finance","by":"fiona"}', "reject needs a phase"),
        ('{"action":"pause","by":["alice"]}', "by is not a string"),
        ('{"action":"pause","by":"\\ud800"}', "surrogate"),
    ],
)
def test_bad_controls_are_reported_not_applied(value: str, words: str) -> None:
    requests, problems = controls.parse({"control.phasegate.dev/x": value})
    assert requests == [] and words in problems[0]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"action": "reject", "by": "fiona", "group": "finance"}, "needs the phase"),
        ({"action": "approve", "by": "fiona", "phase": "Ramp"}, "phase 'Ramp' is not a name"),
        ({"action": "pause", "by": 'a"b'}, "has a quote"),
    ],
)
def test_writers_refuse_what_the_canonical_form_cannot_carry(
    fields: dict[str, str], words: str
) -> None:
    with pytest.raises(controls.ControlError, match=words):
        controls.annotation(**fields)
