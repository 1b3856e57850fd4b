"""The mission through kubectl: edit in place, rotate, drift repair, deletion policies, namespace deletion.

Each test drives the real kubectl against the real kube-apiserver; the operator runs as a process; the local
provider backs every database with real redis-servers. Both wire APIs (fly, upstash) are covered.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
import redis

from tests.harness.cluster import apply, get_json, kubectl, wait_for
from tests.harness.local_provider import LocalProvider, redis_from_url
from tests.harness.operator import (
    FLY_PROVIDER,
    UPSTASH_PROVIDER,
    OperatorProcess,
    condition,
    delete_at_provider,
    events_for,
    secret_data,
    wait_gone,
    wait_ready,
)

FLY = {"provider": FLY_PROVIDER, "primary": "cdg", "read": ["ams"], "more": ["ams", "fra"], "plan": "fixed_1gb"}
UPSTASH = {
    "provider": UPSTASH_PROVIDER,
    "primary": "us-east-1",
    "read": ["eu-west-1"],
    "more": ["eu-west-1", "ap-south-1"],
    "plan": "fixed_1gb",
}
BOTH = [pytest.param(FLY, id="fly"), pytest.param(UPSTASH, id="upstash")]


def database(name: str, case: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "redisdb.dev/v1alpha1",
        "kind": "RedisDatabase",
        "metadata": {"name": name},
        "spec": {"providerRef": {"name": case["provider"]}, "primaryRegion": case["primary"], **spec},
    }


def connect(namespace: str, secret: str = "cache-redis") -> redis.Redis:
    return redis_from_url(secret_data(secret, namespace)["REDIS_URL"])


def replica_ports(local_provider: LocalProvider, database_id: str) -> dict[str, int]:
    return {r["region"]: r["port"] for r in local_provider.admin.database(database_id)["replicas"]}


def maxmemory_policy(client: redis.Redis) -> str:
    return str(client.config_get("maxmemory-policy")["maxmemory-policy"])


def event_reasons(name: str, namespace: str) -> set[str]:
    return {event["reason"] for event in events_for(name, namespace)}


@pytest.mark.parametrize("case", BOTH)
def test_edit_read_regions_plan_and_eviction_in_place(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str, case: dict[str, Any]
) -> None:
    apply(database("cache", case, readRegions=case["read"]), namespace)
    obj = wait_ready("cache", namespace)
    database_id = obj["status"]["databaseId"]
    assert obj["metadata"]["generation"] == 1
    client = connect(namespace)
    client.set("k", "v")
    # the replica serves what the primary wrote
    (replica_port,) = replica_ports(local_provider, database_id).values()
    secret = secret_data("cache-redis", namespace)
    scheme = "rediss" if secret["REDIS_URL"].startswith("rediss://") else "redis"
    assert scheme == ("rediss" if case is UPSTASH else "redis")  # Upstash is TLS-only, Fly has none
    replica = redis_from_url(f"{scheme}://default:{secret['REDIS_PASSWORD']}@127.0.0.1:{replica_port}")
    wait_for(lambda: replica.get("k") == b"v", 20, message="replica has the key")

    # add a read region
    apply(database("cache", case, readRegions=case["more"]), namespace)
    obj = wait_ready("cache", namespace, generation=2)
    assert sorted(obj["status"]["readRegions"]) == sorted(case["more"])
    assert sorted(replica_ports(local_provider, database_id)) == sorted(case["more"])
    assert condition(obj, "Synced")["observedGeneration"] == 2  # type: ignore[index]
    assert condition(obj, "Ready")["observedGeneration"] == 2  # type: ignore[index]

    # remove every read region, change plan and eviction in the same edit
    plan_calls_before = local_provider.admin.counters().get("upstash:change-plan", 0)
    apply(database("cache", case, readRegions=[], plan=case["plan"], eviction=True), namespace)
    obj = wait_ready("cache", namespace, generation=3)
    status = obj["status"]
    # Upstash answers type "paid" for a fixed plan: once re-read, the plan shows as the provider's word
    plans = (case["plan"], "paid") if case is UPSTASH else (case["plan"],)
    assert (status["readRegions"], status["eviction"]) == ([], True) and status["plan"] in plans
    provider_side = local_provider.admin.database(database_id)
    assert provider_side["replicas"] == [] and provider_side["plan"] == case["plan"] and provider_side["eviction"]
    assert maxmemory_policy(client) != "noeviction"
    assert int(client.config_get("maxmemory")["maxmemory"]) == 1024**3

    apply(database("cache", case, readRegions=[], plan=case["plan"], eviction=False), namespace)
    wait_ready("cache", namespace, generation=4)
    assert maxmemory_policy(client) == "noeviction"
    assert client.get("k") == b"v"  # in place: same database, same data
    assert "Updated" in event_reasons("cache", namespace)
    if case is UPSTASH:
        # The plan can no longer be read back (type "paid"): reported once, and change-plan is never sent again,
        # however many reconciles follow.
        def synced_message() -> str:
            synced = condition(get_json("redisdatabase", "cache", namespace=namespace) or {}, "Synced") or {}
            return str(synced.get("message", ""))

        wait_for(lambda: "cannot be verified" in synced_message(), 60, message="the unobservable plan is reported")
        assert "PlanNotObservable" in event_reasons("cache", namespace)
        lists = local_provider.admin.counters().get("upstash:list", 0)
        wait_for(lambda: local_provider.admin.counters().get("upstash:list", 0) >= lists + 2, 120, message="resyncs")
        assert local_provider.admin.counters().get("upstash:change-plan", 0) == plan_calls_before + 1
        assert (get_json("redisdatabase", "cache", namespace=namespace) or {})["status"]["plan"] == case["plan"]
        # A later spec.plan change is still sent, once: judged against the plan last set, not the provider's word.
        apply(database("cache", case, readRegions=[], plan="fixed_5gb", eviction=False), namespace)
        assert wait_ready("cache", namespace, generation=5)["status"]["plan"] == "fixed_5gb"
        assert local_provider.admin.database(database_id)["plan"] == "fixed_5gb"
        lists = local_provider.admin.counters().get("upstash:list", 0)
        wait_for(lambda: local_provider.admin.counters().get("upstash:list", 0) >= lists + 2, 120, message="resyncs")
        assert local_provider.admin.counters().get("upstash:change-plan", 0) == plan_calls_before + 2
    client.close()
    replica.close()


def refuses(url: str, port: int | None = None) -> bool:
    """True when the server at `url` (or the same host on `port`, a replica) refuses the URL's password."""
    if port is not None:
        parts = urllib.parse.urlsplit(url)
        url = parts._replace(netloc=f"{parts.netloc.rpartition(':')[0]}:{port}").geturl()
    client = redis_from_url(url)
    try:
        client.ping()
    except redis.AuthenticationError:
        return True
    finally:
        client.close()
    return False


