"""How fast the validating webhook answers: p50/p99 under 50 concurrent server-side dry-run applies.

Three numbers, each under the same concurrency:

* ``validation``: the pure check (``admission.validate_redisdatabase``) timed in this process, with 1000 claims;
* ``webhook_sequential``: one AdmissionReview at a time straight to the webhook: its handling time unqueued;
* ``webhook``: AdmissionReviews POSTed straight to the webhook URL of the ValidatingWebhookConfiguration (TLS,
  kopf, our validation over the in-memory indexes) - the webhook's own handling time plus loopback HTTP;
* ``apiserver_webhook_metric``: the apiserver's own histogram of the time it spent calling the webhook
  (``apiserver_admission_webhook_admission_duration_seconds``), as bucket bounds;
* ``end_to_end``: server-side apply PATCHes with ``dryRun=All`` to the apiserver - what ``kubectl apply
  --server-side --dry-run=server`` waits for, minus kubectl's own start-up.

Without ``--kubeconfig`` it starts its own control plane (ControlPlane) and operator; with it, it expects an
operator with its webhook already running there. Nothing is created: every request is a dry run.

    python -m redisdb_dev.bench.webhook [--requests 1000] [--concurrency 50] [--kubeconfig PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from redisdb_operator.admission import validate_redisdatabase
from redisdb_operator.models import API_VERSION

from ..devcluster.controlplane import ControlPlane, resolve_bin_dir
from ..devrun import WEBHOOK_CONFIGURATION, operator_argv

REPO = Path(__file__).resolve().parents[3]
PROVIDER = "bench-fly"
NAMESPACE = "redisdb-bench"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _summary(latencies: list[float], wall: float, errors: int) -> dict[str, Any]:
    return {
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "max_ms": round(max(latencies, default=0) * 1000, 2),
        "throughput_per_s": round(len(latencies) / wall, 1) if wall else 0.0,
    }


class Kube:
    """Just enough of a Kubernetes client for the benchmark: the admin kubeconfig's cert, httpx, kubectl."""

    def __init__(self, kubeconfig: Path, workdir: Path) -> None:
        self.kubeconfig = kubeconfig
        config = yaml.safe_load(kubeconfig.read_text())
        cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
        self.server: str = cluster["server"]
        self.ca_pem = base64.b64decode(cluster["certificate-authority-data"])
        cert, key = workdir / "client.crt", workdir / "client.key"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.touch(mode=0o600)
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        self.ssl = ssl.create_default_context(cadata=self.ca_pem.decode())
        self.ssl.load_cert_chain(cert, key)

    def kubectl(self, *args: str, input: str | None = None) -> str:
        command = [str(resolve_bin_dir() / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        return subprocess.run(command, input=input, capture_output=True, text=True, check=True).stdout

    def client(self, concurrency: int) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        return httpx.AsyncClient(base_url=self.server, verify=self.ssl, limits=limits, timeout=30)

    def metrics(self) -> str:
        with httpx.Client(base_url=self.server, verify=self.ssl, timeout=30) as client:
            return client.get("/metrics").raise_for_status().text


def _database(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "RedisDatabase",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"providerRef": {"name": PROVIDER}, "primaryRegion": "cdg", "readRegions": ["ams", "fra"]},
    }


def create_review(obj: dict[str, Any]) -> dict[str, Any]:
    """The AdmissionReview the apiserver sends for a dry-run CREATE of `obj` (what the direct benchmarks post)."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "redisdb.dev", "version": "v1alpha1", "kind": "RedisDatabase"},
            "resource": {"group": "redisdb.dev", "version": "v1alpha1", "resource": "redisdatabases"},
            "name": obj["metadata"]["name"],
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {"username": "bench"},
            "object": obj,
            "oldObject": None,
            "dryRun": True,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def _provider() -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "RedisProvider",
        "metadata": {"name": PROVIDER},
        "spec": {
            "type": "fly",
            "url": "http://127.0.0.1:9",
            "organization": "personal",
            "credentialsSecretRef": {"namespace": NAMESPACE, "name": "bench-credentials"},
        },
    }


def _setup(kube: Kube) -> None:
    """CRDs, the namespace and a RedisProvider the webhook's index can find (never called: all dry runs)."""
    kube.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    kube.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    provider = _provider()
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    kube.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all([namespace, provider]))


def _webhook_client_config(kube: Kube, name: str) -> tuple[str, bytes]:
    config = json.loads(kube.kubectl("get", "validatingwebhookconfiguration", name, "-o", "json"))
    for webhook in config.get("webhooks") or []:
        if "redisdatabase" in webhook["name"]:
            client_config = webhook["clientConfig"]
            return str(client_config["url"]), base64.b64decode(client_config["caBundle"])
    raise SystemExit(f"no RedisDatabase webhook in ValidatingWebhookConfiguration {name}; is the operator running?")


@contextlib.contextmanager
def _own_cluster(workdir: Path) -> Iterator[Path]:
    plane = ControlPlane(workdir / "cluster", die_with_parent=True)
    plane.start()
    try:
        yield plane.kubeconfig
    finally:
        plane.stop()


