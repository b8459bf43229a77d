"""The local stack as real processes: local Kubernetes API, Prometheus, demo services, load,
and the operator. Used by `make demo` and the integration tests; stops only what it started,
by PID."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]


EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")


def listening_ports() -> list[int]:
    """Ports the kernel never gives to outgoing connections. A port chosen among the
    ephemeral ones can be taken by any client's connect() before its server binds it (with
    the load and the watches running, that happens); one outside them stays free."""
    try:
        low, high = (int(p) for p in EPHEMERAL_PORTS.read_text().split()[:2])
    except (OSError, ValueError):
        low, high = 32768, 60999
    return [*range(max(1024, low - 12000), low), *range(high + 1, 65536)]


def bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """Distinct ports free right now, outside the ephemeral range when it leaves room."""
    outside = listening_ports()
    chosen: list[int] = []
    for port in random.sample(outside, min(len(outside), 50 * count)):
        if bindable(port):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    # No room outside the ephemeral range: the kernel's choice, all held until all are chosen.
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; raise naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (OSError, urllib.error.URLError, ValueError, KeyError) as error:
            last_error = error
        time.sleep(interval)
    raise TimeoutError(
        f"{what} not ready after {timeout:g}s" + (f" ({last_error})" if last_error else "")
    )


def http_json(url: str, body: Any = None, timeout: float = 2.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise FileNotFoundError(
            "prometheus is not installed: run scripts/install-prometheus (Debian package)"
        )
    return found


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    ports: dict[str, int] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as when a node dies."""
        self.stop(signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_serving(self, url: str, timeout: float) -> None:
        """Wait until ``url`` answers; fail at once if the process ends, with its log."""

        def serving() -> bool:
            if not self.alive():
                raise RuntimeError(
                    f"{self.name} exited with code {self.popen.returncode} before serving"
                    f" {url}; its log ends:\n{self.log_tail()}"
                )
            with urllib.request.urlopen(url, timeout=1):
                return True

        try:
            wait_until(serving, timeout, self.name)
        except TimeoutError as error:
            raise TimeoutError(f"{error}; its log ends:\n{self.log_tail()}") from None


@dataclass
class Stack:
    workdir: Path
    processes: list[Process] = field(default_factory=list)
    api_port: int = 0
    prometheus_port: int = 0
    service_ports: dict[str, int] = field(default_factory=dict)
    # The operator's own credentials (e.g. a ServiceAccount's); None: the same as everyone's.
    operator_kubeconfig: Path | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}

    def start(self, name: str, args: list[str], kubeconfig: Path | None = None) -> Process:
        log = self.workdir / f"{name}.log"
        env = self.env()
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        with log.open("ab") as out:
            popen = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.workdir,
                start_new_session=True,
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def phasegate(self, name: str, *args: str, kubeconfig: Path | None = None) -> Process:
        return self.start(name, [sys.executable, "-m", "phasegate.cli.main", *args], kubeconfig)

    # ---- the pieces -----------------------------------------------------------------------

    def start_api(self) -> None:
        self.api_port = free_port()
        api = self.phasegate(
            "local-api",
            "local-api",
            "--port",
            str(self.api_port),
            "--kubeconfig",
            str(self.kubeconfig),
        )
        api.wait_serving(f"http://127.0.0.1:{self.api_port}/readyz", 20)
        self.kubectl(
            "apply",
            "-f",
            str(ROOT / "crds"),
            "-f",
            str(ROOT / "manifests/local/provider-crds.yaml"),
        )
        self.kubectl("apply", "-f", str(ROOT / "manifests/local/peering.yaml"))

    def attach(self, kubeconfig: Path) -> None:
        """Use an existing cluster as the stack's Kubernetes API instead of starting the local
        one: its kubeconfig (flattened into the workdir), this checkout's CRDs and the
        peering the operator meets in."""
        flat = subprocess.run(
            ["kubectl", f"--kubeconfig={kubeconfig}", "config", "view", "--raw", "--minify",
             "--flatten"],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        self.kubeconfig.write_text(flat.stdout)
        self.kubectl("get", "--raw", "/readyz")
        self.kubectl("apply", "-f", str(ROOT / "crds"))
        self.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds")
        )
        self.kubectl("apply", "-f", str(ROOT / "manifests/local/peering.yaml"))

    def start_service(self, service: str, **behaviour: float) -> None:
        port = free_port()
        self.service_ports[service] = port
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in behaviour.items()]
        process = self.phasegate(
            service, "demo-service", "--service", service, "--port", str(port), *flags
        )
        process.wait_serving(f"http://127.0.0.1:{port}/healthz", 20)

    def configure_service(self, service: str, **behaviour: float) -> None:
        http_json(f"http://127.0.0.1:{self.service_ports[service]}/config", behaviour)

    def start_prometheus(self) -> None:
        if not self.prometheus_port:
            self.prometheus_port = free_port()
        targets = [f"127.0.0.1:{p}" for p in self.service_ports.values()]
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "demo", "static_configs": [{"targets": targets}]}],
        }
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus = self.start(
            "prometheus",
            [
                prometheus_binary(),
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
            ],
        )
        prometheus.wait_serving(f"{self.prometheus_url}/-/ready", 30)

    def prometheus_scrapes(self, services: list[str], timeout: float = 30) -> None:
        """Wait until Prometheus has scraped every service (new targets take a few seconds)."""

        def scraped() -> bool:
            answer = http_json(f"{self.prometheus_url}/api/v1/query?query=up")
            up = {r["metric"]["instance"] for r in answer["data"]["result"] if r["value"][1] == "1"}
            return all(f"127.0.0.1:{self.service_ports[s]}" in up for s in services)

        wait_until(scraped, timeout, "Prometheus scraping the demo services", interval=0.25)

    def stop_prometheus(self) -> None:
        for process in [p for p in self.processes if p.name == "prometheus"]:
            process.stop()
            self.processes.remove(process)

    def start_load(
        self, namespace: str, route: str, rate: float = 200, provider: str = "gatewayAPI"
    ) -> None:
        """Load on the services, split as ``provider``'s object ``route`` says (stable: the
        first service started, canary: the second)."""
        backends = [f"--backend={s}=http://127.0.0.1:{p}/" for s, p in self.service_ports.items()]
        self.phasegate(
            "load",
            "demo-load",
            "--kubeconfig",
            str(self.kubeconfig),
            "--namespace",
            namespace,
            "--provider",
            provider,
            "--route",
            route,
            f"--rate={rate}",
            *backends,
        )

    def start_operator(self, name: str = "operator", *extra: str, wait: float = 90) -> Process:
        """``phasegate run`` on the stack, once it serves /healthz (within ``wait`` seconds)."""
        health, metrics = free_ports(2)
        process = self.phasegate(
            name,
            "run",
            "--all-namespaces",
            "--health-port",
            str(health),
            "--metrics-port",
            str(metrics),
            *extra,
            kubeconfig=self.operator_kubeconfig,
        )
        process.wait_serving(f"http://127.0.0.1:{health}/healthz", wait)
        process.ports.update(health=health, metrics=metrics)
        return process

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            input=stdin,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)  # type: ignore[no-any-return]

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


@contextlib.contextmanager
def stack(workdir: Path | None = None) -> Iterator[Stack]:
    with contextlib.ExitStack() as cleanup:
        if workdir is None:
            workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="phasegate-")))
        running = Stack(workdir)
        try:
            yield running
        finally:
            running.stop_all()