def event_count(name: str, namespace: str, reason: str) -> int:
    """How many times an Event of `reason` was posted (repeats are folded into one Event with a count)."""
    return sum(int(event.get("count") or 1) for event in events_for(name, namespace) if event["reason"] == reason)


@pytest.mark.parametrize("case", BOTH)
def test_rotate_password_via_annotation(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str, case: dict[str, Any]
) -> None:
    apply(database("cache", case, readRegions=case["read"]), namespace)
    database_id = wait_ready("cache", namespace)["status"]["databaseId"]
    old = secret_data("cache-redis", namespace)
    redis_from_url(old["REDIS_URL"]).set("kept", "yes")
    replicas = replica_ports(local_provider, database_id)
    assert sorted(replicas) == sorted(case["read"])

    kubectl("annotate", "rdb", "cache", "-n", namespace, "redisdb.dev/rotate-password=first", "--overwrite")

    def rotated() -> dict[str, Any] | None:
        obj = get_json("redisdatabase", "cache", namespace)
        return obj if (obj or {}).get("status", {}).get("lastHandledRotation") == "first" else None

    obj = wait_for(rotated, 60, message="rotation handled")
    assert obj["status"]["passwordRotatedAt"]
    new = secret_data("cache-redis", namespace)
    assert new["REDIS_PASSWORD"] != old["REDIS_PASSWORD"]
    assert new["REDIS_URL"] != old["REDIS_URL"]
    # the old password is refused by the primary and by every replica; the new one works everywhere
    assert refuses(old["REDIS_URL"]), "the primary still takes the old password"
    for region, port in replicas.items():
        assert refuses(old["REDIS_URL"], port), f"the replica in {region} still takes the old password"
        assert not refuses(new["REDIS_URL"], port), f"the replica in {region} refuses the new password"
    client = redis_from_url(new["REDIS_URL"])
    assert client.get("kept") == b"yes"
    assert event_count("cache", namespace, "PasswordRotated") == 1

    # The same annotation value again does nothing: sent with a spec change, so that the operator provably
    # handled the object (observedGeneration moves on) before the Secret and the Events are checked.
    again = database("cache", case, readRegions=case["read"], eviction=True)
    again["metadata"]["annotations"] = {"redisdb.dev/rotate-password": "first"}
    apply(again, namespace)
    generation = int(get_json("redisdatabase", "cache", namespace)["metadata"]["generation"])  # type: ignore[index]
    assert generation >= 2
    wait_ready("cache", namespace, generation=generation)
    assert maxmemory_policy(client) != "noeviction", "the spec change was applied"
    assert secret_data("cache-redis", namespace) == new
    assert event_count("cache", namespace, "PasswordRotated") == 1
    assert not refuses(new["REDIS_URL"])


