"""Issue 13 end to end, through kubectl: what the real Fly and Upstash APIs do, the operator copes with.

- An Upstash-type database is TLS-only: its Secret holds rediss:// and a verifying TLS client connects.
- Eviction on -> off -> on on a Fly-type database changes maxmemory-policy each time, and then the operator stops
  calling updateAddOn (Fly keeps eviction on when the key is missing, so only an explicit false turns it off).
- A `FlyV1 fm2_...` token (as `fly tokens create org` prints it) works; a wrong-scheme header is refused.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import pytest
import redis

from redisdb_dev.local_provider.fly_api import bare_token
from tests.harness.cluster import apply, get_json, kubectl, to_yaml, wait_for
from tests.harness.local_provider import FLY_TOKEN, TLS_CA_FILE, LocalProvider, redis_from_url
from tests.harness.operator import (
    FLY_PROVIDER,
    UPSTASH_PROVIDER,
    OperatorProcess,
    condition,
    secret_data,
    wait_ready,
)

ORG_QUERY = "query Org($slug: String!) { organization(slug: $slug) { id slug } }"


def database(provider: str, primary: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "redisdb.dev/v1alpha1",
        "kind": "RedisDatabase",
        "metadata": {"name": "cache"},
        "spec": {"providerRef": {"name": provider}, "primaryRegion": primary, **spec},
    }


def test_an_upstash_database_is_reached_over_verified_tls(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str
) -> None:
    apply(database(UPSTASH_PROVIDER, "us-east-1"), namespace)
    obj = wait_ready("cache", namespace)
    assert obj["status"]["tls"] is True
    data = secret_data("cache-redis", namespace)
    assert data["REDIS_URL"].startswith("rediss://default:")
    client = redis_from_url(data["REDIS_URL"])  # verifies the server certificate against the local CA
    assert client.ping() is True
    client.close()
    # the verification is real: a client that trusts only the system CAs refuses the certificate
    untrusting = redis.Redis.from_url(data["REDIS_URL"], socket_timeout=5, ssl_cert_reqs="required")
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        untrusting.ping()
    # and plain text is not served at all
    plain = redis.Redis.from_url(data["REDIS_URL"].replace("rediss://", "redis://", 1), socket_timeout=5)
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    assert TLS_CA_FILE.exists() and ssl.PEM_cert_to_DER_cert(TLS_CA_FILE.read_text())


def test_fly_eviction_on_off_on_changes_the_server_and_then_stops_calling(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str
) -> None:
    def policy(client: redis.Redis) -> str:
        return str(client.config_get("maxmemory-policy")["maxmemory-policy"])

    apply(database(FLY_PROVIDER, "cdg", eviction=True), namespace)
    wait_ready("cache", namespace)
    client = redis_from_url(secret_data("cache-redis", namespace)["REDIS_URL"])
    assert policy(client) == "allkeys-random"
    apply(database(FLY_PROVIDER, "cdg", eviction=False), namespace)
    wait_ready("cache", namespace, generation=2)
    assert policy(client) == "noeviction"
    apply(database(FLY_PROVIDER, "cdg", eviction=True), namespace)
    obj = wait_ready("cache", namespace, generation=3)
    assert policy(client) == "allkeys-random" and obj["status"]["eviction"] is True
    client.close()
    # No update loop: while resyncs keep reading the organization's add-ons, updateAddOn is not sent again.
    updates = local_provider.admin.counters().get("fly:updateAddOn", 0)
    reads = local_provider.admin.counters().get("fly:organization", 0)
    wait_for(
        lambda: local_provider.admin.counters().get("fly:organization", 0) >= reads + 2,
        120,
        message="two more resyncs",
    )
    assert local_provider.admin.counters().get("fly:updateAddOn", 0) == updates


def test_a_flyv1_token_works_and_a_wrong_scheme_is_refused(
    operator: OperatorProcess, local_provider: LocalProvider
) -> None:
    assert FLY_TOKEN.startswith("FlyV1 fm2_")  # the RedisProvider's Secret holds it as fly prints it
    provider = get_json("redisprovider", FLY_PROVIDER)
    assert provider is not None
    ready = next(c for c in provider["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", ready
    token = bare_token(FLY_TOKEN)
    body = {"query": ORG_QUERY, "variables": {"slug": "personal"}}
    with httpx.Client(base_url=local_provider.url, timeout=30) as http:
        right = http.post("/graphql", json=body, headers={"Authorization": f"FlyV1 {token}"}).json()
        wrong = http.post("/graphql", json=body, headers={"Authorization": f"Bearer {token}"}).json()
        doubled = http.post("/graphql", json=body, headers={"Authorization": f"Bearer {FLY_TOKEN}"}).json()
    assert right["data"]["organization"]["slug"] == "personal"
    for refused in (wrong, doubled):
        assert refused["data"] is None and "authenticated" in refused["errors"][0]["message"]


def test_providers_publish_their_catalogs(operator: OperatorProcess, local_provider: LocalProvider) -> None:
    """Fly's regions and plans are read live at each provider check; Upstash has no such API: static."""

    def catalog_of(name: str) -> dict[str, Any]:
        provider = get_json("redisprovider", name) or {}
        return dict((provider.get("status") or {}).get("catalog") or {})

    wait_for(lambda: catalog_of(FLY_PROVIDER).get("source") == "live", 60, message="the live Fly catalog")
    fly_catalog = catalog_of(FLY_PROVIDER)
    regions = {region["code"]: region for region in fly_catalog["regions"]}
    assert regions["mad"]["deprecated"] is True and regions["mad"]["readRegionAllowed"] is False
    assert regions["jnb"]["excluded"] is True and regions["cdg"]["readRegionAllowed"] is True
    plans = {plan["name"]: plan for plan in fly_catalog["plans"]}
    assert plans["fixed_1gb"]["pricePerMonth"] == 20.0 and plans["fixed_1gb"]["maxDataSizeBytes"] == 1024**3
    assert plans["pro_2k"]["legacy"] is True and plans["payg"]["legacy"] is False
    wait_for(lambda: catalog_of(UPSTASH_PROVIDER).get("source") == "static", 60, message="the static Upstash one")
    assert {"us-east-1", "eu-west-1"} <= {region["code"] for region in catalog_of(UPSTASH_PROVIDER)["regions"]}


def test_a_retired_region_warns_at_apply_and_is_refused_at_create(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str
) -> None:
    """Admission cannot know whether the database exists (adoption, restore): kubectl prints a warning, and the
    reconciler refuses only the create, naming the regions Fly offers today."""
    creates_before = local_provider.admin.counters().get("fly:createAddOn", 0)
    result = kubectl("apply", "-n", namespace, "-f", "-", input=to_yaml(database(FLY_PROVIDER, "mad")))
    assert "Warning:" in result.stderr and "spec.primaryRegion mad" in result.stderr and "retired" in result.stderr

    def synced() -> dict[str, Any]:
        return condition(get_json("redisdatabase", "cache", namespace=namespace), "Synced") or {}

    wait_for(lambda: synced().get("reason") == "InvalidSpec", 60, message="the create is refused")
    assert "choose one of" in synced()["message"] and "cdg" in synced()["message"]
    assert local_provider.admin.counters().get("fly:createAddOn", 0) == creates_before
