"""The dashboard's page ships in the wheel (nothing fetched at run time), and the Grafana
generator's SDK stays out of the runtime dependencies."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from support.kube import ROOT

pytestmark = pytest.mark.integration  # builds a wheel


def test_the_wheel_carries_the_dashboards_page_and_no_grafana_sdk(tmp_path: Path) -> None:
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path)]
    subprocess.run([*build, str(ROOT)], check=True, timeout=300)
    wheel = zipfile.ZipFile(next(tmp_path.glob("phasegate-*.whl")))
    names = set(wheel.namelist())
    static = ROOT / "operator/phasegate/dashboard/static"
    for page in sorted(static.iterdir()):
        shipped = f"phasegate/dashboard/static/{page.name}"
        assert shipped in names, f"{shipped} is not in the wheel"
        assert wheel.read(shipped) == page.read_bytes()
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    runtime = [
        line
        for line in wheel.read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert runtime and not [line for line in runtime if "grafana" in line]
    # no address outside this machine in the page: it works offline
    for page in static.iterdir():
        text = page.read_text()
        assert "http://" not in text.replace("http://127.0.0.1", "") and "https://" not in text
