"""`kubectl redisdb` through the real kubectl (plugin found on PATH) against the real control plane and operator.

The pod path of `connect` cannot run here (no kubelet); its pod is proved by a server-side dry-run into a namespace
that enforces the `restricted` Pod Security level.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from redisdb_operator import tls
from redisdb_operator.models import ANNOTATION_FORCE_ORPHAN
from tests.harness.cluster import Cluster, apply, bin_dir, get_json, kubectl, tool, wait_for
from tests.harness.local_provider import FLY_ORG, TLS_CA_FILE, LocalProvider, redis_from_url
from tests.harness.operator import (
    FLY_PROVIDER,
    SYSTEM_NAMESPACE,
    UPSTASH_PROVIDER,
    OperatorProcess,
    condition,
    secret_data,
    wait_ready,
)

PLUGIN = Path(sys.executable).parent / "kubectl-redisdb"
FLY = {"provider": FLY_PROVIDER, "primary": "cdg"}
UPSTASH = {"provider": UPSTASH_PROVIDER, "primary": "us-east-1"}


def database(name: str, case: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "redisdb.dev/v1alpha1",
        "kind": "RedisDatabase",
        "metadata": {"name": name},
        "spec": {"providerRef": {"name": case["provider"]}, "primaryRegion": case["primary"], **spec},
    }


def plugin_env(cluster: Cluster) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{bin_dir()}:{PLUGIN.parent}:{os.environ.get('PATH', '')}",
        "KUBECONFIG": str(cluster.kubeconfig),
    }


def plugin(
    cluster: Cluster, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`kubectl redisdb ARGS` as a user runs it: kubectl finds kubectl-redisdb on PATH; KUBECONFIG names the cluster."""
    assert PLUGIN.exists(), f"{PLUGIN} is missing: run `make venv` (pip install -e .) to install the console script"
    environment = {**plugin_env(cluster), **(env or {})}
    result = subprocess.run(
        [tool("kubectl"), "redisdb", *args], env=environment, capture_output=True, text=True, timeout=300, check=False
    )
    if check:
        assert result.returncode == 0, f"kubectl redisdb {' '.join(args)} exited {result.returncode}: {result.stderr}"
    return result


def connect_pods(namespace: str) -> list[str]:
    selector = "app.kubernetes.io/component=kubectl-redisdb-connect"
    return kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "name").stdout.split()


@pytest.fixture
def other_namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-plugin-other-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def broken_provider(cluster: Cluster, local_provider: LocalProvider, operator: OperatorProcess) -> Iterator[str]:
    """A RedisProvider whose credentials Secret does not exist: its databases fail (CredentialsNotFound)."""
    name = f"plugin-broken-{secrets.token_hex(3)}"
    apply(
        {
            "apiVersion": "redisdb.dev/v1alpha1",
            "kind": "RedisProvider",
            "metadata": {"name": name},
            "spec": {
                "type": "fly",
                "url": local_provider.url,
                "organization": FLY_ORG,
                "credentialsSecretRef": {"namespace": SYSTEM_NAMESPACE, "name": f"{name}-missing"},
            },
        }
    )
    yield name
    # Its databases never reached a provider, and without credentials their deletion cannot ask one: release them
    # (the condition's own way out), so no RedisDatabase is left behind for later suites.
    listed = json.loads(kubectl("get", "redisdatabases", "--all-namespaces", "-o", "json").stdout)["items"]
    for item in listed:
        if (item["spec"].get("providerRef") or {}).get("name") == name:
            where = ("-n", item["metadata"]["namespace"])
            kubectl(
                "annotate", "rdb", item["metadata"]["name"], *where, f"{ANNOTATION_FORCE_ORPHAN}=true", "--overwrite"
            )
            kubectl("delete", "rdb", item["metadata"]["name"], *where, "--wait=false", "--ignore-not-found")
    kubectl("delete", "redisprovider", name, "--ignore-not-found", "--wait=false")


