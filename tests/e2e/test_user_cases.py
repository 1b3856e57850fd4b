"""What users do that nothing else covers, end to end through kubectl against the real apiserver: the connection
Secret deleted, edited, or taken by someone else's Secret; a custom Secret name; the provider's credentials
rotated while databases are Ready; a password reset at the provider by someone else; a namespace of 50 databases
deleted; the longest valid names and unicode annotations.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import httpx
import pytest
import redis
import yaml

from redisdb_dev.devrun import fly_provider_manifests
from tests.harness.cluster import Cluster, KubectlError, apply, get_json, kubectl, wait_for
from tests.harness.local_provider import FLY_ORG, LocalProvider, redis_from_url
from tests.harness.operator import (
    FLY_PROVIDER,
    SYSTEM_NAMESPACE,
    UPSTASH_PROVIDER,
    OperatorProcess,
    condition,
    events_for,
    secret_data,
    wait_gone,
    wait_ready,
)


def database(resource_name: str, provider: str = FLY_PROVIDER, **spec: Any) -> dict[str, Any]:
    region = "cdg" if provider != UPSTASH_PROVIDER else "us-east-1"
    return {
        "apiVersion": "redisdb.dev/v1alpha1",
        "kind": "RedisDatabase",
        "metadata": {"name": resource_name},
        "spec": {"providerRef": {"name": provider}, "primaryRegion": region, **spec},
    }


def pings(secret: dict[str, str]) -> bool:
    client = redis_from_url(secret["REDIS_URL"])
    try:
        return bool(client.ping())
    finally:
        client.close()


def synced_reason(name: str, namespace: str) -> str | None:
    synced = condition(get_json("redisdatabase", name, namespace), "Synced")
    return synced["reason"] if synced and synced["status"] == "False" else None


def test_a_deleted_connection_secret_is_recreated(operator: OperatorProcess, namespace: str) -> None:
    apply(database("cache"), namespace)
    wait_ready("cache", namespace)
    before = secret_data("cache-redis", namespace)
    uid = get_json("secret", "cache-redis", namespace)["metadata"]["uid"]  # type: ignore[index]
    kubectl("delete", "secret", "cache-redis", "-n", namespace)

    def recreated() -> dict[str, Any] | None:
        secret = get_json("secret", "cache-redis", namespace)
        return secret if secret and secret["metadata"]["uid"] != uid else None

    wait_for(recreated, 60, message="the Secret recreated (at the next resync)")
    assert secret_data("cache-redis", namespace) == before
    assert pings(before)


def test_an_edited_connection_secret_is_restored(operator: OperatorProcess, namespace: str) -> None:
    apply(database("cache"), namespace)
    wait_ready("cache", namespace)
    before = secret_data("cache-redis", namespace)
    edited = base64.b64encode(b"redis://default:wrong@127.0.0.1:1").decode()
    kubectl(
        "patch",
        "secret",
        "cache-redis",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"data": {"REDIS_URL": edited, "EXTRA": base64.b64encode(b"added by hand").decode()}}),
    )
    wait_for(lambda: secret_data("cache-redis", namespace) == before, 60, message="the Secret restored")
    assert pings(before)


def test_a_foreign_secret_of_that_name_is_a_conflict_and_stays_untouched(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str
) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "cache-redis", "labels": {"owner": "someone-else"}},
        "stringData": {"REDIS_URL": "redis://theirs.example:6379"},
    }
    apply(foreign, namespace)
    original = get_json("secret", "cache-redis", namespace)
    assert original is not None
    apply(database("cache"), namespace)
    wait_for(lambda: synced_reason("cache", namespace) == "SecretConflict", 60, message="Synced=False SecretConflict")
    message = condition(get_json("redisdatabase", "cache", namespace), "Synced")["message"]  # type: ignore[index]
    assert "cache-redis" in message and "spec.connectionSecret.name" in message
    after = get_json("secret", "cache-redis", namespace)
    assert after is not None
    assert after["metadata"]["resourceVersion"] == original["metadata"]["resourceVersion"], "touched"
    assert after["data"] == original["data"] and not after["metadata"].get("ownerReferences")
    assert "SecretConflict" in {event["reason"] for event in events_for("cache", namespace)}


def test_a_custom_connection_secret_name(operator: OperatorProcess, namespace: str) -> None:
    apply(database("cache", connectionSecret={"name": "shop.redis-credentials"}), namespace)
    wait_ready("cache", namespace)
    secret = get_json("secret", "shop.redis-credentials", namespace)
    assert secret is not None
    owner = secret["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("RedisDatabase", "cache")
    assert get_json("secret", "cache-redis", namespace) is None, "no Secret under the default name"
    assert pings(secret_data("shop.redis-credentials", namespace))
    kubectl("delete", "redisdatabase", "cache", "-n", namespace, "--timeout=60s")
    wait_for(lambda: get_json("secret", "shop.redis-credentials", namespace) is None, 90, message="Secret collected")


def test_provider_credentials_rotated_while_ready(
    cluster: Cluster, operator: OperatorProcess, local_provider: LocalProvider, namespace: str
) -> None:
    """The credentials Secret gets a new token and the old one is revoked at the provider: the databases stay
    Ready and usable, and the next change is made with the new token (the old one no longer works at all)."""
    admin = local_provider.admin
    old_token, new_token = f"old-{secrets.token_hex(8)}", f"new-{secrets.token_hex(8)}"
    admin.credentials(add_fly_tokens=[old_token, new_token])
    provider = f"rotating-{secrets.token_hex(3)}"
    try:
        apply(fly_provider_manifests(provider, local_provider.url, organization=FLY_ORG, token=old_token))
        apply(database("cache", provider), namespace)
        database_id = wait_ready("cache", namespace)["status"]["databaseId"]
        before = secret_data("cache-redis", namespace)

        apply(fly_provider_manifests(provider, local_provider.url, organization=FLY_ORG, token=new_token))
        admin.credentials(revoke_fly_tokens=[old_token])
        assert pings(before), "no disruption: the database and its Secret are as they were"
        apply(database("cache", provider, readRegions=["ams"]), namespace)
        obj = wait_ready("cache", namespace, generation=2, timeout=120)
        assert obj["status"]["databaseId"] == database_id
        assert admin.database(database_id)["read_regions"] == ["ams"], "changed at the provider with the new token"
        assert secret_data("cache-redis", namespace) == before
        for event in events_for("cache", namespace):
            assert old_token not in json.dumps(event) and new_token not in json.dumps(event)
    finally:
        admin.credentials(revoke_fly_tokens=[old_token, new_token])
        kubectl("delete", "redisdatabase", "cache", "-n", namespace, "--wait=false", check=False)
        kubectl("delete", "redisprovider", provider, "--ignore-not-found", "--wait=false", check=False)
        kubectl(
            "delete", "secret", f"{provider}-credentials", "-n", SYSTEM_NAMESPACE, "--ignore-not-found", check=False
        )


def test_a_password_reset_at_the_provider_reaches_the_secret(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str
) -> None:
    apply(database("cache", UPSTASH_PROVIDER), namespace)
    database_id = wait_ready("cache", namespace)["status"]["databaseId"]
    before = secret_data("cache-redis", namespace)
    response = httpx.post(
        f"{local_provider.upstash_url}/redis/reset-password/{database_id}", auth=local_provider.upstash_auth, timeout=30
    )
    response.raise_for_status()
    with pytest.raises(redis.AuthenticationError):
        pings(before)  # someone else's reset: the Secret's password is refused now
    wait_for(
        lambda: secret_data("cache-redis", namespace)["REDIS_PASSWORD"] != before["REDIS_PASSWORD"],
        60,
        message="the Secret follows the provider's new password at the next resync",
    )
    assert pings(secret_data("cache-redis", namespace))


def test_deleting_a_namespace_with_fifty_databases_destroys_them_all(
    cluster: Cluster, operator: OperatorProcess, local_provider: LocalProvider
) -> None:
    namespace = f"fifty-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", namespace)
    names = [f"db{index:02d}" for index in range(50)]
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all([database(n) for n in names]))

    def all_ready() -> bool:
        listed = json.loads(kubectl("get", "redisdatabases", "-n", namespace, "-o", "json").stdout)["items"]
        return len(listed) == 50 and all((condition(i, "Ready") or {}).get("status") == "True" for i in listed)

    wait_for(all_ready, 600, 1.0, message="50 databases Ready")
    ids = {
        item["status"]["databaseId"]
        for item in json.loads(kubectl("get", "redisdatabases", "-n", namespace, "-o", "json").stdout)["items"]
    }
    assert len(ids) == 50
    started = time.monotonic()
    kubectl("delete", "namespace", namespace, "--wait=false")
    wait_for(lambda: get_json("namespace", namespace) is None, 600, 1.0, message="namespace gone")
    seconds = time.monotonic() - started
    left = [d for d in local_provider.admin.databases() if d["id"] in ids or d["name"].startswith(f"{namespace}-")]
    print(f"\nnamespace with 50 databases deleted in {seconds:.1f}s")
    assert left == [], f"{len(left)} provider databases left behind"


def test_longest_valid_names_and_unicode_annotations(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str
) -> None:
    """A 63-character resource name, a 63-character provider-side name, the longest label value and unicode in
    annotations all go through.

    63, not Kubernetes' 253: the connection Secret carries the resource's name as a label value (at most 63), so
    a longer name is refused by the apiserver on every Secret write and the resource never becomes Ready (issue
    14 report; the fix belongs to the Secret rendering or to admission, which should then refuse it clearly).
    """
    name = ("a" * 62) + "z"
    provider_side = "p" + "-x" * 30 + "yz"
    assert len(name) == 63 and len(provider_side) == 63
    manifest = database(name, name=provider_side)
    manifest["metadata"]["labels"] = {"team": "t" * 63}
    owner = "Zoë Ångström — 数据库 🚀"
    manifest["metadata"]["annotations"] = {"example.com/owner": owner, "example.com/note": "ü" * 200}
    try:
        apply(manifest, namespace)
    except KubectlError as error:
        raise AssertionError(f"a valid manifest was refused: {error}") from None
    obj = wait_ready(name, namespace, timeout=120)
    assert obj["metadata"]["annotations"]["example.com/owner"] == owner
    found = [d for d in local_provider.admin.databases() if d["name"] == provider_side]
    assert [d["id"] for d in found] == [obj["status"]["databaseId"]]
    assert pings(secret_data(f"{name}-redis", namespace))
    kubectl("delete", "redisdatabase", name, "-n", namespace, "--timeout=60s")
    wait_gone("redisdatabase", name, namespace)
    assert not [d for d in local_provider.admin.databases() if d["name"] == provider_side]
