"""High availability: two operator processes elect one leader on a Lease; the leader's death, stop or SIGTERM hands
the work over without a database created twice or left behind; the webhook certificate renews in place.

Each test runs its own operators (its own module: other modules' operators would act on the same objects).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import datetime
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509

from redisdb_dev.devrun import SYSTEM_NAMESPACE
from redisdb_operator.webhook_certs import write_webhook_cert_dir
from tests.e2e.test_resilience import database
from tests.harness.audit import wait_for_clean_audit
from tests.harness.cluster import PROCESS_RUNNERS, Cluster, KubectlError, apply, get_json, kubectl, to_yaml, wait_for
from tests.harness.local_provider import LocalProvider
from tests.harness.operator import OperatorProcess, secret_data, start_operator, wait_gone, wait_ready

# Short timings so that a takeover after a crash takes seconds; the chart keeps the defaults (15/10/1).
FAST_ELECTION = [
    "--leader-election-lease-duration=6",
    "--leader-election-renew-deadline=4",
    "--leader-election-retry-period=0.5",
]


def lease_holder(lease: str) -> str:
    obj = get_json("lease", lease, SYSTEM_NAMESPACE)
    return str(((obj or {}).get("spec") or {}).get("holderIdentity") or "")


@contextlib.contextmanager
def candidates(
    cluster: Cluster, tmp_path: Path, lease: str, request: pytest.FixtureRequest, *extra: str, count: int = 2
) -> Iterator[dict[str, OperatorProcess]]:
    """`count` operators competing for the Lease `lease`, by identity op-0, op-1, ..."""
    running: dict[str, OperatorProcess] = {}
    try:
        for index in range(count):
            identity = f"op-{index}"
            running[identity] = start_operator(
                cluster,
                tmp_path / identity,
                resync_interval=300.0,  # no resync noise: what happens is what the test caused
                webhook=False,
                extra_args=[
                    "--leader-election",
                    f"--leader-election-namespace={SYSTEM_NAMESPACE}",
                    f"--leader-election-name={lease}",
                    f"--leader-election-identity={identity}",
                    *FAST_ELECTION,
                    *extra,
                ],
            )
            request.node.stash.setdefault(PROCESS_RUNNERS, running[identity].runner)
        yield running
    finally:
        for operator in running.values():
            operator.runner.stop_all()
        with contextlib.suppress(KubectlError):
            kubectl("delete", "lease", lease, "-n", SYSTEM_NAMESPACE, "--ignore-not-found")


def acquired_at(lease: str) -> float:
    """The Lease's acquireTime (written by the holder on this machine's clock) as a POSIX timestamp."""
    spec = (get_json("lease", lease, SYSTEM_NAMESPACE) or {})["spec"]
    return datetime.datetime.fromisoformat(spec["acquireTime"].replace("Z", "+00:00")).timestamp()


def the_leader(running: dict[str, OperatorProcess], lease: str) -> str:
    return wait_for(lambda: lease_holder(lease) in running and lease_holder(lease), 60, message="a leader")


def created_twice(local_provider: LocalProvider, prefix: str) -> dict[str, list[str]]:
    """Provider names (under `prefix`) for which the provider ever issued passwords to more than one database."""
    ids: dict[str, set[str]] = collections.defaultdict(set)
    for entry in local_provider.admin.issued_credentials()["passwords"]:
        if str(entry["name"]).startswith(prefix):
            ids[entry["name"]].add(entry["database_id"])
    return {name: sorted(found) for name, found in ids.items() if len(found) > 1}


def test_kill_leader_during_workload(
    cluster: Cluster,
    providers: None,
    local_provider: LocalProvider,
    namespace: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    lease = f"ha-kill-{namespace[-6:]}"
    with candidates(cluster, tmp_path, lease, request) as running:
        leader = the_leader(running, lease)
        standby = next(identity for identity in running if identity != leader)
        assert running[standby].process.alive
        local_provider.admin.faults(latency_ms=150)  # keep provider calls in flight when the leader dies
        try:
            # 100 operations: 50 creates, then 25 updates and 25 deletes of them, the leader killed halfway.
            names = [f"db{index:02d}" for index in range(50)]
            for name in names:
                apply(database(name), namespace)
            wait_for(lambda: len(local_provider.admin.databases()) > 0, 60, 0.05, message="creates under way")
            killed_at = time.time()
            running[leader].kill()
            for name in names[:25]:
                apply(database(name, readRegions=["ams"]), namespace)
            for name in names[25:]:
                kubectl("delete", "redisdatabase", name, "-n", namespace, "--wait=false")
        finally:
            local_provider.admin.clear_faults()
        wait_for(lambda: lease_holder(lease) == standby, 60, 0.05, message=f"{standby} takes the Lease over")
        took = acquired_at(lease) - killed_at
        print(f"SIGKILL takeover: {standby} acquired the Lease {took:.1f}s after the kill (6 s lease)")
        for name in names[25:]:
            wait_gone("redisdatabase", name, namespace, timeout=120)
        report, seconds = wait_for_clean_audit(local_provider, timeout=180, namespaces=[namespace])
        assert report.resources == 25 and report.matched == 25, report.summary()
        assert created_twice(local_provider, f"{namespace}-") == {}
        print(f"after SIGKILL of the leader: {report.summary()}, clean {seconds:.1f}s after the workload")


def kopf_handled(obj: dict[str, Any] | None, **spec: Any) -> dict[str, Any] | None:
    """The object when kopf's last-handled configuration holds these spec fields, else None."""
    record = ((obj or {}).get("status") or {}).get("kopf") or {}  # sweep.StatusDiffBaseStorage
    handled = json.loads(record.get("lastHandledConfiguration") or "{}")
    return obj if all((handled.get("spec") or {}).get(key) == value for key, value in spec.items()) else None


