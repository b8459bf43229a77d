"""`phasegate validate` checks ProgressiveReleases too: their own fields and each region's
rollout (template plus the region's overrides)."""

from __future__ import annotations

import io
from pathlib import Path

import yaml

from phasegate.cli.validate import validate_files

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "manifests/examples/regions-release.yaml"


def test_the_example_release_is_valid() -> None:
    out = io.StringIO()
    assert validate_files([str(EXAMPLE)], out) == 0
    assert out.getvalue().strip() == "1 ProgressiveRelease(s) checked, all valid"


def test_a_region_whose_overrides_break_its_rollout_is_named(tmp_path: Path) -> None:
    docs = list(yaml.safe_load_all(EXAMPLE.read_text()))
    release = docs[-1]
    release["spec"]["regions"][2]["overrides"]["phases"] = [
        {"name": "canary", "weight": 150, "duration": "1h"}
    ]
    path = tmp_path / "release.yaml"
    path.write_text(yaml.safe_dump(release))
    out = io.StringIO()
    assert validate_files([str(path)], out) == 1
    first = out.getvalue().splitlines()[0]
    assert first.startswith(f"{path}: ProgressiveRelease/cohort-analyzer: region eu-west: ")
    assert "spec.phases[0].weight" in first
