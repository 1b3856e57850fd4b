"""The processes `make bench` measures, each started by the benchmark in its own directory.

A control plane (ControlPlane: etcd, kube-apiserver, kube-controller-manager), the local provider with an
injected latency per wire call, and the operator as a separate process with its webhook, as in production.
Also what the benchmark reads from them: apiserver write counters from ``/metrics``, provider call counters
from ``/admin/counters``, and the operator's CPU time and memory from ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from ..devcluster.controlplane import ControlPlane
from ..devrun import WEBHOOK_CONFIGURATION, fly_provider_manifests, operator_argv, wait_for_ports
from .webhook import NAMESPACE, PROVIDER, Kube, _webhook_client_config

REPO = Path(__file__).resolve().parents[3]
FLY_TOKEN = "bench-fly-token"
FLY_ORG = "personal"
CREDENTIALS_NAMESPACE = "redisdb-system"
CREDENTIALS_SECRET = "bench-fly-credentials"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stop(process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def control_plane(workdir: Path) -> Iterator[Kube]:
    """A control plane of the benchmark's own (never the developer's .run/cluster), stopped afterwards."""
    plane = ControlPlane(workdir / "cluster", die_with_parent=True)
    plane.start()
    try:
        yield Kube(plane.kubeconfig, workdir)
    finally:
        plane.stop()


@dataclass
class LocalProvider:
    url: str
    process: subprocess.Popen[bytes]

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def counters(self) -> Counter[str]:
        with self.admin() as client:
            calls: dict[str, int] = client.get("/admin/counters").raise_for_status().json()["calls"]
            return Counter(calls)

    def set_latency(self, latency_ms: int) -> None:
        with self.admin() as client:
            client.post("/admin/faults", json={"latency_ms": latency_ms}).raise_for_status()

    def database_count(self) -> int:
        with self.admin() as client:
            count: int = client.get("/admin/health").raise_for_status().json()["databases"]
            return count

    def databases(self) -> list[dict[str, Any]]:
        with self.admin() as client:
            databases: list[dict[str, Any]] = client.get("/admin/databases").raise_for_status().json()
            return databases


@contextlib.contextmanager
def local_provider(workdir: Path, latency_ms: int, pool_size: int = 0) -> Iterator[LocalProvider]:
    """The embedded provider (Fly GraphQL + Upstash v2) on a free port, with ``latency_ms`` per wire call
    (``pool_size``: its benchmark-only pooled mode, databases sharing that many redis-servers)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port_file = workdir / "port"
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
    argv = [
        sys.executable,
        "-m",
        "redisdb_dev.cli",
        "local-provider",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--state-dir",
        str(workdir / "state"),
        "--fly-token",
        FLY_TOKEN,
        "--fly-org",
        FLY_ORG,
        "--log-level",
        "WARNING",
        *(["--pool-size", str(pool_size)] if pool_size else []),
    ]
    with (workdir / "provider.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the local provider did not start; see {workdir / 'provider.log'}")
            time.sleep(0.05)
        provider = LocalProvider(f"http://127.0.0.1:{int(port_file.read_text())}", process)
        provider.set_latency(latency_ms)
        yield provider
    finally:
        _stop(process, timeout=300)  # stopping 1,000 redis-servers takes a while


@dataclass
class ProcessSample:
    """CPU seconds (user + system) and memory (KiB) of one process at one moment."""

    at: float
    cpu_seconds: float
    rss_kib: int
    peak_rss_kib: int


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str]
    samples: list[ProcessSample] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def sample(self) -> ProcessSample:
        stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        utime, stime = int(stat[11]), int(stat[12])  # fields 14 and 15, counted after "pid (comm)"
        memory = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                memory[key] = int(value.split()[0])
        taken = ProcessSample(time.monotonic(), (utime + stime) / CLOCK_TICKS, memory["VmRSS"], memory["VmHWM"])
        self.samples.append(taken)
        return taken

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])
            raise SystemExit(f"the operator exited with {self.process.returncode}:\n{tail}")


