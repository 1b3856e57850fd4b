"""What goes wrong in real life: credentials that arrive late or are wrong, provider outages and rate limits,
and an operator killed in the middle of a create. Each converges by itself, without hot loops or duplicates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from redisdb_dev.devrun import upstash_provider_manifests
from tests.harness.cluster import Cluster, apply, get_json, kubectl, wait_for
from tests.harness.local_provider import (
    FLY_ORG,
    FLY_TOKEN,
    OTHER_UPSTASH_API_KEY,
    OTHER_UPSTASH_EMAIL,
    LocalProvider,
    redis_from_url,
)
from tests.harness.operator import (
    SYSTEM_NAMESPACE,
    OperatorProcess,
    condition,
    database,
    delete_at_provider,
    secret_data,
    wait_gone,
    wait_ready,
)


def delete_databases_of(provider: str) -> None:
    """Delete every RedisDatabase of `provider` and wait until they are gone: run before its credentials Secret
    goes, since without credentials a deletion waits (CredentialsNotFound) and the provider stays in use."""
    listed = json.loads(kubectl("get", "redisdatabases", "-A", "-o", "json").stdout)["items"]
    ours = [item for item in listed if item["spec"]["providerRef"]["name"] == provider]
    names = [(item["metadata"]["name"], item["metadata"]["namespace"]) for item in ours]
    for name, namespace in names:
        kubectl("delete", "redisdatabase", name, "-n", namespace, "--ignore-not-found", "--wait=false")
    for name, namespace in names:
        wait_gone("redisdatabase", name, namespace, timeout=120)


def synced_reason(name: str, namespace: str) -> str | None:
    synced = condition(get_json("redisdatabase", name, namespace), "Synced")
    return synced["reason"] if synced and synced["status"] == "False" else None


@pytest.fixture
def late_provider(cluster: Cluster, local_provider: LocalProvider, operator: OperatorProcess) -> Iterator[str]:
    """A RedisProvider whose credentials Secret does not exist yet."""
    apply(
        {
            "apiVersion": "redisdb.dev/v1alpha1",
            "kind": "RedisProvider",
            "metadata": {"name": "late-fly"},
            "spec": {
                "type": "fly",
                "url": local_provider.url,
                "organization": FLY_ORG,
                "credentialsSecretRef": {"namespace": SYSTEM_NAMESPACE, "name": "late-fly-credentials"},
            },
        }
    )
    yield "late-fly"
    delete_databases_of("late-fly")
    kubectl("delete", "secret", "late-fly-credentials", "-n", SYSTEM_NAMESPACE, "--ignore-not-found")
    kubectl("delete", "redisprovider", "late-fly", "--ignore-not-found", "--wait=false")


def credentials(token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "late-fly-credentials", "namespace": SYSTEM_NAMESPACE},
        "stringData": {"token": token},
    }


def test_credentials_created_after_the_database_converge(
    operator: OperatorProcess, namespace: str, late_provider: str
) -> None:
    apply(database("cache", late_provider), namespace)
    wait_for(lambda: synced_reason("cache", namespace) == "CredentialsNotFound", 30, message="CredentialsNotFound")
    message = condition(get_json("redisdatabase", "cache", namespace), "Synced")["message"]  # type: ignore[index]
    assert f"{SYSTEM_NAMESPACE}/late-fly-credentials" in message
    apply(credentials(FLY_TOKEN))  # GitOps ordering: the Secret arrives later
    wait_ready("cache", namespace, timeout=90)
    assert redis_from_url(secret_data("cache-redis", namespace)["REDIS_URL"]).ping()


def test_wrong_credentials_give_a_clear_condition_and_recover(
    operator: OperatorProcess, namespace: str, late_provider: str
) -> None:
    apply(credentials("not-the-token"))
    apply(database("cache", late_provider), namespace)
    wait_for(lambda: synced_reason("cache", namespace) == "Unauthorized", 60, message="Unauthorized condition")
    message = condition(get_json("redisdatabase", "cache", namespace), "Synced")["message"]  # type: ignore[index]
    assert "credentials" in message and "not-the-token" not in message
    apply(credentials(FLY_TOKEN))
    wait_ready("cache", namespace, timeout=90)


@pytest.fixture
def outage_provider(cluster: Cluster, local_provider: LocalProvider, operator: OperatorProcess) -> Iterator[str]:
    """A RedisProvider on its own Upstash account: the provider's call log tells its calls from everyone else's."""
    apply(
        upstash_provider_manifests(
            "outage-upstash", local_provider.upstash_url, email=OTHER_UPSTASH_EMAIL, api_key=OTHER_UPSTASH_API_KEY
        )
    )
    yield "outage-upstash"
    delete_databases_of("outage-upstash")
    kubectl("delete", "redisprovider", "outage-upstash", "--ignore-not-found", "--wait=false")
    kubectl("delete", "secret", "outage-upstash-credentials", "-n", SYSTEM_NAMESPACE, "--ignore-not-found")


# A hot loop makes this many calls in well under a second. With backoff they take at least MIN_SECONDS (measured:
# bursts of 3 transport attempts about 2 s apart from the reconcile, the resync timer and the provider check, 24
# calls over ~12 s). A lower bound on time, waited for by count: a slow machine only makes the spread longer.
CALLS_WATCHED, MIN_SECONDS = 24, 8.0


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        pytest.param({"fail_status": 503}, "ProviderUnavailable", id="503"),
        pytest.param({"fail_status": 429, "retry_after": 2}, "RateLimited", id="429"),
    ],
)
def test_provider_outage_backs_off_and_converges(
    operator: OperatorProcess,
    local_provider: LocalProvider,
    namespace: str,
    outage_provider: str,
    faults: dict[str, Any],
    reason: str,
) -> None:
    def calls() -> list[dict[str, Any]]:
        """This provider's calls answered with the injected failure (a previous test's clean-up may add others)."""
        made = local_provider.admin.calls(account=OTHER_UPSTASH_EMAIL)
        return [call for call in made if call["status"] == faults["fail_status"]]

    already = len(calls())
    local_provider.admin.faults(fail_next=100_000, **faults)
    try:
        apply(database("cache", outage_provider, primaryRegion="us-east-1"), namespace)
        wait_for(lambda: synced_reason("cache", namespace) == reason, 60, message=f"Synced=False {reason}")
        watched = wait_for(
            lambda: (made := calls()[already:]) and len(made) >= CALLS_WATCHED and made[:CALLS_WATCHED],
            120,
            message=f"{CALLS_WATCHED} calls on the outage provider",
        )
    finally:
        local_provider.admin.clear_faults()
    spread = watched[-1]["at"] - watched[0]["at"]
    timeline = " ".join(f"{call['at'] - watched[0]['at']:.2f}" for call in watched)
    assert spread >= MIN_SECONDS, f"{CALLS_WATCHED} calls in {spread:.1f}s, a hot loop: {timeline}"
    wait_ready("cache", namespace, timeout=120)
    assert len([d for d in local_provider.admin.databases() if d["name"] == f"{namespace}-cache"]) == 1


def test_deletion_with_the_credentials_gone_has_a_documented_escape(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str, late_provider: str
) -> None:
    apply(credentials(FLY_TOKEN))
    apply(database("cache", late_provider), namespace)
    database_id = wait_ready("cache", namespace)["status"]["databaseId"]
    kubectl("delete", "secret", "late-fly-credentials", "-n", SYSTEM_NAMESPACE)
    kubectl("delete", "rdb", "cache", "-n", namespace, "--wait=false")

    def blocked_message() -> str | None:
        synced = condition(get_json("redisdatabase", "cache", namespace), "Synced")
        return synced["message"] if synced and synced["status"] == "False" else None

    message = wait_for(blocked_message, 60, message="a condition explaining why deletion waits")
    assert "redisdb.dev/force-orphan=true" in message and "late-fly-credentials" in message
    kubectl("annotate", "rdb", "cache", "-n", namespace, "redisdb.dev/force-orphan=true")
    wait_for(lambda: get_json("redisdatabase", "cache", namespace) is None, 60, message="deletion completes")
    assert database_id in {d["id"] for d in local_provider.admin.databases()}  # kept, as the annotation says
    delete_at_provider(local_provider, database_id)


def test_the_provider_reports_its_own_health(
    operator: OperatorProcess, local_provider: LocalProvider, late_provider: str
) -> None:
    def provider_ready(reason: str, status: str) -> dict[str, Any] | None:
        obj = get_json("redisprovider", late_provider)
        ready = condition(obj, "Ready")
        return obj if ready and ready["status"] == status and ready["reason"] == reason else None

    wait_for(lambda: provider_ready("CredentialsNotFound", "False"), 60, message="provider CredentialsNotFound")
    apply(credentials("not-the-token"))
    wait_for(lambda: provider_ready("Unauthorized", "False"), 90, message="provider Unauthorized")
    apply(credentials(FLY_TOKEN))
    obj = wait_for(lambda: provider_ready("CredentialsAccepted", "True"), 90, message="provider Ready")
    assert obj["status"]["databases"] == len(
        [d for d in local_provider.admin.databases() if d["api"] == "fly" and d["owner"] == FLY_ORG]
    )
    table = kubectl("get", "redisprovider", late_provider).stdout
    assert table.split()[:5] == ["NAME", "TYPE", "READY", "DATABASES", "AGE"]
    # kopf's record of the handled spec is kept (the schema has the field): else every status write of the check
    # would look like a new RedisProvider to kopf and run the check again
    handled = (get_json("redisprovider", late_provider) or {})["status"]["kopf"]["lastHandledConfiguration"]
    assert '"type":"fly"' in handled
