"""Upstash adapter against canned responses: request shapes, defensive parsing, fallbacks, no leaks."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from redisdb_operator.providers.base import (
    AlreadyExistsError,
    CreateDatabaseRequest,
    Database,
    DatabaseUpdate,
    NotFoundError,
    ProviderClient,
    UnauthorizedError,
    UnavailableError,
)
from redisdb_operator.providers.http import RetryPolicy
from redisdb_operator.providers.upstash import UpstashClient, parse_database

BASE = "https://api.upstash.test/v2"
DB_1 = Database(id="db-1", name="cache", primary_region="us-east-1", plan="payg")
EMAIL = "dev@example.com"
API_KEY = "0123456789abcdef-api-key"

FULL = {
    "database_id": "db-1",
    "database_name": "cache",
    "database_type": "Pay as You Go",
    "region": "global",
    "type": "payg",
    "port": 6380,
    "creation_time": 1674596896,
    "state": "active",
    "password": "pw-123",
    "user_email": EMAIL,
    "endpoint": "steady-stud-1.upstash.io",
    "tls": True,
    "eviction": True,
    "rest_token": "AX-rest",
    "read_only_rest_token": "AX-ro",
    "primary_region": "us-east-1",
    "read_regions": ["us-west-1"],
    "db_max_clients": 10000,
    "some_future_field": {"x": 1},
}


@pytest.fixture
async def client() -> AsyncIterator[UpstashClient]:
    upstash = UpstashClient(BASE, email=EMAIL, api_key=API_KEY, retry=RetryPolicy(base_delay=0.001, max_delay=0.002))
    yield upstash
    await upstash.aclose()


def test_implements_protocol() -> None:
    assert isinstance(UpstashClient(BASE, email=EMAIL, api_key=API_KEY), ProviderClient)


def test_parse_full_database() -> None:
    database = parse_database(FULL)
    assert database.id == "db-1"
    assert database.name == "cache"
    assert database.plan == "payg"
    assert database.read_regions == ("us-west-1",)
    assert database.eviction and database.tls
    assert database.url == "rediss://default:pw-123@steady-stud-1.upstash.io:6380"
    assert database.rest_url == "https://steady-stud-1.upstash.io"
    assert database.rest_token == "AX-rest"
    assert "pw-123" not in repr(database)


def test_parse_database_prefers_a_rest_url_field() -> None:
    """The local provider names where it serves REST; the real API has no such field (https://ENDPOINT)."""
    local = {**FULL, "rest_url": "http://127.0.0.1:8080/rest/db-1", "endpoint": "127.0.0.1", "tls": False}
    database = parse_database(local)
    assert database.rest_url == "http://127.0.0.1:8080/rest/db-1"
    assert database.rest_token == "AX-rest" and database.read_only_rest_token == "AX-ro"
    assert parse_database({**FULL, "rest_url": ""}).rest_url == "https://steady-stud-1.upstash.io"
    no_token = {key: value for key, value in FULL.items() if key != "rest_token"}
    assert parse_database(no_token).rest_url == ""
    assert "AX-rest" not in repr(database)


def test_parse_database_without_credentials_or_optional_fields() -> None:
    database = parse_database({"database_id": "db-2", "database_name": "x", "endpoint": "h", "port": 1})
    assert database.password == "" and database.url == "" and database.rest_url == ""
    assert database.read_regions == () and database.eviction is False and database.tls is False
    assert database.state == "active"


def test_parse_database_plain_redis_url_and_legacy_name() -> None:
    body = {"database_id": "d", "name": "legacy", "password": "p", "endpoint": "h.example", "port": 7, "tls": False}
    database = parse_database(body)
    assert database.name == "legacy"
    assert database.url == "redis://default:p@h.example:7"


@pytest.mark.parametrize(
    ("fields", "plan"),
    [
        ({"database_type": "Fixed 5GB", "type": "paid"}, "fixed_5gb"),
        ({"database_type": "Pay as You Go"}, "payg"),
        ({"type": "free"}, "free"),
        ({"type": "paid"}, "paid"),
        ({}, ""),
    ],
)
def test_plan_mapping(fields: dict[str, str], plan: str) -> None:
    assert parse_database({"database_id": "d", **fields}).plan == plan


@respx.mock
async def test_create_sends_the_contract_body(client: UpstashClient) -> None:
    route = respx.post(f"{BASE}/redis/database").mock(return_value=httpx.Response(200, json=FULL))
    database = await client.create(
        CreateDatabaseRequest(name="cache", primary_region="us-east-1", read_regions=("us-west-1",), plan="payg")
    )
    assert database.id == "db-1"
    request = route.calls.last.request
    assert json.loads(request.content) == {
        "database_name": "cache",
        "region": "global",
        "primary_region": "us-east-1",
        "read_regions": ["us-west-1"],
        "plan": "payg",
        "eviction": False,
    }
    expected = base64.b64encode(f"{EMAIL}:{API_KEY}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"


@respx.mock
async def test_create_sends_tls_only_when_set(client: UpstashClient) -> None:
    route = respx.post(f"{BASE}/redis/database").mock(return_value=httpx.Response(200, json=FULL))
    await client.create(CreateDatabaseRequest(name="cache", primary_region="us-east-1", tls=False, eviction=True))
    body = json.loads(route.calls.last.request.content)
    assert body["tls"] is False and body["eviction"] is True and "plan" not in body


@respx.mock
async def test_create_is_sent_exactly_once_on_503(client: UpstashClient) -> None:
    route = respx.post(f"{BASE}/redis/database").mock(return_value=httpx.Response(503, text='"unavailable"'))
    with pytest.raises(UnavailableError):
        await client.create(CreateDatabaseRequest(name="cache", primary_region="us-east-1"))
    assert route.call_count == 1


@respx.mock
async def test_get_is_retried_on_503(client: UpstashClient) -> None:
    route = respx.get(f"{BASE}/redis/database/db-1").mock(
        side_effect=[httpx.Response(503), httpx.Response(200, json=FULL)]
    )
    assert (await client.get("db-1")).name == "cache"
    assert route.call_count == 2


@respx.mock
async def test_duplicate_name_as_bare_string(client: UpstashClient) -> None:
    respx.post(f"{BASE}/redis/database").mock(return_value=httpx.Response(400, json="database name already exists"))
    with pytest.raises(AlreadyExistsError, match="already exists"):
        await client.create(CreateDatabaseRequest(name="cache", primary_region="us-east-1"))


@respx.mock
async def test_unauthorized_never_echoes_the_key(client: UpstashClient) -> None:
    basic = base64.b64encode(f"{EMAIL}:{API_KEY}".encode()).decode()
    respx.get(f"{BASE}/redis/databases").mock(
        return_value=httpx.Response(401, json={"error": f"bad key {API_KEY} in Basic {basic}"})
    )
    with pytest.raises(UnauthorizedError) as raised:
        await client.list()
    assert API_KEY not in str(raised.value)
    assert basic not in str(raised.value)


@respx.mock
async def test_find_by_name_fetches_credentials_when_list_hides_them(client: UpstashClient) -> None:
    hidden = {key: value for key, value in FULL.items() if key not in ("password", "rest_token")}
    respx.get(f"{BASE}/redis/databases").mock(return_value=httpx.Response(200, json=[hidden, "junk"]))
    get = respx.get(f"{BASE}/redis/database/db-1").mock(return_value=httpx.Response(200, json=FULL))
    found = await client.find_by_name("cache")
    assert found is not None and found.password == "pw-123"
    assert get.call_count == 1
    assert await client.find_by_name("nope") is None


@respx.mock
async def test_update_calls_one_endpoint_per_field(client: UpstashClient) -> None:
    regions = respx.post(f"{BASE}/redis/update-regions/db-1").mock(return_value=httpx.Response(200, json="OK"))
    evict = respx.post(f"{BASE}/redis/disable-eviction/db-1").mock(return_value=httpx.Response(200, json="OK"))
    plan = respx.post(f"{BASE}/redis/db-1/change-plan").mock(return_value=httpx.Response(200, json="OK"))
    observed = Database(id="db-1", name="cache", primary_region="us-east-1", read_regions=("us-west-1",), plan="payg")
    updated = await client.update(observed, DatabaseUpdate(read_regions=(), eviction=False, plan="fixed_1gb"))
    assert (updated.read_regions, updated.eviction, updated.plan) == ((), False, "fixed_1gb")
    assert updated.id == "db-1" and updated.name == "cache"
    assert json.loads(regions.calls.last.request.content) == {"read_regions": []}
    assert json.loads(plan.calls.last.request.content) == {"plan_name": "fixed_1gb"}
    assert evict.call_count == 1
    assert await client.update(observed, DatabaseUpdate()) is observed  # empty: no calls
    assert regions.call_count == 1


@respx.mock
async def test_downgrade_to_free_drops_regions_first(client: UpstashClient) -> None:
    order: list[str] = []

    def record(name: str) -> httpx.Response:
        order.append(name)
        return httpx.Response(200, json="OK")

    respx.post(f"{BASE}/redis/update-regions/db-1").mock(side_effect=lambda request: record("regions"))
    respx.post(f"{BASE}/redis/db-1/change-plan").mock(side_effect=lambda request: record("plan"))
    await client.update(DB_1, DatabaseUpdate(read_regions=(), plan="free"))
    assert order == ["regions", "plan"]
    order.clear()
    await client.update(DB_1, DatabaseUpdate(read_regions=("us-west-1",), plan="payg"))
    assert order == ["plan", "regions"]


@pytest.mark.parametrize("status", [404, 405])
@respx.mock
async def test_change_plan_falls_back_to_the_older_path(client: UpstashClient, status: int) -> None:
    new = respx.post(f"{BASE}/redis/db-1/change-plan").mock(return_value=httpx.Response(status, text="no route"))
    old = respx.post(f"{BASE}/redis/change-plan/db-1").mock(return_value=httpx.Response(200, json="OK"))
    await client.update(DB_1, DatabaseUpdate(plan="Fixed 250MB"))
    assert new.call_count == 1
    assert json.loads(old.calls.last.request.content) == {"plan_name": "fixed_250mb"}
    await client.update(DB_1, DatabaseUpdate(plan="payg"))  # remembered: straight to the older path
    assert new.call_count == 1 and old.call_count == 2


@respx.mock
async def test_change_plan_of_unknown_database_is_not_found(client: UpstashClient) -> None:
    respx.post(f"{BASE}/redis/db-x/change-plan").mock(return_value=httpx.Response(404, json="database not found"))
    respx.post(f"{BASE}/redis/change-plan/db-x").mock(return_value=httpx.Response(404, json="database not found"))
    with pytest.raises(NotFoundError, match="database not found"):
        await client.update(DB_1.model_copy(update={"id": "db-x"}), DatabaseUpdate(plan="payg"))


@respx.mock
async def test_reset_password_returns_new_credentials_or_refetches(client: UpstashClient) -> None:
    reset = respx.post(f"{BASE}/redis/reset-password/db-1").mock(
        side_effect=[httpx.Response(200, json={**FULL, "password": "new"}), httpx.Response(200, json="OK")]
    )
    assert (await client.reset_password("db-1")).password == "new"
    respx.get(f"{BASE}/redis/database/db-1").mock(return_value=httpx.Response(200, json={**FULL, "password": "new2"}))
    assert (await client.reset_password("db-1")).password == "new2"
    assert reset.call_count == 2


@respx.mock
async def test_reset_password_is_not_retried(client: UpstashClient) -> None:
    reset = respx.post(f"{BASE}/redis/reset-password/db-1").mock(return_value=httpx.Response(502))
    with pytest.raises(UnavailableError):
        await client.reset_password("db-1")
    assert reset.call_count == 1


@respx.mock
async def test_delete_of_missing_database_succeeds(client: UpstashClient) -> None:
    respx.delete(f"{BASE}/redis/database/db-1").mock(return_value=httpx.Response(404, json="database not found"))
    await client.delete("db-1")


async def test_ids_cannot_escape_their_path_segment(client: UpstashClient) -> None:
    with pytest.raises(NotFoundError):
        await client.get("../databases")
