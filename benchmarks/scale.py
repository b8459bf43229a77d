"""One operator, many rollouts, a slow Prometheus: does it keep up?

The local stack (local API, demo services under load, Prometheus) with N rollouts (default
1,000) at a 10s interval, one operator process pinned to one core, and a delaying HTTP proxy
in front of Prometheus (0, 100, 250 ms per request). Everything is measured from outside the
operator:

- evaluations: every evaluation asks its canary's error rate once, and each rollout has a
  canary service of its own, so the proxy's log of arrivals is the log of evaluations. Due:
  one per rollout per interval. Lag: an evaluation is due at the previous one plus the
  interval; its lag is how much later it reached Prometheus (an evaluation still missing at
  the end of the window counts with its lag so far);
- status writes: a watch on the rollouts counts the events whose status changed;
- memory: the operator's resident set, from /proc;
- coalescing: how often the stable side's query, identical for every rollout, was sent;
- one bad rollout among the healthy ones: from its rollback trigger's condition becoming
  true in Prometheus (read from Prometheus's own history) to the route at canary 0 (watched).

The operator's own figures are printed beside, to compare with what is observed: its lag
histogram's mean, and the evaluations it counts as done of those it counts as due.

``--shards 3`` runs three operators (``--shard I/3``), each owning its share of three times
as many rollouts (1,000 each by default), pinned to the machine's cores in turn; with
``--by-label`` the rollouts carry a shard label and each operator selects its own
(``--selector``), so that the API filters what each one watches.
``--quick`` (or PHASEGATE_BENCH_ROLLOUTS / _WINDOW / _DELAYS / _SHARDS) makes it smaller.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, TCPConnector, web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from benchmarks import machine
from benchmarks.runtime import metric, rss_kib
from phasegate.demo.stack import Process, Stack, stack, wait_until
from support.world import WeightRecorder, World, breach_start, release, route, start_world

INTERVAL = 10.0
FOR = 20.0  # the bad rollout's trigger: error rate above 1.5% for 20s
THRESHOLD = 0.015
ROLLBACK_WAIT = 300.0  # long enough to get a figure from an operator that falls far behind
ERRORS = (
    '(sum(rate(http_requests_total{service="{{service}}",code=~"5.."}[5s])) or vector(0))'
    ' / (sum(rate(http_requests_total{service="{{service}}"}[5s])) or vector(1))'
)
REQUESTS = 'sum(rate(http_requests_total{service="{{service}}"}[5s])) or vector(1)'
CANARY = re.compile(r'code=~"5\.\."\}\[5s\]\)\) or vector\(0\)\) / .*service="([^"]+)"')
STABLE_QUERY = REQUESTS.replace("{{service}}", "web-stable")


# ---- the delaying proxy --------------------------------------------------------------------


@dataclass
class DelayingProxy:
    """Answers every request as Prometheus would, ``delay`` seconds later; logs arrivals."""

    upstream: str
    delay: float = 0.0
    arrivals: list[tuple[float, str]] = field(default_factory=list)
    url: str = ""

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def forward(request: web.Request) -> web.Response:
            self.arrivals.append((time.time(), request.query.get("query", "")))
            if self.delay:
                await asyncio.sleep(self.delay)
            body = await request.read()
            async with self._session.request(
                request.method,
                self.upstream + request.path_qs,
                data=body or None,
                headers={"Content-Type": request.headers.get("Content-Type", "text/plain")},
            ) as answer:
                return web.Response(
                    status=answer.status,
                    body=await answer.read(),
                    content_type=answer.content_type,
                )

        async def serve() -> None:
            self._session = ClientSession(connector=TCPConnector(limit=0))
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", forward)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        async def close() -> None:
            await self._session.close()
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


# ---- watching the rollouts' status ---------------------------------------------------------


class StatusWrites:
    """Times of the watch events that changed a rollout's status (any field of it)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.path = f"/apis/phasegate.dev/v1alpha1/namespaces/{world.ns}/progressiverollouts"
        listing = world.kube.ok("GET", self.path)
        self.seen = {o["metadata"]["name"]: _status(o) for o in listing["items"]}
        self.version = listing["metadata"]["resourceVersion"]
        self.writes: list[float] = []
        self.events: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                query = {"resourceVersion": self.version, "timeoutSeconds": "5"}
                for event in self.world.kube.watch(self.path, query):
                    if event["type"] == "ERROR":
                        self.version = self.world.kube.ok("GET", self.path)["metadata"][
                            "resourceVersion"
                        ]
                        break
                    body = event["object"]
                    self.version = body["metadata"]["resourceVersion"]
                    if event["type"] != "MODIFIED":
                        continue
                    now, name = time.time(), body["metadata"]["name"]
                    self.events.append(now)
                    status = _status(body)
                    if status != self.seen.get(name):
                        self.writes.append(now)
                    self.seen[name] = status
            except Exception:  # a dropped watch is resumed from the last version seen
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def _status(body: dict[str, Any]) -> str:
    return json.dumps(body.get("status") or {}, sort_keys=True)


