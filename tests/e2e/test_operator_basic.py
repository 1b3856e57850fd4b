"""First end-to-end proof: apply -> Ready -> the Secret's URL answers PING -> delete -> gone, for both wire APIs."""

from __future__ import annotations

import pytest

from tests.harness.cluster import apply, get_json, kubectl, wait_for
from tests.harness.local_provider import LocalProvider, redis_from_url
from tests.harness.operator import (
    FLY_PROVIDER,
    UPSTASH_PROVIDER,
    OperatorProcess,
    secret_data,
    wait_gone,
    wait_ready,
)

CASES = [
    pytest.param(FLY_PROVIDER, "cdg", ["ams"], id="fly"),
    pytest.param(UPSTASH_PROVIDER, "us-east-1", ["eu-west-1"], id="upstash"),
]


@pytest.mark.parametrize(("provider", "primary", "read_regions"), CASES)
def test_apply_ready_ping_delete(
    operator: OperatorProcess,
    local_provider: LocalProvider,
    namespace: str,
    provider: str,
    primary: str,
    read_regions: list[str],
) -> None:
    apply(
        {
            "apiVersion": "redisdb.dev/v1alpha1",
            "kind": "RedisDatabase",
            "metadata": {"name": "cache"},
            "spec": {"providerRef": {"name": provider}, "primaryRegion": primary, "readRegions": read_regions},
        },
        namespace,
    )
    obj = wait_ready("cache", namespace)
    status = obj["status"]
    assert status["primaryRegion"] == primary
    assert status["readRegions"] == read_regions
    assert status["plan"] == "payg"
    assert status["secretName"] == "cache-redis"
    database_id = status["databaseId"]

    data = secret_data("cache-redis", namespace)
    assert set(data) >= {"REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"}
    client = redis_from_url(data["REDIS_URL"])
    assert client.ping() is True
    client.set("greeting", "hello")
    assert client.get("greeting") == b"hello"
    client.close()
    secret = get_json("secret", "cache-redis", namespace)
    assert secret is not None
    assert secret["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]

    provider_side = local_provider.admin.database(database_id)
    assert provider_side["name"] == f"{namespace}-cache"

    table = kubectl("get", "rdb", "-n", namespace).stdout
    header = table.splitlines()[0].split()
    assert header[:7] == ["NAME", "READY", "SYNCED", "PROVIDER", "PRIMARY", "READ", "REGIONS"]
    assert "True" in table and primary in table

    explained = kubectl("explain", "redisdatabase.spec").stdout
    for field in ("providerRef", "name", "primaryRegion", "readRegions", "plan", "eviction", "tls", "deletionPolicy"):
        assert field in explained
    assert "can't be changed later" in explained

    kubectl("delete", "redisdatabase", "cache", "-n", namespace, "--timeout=60s")
    wait_gone("redisdatabase", "cache", namespace)
    remaining = {database["id"] for database in local_provider.admin.databases()}
    assert database_id not in remaining
    wait_for(lambda: get_json("secret", "cache-redis", namespace) is None, 60, message="Secret garbage-collected")
