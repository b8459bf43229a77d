"""What an install weighs: the runtime venv built from the wheel alone (no extras), and the
RBAC grants (API group, resource, verb) the chart gives the operator."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[1]


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def runtime_venv() -> tuple[float, list[tuple[str, float]]]:
    """Total MiB of a fresh venv with the wheel installed, and the five largest packages."""
    with tempfile.TemporaryDirectory(prefix="phasegate-footprint-") as tmp:
        work = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", ROOT],
            check=True,
        )
        venv.create(work / "venv", with_pip=True)
        python = work / "venv" / "bin" / "python"
        wheel = next((work / "dist").glob("phasegate-*.whl"))
        subprocess.run([python, "-m", "pip", "install", "-q", wheel], check=True)
        site = next((work / "venv" / "lib").glob("python*/site-packages"))
        packages = [(p.name, size_mb(p)) for p in site.iterdir() if p.is_dir()]
        largest = sorted(packages, key=lambda item: -item[1])[:5]
        return size_mb(work / "venv"), largest


def grants(values: dict[str, Any]) -> int:
    chart = helm.Chart.load(str(ROOT / "charts" / "phasegate"))
    rendered = chart.render(values, name="phasegate", namespace="phasegate-system", is_install=True)
    roles = [
        doc
        for path, text in rendered.items()
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc and doc.get("kind") == "ClusterRole"
    ]
    return len(
        {
            (group, resource, verb)
            for role in roles
            for rule in role["rules"]
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }
    )


def main() -> None:
    total, largest = runtime_venv()
    print("footprint: the runtime install")
    print(f"  runtime venv (wheel, no extras)   {total:.0f} MiB (file sizes)")
    for name, mb in largest:
        print(f"    {name:<30} {mb:.0f} MiB")
    every = {"rbac": {"trafficProviders": ["gatewayAPI", "istio", "smi", "nginx"]}}
    print(f"  RBAC grants, chart defaults       {grants({})}")
    print(f"  RBAC grants, all four providers   {grants(every)}")