def test_list_status_and_dashboard_across_namespaces(
    operator: OperatorProcess, cluster: Cluster, namespace: str, other_namespace: str, broken_provider: str
) -> None:
    apply([database("cache", FLY), database("broken", {"provider": broken_provider, "primary": "cdg"})], namespace)
    apply(database("sessions", UPSTASH, readRegions=["eu-west-1"]), other_namespace)
    cache = wait_ready("cache", namespace)
    sessions = wait_ready("sessions", other_namespace)

    def failing() -> dict[str, Any] | None:
        obj = get_json("redisdatabase", "broken", namespace)
        synced = condition(obj, "Synced")
        return obj if synced and synced["status"] == "False" and synced.get("reason") else None

    broken = wait_for(failing, 60, message="broken database Synced=False")

    # list -A: both namespaces, flyctl's columns
    text = plugin(cluster, "list", "-A").stdout
    header, *lines = text.splitlines()
    assert header.split()[:3] == ["NAMESPACE", "NAME", "PROVIDER"] and "EVICTION" in header and "SYNCED" in header
    rows = {(line.split()[0], line.split()[1]): line.split() for line in lines}
    assert rows[(namespace, "cache")][2:4] == [FLY_PROVIDER, "cdg"]
    assert rows[(other_namespace, "sessions")][2:5] == [UPSTASH_PROVIDER, "us-east-1", "eu-west-1"]
    assert (namespace, "broken") in rows
    items = json.loads(plugin(cluster, "list", "-A", "-o", "json").stdout)["items"]
    mine = {(item["namespace"], item["name"]): item for item in items}
    assert mine[(namespace, "cache")]["ready"] == "True" and mine[(other_namespace, "sessions")]["synced"] == "True"
    assert mine[(namespace, "broken")]["synced"] == "False"
    # -n: only that namespace, no NAMESPACE column
    only = plugin(cluster, "list", "-n", other_namespace).stdout
    assert "sessions" in only and "cache" not in only and not only.startswith("NAMESPACE")

    # status of a Ready database: fields, both conditions, Secret keys with the password masked
    password = secret_data("cache-redis", namespace)["REDIS_PASSWORD"]
    status = plugin(cluster, "status", "cache", "-n", namespace).stdout
    for expected in ("Ready", "Synced", "Available", "ReconcileSuccess", "cache-redis", "REDIS_PASSWORD: ********"):
        assert expected in status, expected
    assert cache["status"]["databaseId"] in status and "cdg" in status and "Events:" in status
    assert password not in status
    assert password in plugin(cluster, "status", "cache", "-n", namespace, "--show-secrets").stdout
    view = json.loads(plugin(cluster, "status", "cache", "-n", namespace, "-o", "json").stdout)
    assert {c["type"]: c["status"] for c in view["conditions"]} == {"Ready": "True", "Synced": "True"}
    assert "REDIS_URL" in view["secret"]["keys"] and password not in json.dumps(view)
    assert any(event["reason"] for event in view["events"])

    # status of a failing database: the reason and message, and its Warning events
    synced = condition(broken, "Synced")
    assert synced is not None
    failing_status = plugin(cluster, "status", "broken", "-n", namespace).stdout
    assert synced["reason"] in failing_status and synced["message"][:40] in failing_status
    failing_view = json.loads(plugin(cluster, "status", "broken", "-n", namespace, "-o", "json").stdout)
    assert failing_view["secret"]["keys"] is None  # no Secret, and no crash

    # kubectl-style errors
    missing = plugin(cluster, "status", "nope", "-n", namespace, check=False)
    assert missing.returncode != 0
    assert 'Error from server (NotFound): redisdatabases.redisdb.dev "nope" not found' in missing.stderr
    empty = plugin(cluster, "list", "-n", "default")
    assert "No resources found in default namespace." in empty.stderr

    # --kubeconfig is honoured (the environment's KUBECONFIG points nowhere)
    flagged = plugin(
        cluster,
        "list",
        "-n",
        namespace,
        f"--kubeconfig={cluster.kubeconfig}",
        env={"KUBECONFIG": "/nonexistent/kubeconfig"},
    )
    assert "cache" in flagged.stdout

    # dashboard: a console link without a credential in it
    upstash_link = plugin(cluster, "dashboard", "sessions", "-n", other_namespace).stdout.strip()
    assert sessions["status"]["databaseId"] in upstash_link and upstash_link.startswith("https://")
    assert "token" not in upstash_link and "@" not in upstash_link
    fly_link = plugin(cluster, "dashboard", "cache", "-n", namespace, check=False)
    published = cache["status"].get("dashboardURL")
    if published:
        assert fly_link.returncode == 0 and fly_link.stdout.strip() == published and "token" not in published
    else:  # the operator does not publish one yet: a clear error, never the sign-on link
        assert fly_link.returncode == 1 and "no dashboard link" in fly_link.stderr and "sso" not in fly_link.stderr


