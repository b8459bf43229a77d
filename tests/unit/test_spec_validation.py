"""Malformed specs are refused with a message naming the offending field."""

from __future__ import annotations

import copy

import pytest

from phasegate.api.validation import validate_rollout
from support.engine import load_reference
from support.malformed import MALFORMED, Edit


@pytest.mark.parametrize(
    ("case", "edit", "field", "words"), MALFORMED, ids=[m[0] for m in MALFORMED]
)
def test_malformed_spec_is_refused_naming_the_field(
    case: str, edit: Edit, field: str, words: str
) -> None:
    doc = copy.deepcopy(load_reference())
    edit(doc)
    parsed, errors = validate_rollout(doc)
    assert parsed is None, f"{case}: accepted"
    assert any(e.startswith(field) and words in e for e in errors), errors


def test_there_are_at_least_25_malformed_cases() -> None:
    assert len(MALFORMED) >= 25


def test_the_reference_release_is_valid() -> None:
    parsed, errors = validate_rollout(load_reference())
    assert errors == []
    assert parsed is not None
    assert [p.name for p in parsed.spec.phases] == ["canary", "ramp", "rollout"]