@pytest.mark.parametrize("case", BOTH)
def test_drift_is_repaired_by_the_resync(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str, case: dict[str, Any]
) -> None:
    apply(database("cache", case, readRegions=case["more"], plan=case["plan"]), namespace)
    obj = wait_ready("cache", namespace)
    database_id = obj["status"]["databaseId"]
    client = connect(namespace)
    assert maxmemory_policy(client) == "noeviction" and int(client.config_get("maxmemory")["maxmemory"]) == 1024**3

    # someone removes a replica, enables eviction and (Fly) changes the plan in the provider's console. Upstash
    # answers type "paid" for every fixed plan, so a plan change there cannot be observed, hence not repaired
    # (test_edit_read_regions_plan_and_eviction_in_place proves it is reported as PlanNotObservable).
    plan_drift = {"plan": "fixed_250mb"} if case is FLY else {}
    local_provider.admin.drift(database_id, read_regions=case["read"], eviction=True, **plan_drift)
    assert maxmemory_policy(client) != "noeviction", "the drift reached redis-server"
    assert int(client.config_get("maxmemory")["maxmemory"]) == (250 * 1024**2 if plan_drift else 1024**3)

    def repaired_in_redis() -> bool:
        """What redis-server itself says, not the provider's record: policy, memory and attached replicas."""
        replication = client.info("replication")
        return (
            maxmemory_policy(client) == "noeviction"
            and int(client.config_get("maxmemory")["maxmemory"]) == 1024**3
            and replication["connected_slaves"] == len(case["more"])
        )

    wait_for(repaired_in_redis, 60, message="drift repaired in redis-server (policy, maxmemory, replicas)")
    for region, port in replica_ports(local_provider, database_id).items():
        replica = redis_from_url(secret_data("cache-redis", namespace)["REDIS_URL"].rpartition(":")[0] + f":{port}")
        assert replica.info("replication")["master_link_status"] == "up", region
    wait_for(lambda: "DriftRepaired" in event_reasons("cache", namespace), 30, message="DriftRepaired event")
    client.close()

    # someone deletes the database at the provider: it is re-created and the Secret follows
    old_url = secret_data("cache-redis", namespace)["REDIS_URL"]
    delete_at_provider(local_provider, database_id)

    def recreated() -> dict[str, Any] | None:
        current = get_json("redisdatabase", "cache", namespace)
        new_id = (current or {}).get("status", {}).get("databaseId")
        ready = condition(current, "Ready")
        return current if new_id and new_id != database_id and ready and ready["status"] == "True" else None

    obj = wait_for(recreated, 60, message="database re-created")
    wait_for(lambda: secret_data("cache-redis", namespace)["REDIS_URL"] != old_url, 30, message="Secret updated")
    assert connect(namespace).ping()
    assert sorted(replica_ports(local_provider, obj["status"]["databaseId"])) == sorted(case["more"])
    assert "DriftRecreated" in event_reasons("cache", namespace)


@pytest.mark.parametrize("case", BOTH)
def test_delete_policies(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str, case: dict[str, Any]
) -> None:
    apply(
        [database("gone", case, readRegions=case["read"]), database("kept", case, deletionPolicy="Orphan")], namespace
    )
    gone_id = wait_ready("gone", namespace)["status"]["databaseId"]
    kept_id = wait_ready("kept", namespace)["status"]["databaseId"]
    kept_client = connect(namespace, "kept-redis")
    kept_client.set("kept", "still here")
    gone_pids = [local_provider.admin.database(gone_id)["pid"]] + [
        r["pid"] for r in local_provider.admin.database(gone_id)["replicas"]
    ]

    kubectl("delete", "rdb", "gone", "kept", "-n", namespace, "--timeout=60s")
    wait_gone("redisdatabase", "gone", namespace)
    wait_gone("redisdatabase", "kept", namespace)
    ids = {d["id"] for d in local_provider.admin.databases()}
    assert gone_id not in ids
    assert kept_id in ids  # Orphan keeps the provider database
    assert kept_client.ping() and kept_client.get("kept") == b"still here", "the kept database still serves"
    kept_client.close()
    for pid in gone_pids:
        wait_for(lambda pid=pid: not _alive(pid), 20, message=f"redis-server {pid} stopped")
    wait_for(lambda: get_json("secret", "gone-redis", namespace) is None, 90, message="Secret garbage-collected")
    delete_at_provider(local_provider, kept_id)  # tidy up what Orphan left behind