def test_connect_runs_redis_cli_locally_and_its_pod_passes_restricted_pod_security(
    operator: OperatorProcess, cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    if shutil.which("redis-cli") is None:
        pytest.fail("redis-cli is missing (Debian: redis-tools, installed with redis-server)")
    apply(database("cache", FLY), namespace)
    wait_ready("cache", namespace)

    assert plugin(cluster, "connect", "cache", "-n", namespace, "--command", "PING").stdout.strip() == "PONG"
    assert plugin(cluster, "connect", "cache", "-n", namespace, "--command", "SET greeting 'hello world'").stdout
    client = redis.Redis.from_url(secret_data("cache-redis", namespace)["REDIS_URL"], socket_timeout=5)
    assert client.get("greeting") == b"hello world"
    client.close()
    forced = plugin(cluster, "connect", "cache", "-n", namespace, "--mode", "local", "--command", "GET greeting")
    assert forced.stdout.strip() == "hello world"

    # The pod path, validated by the API server in a namespace that enforces `restricted`.
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted", "--overwrite")
    unrestricted = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain", "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "docker.io/library/redis:7.4.2-alpine"}]},
    }
    refused = kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(unrestricted), check=False)
    assert refused.returncode != 0 and "restricted" in refused.stderr  # the namespace really enforces it

    dry_run = plugin(cluster, "connect", "cache", "-n", namespace, "--mode", "pod", "--dry-run=server", "-o", "json")
    created = json.loads(dry_run.stdout)
    assert created["kind"] == "Pod" and created["metadata"]["namespace"] == namespace
    assert created["metadata"].get("uid")  # the API server admitted it (a dry-run still gets one)
    (container,) = created["spec"]["containers"]
    assert {
        "name": "REDISCLI_AUTH",
        "valueFrom": {"secretKeyRef": {"name": "cache-redis", "key": "REDIS_PASSWORD"}},
    } in [{key: env[key] for key in ("name", "valueFrom") if key in env} for env in container["env"]]
    password = secret_data("cache-redis", namespace)["REDIS_PASSWORD"]
    assert password not in dry_run.stdout
    assert created["spec"]["activeDeadlineSeconds"] > 0
    assert get_json("pod", created["metadata"]["name"], namespace) is None  # nothing was created
    # --cacert in the pod: the CA goes in a ConfigMap beside the pod (a CA certificate is public)
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(tls.new_ca("private-ca").cert_pem)
    with_ca = json.loads(
        plugin(
            cluster, "connect", "cache", "-n", namespace, "--mode", "pod", "--dry-run=server", "-o", "json",
            "--cacert", str(ca_file),
        ).stdout
    )  # fmt: skip
    config_map, ca_pod = with_ca["items"]
    assert config_map["kind"] == "ConfigMap" and "BEGIN CERTIFICATE" in config_map["data"]["ca.crt"]
    ca_volumes = [volume for volume in ca_pod["spec"]["volumes"] if volume["name"] == "ca"]
    assert ca_volumes[0]["configMap"]["name"] == config_map["metadata"]["name"]
    # A real session here: the pod is created but never starts (no kubelet); the plugin gives up and removes it.
    session = plugin(
        cluster, "connect", "cache", "-n", namespace, "--mode", "pod", "--start-timeout", "2", "--command", "PING",
        check=False,
    )  # fmt: skip
    assert session.returncode != 0 and "created" in session.stderr
    assert connect_pods(namespace) == []
    # Ended by a signal (a closed terminal, a killed job): the pod goes too.
    running = subprocess.Popen(
        [tool("kubectl"), "redisdb", "connect", "cache", "-n", namespace, "--mode", "pod", "--start-timeout", "300"],
        env=plugin_env(cluster),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: connect_pods(namespace), 60, message="the connect pod exists")
        running.send_signal(signal.SIGTERM)
        assert running.wait(timeout=60) != 0
    finally:
        if running.poll() is None:
            running.kill()
    assert connect_pods(namespace) == []
    custom = plugin(
        cluster, "connect", "cache", "-n", namespace, "--mode", "pod", "--dry-run=client", "--image", "redis:7-alpine"
    )
    assert "image: redis:7-alpine" in custom.stdout


