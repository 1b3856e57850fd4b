"""The REST path end to end: a RedisDatabase on the Upstash API gets UPSTASH_REDIS_REST_URL/TOKEN in its Secret, and
those two values (what ``Redis.fromEnv()`` reads) run commands on the same data as REDIS_URL; a rotation replaces
the token and the old one is refused. Fly's API gives no REST credentials, so a Fly database's Secret has none."""

from __future__ import annotations

from typing import Any

import httpx

from tests.harness.cluster import apply, get_json, kubectl, wait_for
from tests.harness.local_provider import LocalProvider, redis_from_url
from tests.harness.operator import FLY_PROVIDER, UPSTASH_PROVIDER, OperatorProcess, secret_data, wait_ready

REST_KEYS = {"UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN"}


def redis_database(name: str, provider: str, primary: str) -> dict[str, Any]:
    return {
        "apiVersion": "redisdb.dev/v1alpha1",
        "kind": "RedisDatabase",
        "metadata": {"name": name},
        "spec": {"providerRef": {"name": provider}, "primaryRegion": primary},
    }


def rest(data: dict[str, str], command: list[Any], token: str | None = None) -> httpx.Response:
    """One command the way @upstash/redis sends it: a JSON array POSTed to the REST URL with a Bearer token."""
    headers = {"Authorization": f"Bearer {token or data['UPSTASH_REDIS_REST_TOKEN']}"}
    return httpx.post(data["UPSTASH_REDIS_REST_URL"], json=command, headers=headers, timeout=30)


def test_upstash_secret_has_working_rest_credentials_that_rotate(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str
) -> None:
    apply(redis_database("cache", UPSTASH_PROVIDER, "us-east-1"), namespace)
    obj = wait_ready("cache", namespace)
    database_id = obj["status"]["databaseId"]
    data = secret_data("cache-redis", namespace)
    assert set(data) >= REST_KEYS
    assert data["UPSTASH_REDIS_REST_URL"] == f"{local_provider.url}/rest/{database_id}"

    response = rest(data, ["SET", "k", "v"])
    assert (response.status_code, response.json()) == (200, {"result": "OK"})
    client = redis_from_url(data["REDIS_URL"])
    assert client.get("k") == b"v"
    client.set("from-tcp", "hello")
    client.close()
    assert rest(data, ["GET", "from-tcp"]).json() == {"result": "hello"}

    kubectl("annotate", "rdb", "cache", "-n", namespace, "redisdb.dev/rotate-password=rest-1", "--overwrite")

    def rotated() -> dict[str, str] | None:
        obj = get_json("redisdatabase", "cache", namespace)
        if (obj or {}).get("status", {}).get("lastHandledRotation") != "rest-1":
            return None
        new = secret_data("cache-redis", namespace)
        return new if new["UPSTASH_REDIS_REST_TOKEN"] != data["UPSTASH_REDIS_REST_TOKEN"] else None

    new = wait_for(rotated, 60, message="rotation handled and the REST token replaced in the Secret")
    assert new["UPSTASH_REDIS_REST_URL"] == data["UPSTASH_REDIS_REST_URL"]
    assert new["REDIS_PASSWORD"] != data["REDIS_PASSWORD"]
    refused = rest(new, ["GET", "k"], token=data["UPSTASH_REDIS_REST_TOKEN"])
    assert refused.status_code == 401
    assert rest(new, ["GET", "k"]).json() == {"result": "v"}
    client = redis_from_url(new["REDIS_URL"])
    assert client.get("k") == b"v"
    client.close()


def test_fly_secret_has_no_rest_keys(operator: OperatorProcess, namespace: str) -> None:
    apply(redis_database("cache", FLY_PROVIDER, "cdg"), namespace)
    wait_ready("cache", namespace)
    data = secret_data("cache-redis", namespace)
    assert {"REDIS_URL", "REDIS_PASSWORD"} <= set(data)
    assert not REST_KEYS & set(data)