def test_stopped_leader_resumed_makes_no_write(
    cluster: Cluster,
    providers: None,
    local_provider: LocalProvider,
    namespace: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    lease = f"ha-stop-{namespace[-6:]}"
    with candidates(cluster, tmp_path, lease, request) as running:
        leader = the_leader(running, lease)
        standby = next(identity for identity in running if identity != leader)
        apply(database("paused"), namespace)
        wait_ready("paused", namespace)

        stopped = running[leader].process
        os.killpg(stopped.popen.pid, signal.SIGSTOP)
        try:
            # A change the stopped leader's watch has buffered: resumed without the gate, it would handle it.
            apply(database("paused", readRegions=["ams"]), namespace)
            wait_for(lambda: lease_holder(lease) == standby, 60, message=f"{standby} takes the Lease over")
            wait_ready("paused", namespace, generation=2)
            # The new leader's takeover lane writes Ready; kopf's own handler of the edit then records the
            # configuration it handled, one more write by the new leader (seen in CI as "the resumed leader wrote"):
            # `before` is the object once the new leader has done both.
            obj = wait_for(
                lambda: kopf_handled(get_json("redisdatabase", "paused", namespace), readRegions=["ams"]),
                60,
                message="the new leader's kopf records the handled edit",
            )
        except BaseException:
            os.killpg(stopped.popen.pid, signal.SIGCONT)
            raise
        before = obj["metadata"]["resourceVersion"]
        provider_before = local_provider.admin.database(obj["status"]["databaseId"])
        log_before = len(stopped.log())
        os.killpg(stopped.popen.pid, signal.SIGCONT)
        code = stopped.popen.wait(timeout=60)
        assert code == 1, code
        resumed_log = stopped.log()[log_before:]
        assert "lost the leader Lease" in resumed_log, resumed_log
        after = get_json("redisdatabase", "paused", namespace)
        assert after is not None and after["metadata"]["resourceVersion"] == before, "the resumed leader wrote"
        assert local_provider.admin.database(obj["status"]["databaseId"]) == provider_before
        assert lease_holder(lease) == standby
        # The new leader keeps working.
        apply(database("after"), namespace)
        wait_ready("after", namespace)


def test_sigterm_hands_over(
    cluster: Cluster,
    providers: None,
    local_provider: LocalProvider,
    namespace: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    lease = f"ha-term-{namespace[-6:]}"
    # The chart's timings: without the release, a takeover would wait for the 15 s lease to expire.
    with candidates(
        cluster,
        tmp_path,
        lease,
        request,
        "--leader-election-lease-duration=15",
        "--leader-election-renew-deadline=10",
        "--leader-election-retry-period=1",
    ) as running:
        leader = the_leader(running, lease)
        standby = next(identity for identity in running if identity != leader)
        transitions = (get_json("lease", lease, SYSTEM_NAMESPACE) or {})["spec"].get("leaseTransitions", 0)
        old = running[leader].process
        sent = time.time()
        os.killpg(old.popen.pid, signal.SIGTERM)
        wait_for(lambda: lease_holder(lease) == standby, 30, 0.05, message=f"{standby} takes the released Lease")
        handover = acquired_at(lease) - sent
        assert old.popen.wait(timeout=60) == 0
        assert "released the leader Lease" in old.log()
        spec = (get_json("lease", lease, SYSTEM_NAMESPACE) or {})["spec"]
        assert spec["leaseTransitions"] == transitions + 1
        print(f"SIGTERM handover: {standby} held the Lease {handover:.2f}s after the signal (15 s lease)")
        apply(database("handed-over"), namespace)
        wait_ready("handed-over", namespace)


def served_certificate(port: int) -> x509.Certificate:
    """The certificate the webhook listener presents now."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


class AdmissionLoad:
    """Dry-run creates sent straight to the apiserver from several threads, a valid and an invalid one in turn:
    a moment without a trusted webhook listener shows up as a failed valid one (failurePolicy Fail)."""

    def __init__(self, cluster: Cluster, namespace: str, workdir: Path, threads: int = 4) -> None:
        config = yaml.safe_load(cluster.kubeconfig.read_text())
        user = config["users"][0]["user"]
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "client.crt").write_bytes(base64.b64decode(user["client-certificate-data"]))
        (workdir / "client.key").write_bytes(base64.b64decode(user["client-key-data"]))
        (workdir / "ca.crt").write_bytes(cluster.ca_pem)
        self._workdir = workdir
        self._url = f"{cluster.server}/apis/redisdb.dev/v1alpha1/namespaces/{namespace}/redisdatabases?dryRun=All"
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(index,), daemon=True) for index in range(threads)]
        self.reviews = 0
        self.failures: list[str] = []

    def _run(self, index: int) -> None:
        context = ssl.create_default_context(cafile=str(self._workdir / "ca.crt"))
        context.load_cert_chain(str(self._workdir / "client.crt"), str(self._workdir / "client.key"))
        with httpx.Client(verify=context, timeout=30) as client:
            while not self._stop.is_set():
                for bad in (False, True):
                    body = database(f"load-{index}", **({"providerRef": {"name": "no-such-provider"}} if bad else {}))
                    response = client.post(self._url, json=body)
                    self.reviews += 1
                    expected = response.status_code >= 400 and "no-such-provider" in response.text
                    if (bad and not expected) or (not bad and response.status_code >= 400):
                        self.failures.append(f"{response.status_code}: {response.text[:300]}")

    def __enter__(self) -> AdmissionLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def _dry_run(name: str, namespace: str, **spec: Any) -> subprocess.CompletedProcess[str]:
    manifest = to_yaml(database(name, **spec))
    return kubectl("apply", "--dry-run=server", "-f", "-", "-n", namespace, input=manifest, check=False)


def webhook_operator(
    cluster: Cluster, workdir: Path, configuration: str, cert_args: list[str], request: pytest.FixtureRequest
) -> tuple[OperatorProcess, int]:
    """An operator serving its own ValidatingWebhookConfiguration `configuration` with failurePolicy Fail on a port
    the OS picks, its certificate checked every second; (the operator, the webhook's port)."""
    operator = start_operator(
        cluster,
        workdir,
        webhook=False,
        extra_args=[
            "--webhook-listen=127.0.0.1:0",  # the OS picks; read back from the ports file
            "--webhook-host=127.0.0.1",
            f"--webhook-managed={configuration}",
            "--webhook-failure-policy=Fail",
            "--webhook-cert-check-interval=1",
            *cert_args,
        ],
    )
    request.node.stash[PROCESS_RUNNERS] = operator.runner
    wait_for(lambda: get_json("validatingwebhookconfiguration", configuration), 60, message="the configuration")
    return operator, operator.ports()["webhook"]


def admitted_as_expected(name: str, namespace: str) -> str | None:
    """None when a good dry run is admitted and a bad one refused by the webhook (Fail policy: an unreachable or
    untrusted webhook fails the good one; the bad one proves it was asked), else what the two said."""
    good = _dry_run(name, namespace)
    bad = _dry_run(name, namespace, providerRef={"name": "no-such-provider"})
    if good.returncode != 0 or "no-such-provider" not in bad.stderr:
        return f"{good.stderr.strip()} / {bad.stderr.strip()}"
    return None


def test_webhook_certificate_renews_without_failed_admission(
    cluster: Cluster,
    providers: None,
    namespace: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    configuration = f"renewal-{namespace[-6:]}.redisdb.dev"
    secret = f"webhook-renewal-{namespace[-6:]}"
    cert_args = [
        f"--webhook-cert-dir={tmp_path / 'certs'}",
        f"--webhook-cert-secret={SYSTEM_NAMESPACE}/{secret}",
        "--webhook-cert-validity=60",
    ]
    operator, port = webhook_operator(cluster, tmp_path, configuration, cert_args, request)
    try:
        serials: list[int] = []
        reviews = failures = 0
        first_ca = secret_data(secret, SYSTEM_NAMESPACE)["ca.crt"]

        def renewed_twice() -> bool:
            nonlocal reviews, failures
            problem = admitted_as_expected("renewal", namespace)
            reviews += 2
            if problem is not None:
                failures += 1
                raise AssertionError(f"admission failed: {problem}")
            cert = served_certificate(port)
            if not serials or serials[-1] != cert.serial_number:
                serials.append(cert.serial_number)
            return len(serials) >= 3

        with AdmissionLoad(cluster, namespace, tmp_path / "load") as load, contextlib.suppress(AssertionError):
            wait_for(renewed_twice, 240, 0.2, message="two renewals of a 60 s certificate served")
        assert failures == 0, operator.log()[-3000:]
        assert load.failures == [], (len(load.failures), load.failures[:5])
        reviews += load.reviews
        assert len(serials) >= 3, serials
        assert secret_data(secret, SYSTEM_NAMESPACE)["ca.crt"] == first_ca  # the CA stays: caBundle unchanged
        assert operator.log().count("loaded the renewed webhook serving certificate") >= 2
        assert "Restarting with the renewed SSL certificate files" not in operator.log()  # kopf's own restart
        print(f"{reviews} admission reviews through {len(serials) - 1} renewals, none failed")
    finally:
        operator.runner.stop_all()
        kubectl("delete", "validatingwebhookconfiguration", configuration, "--ignore-not-found")
        kubectl("delete", "secret", secret, "-n", SYSTEM_NAMESPACE, "--ignore-not-found")


def test_certificate_files_renewed_elsewhere_are_picked_up_without_failed_admission(
    cluster: Cluster,
    providers: None,
    namespace: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """As cert-manager's mounted Secret changes: new files (here even a new CA) replace the old ones at once."""
    configuration = f"files-{namespace[-6:]}.redisdb.dev"
    certs = write_webhook_cert_dir(tmp_path / "certs", ["127.0.0.1"])
    operator, port = webhook_operator(cluster, tmp_path, configuration, [f"--webhook-cert-dir={certs}"], request)
    try:
        before = served_certificate(port).serial_number
        failures: list[str] = []
        reviews = 0
        renewed_at: int | None = None

        def review() -> None:
            nonlocal reviews
            problem = admitted_as_expected("files", namespace)
            reviews += 2
            if problem is not None:
                failures.append(problem)

        with AdmissionLoad(cluster, namespace, tmp_path / "load") as load:
            for _ in range(5):
                review()
            fresh = write_webhook_cert_dir(tmp_path / "renewed", ["127.0.0.1"])  # another CA altogether
            for name in ("ca.crt", "tls.key", "tls.crt"):
                (certs / f".{name}.new").write_bytes((fresh / name).read_bytes())
                (certs / f".{name}.new").replace(certs / name)

            def switched_and_more() -> bool:
                nonlocal renewed_at
                review()
                if renewed_at is None and served_certificate(port).serial_number != before:
                    renewed_at = reviews
                return renewed_at is not None and reviews >= renewed_at + 20

            wait_for(switched_and_more, 120, 0.1, message="the renewed certificate served, and 20 reviews after")
        assert failures == [], failures[:5]
        assert load.failures == [], (len(load.failures), load.failures[:5])
        reviews += load.reviews
        print(f"{reviews} admission reviews around a certificate and CA change of the files, none failed")
    finally:
        operator.runner.stop_all()
        kubectl("delete", "validatingwebhookconfiguration", configuration, "--ignore-not-found")