def test_connect_locally_over_tls_with_a_private_ca(
    operator: OperatorProcess, cluster: Cluster, namespace: str
) -> None:
    """TLS through redis-cli --tls/--cacert against a real Upstash-type database of the local provider, which
    serves TLS only, with a certificate signed by the local provider's own CA."""
    apply(database("secure", UPSTASH), namespace)
    ready = wait_ready("secure", namespace)
    assert ready["status"]["tls"] is True
    assert secret_data("secure-redis", namespace)["REDIS_URL"].startswith("rediss://")

    pong = plugin(cluster, "connect", "secure", "-n", namespace, "--cacert", str(TLS_CA_FILE), "--command", "PING")
    assert pong.stdout.strip() == "PONG"
    # Without the private CA the server's certificate is refused: TLS (and its verification) really is in use.
    untrusted = plugin(
        cluster, "connect", "secure", "-n", namespace, "--mode", "local", "--command", "PING", check=False
    )
    assert "PONG" not in untrusted.stdout and "certificate" in (untrusted.stdout + untrusted.stderr).lower()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_plans_and_regions_for_both_provider_types(operator: OperatorProcess, cluster: Cluster) -> None:
    fly_plans = plugin(cluster, "plans", "--provider", FLY_PROVIDER).stdout
    assert "fixed_1gb" in fly_plans and "Pay-as-you-go" in fly_plans
    assert f"{FLY_PROVIDER} (fly): (static catalog)" in fly_plans or "live catalog" in fly_plans
    upstash_plans = json.loads(plugin(cluster, "plans", "--provider", UPSTASH_PROVIDER, "-o", "json").stdout)["items"]
    assert {"free", "payg", "fixed_500gb"} <= {row["name"] for row in upstash_plans}
    assert {row["provider"] for row in upstash_plans} == {UPSTASH_PROVIDER}

    fly_regions = plugin(cluster, "regions", "--provider", FLY_PROVIDER).stdout
    mad = next(line for line in fly_regions.splitlines() if line.split()[1:2] == ["mad"])
    assert "deprecated" in mad
    iad = next(line for line in fly_regions.splitlines() if line.split()[1:2] == ["iad"])
    assert "available" in iad
    upstash_regions = json.loads(plugin(cluster, "regions", "--provider", UPSTASH_PROVIDER, "-o", "json").stdout)
    codes = {row["code"]: row for row in upstash_regions["items"]}
    assert codes["us-east-1"]["readRegionAllowed"] and not codes["us-central1"]["readRegionAllowed"]

    every = plugin(cluster, "regions").stdout
    assert FLY_PROVIDER in every and UPSTASH_PROVIDER in every
    missing = plugin(cluster, "plans", "--provider", "nope", check=False)
    assert missing.returncode != 0 and 'redisproviders.redisdb.dev "nope" not found' in missing.stderr


@pytest.mark.parametrize("case", [pytest.param(FLY, id="fly"), pytest.param(UPSTASH, id="upstash")])
def test_rotate_waits_for_the_new_secret(
    operator: OperatorProcess, cluster: Cluster, local_provider: LocalProvider, namespace: str, case: dict[str, Any]
) -> None:
    apply(database("cache", case), namespace)
    wait_ready("cache", namespace)
    old = secret_data("cache-redis", namespace)
    redis_from_url(old["REDIS_URL"]).set("kept", "yes")

    # Slow provider answers: a rotate that returned before the operator wrote the new Secret would be caught below.
    local_provider.admin.faults(latency_ms=1500)
    try:
        result = plugin(cluster, "rotate", "cache", "-n", namespace)
    finally:
        local_provider.admin.clear_faults()
    assert "password rotated" in result.stdout
    new = secret_data("cache-redis", namespace)  # already written when rotate returns: no waiting here
    assert new["REDIS_PASSWORD"] != old["REDIS_PASSWORD"]
    with pytest.raises(redis.AuthenticationError):
        redis_from_url(old["REDIS_URL"]).ping()
    assert redis_from_url(new["REDIS_URL"]).get("kept") == b"yes"
    # Through the plugin too. Eventually: once (in about ten runs) a reconcile reset the password a second time just
    # after rotate returned, leaving the Secret a moment behind the server (an operator race; reported).
    wait_for(
        lambda: (
            plugin(
                cluster, "connect", "cache", "-n", namespace, "--cacert", str(TLS_CA_FILE), "--command", "GET kept"
            ).stdout.strip()
            == "yes"
        ),
        30,
        message="connect reads the key with the Secret's password",
    )
    annotations = (get_json("redisdatabase", "cache", namespace) or {})["metadata"]["annotations"]
    assert annotations.get("redisdb.dev/rotate-password")