# ---- what a window of observation shows ----------------------------------------------------


@dataclass
class Window:
    delay_ms: int
    rollouts: int
    seconds: float
    done: int
    lags: list[float]
    operator_lag_mean_ms: float
    operator_done: float  # evaluations, as the operators' own metrics count them
    operator_due: float
    peak_rss_mib: float
    status_writes: int
    modified_events: int
    requests: int
    stable_sent: int
    operator_cpu: float  # the share of one core each operator used, on average
    load: float  # the machine's 1-minute load average at the end of the window

    @property
    def due(self) -> float:
        return self.rollouts * self.seconds / INTERVAL

    def percentile(self, p: float) -> float:
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else 0.0


def evaluations(arrivals: list[tuple[float, str]]) -> dict[str, list[float]]:
    """Arrival times of each rollout's evaluations (its canary's error-rate query)."""
    out: dict[str, list[float]] = defaultdict(list)
    for at, query in arrivals:
        match = CANARY.search(query)
        if match:
            out[match.group(1)].append(at)
    return out


def lags(
    times: dict[str, list[float]], canaries: list[str], start: float, end: float
) -> list[float]:
    """The lag of every evaluation in [start, end), plus the lag so far of each one overdue at
    ``end``: due = previous evaluation + interval."""
    out: list[float] = []
    for canary in canaries:
        seen = times.get(canary, [])
        previous = max((t for t in seen if t < start), default=start - INTERVAL)
        for t in (t for t in seen if start <= t < end):
            out.append(max(0.0, t - previous - INTERVAL))
            previous = t
        if end > previous + INTERVAL:
            out.append(end - previous - INTERVAL)
    return out


