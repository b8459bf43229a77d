"""A real Kubernetes control plane on this machine, as plain processes on 127.0.0.1:
etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok with fake nodes, from
the binaries ``cluster/build`` makes. No Docker, no root.

    python cluster/controlplane.py up [--dir .cluster]     # `make cluster-up`
    python cluster/controlplane.py down [--dir .cluster]   # `make cluster-down`

The directory holds the certificates, the kubeconfigs (``kubeconfig``: the admin;
``users/<name>.kubeconfig``: the named test users), each component's log and the PIDs that
``down`` stops. Tests start their own in a temporary directory with :class:`ControlPlane`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from phasegate.demo.stack import free_ports, wait_until

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# Named people for authorization tests: a static token each, and the groups an approval
# policy checks. The admin (system:masters) and the components use client certificates.
USERS: dict[str, tuple[str, ...]] = {
    "alice": ("engineering",),
    "oscar": ("operations",),
    "paula": ("product",),
    "fiona": ("finance",),
    "mallory": (),
}
NODES = ("kwok-node-0", "kwok-node-1")
SERVICE_CIDR = "10.96.0.0/16"


class StartError(RuntimeError):
    """A component did not start: its name, what was awaited, and the tail of its log."""


def build() -> dict[str, Path]:
    """Build (or find in the cache) every binary and the providers' CRDs: NAME -> directory."""
    result = subprocess.run(
        [str(HERE / "build"), "all"], stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise StartError(f"cluster/build failed with code {result.returncode} (its output above)")
    found = dict(line.split("=", 1) for line in result.stdout.split() if "=" in line)
    return {name: Path(path) for name, path in found.items()}


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass
class Certificates:
    """A private CA and what it signs, made with the openssl command in ``directory``."""

    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    def path(self, name: str) -> tuple[Path, Path]:
        return self.directory / f"{name}.crt", self.directory / f"{name}.key"

    def make_ca(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
            "-subj", "/CN=phasegate-cluster-ca",
            cwd=self.directory,
        )  # fmt: skip
        # The service-account token signing key pair.
        openssl("genpkey", "-algorithm", "RSA", "-out", "sa.key", cwd=self.directory)
        openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=self.directory)

    def sign(self, name: str, subject: str, sans: str | None = None) -> tuple[Path, Path]:
        """A key and a certificate for ``subject`` (CN = user, O = group), signed by the CA."""
        extensions = ["-addext", f"subjectAltName={sans}"] if sans else []
        openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
            *extensions,
            cwd=self.directory,
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "3650", "-copy_extensions", "copyall",
            "-out", f"{name}.crt",
            cwd=self.directory,
        )  # fmt: skip
        return self.path(name)


def kubeconfig(server: str, ca: Path, user: str, credentials: dict[str, str]) -> dict[str, Any]:
    cluster = {"server": server, "certificate-authority": str(ca)}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "phasegate", "cluster": cluster}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "phasegate", "context": {"cluster": "phasegate", "user": user}}],
        "current-context": "phasegate",
    }


@dataclass
class Component:
    name: str
    pid: int
    binary: str
    log: Path
    popen: subprocess.Popen[bytes] | None = None  # when this process started it

    def alive(self) -> bool:
        """Running, and still the process we started (a PID can be reused)."""
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")[0]
            stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return False
        return cmdline.decode() == self.binary and stat[0] != "Z"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15) -> None:
        if not self.alive():
            return
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout)  # reaped: no zombie left behind


