"""`phasegate validate`: every problem with its file and field path; non-zero when invalid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.engine import ROOT

REFERENCE = ROOT / "manifests/examples/reference-release.yaml"


def validate(*files: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phasegate.cli.main", "validate", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_valid_manifest_passes() -> None:
    result = validate(REFERENCE)
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines() == ["1 ProgressiveRollout(s) checked, all valid"]


def test_every_problem_is_printed_with_file_and_field(tmp_path: Path) -> None:
    text = REFERENCE.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        text.replace("weight: 100", "weight: 101").replace("interval: 30s", "interval: 30 seconds")
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: ignored}\n"
    )
    result = validate(REFERENCE, bad)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"{bad}: ProgressiveRollout/cohort-analyzer: spec.interval: " in "\n".join(lines)
    assert any(
        line.startswith(f"{bad}: ProgressiveRollout/cohort-analyzer: spec.phases[2].weight")
        for line in lines
    )
    assert lines[-1] == "2 ProgressiveRollout(s) checked, 1 invalid"


def test_the_examples_carry_no_warning() -> None:
    result = validate(*sorted(REFERENCE.parent.glob("*.yaml")))
    assert result.returncode == 0, result.stdout
    assert ": warning: " not in result.stdout and result.stdout.endswith("all valid\n")


def test_a_ratio_whose_numerator_can_vanish_is_a_warning(tmp_path: Path) -> None:
    unguarded = tmp_path / "unguarded.yaml"
    unguarded.write_text(REFERENCE.read_text().replace(") or vector(0))", "))", 1))
    result = validate(unguarded)
    assert result.returncode == 0, result.stdout  # a warning, not a problem
    (warning,) = [line for line in result.stdout.splitlines() if ": warning: " in line]
    assert warning.startswith(
        f"{unguarded}: ProgressiveRollout/cohort-analyzer: warning: "
        "spec.metrics[0].query (error-rate): the numerator selects "
        'http_requests_total{code=~"5.."}'
    )
    assert "or vector(0)" in warning
    assert (
        result.stdout.splitlines()[-1] == "1 ProgressiveRollout(s) checked, all valid, 1 warning(s)"
    )


def test_unreadable_and_broken_files_are_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed\n")
    result = validate(broken, tmp_path / "missing.yaml")
    assert result.returncode == 1
    assert "not valid YAML" in result.stdout
    assert "cannot read" in result.stdout


def test_a_file_without_rollouts_is_an_error(tmp_path: Path) -> None:
    other = tmp_path / "cm.yaml"
    other.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    result = validate(other)
    assert result.returncode == 1
    assert "no ProgressiveRollout found" in result.stdout


def test_entry_points_answer_help() -> None:
    for module in ("phasegate.cli.main", "phasegate.cli.kubectl"):
        result = subprocess.run(
            [sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0
        assert "usage:" in result.stdout