def scrape(operator: Process) -> str:
    """The operator's /metrics; empty when it does not answer within a minute (its event loop
    is that far behind: the table then shows no figure of its own)."""
    url = f"http://127.0.0.1:{operator.ports['metrics']}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def observe(
    proxy: DelayingProxy,
    writes: StatusWrites,
    operators: list[Process],
    canaries: list[str],
    seconds: float,
) -> Window:
    pids = [o.popen.pid for o in operators]
    before = [scrape(o) for o in operators]
    start, first_arrival = time.time(), len(proxy.arrivals)
    first_write, first_event = len(writes.writes), len(writes.events)
    peak, cpu = 0, sum(cpu_seconds(pid) for pid in pids)
    while time.time() < start + seconds:
        peak = max(peak, *(rss_kib(pid) for pid in pids))
        time.sleep(0.5)
    end = time.time()
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu
    after = [scrape(o) for o in operators]
    arrivals = list(proxy.arrivals)
    in_window = [(t, q) for t, q in arrivals[first_arrival:] if t < end]
    times = evaluations(arrivals)

    def grew(name: str) -> float:
        return sum(metric(a, name) - metric(b, name) for a, b in zip(after, before, strict=True))

    lag_sum = grew("phasegate_evaluation_lag_seconds_sum")
    lag_n = grew("phasegate_evaluation_lag_seconds_count")
    return Window(
        delay_ms=round(proxy.delay * 1000),
        rollouts=len(canaries),
        seconds=end - start,
        done=sum(1 for t, q in in_window if CANARY.search(q)),
        lags=lags(times, canaries, start, end),
        operator_lag_mean_ms=1000 * lag_sum / max(lag_n, 1),
        operator_done=grew("phasegate_evaluations_total"),
        operator_due=grew("phasegate_evaluations_due_total"),
        peak_rss_mib=peak / 1024,
        status_writes=sum(1 for t in writes.writes[first_write:] if t < end),
        modified_events=sum(1 for t in writes.events[first_event:] if t < end),
        requests=len(in_window),
        stable_sent=sum(1 for _, q in in_window if q == STABLE_QUERY),
        operator_cpu=cpu / (end - start) / len(operators),
        load=os.getloadavg()[0],
    )


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- the scenario --------------------------------------------------------------------------


def spec_for(canary: str, route_name: str) -> dict[str, Any]:
    spec: dict[str, Any] = release()["spec"]
    del spec["revision"]
    spec.update(
        canary={"service": canary},
        trafficRouting={"gatewayAPI": {"httpRoute": route_name}},
        interval=f"{INTERVAL:g}s",
        metrics=[{"name": "error-rate", "query": ERRORS}, {"name": "requests", "query": REQUESTS}],
        phases=[
            {
                "name": "canary",
                "weight": 10,
                "duration": "1h",
                "checkpoints": ["30m", "1h"],
                "successCriteria": [
                    {"metric": "error-rate", "max": 0.01},
                    {"metric": "requests", "compare": "stable", "min": -1, "max": 1000},
                ],
                "rollbackTriggers": [
                    {"metric": "error-rate", "max": THRESHOLD, "for": f"{FOR:g}s"}
                ],
            }
        ],
    )
    return spec


SHARD_LABEL = "bench.phasegate.dev/shard"


def create(world: World, count: int, labelled: int = 0) -> list[str]:
    """Rollout ``web`` (the real canary, under load) and ``count - 1`` others, each with a
    route and a canary service of its own; the canary services' names. ``labelled``: the
    number of shards whose label the rollouts carry, in turn (0: none)."""

    def rollout(i: int, canary: str, route_name: str) -> dict[str, Any]:
        name = "web" if i == 0 else f"r{i}"
        body = release(name, revision="v1", **spec_for(canary, route_name))
        if labelled:
            body["metadata"]["labels"] = {SHARD_LABEL: str(i % labelled)}
        return body

    canaries = ["web-canary"]
    world.apply(rollout(0, "web-canary", "web"))
    batch: list[dict[str, Any]] = []
    for i in range(1, count):
        canary = f"svc-{i}-canary"
        canaries.append(canary)
        batch += [route(f"route-{i}", ("web-stable", canary)), rollout(i, canary, f"route-{i}")]
        if len(batch) >= 200:
            world.apply(*batch)
            batch = []
    if batch:
        world.apply(*batch)
    return canaries


def start_operators(
    running: Stack, prometheus: str, shards: int, by_label: bool = False
) -> list[Process]:
    """The operators (one per shard), given minutes to start serving: on a loaded machine
    importing one alone can take longer than the stack's usual wait. Shards by ``--shard``
    meet in peerings of their own (a shard cannot be standalone)."""
    if shards == 1:
        flags = ("--standalone", "--prometheus", prometheus)
        return [running.start_operator("operator", *flags, wait=300)]

    def owning(i: int) -> tuple[str, ...]:
        if by_label:
            return ("--standalone", "--selector", f"{SHARD_LABEL}={i}")
        name = f"bench-shard-{i}"
        kind = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering"}
        running.kubectl("apply", "-f", "-", stdin=json.dumps({**kind, "metadata": {"name": name}}))
        return ("--shard", f"{i}/{shards}", "--peering", name)

    return [
        running.start_operator(f"shard-{i}", "--prometheus", prometheus, *owning(i), wait=300)
        for i in range(shards)
    ]


