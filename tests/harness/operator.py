"""Fixtures: the operator as a real process against the real control plane, with the local provider behind it.

`crds` installs crds/ once per session. `operator` (module scope) starts `redisdb-operator run` with its
validating webhook on 127.0.0.1 (certificates made with `cryptography`), a short resync interval, and the
RedisProviders `local-fly` and `local-upstash` pointing at the session's local provider.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from redisdb_dev.devrun import (
    SYSTEM_NAMESPACE,
    WEBHOOK_CONFIGURATION,
    fly_provider_manifests,
    operator_argv,
    upstash_provider_manifests,
)
from tests.harness.cluster import (
    PROCESS_RUNNERS,
    Cluster,
    ManagedProcess,
    ProcessRunner,
    apply,
    get_json,
    kubectl,
    wait_for,
)
from tests.harness.local_provider import FLY_ORG, FLY_TOKEN, UPSTASH_API_KEY, UPSTASH_EMAIL, LocalProvider

REPO = Path(__file__).resolve().parents[2]
FLY_PROVIDER = "local-fly"
UPSTASH_PROVIDER = "local-upstash"


# Every operator log file and every Events snapshot of this session: the secret-hygiene test scans them all.
SESSION_OPERATOR_LOGS: list[Path] = []
SESSION_EVENT_SNAPSHOTS: list[str] = []


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")


def provider_manifests(local_provider: LocalProvider) -> list[dict[str, Any]]:
    """Credentials Secrets and the two RedisProviders (Fly wire API and Upstash wire API) on the local provider."""
    return [
        *fly_provider_manifests(FLY_PROVIDER, local_provider.url, organization=FLY_ORG, token=FLY_TOKEN),
        *upstash_provider_manifests(
            UPSTASH_PROVIDER, local_provider.upstash_url, email=UPSTASH_EMAIL, api_key=UPSTASH_API_KEY
        ),
    ]


@pytest.fixture(scope="session")
def providers(cluster: Cluster, crds: None, local_provider: LocalProvider) -> None:
    if get_json("namespace", SYSTEM_NAMESPACE, kubeconfig=cluster.kubeconfig) is None:
        cluster.kubectl("create", "namespace", SYSTEM_NAMESPACE)
    apply(provider_manifests(local_provider), kubeconfig=cluster.kubeconfig)


@dataclass
class OperatorProcess:
    """A running operator and how to reach its listeners: it binds port 0 for each (the OS's choice, held for its
    life) and writes what it got to `ports_file`, so no port is picked here and raced for."""

    runner: ProcessRunner
    process: ManagedProcess
    argv: list[str]
    env: dict[str, str]
    ports_file: Path

    def ports(self) -> dict[str, int]:
        """{"liveness": ..., "webhook": ..., "metrics": ...} of the running process (those it serves)."""
        ports: dict[str, int] = json.loads(self.ports_file.read_text())
        return ports

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.ports()['liveness']}/healthz"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports()['metrics']}/metrics"

    def wait_healthy(self, timeout: float = 60) -> None:
        def healthy() -> bool:
            if not self.process.alive:
                raise AssertionError(f"operator exited:\n{self.process.log()[-4000:]}")
            if not self.ports_file.exists():
                return False
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(self.health_url, timeout=2).status_code == 200
            return False

        wait_for(healthy, timeout, message="operator liveness endpoint")

    def kill(self) -> None:
        """SIGKILL: no cleanup handlers, as a crash."""
        import os
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.popen.pid, signal.SIGKILL)
        self.process.popen.wait()

    def restart(self) -> None:
        if self.process.alive:
            self.process.stop()
        self.ports_file.unlink(missing_ok=True)
        self.process = self.runner.start("operator", self.argv, self.env)
        self.wait_healthy()

    def log(self) -> str:
        return "\n".join(p.log() for p in self.runner.processes if p.name == "operator")


def start_operator(
    cluster: Cluster,
    workdir: Path,
    *,
    resync_interval: float = 3.0,
    webhook: bool = True,
    kubeconfig: Path | None = None,
    extra_args: Sequence[str] = (),
) -> OperatorProcess:
    runner = ProcessRunner(workdir / "logs")
    ports_file = workdir / "ports.json"
    ports_file.unlink(missing_ok=True)
    argv = operator_argv(
        resync_interval=resync_interval,
        webhook_cert_dir=workdir / "webhook-certs" if webhook else None,
        extra_args=tuple(extra_args),
        ports_file=ports_file,
    )
    env = {"KUBECONFIG": str(kubeconfig or cluster.kubeconfig), "PYTHONPATH": str(REPO / "operator")}
    process = runner.start("operator", argv, env)
    if process.log_path not in SESSION_OPERATOR_LOGS:
        SESSION_OPERATOR_LOGS.append(process.log_path)
    operator = OperatorProcess(runner, process, argv, env, ports_file)
    try:
        operator.wait_healthy()
        if webhook:
            wait_for(
                lambda: get_json(
                    "validatingwebhookconfiguration", WEBHOOK_CONFIGURATION, kubeconfig=cluster.kubeconfig
                ),
                30,
                message="the managed ValidatingWebhookConfiguration",
            )
    except BaseException:
        runner.stop_all()
        raise
    return operator


@pytest.fixture(scope="module")
def operator(cluster: Cluster, providers: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    workdir = tmp_path_factory.mktemp("operator")
    running = start_operator(cluster, workdir)
    try:
        yield running
    finally:
        running.runner.stop_all()


@pytest.fixture(autouse=True)
def _attach_operator_logs(request: pytest.FixtureRequest) -> None:
    """Make the module's operator log part of a failing test's report."""
    if "operator" in request.fixturenames:
        running: OperatorProcess = request.getfixturevalue("operator")
        request.node.stash[PROCESS_RUNNERS] = running.runner


@pytest.fixture(autouse=True)
def _snapshot_namespace_events(request: pytest.FixtureRequest) -> Iterator[None]:
    """Keep the Events of a test's namespace before it is deleted, for the session's secret-hygiene scan."""
    if "namespace" not in request.fixturenames:
        yield
        return
    namespace: str = request.getfixturevalue("namespace")
    yield
    result = kubectl("get", "events", "-n", namespace, "-o", "json", check=False, timeout=30)
    if result.returncode == 0:
        SESSION_EVENT_SNAPSHOTS.append(result.stdout)


# -- helpers used by the end-to-end tests --------------------------------------------------------------------


def database(name: str, provider: str = FLY_PROVIDER, **spec: Any) -> dict[str, Any]:
    """A RedisDatabase manifest in cdg on the local Fly provider, with `spec` overrides."""
    return {
        "apiVersion": "redisdb.dev/v1alpha1",
        "kind": "RedisDatabase",
        "metadata": {"name": name},
        "spec": {"providerRef": {"name": provider}, "primaryRegion": "cdg", **spec},
    }


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            result: dict[str, Any] = item
            return result
    return None


def wait_ready(name: str, namespace: str, *, timeout: float = 90, generation: int | None = None) -> dict[str, Any]:
    """Wait until Ready=True (and Synced=True) for the current (or given) generation; returns the object."""

    def ready() -> dict[str, Any] | None:
        obj = get_json("redisdatabase", name, namespace)
        want = generation or (obj or {}).get("metadata", {}).get("generation")
        ready_condition, synced = condition(obj, "Ready"), condition(obj, "Synced")
        if (
            obj
            and ready_condition
            and synced
            and ready_condition["status"] == "True"
            and synced["status"] == "True"
            and obj["status"].get("observedGeneration") == want
        ):
            return obj
        return None

    return wait_for(ready, timeout, 0.25, message=f"RedisDatabase {namespace}/{name} Ready")


def secret_data(name: str, namespace: str) -> dict[str, str]:
    secret = get_json("secret", name, namespace)
    assert secret is not None, f"Secret {namespace}/{name} does not exist"
    return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}


def events_for(name: str, namespace: str) -> list[dict[str, Any]]:
    out = kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    ).stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def wait_gone(kind: str, name: str, namespace: str | None, timeout: float = 60) -> None:
    wait_for(lambda: get_json(kind, name, namespace) is None, timeout, message=f"{kind} {name} deleted")


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def delete_at_provider(local_provider: LocalProvider, database_id: str) -> None:
    """Delete a database through its own wire API, as someone using the provider's console or CLI would."""
    described = local_provider.admin.database(database_id)
    if described["api"] == "upstash":
        response = httpx.delete(
            f"{local_provider.upstash_url}/redis/database/{database_id}", auth=local_provider.upstash_auth, timeout=30
        )
        response.raise_for_status()
        return
    query = (
        'mutation($name: String) { deleteAddOn(input: {name: $name, provider: "upstash_redis"}) { deletedAddOnName } }'
    )
    response = httpx.post(
        local_provider.graphql_url,
        json={"query": query, "variables": {"name": described["name"]}},
        headers=local_provider.fly_headers,
        timeout=30,
    )
    response.raise_for_status()
    assert not response.json().get("errors"), response.json()


@contextlib.contextmanager
def webhook_down() -> Iterator[None]:
    """The operator's webhook unreachable (its failurePolicy Ignore: the apiserver admits what CEL admits) for the
    block, then the ValidatingWebhookConfiguration as it was."""
    original = get_json("validatingwebhookconfiguration", WEBHOOK_CONFIGURATION)
    assert original is not None
    down = json.loads(json.dumps(original))
    for hook in down["webhooks"]:
        hook["clientConfig"].pop("service", None)
        hook["clientConfig"]["url"] = "https://127.0.0.1:1/validate"
        hook["failurePolicy"] = "Ignore"
    kubectl("replace", "-f", "-", input=json.dumps(down))
    try:
        yield
    finally:
        current = get_json("validatingwebhookconfiguration", WEBHOOK_CONFIGURATION)
        assert current is not None
        original["metadata"] = {
            "name": WEBHOOK_CONFIGURATION,
            "resourceVersion": current["metadata"]["resourceVersion"],
        }
        kubectl("replace", "-f", "-", input=json.dumps(original))
