"""The runtime package alone: build the wheel, install it without extras in a fresh venv,
and run the entry points. The dependency set is complete and holds no test-only package."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

from support.kube import ROOT

pytestmark = pytest.mark.integration  # builds and installs: a minute, not a second
TEST_ONLY = {
    "pytest",
    "hypothesis",
    "ruff",
    "mypy",
    "import-linter",
    "helm-python-sdk",
    "lupa",
    "kubernetes-validate",
    "kmock",
}


def run(*args: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, cwd=cwd, check=False
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_wheel_installs_alone_and_its_entry_points_run(tmp_path: Path) -> None:
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", tmp_path / "dist", ROOT)
    wheel = next((tmp_path / "dist").glob("phasegate-*.whl"))
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", wheel)
    frozen = run(python, "-m", "pip", "freeze").splitlines()
    installed = {line.split("==")[0].lower() for line in frozen}
    assert not installed & TEST_ONLY, installed & TEST_ONLY
    bin_dir = tmp_path / "venv" / "bin"
    assert "validate" in run(bin_dir / "phasegate", "--help")
    assert "--all-namespaces" in run(bin_dir / "phasegate", "run", "--help")
    assert "approve" in run(bin_dir / "kubectl-phasegate", "--help")
    # `make e2e-kind` runs the scenarios' Deployments as pods of the image serving this.
    assert "--port" in run(bin_dir / "phasegate", "demo-service", "--help")
    # The operator's modules import with the runtime dependencies only.
    modules = "phasegate.runtime.run, phasegate.metrics, phasegate.traffic, phasegate.workloads"
    run(python, "-c", f"import {modules}")
