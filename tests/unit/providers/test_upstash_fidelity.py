"""The Upstash adapter reads and writes the Developer API as its current schema and live clients do (reference
section 6). Each test here failed on the adapter before issue 13's fixes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx

from redisdb_operator.providers.base import CreateDatabaseRequest, Database, DatabaseUpdate, InvalidRequestError
from redisdb_operator.providers.http import RetryPolicy
from redisdb_operator.providers.upstash import UpstashClient, parse_database

BASE = "https://api.upstash.test/v2"

# The current OpenAPI's Database: no database_type, no credentials fields beyond what get returns, type "paid".
OPENAPI_DATABASE: dict[str, Any] = {
    "database_id": "96ad0856-03b1-4ee7-9666-e81abd0349e1",
    "database_name": "cache",
    "region": "global",
    "type": "paid",
    "port": 6379,
    "creation_time": 1752649602,
    "state": "active",
    "password": "pw",
    "endpoint": "beloved-stallion-58500",
    "tls": True,
    "eviction": False,
    "primary_region": "us-east-1",
    "read_regions": ["us-east-2"],
}


@pytest.fixture
async def client() -> AsyncIterator[UpstashClient]:
    upstash = UpstashClient(BASE, email="e@x", api_key="k" * 16, retry=RetryPolicy(base_delay=0.001))
    yield upstash
    await upstash.aclose()


@pytest.mark.parametrize(
    ("fields", "plan", "observable"),
    [
        ({"type": "free"}, "free", True),
        ({"type": "payg"}, "payg", True),
        ({"type": "paid"}, "paid", False),
        ({"type": "pro"}, "pro", False),
        ({"type": "paid", "database_type": "Pay as You Go"}, "payg", True),
        ({"type": "paid", "plan": "fixed_1gb"}, "paid", False),  # no source has a `plan` field: not read
        ({}, "", False),
    ],
)
def test_plan_is_read_from_type(fields: dict[str, str], plan: str, observable: bool) -> None:
    database = parse_database({"database_id": "d", **fields})
    assert (database.plan, database.plan_observable) == (plan, observable)


def test_a_bare_slug_endpoint_is_a_full_host() -> None:
    database = parse_database(OPENAPI_DATABASE)
    assert database.host == "beloved-stallion-58500.upstash.io"
    assert database.url == "rediss://default:pw@beloved-stallion-58500.upstash.io:6379"


@respx.mock
async def test_change_plan_fallback_sends_plan_name(client: UpstashClient) -> None:
    respx.post(f"{BASE}/redis/db-1/change-plan").mock(return_value=httpx.Response(404, text="no route"))
    old = respx.post(f"{BASE}/redis/change-plan/db-1").mock(return_value=httpx.Response(200, json="OK"))
    await client.update(
        Database(id="db-1", name="cache", primary_region="us-east-1", plan="payg"), DatabaseUpdate(plan="fixed_1gb")
    )
    assert json.loads(old.calls.last.request.content) == {"plan_name": "fixed_1gb"}


@respx.mock
async def test_create_uses_the_live_form_then_platform_when_asked(client: UpstashClient) -> None:
    bodies: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        if "platform" not in body:
            return httpx.Response(400, json={"error": "platform is required"})
        return httpx.Response(200, json=OPENAPI_DATABASE)

    respx.post(f"{BASE}/redis/database").mock(side_effect=answer)
    request = CreateDatabaseRequest(name="cache", primary_region="us-central1", read_regions=())
    await client.create(request)
    assert bodies[0]["region"] == "global" and "platform" not in bodies[0]
    assert bodies[1]["platform"] == "gcp" and "region" not in bodies[1]
    await client.create(request)  # remembered
    assert len(bodies) == 3 and bodies[2]["platform"] == "gcp"


@respx.mock
async def test_create_refused_for_another_reason_is_not_resent(client: UpstashClient) -> None:
    route = respx.post(f"{BASE}/redis/database").mock(
        return_value=httpx.Response(400, json={"error": "invalid primary_region"})
    )
    with pytest.raises(InvalidRequestError):
        await client.create(CreateDatabaseRequest(name="cache", primary_region="us-east-1"))
    assert route.call_count == 1


@respx.mock
async def test_find_by_name_picks_the_newest_of_several(client: UpstashClient) -> None:
    """Two databases may share a name: the newest is the one a lost create of ours would have made."""
    older = {**OPENAPI_DATABASE, "database_id": "old", "creation_time": 1_700_000_000}
    newer = {**OPENAPI_DATABASE, "database_id": "new", "creation_time": 1_800_000_000}
    respx.get(f"{BASE}/redis/databases").mock(return_value=httpx.Response(200, json=[newer, older]))
    found = await client.find_by_name("cache")
    assert found is not None and found.id == "new"
    respx.get(f"{BASE}/redis/databases").mock(return_value=httpx.Response(200, json=[older, newer]))
    found = await client.find_by_name("cache")
    assert found is not None and found.id == "new"
