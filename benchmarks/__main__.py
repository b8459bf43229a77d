"""`python -m benchmarks [engine|localapi|operator|footprint]`: engine throughput and status
size over the reference release, the local API, the operator, the install's footprint."""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from phasegate.api import State
from phasegate.engine import Control, ControlAction
from support.engine import Sim, healthy, reference_spec


def engine_walk() -> dict[str, float]:
    """Walk the whole reference release (42 h of virtual time) and time each evaluation."""
    sim = Sim(reference_spec(), healthy())
    groups = ("engineering", "operations", "product", "finance")
    sim.step(
        [
            Control(f"{p}-{g}", ControlAction.APPROVE, by=g, phase=p)
            for p in ("ramp", "rollout")
            for g in groups
        ]
    )
    durations: list[float] = []
    largest = 0
    result = sim.history[-1]
    while sim.status.state is not State.SUCCEEDED:
        sim.advance(max(result.next_evaluation, timedelta(milliseconds=1)))
        started = time.perf_counter()
        result = sim.step()
        durations.append(time.perf_counter() - started)
        if len(durations) % 200 == 0:
            wire = sim.status.model_dump(mode="json", by_alias=True, exclude_none=True)
            largest = max(largest, len(json.dumps(wire)))
    durations.sort()
    return {
        "evaluations": len(durations),
        "p50_us": statistics.median(durations) * 1e6,
        "p99_us": durations[int(len(durations) * 0.99)] * 1e6,
        "largest_status_bytes": largest,
    }


def main() -> None:
    which = set(sys.argv[1:]) or {"engine", "localapi", "operator", "dashboard", "footprint"}
    if "engine" in which:
        engine()
    if "localapi" in which:
        from benchmarks import localapi

        localapi.main()
    if "operator" in which:
        from benchmarks import runtime

        runtime.main()
    if "dashboard" in which:
        from benchmarks import dashboard

        dashboard.main()
    if "footprint" in which:
        from benchmarks import footprint

        footprint.main()


def engine() -> None:
    figures = engine_walk()
    print("engine: reference release, canary -> Succeeded in virtual time")
    print(f"  evaluations            {figures['evaluations']:.0f}")
    print(f"  per evaluation p50     {figures['p50_us']:.0f} us (includes query planning)")
    print(f"  per evaluation p99     {figures['p99_us']:.0f} us")
    print(f"  largest status         {figures['largest_status_bytes'] / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
