"""`python -m benchmarks [engine|localapi|operator|scale|dashboard|notify|footprint] [--quick]
[--shards N [--by-label]]`: engine throughput and status size over the reference release, the
local API, the operator, the operator at scale behind a slow Prometheus (--shards: that many
operators, each with as many rollouts; --by-label: each selecting its own by label), the
dashboard with 100 rollouts, notifications, the install's footprint."""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from benchmarks import machine
from phasegate.api import RolloutStatus, State
from phasegate.engine import Control, ControlAction, Observations, evaluate, queries_needed
from support.engine import Sim, healthy, reference_spec


def engine_walk() -> dict[str, float]:
    """Walk the whole reference release (42 h of virtual time) and time each evaluation: the
    engine's part of it (planning the queries, then deciding), not the simulated answers.
    Then replay the walk's evaluations, the same inputs in the same order, for the CPU time
    per evaluation: one clock read per replay, not two per evaluation (a thread's CPU clock
    takes a system call, about 0.5 us)."""
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
    inputs: list[tuple[RolloutStatus, Observations, datetime]] = []
    largest = 0
    result = sim.history[-1]
    while sim.status.state is not State.SUCCEEDED:
        sim.advance(max(result.next_evaluation, timedelta(milliseconds=1)))
        started = time.perf_counter()
        requests = queries_needed(sim.spec, sim.status, sim.namespace)
        planning = time.perf_counter() - started
        answers = {r.key: sim.metrics(r, sim.now) for r in requests}
        seen = Observations(measurements=answers, route_weight=sim.route)
        inputs.append((sim.status, seen, sim.now))
        started = time.perf_counter()
        result = evaluate(sim.spec, sim.status, seen, sim.now, namespace=sim.namespace)
        durations.append(planning + time.perf_counter() - started)
        sim.route = sim.route if result.weight is None else result.weight
        sim.status = result.status
        if len(durations) % 200 == 0:
            wire = sim.status.model_dump(mode="json", by_alias=True, exclude_none=True)
            largest = max(largest, len(json.dumps(wire)))
    spec, namespace = sim.spec, sim.namespace
    rates = []
    for _ in range(3):
        on_cpu = time.thread_time()  # CPU time of this thread: one core's, whatever else runs
        for status, seen, now in inputs:
            queries_needed(spec, status, namespace)
            evaluate(spec, status, seen, now, namespace=namespace)
        rates.append(len(inputs) / (time.thread_time() - on_cpu))
    durations.sort()
    return {
        "evaluations": len(durations),
        "p50_us": statistics.median(durations) * 1e6,
        "p99_us": durations[int(len(durations) * 0.99)] * 1e6,
        "per_cpu_second": statistics.median(rates),
        "largest_status_bytes": largest,
    }


def main() -> None:
    every = {"engine", "localapi", "operator", "scale", "dashboard", "notify", "footprint"}
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(__doc__)
        return
    # the rest are options: --quick, --shards N
    unknown = [a for a in sys.argv[1:] if a[:1] != "-" and not a.isdigit() and a not in every]
    if unknown:
        sys.exit(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(sorted(every))}")
    which = set(sys.argv[1:]) & every or every
    if "engine" in which:
        engine()
    if "localapi" in which:
        from benchmarks import localapi

        localapi.main()
    if "operator" in which:
        from benchmarks import runtime

        runtime.main()
    if "scale" in which:
        from benchmarks import scale

        scale.main(sys.argv[1:])
    if "dashboard" in which:
        from benchmarks import dashboard

        dashboard.main()
    if "notify" in which:
        from benchmarks import notify

        notify.main()
    if "footprint" in which:
        from benchmarks import footprint

        footprint.main()


def engine() -> None:
    figures = engine_walk()
    print("engine: reference release, canary -> Succeeded in virtual time")
    print(f"  evaluations            {figures['evaluations']:.0f}")
    print(f"  per evaluation p50     {figures['p50_us']:.0f} us wall (includes query planning)")
    print(f"  per evaluation p99     {figures['p99_us']:.0f} us wall")
    print(
        f"  evaluations per second {figures['per_cpu_second']:.0f} "
        "per CPU-second of one core (thread CPU time, median of 3 replays of the walk)"
    )
    print(f"  largest status         {figures['largest_status_bytes'] / 1024:.1f} KiB")
    print(f"  {machine.describe()}")


if __name__ == "__main__":
    main()