@contextlib.contextmanager
def _own_operator(kube: Kube, workdir: Path) -> Iterator[None]:
    argv = operator_argv(resync_interval=300, webhook_cert_dir=workdir / "webhook-certs")
    env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig), "PYTHONPATH": str(REPO / "operator")}
    with (workdir / "operator.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(subprocess.CalledProcessError, SystemExit):
                _webhook_client_config(kube, WEBHOOK_CONFIGURATION)
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the operator did not register its webhook; see {workdir / 'operator.log'}")
            time.sleep(0.5)
        yield
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _run(total: int, concurrency: int, one: Callable[[int], Awaitable[bool]]) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    queue = iter(range(total))

    async def worker() -> None:
        nonlocal errors
        for index in queue:
            started = time.perf_counter()
            ok = await one(index)
            latencies.append(time.perf_counter() - started)
            errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return _summary(latencies, time.perf_counter() - started, errors)


async def bench_webhook(url: str, ca_pem: bytes, total: int, concurrency: int) -> dict[str, Any]:
    """AdmissionReviews straight to the webhook: kopf + our checks + loopback TLS."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(verify=context, limits=limits, timeout=30) as client:

        async def one(index: int) -> bool:
            response = await client.post(url, json=create_review(_database(f"bench-direct-{index}")))
            return response.status_code == 200 and bool(response.json()["response"]["allowed"])

        await one(-1)  # warm up: connection and kopf's first request
        return await _run(total, concurrency, one)


async def bench_end_to_end(kube: Kube, total: int, concurrency: int) -> dict[str, Any]:
    """Server-side apply dry runs through the apiserver: schema + CEL + the webhook call."""
    async with kube.client(concurrency) as client:

        async def one(index: int) -> bool:
            name = f"bench-e2e-{index}"
            response = await client.patch(
                f"/apis/{API_VERSION}/namespaces/{NAMESPACE}/redisdatabases/{name}",
                params={"fieldManager": "bench", "dryRun": "All"},
                content=json.dumps(_database(name)),
                headers={"Content-Type": "application/apply-patch+yaml"},
            )
            return response.status_code in (200, 201)

        await one(-1)
        return await _run(total, concurrency, one)


def bench_validation(total: int) -> dict[str, Any]:
    """The pure function the webhook calls, over a provider index and 1000 claims: no HTTP, no kopf."""
    providers = {PROVIDER: _provider()["spec"]}
    claims = {f"{PROVIDER}/{NAMESPACE}-other-{index}": {f"{NAMESPACE}/other-{index}"} for index in range(1000)}
    latencies = []
    started = time.perf_counter()
    for index in range(total):
        obj = _database(f"bench-fn-{index}")
        begin = time.perf_counter()
        problem = validate_redisdatabase(
            operation="CREATE",
            namespace=NAMESPACE,
            name=obj["metadata"]["name"],
            spec=obj["spec"],
            old_spec=None,
            providers=providers,
            claims=claims,
        )
        latencies.append(time.perf_counter() - begin)
        assert problem is None, problem
    summary = _summary(latencies, time.perf_counter() - started, 0)
    summary["p50_us"] = round(_percentile(latencies, 0.5) * 1e6, 1)
    summary["p99_us"] = round(_percentile(latencies, 0.99) * 1e6, 1)
    return summary


_BUCKET = re.compile(r"^apiserver_admission_webhook_admission_duration_seconds_bucket\{(?P<labels>[^}]*)\} (?P<n>\S+)$")


def _webhook_buckets(metrics: str) -> dict[float, float]:
    buckets: dict[float, float] = {}
    for line in metrics.splitlines():
        match = _BUCKET.match(line)
        if not match or "redisdatabase" not in match["labels"] or 'type="validating"' not in match["labels"]:
            continue
        bound = re.search(r'le="([^"]+)"', match["labels"])
        if bound:
            le = float("inf") if bound[1] == "+Inf" else float(bound[1])
            buckets[le] = buckets.get(le, 0.0) + float(match["n"])
    return buckets


def _histogram_quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """The bucket upper bounds holding p50 and p99 of the calls made between the two scrapes."""
    delta = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in sorted(after)}
    count = delta.get(float("inf"), 0.0)
    result: dict[str, Any] = {"calls": int(count)}
    for name, fraction in (("p50_le_ms", 0.5), ("p99_le_ms", 0.99)):
        bound = next((le for le, n in delta.items() if count and n >= fraction * count), float("inf"))
        result[name] = None if bound == float("inf") else round(bound * 1000, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m redisdb_dev.bench.webhook", description=__doc__)
    parser.add_argument("--requests", type=int, default=1000, help="requests per measurement (default 1000)")
    parser.add_argument("--concurrency", type=int, default=50, help="requests in flight (default 50)")
    parser.add_argument("--kubeconfig", type=Path, default=None, help="use this cluster and its running operator")
    parser.add_argument("--webhook-configuration", default=WEBHOOK_CONFIGURATION)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="redisdb-bench-webhook-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        kubeconfig = args.kubeconfig or stack.enter_context(_own_cluster(workdir))
        kube = Kube(kubeconfig, workdir)
        _setup(kube)
        if args.kubeconfig is None:
            stack.enter_context(_own_operator(kube, workdir))
        url, ca_pem = _webhook_client_config(kube, args.webhook_configuration)
        time.sleep(1)  # let the operator's indexes see the RedisProvider
        validation = bench_validation(args.requests)
        sequential = asyncio.run(bench_webhook(url, ca_pem, min(args.requests, 200), 1))
        webhook = asyncio.run(bench_webhook(url, ca_pem, args.requests, args.concurrency))
        before = _webhook_buckets(kube.metrics())
        end_to_end = asyncio.run(bench_end_to_end(kube, args.requests, args.concurrency))
        apiserver = _histogram_quantiles(before, _webhook_buckets(kube.metrics()))
        report = {
            "concurrency": args.concurrency,
            "cpus": os.cpu_count(),
            "validation": validation,
            "webhook_sequential": sequential,
            "webhook": webhook,
            "apiserver_webhook_metric": apiserver,
            "end_to_end": end_to_end,
        }
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
