"""`make demo`: the reference release on the local stack, shown live in the terminal.

Scenarios: ``healthy`` walks canary -> ramp -> rollout to Succeeded; ``bad-canary`` makes the
canary fail during the ramp and expects an automatic rollback. Exits 0 only when the outcome
is the expected one. ``regions`` runs one release across three regions from a hub
(:mod:`phasegate.demo.regions`): the second region's canary fails and halts the release.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from phasegate import report as reports
from phasegate.api import controls
from phasegate.demo.stack import ROOT, Stack, stack

RELEASE = ROOT / "manifests/examples/demo-release.yaml"
APPROVERS = ("engineering", "operations", "product", "finance")
EXPECTED = {"healthy": "Succeeded", "bad-canary": "RolledBack", "regions": "Halted"}


class Display:
    """Prints what changed: phase, weight, state, checkpoints with values, decisions."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.line = ""
        self.checkpoints = 0
        self.decision: Any = None

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f}s] {text}", flush=True)

    def show(self, status: dict[str, Any]) -> None:
        phase = (status.get("currentPhase") or {}).get("name", "-")
        line = (
            f"{status.get('state', 'Pending'):<18} phase {phase:<8} "
            f"weight {status.get('canaryWeight', 0):>3}%  "
            f"checkpoints {status.get('progress') or '-':<5} {status.get('message', '')}"
        )
        if line != self.line:
            self.say(line)
            self.line = line
        records = status.get("checkpoints") or []
        for record in records[self.checkpoints :]:
            self.say(f"  checkpoint {record['phase']} @ {record['offset']}: {record['verdict']}")
            for result in record.get("results") or []:
                value = result.get("value")
                shown = "no data" if value is None else f"{value:.4g}"
                self.say(
                    f"      {result['verdict']:<6} {result['metric']:<20} {shown:>10}  "
                    f"({result['threshold']})"
                )
        self.checkpoints = len(records)
        decision = status.get("decision")
        if decision and decision != self.decision:
            self.say(f"  decision: {decision['action']} — {decision['reason']}")
            for evidence in decision.get("evidence") or []:
                self.say(
                    f"      evidence {evidence['rule']} {evidence['metric']}: {evidence['reason']}"
                )
            self.decision = decision


def final_report(rollout: dict[str, Any]) -> str:
    """The release report of ``rollout`` in Markdown, as `kubectl phasegate report` prints it."""
    return reports.render(reports.report_of(rollout), "md")


def approve_all(running: Stack, phase: str) -> None:
    """Each group approves through the control annotation, as `kubectl phasegate approve` does."""
    for group in APPROVERS:
        ((key, value),) = controls.annotation("approve", by=group, phase=phase).items()
        running.kubectl("annotate", "prollout", "shop", "-n", "demo", f"{key}={value}")


def play(running: Stack, scenario: str, timeout: float, kubeconfig: Path | None = None) -> str:
    started = time.monotonic()
    display = Display(started)
    if kubeconfig is None:
        display.say("starting the local Kubernetes API, demo services and Prometheus")
        running.start_api()
    else:
        display.say(f"using the cluster of {kubeconfig}; starting demo services and Prometheus")
        running.attach(kubeconfig)
    running.start_service("shop-stable", latency=0.01)
    running.start_service("shop-canary", latency=0.01)
    running.start_prometheus()
    running.prometheus_scrapes(["shop-stable", "shop-canary"])
    running.kubectl("apply", "-f", str(RELEASE))
    running.start_load("demo", "shop", rate=300)
    display.say(
        f"starting the operator (Prometheus at {running.prometheus_url}); scenario: {scenario}"
    )
    running.start_operator("operator", "--prometheus", running.prometheus_url)
    approved: set[str] = set()
    broken = False
    while time.monotonic() - started < timeout:
        status = running.get("prollout", "demo", "shop").get("status") or {}
        display.show(status)
        state = status.get("state")
        phase = (status.get("currentPhase") or {}).get("name")
        if state == "WaitingForApproval":
            waiting_for = "ramp" if phase == "canary" else "rollout"
            if waiting_for not in approved:
                display.say(f"  approving {waiting_for} as {', '.join(APPROVERS)}")
                approve_all(running, waiting_for)
                approved.add(waiting_for)
        if scenario == "bad-canary" and phase == "ramp" and state == "Progressing" and not broken:
            display.say("  the canary starts failing: 5% errors")
            running.configure_service("shop-canary", error_rate=0.05)
            broken = True
        if state in ("Succeeded", "RolledBack", "Invalid"):
            route = running.get("httproute", "demo", "shop")
            weights = {r["name"]: r.get("weight") for r in route["spec"]["rules"][0]["backendRefs"]}
            display.say(f"route weights now: {json.dumps(weights)}")
            display.say("the release report (kubectl phasegate report shop -n demo --format md):")
            print(final_report(running.get("prollout", "demo", "shop")), flush=True)
            if kubeconfig is not None:  # leave the cluster as it was; the operator still runs
                running.kubectl("delete", "-f", str(RELEASE), "--wait", "--timeout=60s")
            return str(state)
        time.sleep(0.5)
    return "TimedOut"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="phasegate demo", description=__doc__)
    parser.add_argument("--scenario", choices=sorted(EXPECTED), default="healthy")
    parser.add_argument("--timeout", type=float, default=150)
    parser.add_argument(
        "--workdir", type=Path, help="keep logs here (default: a temporary directory)"
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="run on this cluster (e.g. make cluster-up's) instead of the local API",
    )
    args = parser.parse_args(argv)
    if args.scenario == "regions":  # a hub and three regions: phasegate.demo.regions
        from phasegate.demo import regions

        workdir = ["--workdir", str(args.workdir)] if args.workdir else []
        return regions.main(["--timeout", str(max(args.timeout, 240)), *workdir])
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with stack(args.workdir) as running:
        try:
            outcome = play(running, args.scenario, args.timeout, args.kubeconfig)
        except (TimeoutError, RuntimeError, FileNotFoundError) as error:
            print(f"demo failed: {error}; logs in {running.workdir}", file=sys.stderr)
            return 1
    expected = EXPECTED[args.scenario]
    if outcome == expected:
        print(f"demo {args.scenario}: {outcome}, as expected")
        return 0
    print(f"demo {args.scenario}: ended {outcome}, expected {expected}", file=sys.stderr)
    return 1