@pytest.mark.parametrize("case", BOTH)
def test_an_older_database_of_the_same_name_is_taken_over_only_when_asked(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str, case: dict[str, Any]
) -> None:
    """Someone's database already has the provider-side name: never managed (or destroyed) unless adopted."""
    apply(database("cache", case, deletionPolicy="Orphan"), namespace)
    theirs = wait_ready("cache", namespace)["status"]["databaseId"]
    connect(namespace).set("owner", "someone else")
    kubectl("delete", "rdb", "cache", "-n", namespace, "--timeout=60s")
    wait_gone("redisdatabase", "cache", namespace)
    local_provider.admin.drift(theirs, age_seconds=3600)  # made an hour ago, long before the next RedisDatabase
    wait_for(lambda: get_json("secret", "cache-redis", namespace) is None, 90, message="Secret garbage-collected")

    apply(database("cache", case, readRegions=case["read"]), namespace)  # a new resource of the same name

    def name_taken() -> dict[str, Any] | None:
        synced = condition(get_json("redisdatabase", "cache", namespace), "Synced")
        return synced if synced and synced["status"] == "False" and synced["reason"] == "NameTaken" else None

    message = wait_for(name_taken, 60, message="Synced=False NameTaken")["message"]
    assert theirs in message and "redisdb.dev/adopt=true" in message
    assert local_provider.admin.database(theirs)["read_regions"] == []  # not touched
    assert get_json("secret", "cache-redis", namespace) is None  # their password is not published

    kubectl("delete", "rdb", "cache", "-n", namespace, "--timeout=60s")  # Delete policy, but not ours to delete
    wait_gone("redisdatabase", "cache", namespace)
    assert theirs in {d["id"] for d in local_provider.admin.databases()}

    adopting = database("cache", case, readRegions=case["read"])
    adopting["metadata"]["annotations"] = {"redisdb.dev/adopt": "true"}
    apply(adopting, namespace)
    adopted = wait_ready("cache", namespace)
    assert adopted["status"]["databaseId"] == theirs
    assert connect(namespace).get("owner") == b"someone else"
    assert sorted(local_provider.admin.database(theirs)["read_regions"]) == case["read"]
    kubectl("delete", "rdb", "cache", "-n", namespace, "--timeout=60s")  # adopted: now ours to delete
    wait_gone("redisdatabase", "cache", namespace)
    assert theirs not in {d["id"] for d in local_provider.admin.databases()}


def test_an_upgrade_removes_the_old_kopf_bookkeeping(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str
) -> None:
    """Objects handled by a release that kept kopf's records under redisdb.dev/: the marker would hide the user's
    redisdb.dev/* annotations (rotate-password) from kopf's change detection, so the first reconcile drops it."""
    legacy = database("cache", FLY)
    legacy["metadata"]["annotations"] = {
        "redisdb.dev/kopf-managed": "yes",
        "redisdb.dev/last-handled-configuration": '{"spec":{"primaryRegion":"cdg"}}\n',
        "redisdb.dev/keep-me": "a user's annotation",
    }
    apply(legacy, namespace)
    wait_ready("cache", namespace)

    def cleaned() -> dict[str, str] | None:
        annotations = ((get_json("redisdatabase", "cache", namespace) or {}).get("metadata") or {}).get("annotations")
        return annotations if annotations and "redisdb.dev/kopf-managed" not in annotations else None

    annotations = wait_for(cleaned, 30, message="the legacy kopf annotations removed")
    assert "redisdb.dev/last-handled-configuration" not in annotations
    assert annotations["redisdb.dev/keep-me"] == "a user's annotation"
    # kopf's own record is in the status now, written with the outcome (no annotation write of its own)
    assert "kopf.redisdb.dev/last-handled-configuration" not in annotations
    record = (get_json("redisdatabase", "cache", namespace) or {})["status"]["kopf"]["lastHandledConfiguration"]
    assert json.loads(record)["spec"]["primaryRegion"] == FLY["primary"]
    kubectl("delete", "rdb", "cache", "-n", namespace, "--timeout=60s")


def test_deleting_the_namespace_deletes_its_databases(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str
) -> None:
    apply([database("one", FLY), database("two", UPSTASH, readRegions=UPSTASH["read"])], namespace)
    ids = {wait_ready(name, namespace)["status"]["databaseId"] for name in ("one", "two")}
    kubectl("delete", "namespace", namespace, "--wait=false")
    wait_for(lambda: get_json("namespace", namespace) is None, 120, message="namespace deletion completes")
    remaining = {d["id"] for d in local_provider.admin.databases()}
    assert not ids & remaining


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] not in ("Z", "X")
    except FileNotFoundError:
        return False
