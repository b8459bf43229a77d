"""pytest imports test modules by basename (rootdir-relative, no packages): two test files of
one name stop the whole collection with an import mismatch."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_modules_have_distinct_basenames() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