@contextlib.contextmanager
def operator_process(
    kube: Kube,
    workdir: Path,
    *,
    resync_interval: float,
    max_concurrent_reconciles: int,
    extra_args: Sequence[str],
    webhook: bool = True,
) -> Iterator[OperatorProcess]:
    """`redisdb-operator run` with its managed webhook on loopback (unless not `webhook`), as
    tests/harness/operator.py starts it."""
    workdir.mkdir(parents=True, exist_ok=True)
    ports_file = workdir / "ports.json"
    ports_file.unlink(missing_ok=True)
    argv = operator_argv(
        ports_file=ports_file,
        resync_interval=resync_interval,
        webhook_cert_dir=workdir / "webhook-certs" if webhook else None,
        extra_args=["--max-concurrent-reconciles", str(max_concurrent_reconciles), *extra_args],
    )
    env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig), "PYTHONPATH": str(REPO / "operator")}
    log_path = workdir / "operator.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    running = OperatorProcess(process, log_path, argv)
    try:
        deadline = time.monotonic() + 90
        health_port = wait_for_ports(ports_file, lambda: process.poll() is None, timeout=90, log=log_path)["liveness"]
        while True:
            running.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{health_port}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"the operator did not become healthy; see {log_path}")
            time.sleep(0.2)
        while webhook:
            with contextlib.suppress(subprocess.CalledProcessError, SystemExit):
                _webhook_client_config(kube, WEBHOOK_CONFIGURATION)
                break
            running.check_alive()
            if time.monotonic() > deadline:
                raise SystemExit(f"the operator did not register its webhook; see {log_path}")
            time.sleep(0.2)
        yield running
    finally:
        _stop(process, timeout=30)


def install(kube: Kube, provider: LocalProvider) -> None:
    """CRDs, the benchmark namespace, the credentials Secret and the RedisProvider on the local provider."""
    kube.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    manifests: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CREDENTIALS_NAMESPACE}},
        *fly_provider_manifests(
            PROVIDER,
            provider.url,
            organization=FLY_ORG,
            token=FLY_TOKEN,
            secret_name=CREDENTIALS_SECRET,
            namespace=CREDENTIALS_NAMESPACE,
        ),
    ]
    kube.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(manifests))


# -- apiserver /metrics --------------------------------------------------------------------------------------

_REQUEST_TOTAL = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')
WRITE_VERBS = ("POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION")
WriteKey = tuple[str, str, str]  # (verb, resource, subresource)


def write_requests(metrics: str) -> Counter[WriteKey]:
    """Write requests the apiserver served, by (verb, resource, subresource); dry runs left out."""
    counts: Counter[WriteKey] = Counter()
    for line in metrics.splitlines():
        match = _REQUEST_TOTAL.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        if labels.get("verb") not in WRITE_VERBS or labels.get("dry_run"):
            continue
        key = (labels["verb"], labels.get("resource", ""), labels.get("subresource", ""))
        counts[key] += int(float(match["value"]))
    return counts


@dataclass(frozen=True)
class WriteTally:
    """The writes of one phase, attributed: the operator's, its Events, the benchmark's own and the rest."""

    operator: dict[str, int]
    events: int
    benchmark: int
    other: dict[str, int]

    @property
    def operator_total(self) -> int:
        return sum(self.operator.values())

    def to_json(self, resources: int) -> dict[str, Any]:
        return {
            "operator_writes": self.operator_total,
            "operator_writes_per_resource": round(self.operator_total / resources, 2) if resources else None,
            "operator_writes_by_kind": self.operator,
            "events": self.events,
            "events_per_resource": round(self.events / resources, 2) if resources else None,
            "benchmark_writes": self.benchmark,
            "other_writes": self.other,
        }


def attribute_writes(before: Counter[WriteKey], after: Counter[WriteKey]) -> WriteTally:
    """Split the writes between two scrapes by who made them.

    The benchmark writes RedisDatabases with server-side apply (verb APPLY) and DELETE; the garbage collector
    deletes the owned Secrets; the apiserver and the controller manager renew leases. Everything else on
    RedisDatabases and Secrets is the operator's (kopf's PATCHes, our status PATCH, the Secret POST/PUT).
    """
    operator: dict[str, int] = {}
    other: dict[str, int] = {}
    events = benchmark = 0
    for (verb, resource, subresource), count in sorted((after - before).items()):
        label = f"{verb} {resource}{'/' + subresource if subresource else ''}"
        if resource == "events":
            events += count
        elif resource == "redisdatabases" and verb in ("APPLY", "DELETE"):
            benchmark += count
        elif resource in ("redisdatabases", "secrets") and verb in ("POST", "PUT", "PATCH"):
            operator[label] = count
        else:
            other[label] = count
    return WriteTally(operator, events, benchmark, other)