def started(world: World) -> int:
    listing = world.kube.ok(
        "GET", f"/apis/phasegate.dev/v1alpha1/namespaces/{world.ns}/progressiverollouts"
    )
    return sum(
        bool(((o.get("status") or {}).get("currentPhase") or {}).get("startedAt"))
        for o in listing["items"]
    )


def bad_rollout(world: World, proxy: DelayingProxy) -> float:
    """Break the real canary; seconds from its trigger's condition true to canary 0."""
    running = world.stack
    recorder = WeightRecorder(world)
    broken = time.time()
    running.configure_service("web-canary", error_rate=0.3)
    try:
        world.wait(lambda s: s.get("state") == "RolledBack", timeout=ROLLBACK_WAIT)
        # The decision is stored before the route is changed: wait for the route itself.
        wait_until(lambda: any(w == 0 for _, w in recorder.samples), 60, "the route at canary 0")
    finally:
        recorder.stop()
    zero = recorder.first(0)
    query = ERRORS.replace("{{service}}", "web-canary")
    condition = breach_start(running.prometheus_url, query, THRESHOLD, broken - 2, zero) + FOR
    return zero - condition


@dataclass
class Figures:
    windows: list[Window]
    ready_after_s: float
    settled_after_s: float | None  # then a whole interval passed without a status write
    bad_rollout_s: float | None
    bad_delay_ms: int
    machine: str  # how fast the machine ran Python during the run


def settle(writes: StatusWrites, quiet: float = INTERVAL, limit: float = 300.0) -> float | None:
    """Seconds until a whole interval passed without a status write (the phases' starts have
    been written, and the late evaluations they caused caught up): steady state. None when
    that did not happen within ``limit``: the windows then measure an operator still behind."""
    began = time.monotonic()
    while time.monotonic() < began + limit:
        time.sleep(1)
        last = writes.writes[-1] if writes.writes else 0.0
        if time.time() - last >= quiet and time.monotonic() - began >= quiet:
            return time.monotonic() - began
    return None


def run(
    count: int, seconds: float, delays: list[float], cores: list[int], by_label: bool = False
) -> Figures:
    """``count`` rollouts shared by ``len(cores)`` operators, the i-th pinned to ``cores[i]``
    (``by_label``: each selecting its share by label, else by ``--shard``)."""
    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp)) as running:
        world = start_world(running)
        proxy = DelayingProxy(running.prometheus_url)
        proxy.start()
        labelled = len(cores) if by_label and len(cores) > 1 else 0
        canaries = create(world, count, labelled)
        operators = start_operators(running, proxy.url, len(cores), bool(labelled))
        for operator, core in zip(operators, cores, strict=True):
            os.sched_setaffinity(operator.popen.pid, {core})
        began = time.monotonic()
        deadline = began + max(600.0, count * 0.6)
        while started(world) < count:
            if time.monotonic() > deadline or not all(o.alive() for o in operators):
                raise RuntimeError(
                    f"only {started(world)} of {count} phases started; the operators' logs:\n"
                    + "\n".join(o.log_tail() for o in operators)
                )
            time.sleep(1)
        ready = time.monotonic() - began
        writes = StatusWrites(world)
        settled = settle(writes)
        windows = []
        for delay in delays:
            proxy.delay = delay
            time.sleep(2 * INTERVAL)  # every rollout meets the new delay before we count
            windows.append(observe(proxy, writes, operators, canaries, seconds))
        bad_delay = 0.1 if 0.1 in delays else delays[0]
        proxy.delay = bad_delay
        time.sleep(INTERVAL)
        try:
            bad: float | None = bad_rollout(world, proxy)
        except (AssertionError, TimeoutError):
            bad = None
        writes.stop()
        for operator in operators:
            operator.stop()
        proxy.stop()
        return Figures(windows, ready, settled, bad, round(bad_delay * 1000), machine.describe())


