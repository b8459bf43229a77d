"""`make e2e-kind` runs tests/integration against an existing cluster. No cluster runs here, so
the same mode runs against a local API started on its own, as a cluster would be: installed
with the kustomize install, shared by every scenario, the operators authenticating with a token
of the install's ServiceAccount. What this cannot show (RBAC enforcement, real pods) is what
the kind run adds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from phasegate.demo.stack import stack
from support.kube import ROOT, kubectl

pytestmark = pytest.mark.integration


def test_the_integration_scenarios_run_against_an_existing_api(tmp_path: Path) -> None:
    (tmp_path / "cluster").mkdir()
    with stack(tmp_path / "cluster") as cluster:
        cluster.start_api()
        kc = cluster.kubeconfig
        kubectl(kc, "apply", "-k", str(ROOT / "manifests/install"))
        before = kubectl(kc, "get", "namespaces", "-o", "name").stdout.split()

        env = {
            **os.environ,
            "PHASEGATE_E2E_KUBECONFIG": str(kc),
            "PHASEGATE_E2E_SERVICE_ACCOUNT": "phasegate-system/phasegate",
        }
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/integration"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr
        assert run.returncode == 0, run.stdout[-4000:]
        assert " passed" in summary and "skipped" not in summary, summary

        # Each scenario cleaned up after itself: its namespace and its peering are gone, the
        # install is untouched, no rollout is left behind.
        after = kubectl(kc, "get", "namespaces", "-o", "name").stdout.split()
        assert after == before
        peerings = kubectl(kc, "get", "clusterkopfpeerings", "-o", "name").stdout.split()
        assert peerings == ["clusterkopfpeering.kopf.dev/phasegate"]
        assert kubectl(kc, "get", "rollouts", "-A", "-o", "name").stdout.split() == []