@dataclass
class ControlPlane:
    """etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok in ``directory``."""

    directory: Path
    binaries: dict[str, Path] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def provider_crds(self) -> Path:
        return self.binaries["PROVIDER_CRDS"]

    def user_kubeconfig(self, user: str) -> Path:
        return self.directory / "users" / f"{user}.kubeconfig"

    @property
    def helm(self) -> Path:
        return self.binaries["HELM_BIN"] / "helm"

    # ---- starting ---------------------------------------------------------------------------

    def up(self) -> None:
        """Start everything and wait until the nodes are Ready; on failure stop what started."""
        if not self.binaries:
            self.binaries = build()
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "logs").mkdir(exist_ok=True)
        try:
            self._credentials()
            self._start_etcd()
            self._start_apiserver()
            self._start_controllers()
            self._start_kwok()
            self._install_provider_crds()
        except BaseException:
            self.down()
            raise
        self._save()

    def _credentials(self) -> None:
        (etcd, etcd_peer, api, cm, scheduler, kwok, metrics) = free_ports(7)
        self.ports = {
            "etcd": etcd,
            "etcd-peer": etcd_peer,
            "apiserver": api,
            "controller-manager": cm,
            "scheduler": scheduler,
            "kwok": kwok,
            "kwok-metrics": metrics,
        }
        certs = Certificates(self.directory / "pki")
        certs.make_ca()
        sans = "IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc"
        certs.sign("apiserver", "/CN=kube-apiserver", sans)
        clients = {
            "admin": "/CN=admin/O=system:masters",
            "controller-manager": "/CN=system:kube-controller-manager",
            "scheduler": "/CN=system:kube-scheduler",
            "kwok": "/CN=kwok/O=system:masters",
        }
        for name, subject in clients.items():
            cert, key = certs.sign(name, subject)
            config = kubeconfig(
                self.server,
                certs.ca,
                name,
                {"client-certificate": str(cert), "client-key": str(key)},
            )
            target = self.kubeconfig if name == "admin" else self.directory / f"{name}.kubeconfig"
            target.write_text(yaml.safe_dump(config))
        (self.directory / "users").mkdir(exist_ok=True)
        rows = []
        for user, groups in USERS.items():
            token = f"{user}-{os.urandom(12).hex()}"
            rows.append(f"{token},{user},{user}" + (f',"{",".join(groups)}"' if groups else ""))
            config = kubeconfig(self.server, certs.ca, user, {"token": token})
            self.user_kubeconfig(user).write_text(yaml.safe_dump(config))
        (self.directory / "pki" / "tokens.csv").write_text("\n".join(rows) + "\n")

    def _start(self, name: str, binary: Path, args: list[str]) -> Component:
        log = self.directory / "logs" / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [str(binary), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.directory,
                start_new_session=True,  # outlives `make cluster-up`; stopped by PID
            )
        component = Component(name, popen.pid, str(binary), log, popen)
        self.components[name] = component
        return component

    def _wait(self, component: Component, what: str, check: Any, timeout: float = 60) -> None:
        def ready() -> Any:
            if not component.alive():
                code = component.popen.poll() if component.popen else None
                raise StartError(
                    f"{component.name} exited (code {code}) before {what}; "
                    f"its log ({component.log}) ends:\n{component.log_tail()}"
                )
            return check()

        try:
            wait_until(ready, timeout, f"{component.name}: {what}", interval=0.2)
        except TimeoutError as error:
            raise StartError(
                f"{error}; its log ({component.log}) ends:\n{component.log_tail()}"
            ) from None

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        etcd = self._start(
            "etcd",
            self.binaries["ETCD_BIN"] / "etcd",
            [
                "--name=default",
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync=true",  # a test cluster: speed over durability
                "--log-level=warn",
            ],
        )
        self._wait(etcd, "serving /health", lambda: http_ok(f"{client}/health"))

    def _start_apiserver(self) -> None:
        pki = self.directory / "pki"
        api = self._start(
            "kube-apiserver",
            self.binaries["KUBERNETES_BIN"] / "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                # Nothing runs in the cluster to reach the apiserver through its Service, and
                # the reconciler refuses a loopback address.
                "--endpoint-reconciler-type=none",
                f"--secure-port={self.ports['apiserver']}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--allow-privileged=true",
                "--profiling=false",
                f"--audit-policy-file={self._audit_policy()}",
                f"--audit-log-path={self.audit_log}",
                "--audit-log-format=json",
            ],
        )
        self._wait(api, "answering /readyz", lambda: self.get("/readyz") == "ok", timeout=90)

    @property
    def audit_log(self) -> Path:
        """One JSON line per request of a ServiceAccount (not the control plane's own)."""
        return self.directory / "logs" / "audit.log"

    def _audit_policy(self) -> Path:
        policy = {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived", "ResponseStarted"],
            "rules": [
                {"level": "None", "userGroups": ["system:serviceaccounts:kube-system"]},
                {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
                {"level": "None"},
            ],
        }
        path = self.directory / "audit-policy.yaml"
        path.write_text(yaml.safe_dump(policy))
        return path

    def audited(self, user: str) -> list[dict[str, Any]]:
        """The requests ``user`` made, as the apiserver's audit log recorded them."""
        try:
            lines = self.audit_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        events = (json.loads(line) for line in lines if line.strip())
        return [e for e in events if e.get("user", {}).get("username") == user]

    def _start_controllers(self) -> None:
        pki = self.directory / "pki"
        common = ["--bind-address=127.0.0.1", "--leader-elect=false"]
        for name, config in (
            ("controller-manager", "controller-manager"),
            ("scheduler", "scheduler"),
        ):
            kc = str(self.directory / f"{config}.kubeconfig")
            common_auth = [
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                f"--secure-port={self.ports[name]}",
            ]
            if name == "controller-manager":
                extra = [
                    f"--service-account-private-key-file={pki / 'sa.key'}",
                    f"--root-ca-file={pki / 'ca.crt'}",
                    "--use-service-account-credentials=true",
                    f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                    f"--cluster-signing-key-file={pki / 'ca.key'}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                ]
            else:
                extra = []
            self._start(
                f"kube-{name}",
                self.binaries["KUBERNETES_BIN"] / f"kube-{name}",
                [*common, *common_auth, *extra],
            )
        for name in ("controller-manager", "scheduler"):
            url = f"https://127.0.0.1:{self.ports[name]}/healthz"
            self._wait(self.components[f"kube-{name}"], "healthy", lambda u=url: http_ok(u))

    def _start_kwok(self) -> None:
        kwok = self._start(
            "kwok",
            self.binaries["KWOK_BIN"] / "kwok",
            [
                f"--kubeconfig={self.directory / 'kwok.kubeconfig'}",
                f"--config={self.binaries['KWOK_BIN'] / 'stages.yaml'}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--cidr=10.244.0.0/16",
                "--node-ip=127.0.0.1",
                "--node-lease-duration-seconds=40",  # heartbeats, so nodes stay Ready
                f"--server-address=127.0.0.1:{self.ports['kwok']}",
            ],
        )
        self._wait(
            kwok, "healthy", lambda: http_ok(f"http://127.0.0.1:{self.ports['kwok']}/healthz")
        )
        nodes = [fake_node(name) for name in NODES]
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(nodes))
        self._wait(kwok, "nodes Ready", self._nodes_ready, timeout=60)

    def _install_provider_crds(self) -> None:
        """The traffic providers' CRDs as upstream publishes them (Istio: networking only).
        Server-side apply: Istio's CRDs are too large for kubectl's last-applied annotation."""
        crds = self.provider_crds
        istio = [
            doc
            for doc in yaml.safe_load_all((crds / "istio.yaml").read_text())
            if doc and doc["spec"]["group"] == "networking.istio.io"
        ]
        documents = [
            *(d for d in yaml.safe_load_all((crds / "gateway-api.yaml").read_text()) if d),
            *istio,
            *(v1_crd(d) for d in yaml.safe_load_all((crds / "smi.yaml").read_text()) if d),
        ]
        self.kubectl(
            "apply", "--server-side", "--field-manager=cluster-up", "-f", "-",
            stdin=yaml.safe_dump_all(documents),
        )  # fmt: skip
        names = [
            f"crd/{d['metadata']['name']}"
            for d in documents
            if d["kind"] == "CustomResourceDefinition"
        ]
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)

    def _nodes_ready(self) -> bool:
        nodes = json.loads(self.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        ready = [
            n
            for n in nodes
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n["status"].get("conditions", [])
            )
        ]
        return len(ready) == len(NODES)

    # ---- using ------------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.directory / "pki" / "ca.crt"))
        cert, key = Certificates(self.directory / "pki").path("admin")
        context.load_cert_chain(str(cert), str(key))
        return context

    def get(self, path: str) -> str:
        """GET ``path`` from the apiserver as the admin."""
        with urllib.request.urlopen(self.server + path, timeout=5, context=self.ssl_context()) as r:
            return r.read().decode()  # type: ignore[no-any-return]

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            raise StartError(f"kubectl {' '.join(args[:3])}: {result.stderr.strip()[-2000:]}")
        return result

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again on the same port and storage."""
        self.components["kube-apiserver"].stop()
        self._start_apiserver()
        self._save()

    # ---- stopping ---------------------------------------------------------------------------

    def down(self) -> None:
        """Stop every component this control plane started, newest first, by PID."""
        for component in reversed(list(self.components.values())):
            component.stop()
        self.components.clear()
        state = self.directory / "state.json"
        state.unlink(missing_ok=True)

    def _save(self) -> None:
        state = {
            "ports": self.ports,
            "binaries": {k: str(v) for k, v in self.binaries.items()},
            "components": [
                {"name": c.name, "pid": c.pid, "binary": c.binary, "log": str(c.log)}
                for c in self.components.values()
            ],
        }
        (self.directory / "state.json").write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, directory: Path) -> ControlPlane:
        """The control plane ``up`` left running in ``directory`` (for ``down``)."""
        state = json.loads((directory / "state.json").read_text())
        plane = cls(directory, {k: Path(v) for k, v in state["binaries"].items()})
        plane.ports = state["ports"]
        for c in state["components"]:
            plane.components[c["name"]] = Component(
                c["name"], c["pid"], c["binary"], Path(c["log"])
            )
        return plane


def v1_crd(crd: dict[str, Any]) -> dict[str, Any]:
    """A CRD in apiextensions.k8s.io/v1. SMI's last release (smi-sdk-go v0.5.0) publishes
    TrafficSplit as v1beta1, which Kubernetes stopped serving in 1.22: convert it as the
    apiserver converted stored v1beta1 CRDs — the same names, versions, columns and schema
    for every version, and the root ``type: object`` a structural schema needs."""
    if crd["apiVersion"] == "apiextensions.k8s.io/v1":
        return crd
    spec = dict(crd["spec"])
    schema = {"type": "object", **spec.pop("validation")["openAPIV3Schema"]}
    columns = [
        {("jsonPath" if key == "JSONPath" else key): value for key, value in column.items()}
        for column in spec.pop("additionalPrinterColumns", [])
    ]
    spec.pop("version", None)
    spec["versions"] = [
        {**version, "schema": {"openAPIV3Schema": schema}, "additionalPrinterColumns": columns}
        for version in spec["versions"]
    ]
    return {**crd, "apiVersion": "apiextensions.k8s.io/v1", "spec": spec}


def fake_node(name: str) -> dict[str, Any]:
    """A Node kwok keeps Ready; its Pods are reported Running and Ready without running."""
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {"allocatable": capacity, "capacity": capacity},
    }


def http_ok(url: str) -> bool:
    """GET ``url`` answers 200 (TLS not verified: the components serve self-signed)."""
    context = ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status == 200  # type: ignore[no-any-return]
    except urllib.error.HTTPError:
        return False


@contextmanager
def running(directory: Path) -> Iterator[ControlPlane]:
    """A control plane for the duration of a ``with`` block."""
    plane = ControlPlane(directory)
    plane.up()
    try:
        yield plane
    finally:
        plane.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cluster/controlplane.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=ROOT / ".cluster")
    args = parser.parse_args(argv)
    directory: Path = args.dir.resolve()
    if args.command == "up":
        if (directory / "state.json").exists() and any(
            c.alive() for c in ControlPlane.load(directory).components.values()
        ):
            print(
                f"already running; `make cluster-down` stops it (state: {directory / 'state.json'})"
            )
            return 0
        started = time.monotonic()
        plane = ControlPlane(directory)
        try:
            plane.up()
        except StartError as error:
            print(f"cluster-up failed: {error}", file=sys.stderr)
            return 1
        print(f"control plane up in {time.monotonic() - started:.1f}s: {plane.server}")
        print(f"  export KUBECONFIG={plane.kubeconfig}")
        return 0
    if not (directory / "state.json").exists():
        print("no control plane recorded in", directory)
        return 0 if args.command == "down" else 1
    plane = ControlPlane.load(directory)
    if args.command == "status":
        for c in plane.components.values():
            print(f"{c.name:24} pid {c.pid:<8} {'running' if c.alive() else 'stopped'}  {c.log}")
        return 0
    plane.down()
    print("control plane stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