def settings(argv: list[str]) -> tuple[int, float, list[float], int, bool]:
    quick = "--quick" in argv or os.environ.get("PHASEGATE_BENCH_QUICK") == "1"
    shards = int(os.environ.get("PHASEGATE_BENCH_SHARDS", 1))
    if "--shards" in argv:
        shards = int(argv[argv.index("--shards") + 1])
    per_shard = int(os.environ.get("PHASEGATE_BENCH_ROLLOUTS", 200 if quick else 1000))
    seconds = float(os.environ.get("PHASEGATE_BENCH_WINDOW", 30 if quick else 60))
    delays = [
        float(ms) / 1000 for ms in os.environ.get("PHASEGATE_BENCH_DELAYS", "0,100,250").split(",")
    ]
    return per_shard * shards, seconds, delays, shards, "--by-label" in argv


def main(argv: list[str] | None = None) -> None:
    count, seconds, delays, shards, by_label = settings(argv if argv is not None else sys.argv[1:])
    available = sorted(os.sched_getaffinity(0), reverse=True)
    cores = [available[i % len(available)] for i in range(shards)]
    figures = run(count, seconds, delays, cores, by_label)
    how = "--selector" if by_label else "--shard"
    who = (
        f"one operator on core {cores[0]}"
        if shards == 1
        else f"{shards} shards (operators, {how}) on cores {cores}"
    )
    print(
        f"scale: {count} rollouts at a {INTERVAL:g}s interval, {who}, "
        f"Prometheus behind a delaying proxy; {seconds:g}s windows"
    )
    print(f"  all phases started {figures.ready_after_s:.0f}s after the operator started")
    if figures.settled_after_s is None:
        print("  no interval without a status write within 300s after that: not steady")
    else:
        print(
            f"  steady (an interval without a status write) {figures.settled_after_s:.0f}s later;"
            " the windows follow"
        )
    print(f"  {figures.machine}")
    print(
        "  delay | evals/s done / due | lag p50 / p99 (s) | operator's own: lag (mean),"
        " done/due | peak RSS | status writes/s (events/s) | Prometheus req/s"
        " | stable query sent | operator CPU | machine load"
    )
    for w in figures.windows:
        print(
            f"  {w.delay_ms:>4}ms | {w.done / w.seconds:7.1f} / {w.due / w.seconds:5.1f}"
            f" ({100 * w.done / w.due:5.1f}%) |"
            f" {w.percentile(0.5):6.2f} / {w.percentile(0.99):6.2f}"
            f"  | {w.operator_lag_mean_ms:8.0f} ms,"
            f" {100 * w.operator_done / max(w.operator_due, 1):5.1f}% | {w.peak_rss_mib:5.0f} MiB |"
            f" {w.status_writes / w.seconds:6.1f} ({w.modified_events / w.seconds:5.1f})"
            f" | {w.requests / w.seconds:7.1f} | {w.stable_sent:5d} in {w.done} evaluations"
            f" | {100 * w.operator_cpu:3.0f}% | {w.load:.1f}"
        )
    if figures.bad_rollout_s is None:
        print(f"  one bad rollout at {figures.bad_delay_ms}ms: not rolled back in time")
    else:
        print(
            f"  one bad rollout among {count} at {figures.bad_delay_ms}ms: trigger condition true "
            f"-> canary 0 on its route in {figures.bad_rollout_s:.2f}s "
            f"(interval {INTERVAL:g}s, scrape 1s)"
        )


if __name__ == "__main__":
    main()
