"""The dashboard with 100 rollouts listed: what a page load and each refresh cost.

The local API holds 100 rollouts in progress; ``phasegate dashboard -A`` serves them (a real
process, its own Kubernetes client) with a real Prometheus behind it (empty: the charts' range
queries answer quickly, as for a new phase). Measured:

1. over HTTP: the page, the rollouts list (every refresh asks it) and one rollout's detail
   (asked every refresh while one is open), p50 / p99 and size;
2. in headless Chromium (when installed): from navigation to the table showing 100 rows, and
   the browser's CPU per refresh (script, layout and style time, Performance.getMetrics),
   with the list only and with a rollout open.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from benchmarks.localapi import CRD, PATH, Client, rollout
from phasegate.demo.stack import Stack, free_port, prometheus_binary
from phasegate.localapi.testing import running_local_api

ROLLOUTS = 100
CALLS = 100
LOADS = 6


def in_progress(i: int) -> dict[str, Any]:
    """What the operator writes for a rollout 20 minutes into its canary phase."""
    return {
        "status": {
            "revision": "v1",
            "state": "Progressing",
            "message": "canary 10%: checkpoint 1/2 passed at 15m; next at 30m",
            "canaryWeight": 10,
            "progress": "1/2",
            "currentPhase": {
                "name": "canary", "index": 0, "weight": 10,
                "startedAt": "2026-01-01T12:00:00Z", "checkpointsPassed": 1,
                "checkpointsTotal": 2, "nextCheckpoint": "30m",
            },
        }
    }  # fmt: skip


def fetch(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return len(answer.read())


def timed(url: str, calls: int) -> dict[str, float]:
    samples, size = [], 0
    for _ in range(calls):
        started = time.perf_counter()
        size = fetch(url)
        samples.append(time.perf_counter() - started)
    samples.sort()
    return {
        "p50_ms": statistics.median(samples) * 1e3,
        "p99_ms": samples[int(len(samples) * 0.99)] * 1e3,
        "kib": size / 1024,
    }


def browser(url: str, workdir: Path, detail: str) -> dict[str, float]:
    from support.browser import chromium

    with chromium(workdir) as page:
        page.call("Performance.enable")
        loads = []
        for _ in range(LOADS):  # the browser's first page, then reloads
            page.open("about:blank")
            page.wait_for("location.href === 'about:blank'", 30, "a blank page")
            started = time.perf_counter()
            page.open(url)
            page.wait_for(
                f"document.querySelectorAll('#rollouts tbody tr').length === {ROLLOUTS}",
                60,
                "rows",
            )
            loads.append((time.perf_counter() - started) * 1e3)
        figures = {"cold_load_ms": loads[0], "load_ms": statistics.median(loads[1:])}
        for name, target in (("list", url), ("detail", url + detail)):
            page.open("about:blank")  # a fresh document each time, its counter from 0
            page.wait_for("location.href === 'about:blank'", 30, "a blank page")
            page.open(target)
            page.wait_for("Number(document.body?.dataset.updates) >= 2", 60, "two refreshes")
            before = _cpu(page)
            first = int(page.evaluate("document.body.dataset.updates"))
            page.wait_for(f"Number(document.body.dataset.updates) >= {first + 20}", 120, "20 more")
            after = _cpu(page)
            done = int(page.evaluate("document.body.dataset.updates")) - first
            figures[f"{name}_refresh_cpu_ms"] = (after - before) / done * 1e3
        return figures


def _cpu(page: Any) -> float:
    metrics = {m["name"]: m["value"] for m in page.call("Performance.getMetrics")["metrics"]}
    return float(
        metrics["ScriptDuration"] + metrics["LayoutDuration"] + metrics["RecalcStyleDuration"]
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, running_local_api(Path(tmp) / "kc") as api:
        workdir = Path(tmp)
        client = Client(api.url)
        client.call(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            yaml.safe_load(CRD.read_text()),
        )
        for i in range(ROLLOUTS):
            client.call("POST", PATH, rollout(i))
            client.call(
                "PATCH", f"{PATH}/r{i}/status", in_progress(i), "application/merge-patch+json"
            )
        running = Stack(workdir)
        try:
            prometheus_port, port = free_port(), free_port()
            (workdir / "prometheus.yml").write_text(yaml.safe_dump({"scrape_configs": []}))
            prometheus = running.start(
                "prometheus",
                [
                    prometheus_binary(),
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                ],
            )
            prometheus.wait_serving(f"http://127.0.0.1:{prometheus_port}/-/ready", 30)
            server = running.phasegate(
                "dashboard", "dashboard", "--kubeconfig", str(api.kubeconfig_path), "-A",
                "--port", str(port), "--refresh", "0.5",
                "--prometheus", f"http://127.0.0.1:{prometheus_port}",
            )  # fmt: skip
            url = f"http://127.0.0.1:{port}/"
            server.wait_serving(url, 60)
            print(f"dashboard: {ROLLOUTS} rollouts listed (p50 / p99 ms, size)")
            for name, path in (
                ("page", ""),
                ("rollouts list", "api/rollouts"),
                ("one rollout", "api/rollouts/default/r7"),
            ):
                figures = timed(url + path, CALLS)
                print(
                    f"  {name:<14} {figures['p50_ms']:7.2f} / {figures['p99_ms']:7.2f}"
                    f"  {figures['kib']:6.1f} KiB"
                )
            if shutil.which("chromium") is None:
                print("  browser: skipped (no chromium; scripts/install-chromium installs it)")
                return
            seen = browser(url, workdir, "#default/r7")
            print(
                f"  browser: navigation -> {ROLLOUTS} rows shown {seen['load_ms']:.0f} ms"
                f" (median of {LOADS - 1})"
                f" (the browser's first page: {seen['cold_load_ms']:.0f} ms)"
            )
            print(
                f"  browser CPU per refresh (script+layout+style): list "
                f"{seen['list_refresh_cpu_ms']:.1f} ms, with a rollout open "
                f"{seen['detail_refresh_cpu_ms']:.1f} ms"
            )
        finally:
            running.stop_all()


if __name__ == "__main__":
    main()
