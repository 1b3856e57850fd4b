"""Issue 17 items 1-3 through kubectl against the real control plane: the connection Secret's keys, labels and
annotations; allowedNamespaces and the in-use RedisProvider; pause, Observe and deletion protection (also with the
webhook down and the namespace being deleted).

The operator runs as a process with its validating webhook (failurePolicy Ignore); the local provider backs every
database with a real redis-server, and its admin API's call counters show what the operator asked of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from redisdb_dev.devrun import SYSTEM_NAMESPACE, fly_provider_manifests
from tests.harness.cluster import Cluster, KubectlError, apply, get_json, kubectl, wait_for
from tests.harness.local_provider import FLY_ORG, FLY_TOKEN, LocalProvider, redis_from_url
from tests.harness.operator import (
    UPSTASH_PROVIDER,
    OperatorProcess,
    condition,
    database,
    delete_at_provider,
    events_for,
    secret_data,
    wait_gone,
    wait_ready,
    webhook_down,
)

# What the operator asks the Fly API about one database (the shared `organization` list is the provider's, not the
# database's: the RedisProvider's own check makes it too).
FLY_DATABASE_CALLS = ("fly:addOn", "fly:createAddOn", "fly:updateAddOn", "fly:resetAddOnPassword", "fly:deleteAddOn")


def synced_reason(name: str, namespace: str, reason: str) -> dict[str, Any] | None:
    synced = condition(get_json("redisdatabase", name, namespace), "Synced")
    return synced if synced and synced["status"] == "False" and synced["reason"] == reason else None


def wait_synced_false(name: str, namespace: str, reason: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(lambda: synced_reason(name, namespace, reason), timeout, message=f"Synced=False {reason}")


def provider_ids(local_provider: LocalProvider) -> set[str]:
    return {d["id"] for d in local_provider.admin.databases()}


def fly_database_calls(local_provider: LocalProvider) -> dict[str, int]:
    counters = local_provider.admin.counters()
    return {operation: counters.get(operation, 0) for operation in FLY_DATABASE_CALLS}


def refused(manifest: dict[str, Any], namespace: str) -> str:
    with pytest.raises(KubectlError) as refusal:
        apply(manifest, namespace)
    return str(refusal.value.stderr)


# --- item 1: the connection Secret -------------------------------------------------------------------------------


def test_secret_keys_labels_and_annotations_survive_a_rotation(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str
) -> None:
    bad = database("cache", UPSTASH_PROVIDER, primaryRegion="us-east-1")
    bad["spec"]["connectionSecret"] = {"keys": {"CACHE_URL": "redis://{hostname}:{port}"}}
    message = refused(bad, namespace)
    assert "spec.connectionSecret.keys.CACHE_URL" in message and "{hostname}" in message, message
    assert "fix the template" in message

    manifest = database("cache", UPSTASH_PROVIDER, primaryRegion="us-east-1")
    manifest["spec"]["connectionSecret"] = {
        "name": "app-redis",
        "labels": {"team": "shop"},
        "annotations": {"secret.reloader.stakater.com/reload": "app-redis"},
        "keys": {
            "SPRING_DATA_REDIS_URL": "{url}",
            "CELERY_BROKER_URL": "rediss://:{password}@{host}:{port}/0",
            "UPSTASH_REDIS_REST_READONLY_TOKEN": "{readOnlyRestToken}",
            "BRACES": "{{not a field}}",
        },
    }
    apply(manifest, namespace)
    wait_ready("cache", namespace)
    data = secret_data("app-redis", namespace)
    assert data["SPRING_DATA_REDIS_URL"] == data["REDIS_URL"]
    assert (
        data["CELERY_BROKER_URL"] == f"rediss://:{data['REDIS_PASSWORD']}@{data['REDIS_HOST']}:{data['REDIS_PORT']}/0"
    )
    assert data["UPSTASH_REDIS_REST_READONLY_TOKEN"] and data["BRACES"] == "{not a field}"
    assert redis_from_url(data["SPRING_DATA_REDIS_URL"]).ping()
    secret = get_json("secret", "app-redis", namespace)
    assert secret is not None
    assert secret["metadata"]["labels"]["team"] == "shop"
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "redisdb-operator"
    assert secret["metadata"]["annotations"]["secret.reloader.stakater.com/reload"] == "app-redis"

    # someone (a backup tool, a reloader) labels and annotates the Secret; then the password is rotated
    kubectl("label", "secret", "app-redis", "-n", namespace, "backup=daily")
    kubectl("annotate", "secret", "app-redis", "-n", namespace, "example.com/owner=payments")
    kubectl("annotate", "rdb", "cache", "-n", namespace, "redisdb.dev/rotate-password=one", "--overwrite")
    wait_for(
        lambda: secret_data("app-redis", namespace)["REDIS_PASSWORD"] != data["REDIS_PASSWORD"],
        60,
        message="the Secret rewritten with the new password",
    )
    rotated = secret_data("app-redis", namespace)
    assert rotated["SPRING_DATA_REDIS_URL"] == rotated["REDIS_URL"] != data["REDIS_URL"]
    with pytest.raises(redis.AuthenticationError):  # the old password stops working at once
        redis_from_url(data["REDIS_URL"]).ping()
    secret = get_json("secret", "app-redis", namespace)
    assert secret is not None
    assert secret["metadata"]["labels"]["backup"] == "daily" and secret["metadata"]["labels"]["team"] == "shop"
    assert secret["metadata"]["annotations"]["example.com/owner"] == "payments"

    # a new spec label reaches the Secret (the content hash covers it) and the user's label still stays
    manifest["spec"]["connectionSecret"]["labels"] = {"team": "shop", "tier": "gold"}
    apply(manifest, namespace)
    wait_for(
        lambda: (
            ((get_json("secret", "app-redis", namespace) or {}).get("metadata", {}).get("labels") or {}).get("tier")
            == "gold"
        ),
        60,
        message="the new spec label on the Secret",
    )
    labels = (get_json("secret", "app-redis", namespace) or {})["metadata"]["labels"]
    assert labels["backup"] == "daily"
    kubectl("delete", "rdb", "cache", "-n", namespace, "--timeout=60s")


# --- item 2: tenancy ---------------------------------------------------------------------------------------------


@pytest.fixture
def tenant_provider(cluster: Cluster, local_provider: LocalProvider) -> Iterator[str]:
    """A Fly RedisProvider (same local account) that only namespaces labelled team=shop may use."""
    name = "tenant-fly"
    manifests = fly_provider_manifests(name, local_provider.url, organization=FLY_ORG, token=FLY_TOKEN)
    manifests[1]["spec"]["allowedNamespaces"] = {"matchLabels": {"team": "shop"}}
    apply(manifests)
    yield name
    kubectl("delete", "redisprovider", name, "--ignore-not-found", "--wait=false", check=False)
    kubectl("delete", "secret", f"{name}-credentials", "-n", SYSTEM_NAMESPACE, "--ignore-not-found", check=False)


def test_allowed_namespaces_at_admission_and_at_reconcile(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str, tenant_provider: str
) -> None:
    manifest = database("cache", tenant_provider)
    message = wait_for(
        lambda: "allowedNamespaces" in (text := refused(manifest, namespace)) and text,
        30,
        message="the webhook knows the tenant provider",
    )
    assert f"namespace {namespace} may not use RedisProvider {tenant_provider}" in message, message
    assert "team=shop" in message

    kubectl("label", "namespace", namespace, "team=shop")

    def admitted() -> bool:
        try:
            apply(manifest, namespace)
        except KubectlError:
            return False  # the namespace index has not seen the label yet
        return True

    wait_for(admitted, 30, message="admitted once the namespace is labelled")
    wait_ready("cache", namespace)

    # the label is removed: the next resync stops managing it and says why (the database itself is kept)
    kubectl("label", "namespace", namespace, "team-")
    synced = wait_synced_false("cache", namespace, "NamespaceNotAllowed")
    assert "team=shop" in synced["message"] and tenant_provider in synced["message"]
    kubectl("label", "namespace", namespace, "team=shop")
    wait_for(lambda: condition(get_json("redisdatabase", "cache", namespace), "Synced")["status"] == "True", 60)  # type: ignore[index]
    kubectl("delete", "rdb", "cache", "-n", namespace, "--timeout=60s")


def test_a_provider_in_use_is_not_deleted_until_its_databases_are_gone(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str, tenant_provider: str
) -> None:
    kubectl("label", "namespace", namespace, "team=shop")
    manifest = database("cache", tenant_provider, deletionPolicy="Orphan")
    wait_for(lambda: not _apply_fails(manifest, namespace), 30, message="admitted in the labelled namespace")
    database_id = wait_ready("cache", namespace)["status"]["databaseId"]

    kubectl("delete", "redisprovider", tenant_provider, "--wait=false")

    def held() -> dict[str, Any] | None:
        provider = get_json("redisprovider", tenant_provider)
        return provider if provider and (provider.get("status") or {}).get("usedBy") else None

    provider = wait_for(held, 60, message="status.usedBy of the provider being deleted")
    assert provider["metadata"].get("deletionTimestamp")
    assert provider["status"]["usedBy"] == [f"{namespace}/cache"]
    in_use = [e for e in _cluster_events(tenant_provider) if e["reason"] == "InUse"]
    assert in_use and f"{namespace}/cache" in in_use[0]["message"], in_use
    assert condition(get_json("redisdatabase", "cache", namespace), "Ready")["status"] == "True"  # type: ignore[index]

    kubectl("delete", "rdb", "cache", "-n", namespace, "--timeout=60s")
    wait_gone("redisprovider", tenant_provider, None, timeout=90)
    delete_at_provider(local_provider, database_id)  # Orphan kept it


def _apply_fails(manifest: dict[str, Any], namespace: str) -> bool:
    try:
        apply(manifest, namespace)
    except KubectlError:
        return True
    return False


def _cluster_events(name: str) -> list[dict[str, Any]]:
    out = kubectl("get", "events", "-A", "--field-selector", f"involvedObject.name={name}", "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


# --- item 3: pause, Observe, deletion protection -----------------------------------------------------------------


def test_pause_makes_no_provider_calls_and_keeps_drift(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str
) -> None:
    apply(database("paused"), namespace)  # Fly: the only Fly database here
    paused_id = wait_ready("paused", namespace)["status"]["databaseId"]
    control = database("control", UPSTASH_PROVIDER, primaryRegion="us-east-1")
    apply(control, namespace)  # Upstash: its resyncs show time passing without sleeping
    control_id = wait_ready("control", namespace)["status"]["databaseId"]
    secret_before = get_json("secret", "paused-redis", namespace)

    kubectl("annotate", "rdb", "paused", "-n", namespace, "redisdb.dev/paused=true")
    synced = wait_synced_false("paused", namespace, "Paused")
    assert "redisdb.dev/paused-" in synced["message"]
    before = fly_database_calls(local_provider)
    local_provider.admin.drift(paused_id, eviction=True)  # a change in the provider's console
    kubectl("annotate", "rdb", "paused", "-n", namespace, "redisdb.dev/rotate-password=while-paused")
    for _ in range(2):  # two repairs of the other database: at least one resync interval has passed
        local_provider.admin.drift(control_id, eviction=True)
        wait_for(lambda: not local_provider.admin.database(control_id)["eviction"], 60, message="control repaired")
    assert fly_database_calls(local_provider) == before
    assert local_provider.admin.database(paused_id)["eviction"] is True  # the drift is kept
    obj = get_json("redisdatabase", "paused", namespace)
    assert condition(obj, "Ready")["status"] == "True"  # type: ignore[index]
    assert (get_json("secret", "paused-redis", namespace) or {})["data"] == (secret_before or {})["data"]

    # deleting a paused database waits and says how to go on
    kubectl("delete", "rdb", "paused", "-n", namespace, "--wait=false")
    message = wait_for(
        lambda: (s := synced_reason("paused", namespace, "Paused")) and "force-orphan" in s["message"] and s["message"],
        60,
        message="the paused deletion's message",
    )
    assert "redisdb.dev/paused-" in message
    assert paused_id in provider_ids(local_provider) and fly_database_calls(local_provider) == before

    kubectl("annotate", "rdb", "paused", "-n", namespace, "redisdb.dev/paused-")
    wait_gone("redisdatabase", "paused", namespace, timeout=90)
    assert paused_id not in provider_ids(local_provider)  # unpaused: deletionPolicy Delete applied
    kubectl("delete", "rdb", "control", "-n", namespace, "--timeout=60s")


def test_observe_adopts_read_only_and_survives_delete(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str
) -> None:
    # a database made elsewhere long ago (here: by a resource that orphaned it, then aged an hour)
    origin = database("origin", deletionPolicy="Orphan")
    origin["spec"]["name"] = "legacy-cache"
    apply(origin, namespace)
    theirs = wait_ready("origin", namespace)["status"]["databaseId"]
    redis_from_url(secret_data("origin-redis", namespace)["REDIS_URL"]).set("k", "v")
    kubectl("delete", "rdb", "origin", "-n", namespace, "--timeout=60s")
    wait_gone("redisdatabase", "origin", namespace)
    local_provider.admin.drift(theirs, age_seconds=3600)
    before = local_provider.admin.database(theirs)
    counters_before = fly_database_calls(local_provider)

    observer = database("observer", readRegions=["ams"], plan="fixed_1gb", eviction=True, deletionPolicy="Delete")
    observer["spec"]["name"] = "legacy-cache"
    observer["spec"]["managementPolicy"] = "Observe"
    observer["metadata"]["annotations"] = {"redisdb.dev/rotate-password": "please"}
    apply(observer, namespace)
    obj = wait_ready("observer", namespace)
    assert obj["status"]["databaseId"] == theirs  # adopted without the NameTaken hold
    assert (obj["status"]["plan"], obj["status"]["readRegions"], obj["status"]["eviction"]) == (
        before["plan"],
        before["read_regions"],
        before["eviction"],
    )  # the provider's values, not the spec's
    assert redis_from_url(secret_data("observer-redis", namespace)["REDIS_URL"]).get("k") == b"v"
    assert "Adopted" in {e["reason"] for e in events_for("observer", namespace)}
    after = local_provider.admin.database(theirs)
    assert (after["plan"], after["read_regions"], after["eviction"]) == (
        before["plan"],
        before["read_regions"],
        before["eviction"],
    )
    calls = fly_database_calls(local_provider)
    assert calls["fly:updateAddOn"] == counters_before["fly:updateAddOn"]  # never changed
    assert calls["fly:resetAddOnPassword"] == counters_before["fly:resetAddOnPassword"]  # never rotated
    assert calls["fly:createAddOn"] == counters_before["fly:createAddOn"]

    kubectl("delete", "rdb", "observer", "-n", namespace, "--timeout=60s")
    wait_gone("redisdatabase", "observer", namespace)
    assert theirs in provider_ids(local_provider)  # deletionPolicy Delete, but Observe never deletes
    delete_at_provider(local_provider, theirs)


def test_deletion_protection_refuses_a_delete_and_holds_without_the_webhook(
    operator: OperatorProcess,
    local_provider: LocalProvider,
    namespace: str,
) -> None:
    apply(database("precious", deletionProtection=True), namespace)
    database_id = wait_ready("precious", namespace)["status"]["databaseId"]
    url = secret_data("precious-redis", namespace)["REDIS_URL"]
    redis_from_url(url).set("k", "v")

    with pytest.raises(KubectlError) as refusal:
        kubectl("delete", "rdb", "precious", "-n", namespace, "--timeout=30s")
    assert "spec.deletionProtection: true" in refusal.value.stderr
    assert '"deletionProtection":false' in refusal.value.stderr  # the way out
    assert get_json("redisdatabase", "precious", namespace) is not None

    # the webhook goes down (its failurePolicy is Ignore): deletes get through; the finalizer must hold
    with webhook_down():
        kubectl("delete", "namespace", namespace, "--wait=false")
        synced = wait_synced_false("precious", namespace, "DeletionProtected", timeout=90)
        assert "kubectl patch rdb precious" in synced["message"] and '"deletionProtection":false' in synced["message"]
        obj = get_json("redisdatabase", "precious", namespace)
        assert obj is not None and obj["metadata"].get("deletionTimestamp")
        assert get_json("namespace", namespace) is not None  # the namespace waits too
        assert database_id in provider_ids(local_provider)
        assert redis_from_url(url).get("k") == b"v"  # the data is untouched
        # (no Event here: a terminating namespace accepts no new objects; the condition carries the message)

        # released: the deletion proceeds by deletionPolicy (Delete)
        kubectl(
            "patch", "rdb", "precious", "-n", namespace, "--type=merge", "-p", '{"spec":{"deletionProtection":false}}'
        )
        wait_for(lambda: get_json("namespace", namespace) is None, 120, message="namespace deletion completes")
        assert database_id not in provider_ids(local_provider)
