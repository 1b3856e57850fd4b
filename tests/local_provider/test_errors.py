"""Refusals with the real APIs' status codes and shapes, and the admin API's injected faults."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.harness.local_provider import LocalProvider

from .helpers import unique
from .test_fly_api import CREATE, GET, ORG, UPDATE, Fly, plan_ids


def upstash(provider: LocalProvider, auth: tuple[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=provider.upstash_url, auth=auth or provider.upstash_auth, timeout=60)


def create_body(**overrides: Any) -> dict[str, Any]:
    body = {"database_name": unique("err"), "region": "global", "primary_region": "us-east-1"}
    body.update(overrides)
    return body


@pytest.fixture
async def fly(local_provider: LocalProvider) -> Any:
    client = Fly(local_provider)
    yield client
    await client.aclose()


async def fly_create(fly: Fly, provider: LocalProvider, **overrides: Any) -> dict[str, Any]:
    org = (await fly.data(ORG, slug=provider.fly_org))["organization"]
    request = {
        "organizationId": org["id"],
        "name": unique("fly-err"),
        "primaryRegion": "ams",
        "readRegions": [],
        "planId": (await plan_ids(fly))["payg"],
        "type": "upstash_redis",
    }
    request.update(overrides)
    return await fly(CREATE, input=request)


# -- Upstash ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [("dev@example.com", "wrong-key"), ("nobody@example.com", "local-api-key"), None],
    ids=["wrong-key", "unknown-email", "no-credentials"],
)
async def test_upstash_bad_credentials(local_provider: LocalProvider, auth: tuple[str, str] | None) -> None:
    async with httpx.AsyncClient(base_url=local_provider.upstash_url, timeout=30) as api:
        response = await api.get("/redis/databases", auth=auth) if auth else await api.get("/redis/databases")
    assert response.status_code == 401
    assert response.json() == {"error": "Unauthorized"}


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"primary_region": "mars-1"}, "unknown primary region"),
        ({"read_regions": ["moon-2"]}, "unknown read region"),
        ({"read_regions": ["us-east-1"]}, "is the primary region"),
        ({"read_regions": ["us-central1"]}, "cannot be a read region"),
        ({"plan": "platinum"}, "unknown plan"),
        ({"plan": "free", "read_regions": ["eu-west-1"]}, "at most 0 read regions"),
        ({"database_name": "bad name!"}, "invalid database name"),
        ({"database_name": "x" * 65}, "invalid database name"),
        ({"region": "eu-west-1"}, "regional db creation is deprecated"),
        ({"tls": True}, "tls is not supported by the local provider"),
        ({"database_name": ""}, "database_name is required"),
    ],
)
async def test_upstash_invalid_create(local_provider: LocalProvider, overrides: dict[str, Any], fragment: str) -> None:
    async with upstash(local_provider) as api:
        response = await api.post("/redis/database", json=create_body(**overrides))
    assert response.status_code == 400
    assert fragment in response.json()


async def test_upstash_duplicate_name_and_unknown_id(local_provider: LocalProvider) -> None:
    body = create_body()
    async with upstash(local_provider) as api:
        first = await api.post("/redis/database", json=body)
        assert first.status_code == 200
        database_id = first.json()["database_id"]
        duplicate = await api.post("/redis/database", json=body)
        assert duplicate.status_code == 400 and "already exists" in duplicate.json()

        update = await api.post(f"/redis/update-regions/{database_id}", json={"read_regions": ["us-east-1"]})
        assert update.status_code == 400 and "is the primary region" in update.json()
        bad_plan = await api.post(f"/redis/{database_id}/change-plan", json={"plan_name": "gold"})
        assert bad_plan.status_code == 400 and "unknown plan" in bad_plan.json()
        assert (await api.delete(f"/redis/database/{database_id}")).json() == "OK"

        for method, path in [
            ("GET", "/redis/database/no-such-id"),
            ("DELETE", "/redis/database/no-such-id"),
            ("POST", "/redis/enable-eviction/no-such-id"),
            ("POST", "/redis/reset-password/no-such-id"),
            ("POST", f"/redis/update-regions/{database_id}"),
        ]:
            response = await api.request(method, path, json={"read_regions": []})
            assert response.status_code == 404, (method, path)
            assert response.json() == "database not found"


# -- Fly -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["wrong-token", ""])
async def test_fly_bad_credentials(local_provider: LocalProvider, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=local_provider.url, timeout=30) as http:
        response = await http.post("/graphql", json={"query": ORG, "variables": {"slug": "personal"}}, headers=headers)
    assert response.status_code in (200, 401)
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHORIZED"
    assert "authenticated" in body["errors"][0]["message"]


async def test_fly_accepts_flyv1_scheme(local_provider: LocalProvider) -> None:
    headers = {"Authorization": f"FlyV1 {local_provider.fly_token}"}
    async with httpx.AsyncClient(base_url=local_provider.url, timeout=30) as http:
        response = await http.post("/graphql", json={"query": ORG, "variables": {"slug": "personal"}}, headers=headers)
    assert response.json()["data"]["organization"]["slug"] == "personal"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"primaryRegion": "zzz"}, "unknown primary region"),
        ({"readRegions": ["ams"]}, "is the primary region"),
        ({"readRegions": ["xyz"]}, "unknown read region"),
        ({"planId": "no-such-plan"}, "unknown plan id"),
        ({"name": "no spaces allowed"}, "invalid database name"),
        ({"type": "tigris"}, "unsupported add-on type"),
    ],
)
async def test_fly_invalid_create(
    fly: Fly, local_provider: LocalProvider, overrides: dict[str, Any], fragment: str
) -> None:
    body = await fly_create(fly, local_provider, **overrides)
    assert body["data"] == {"createAddOn": None}
    [error] = body["errors"]
    assert fragment in error["message"] and error["extensions"]["code"] == "VALIDATION_ERROR"


async def test_fly_duplicate_name_unknown_org_and_id(fly: Fly, local_provider: LocalProvider) -> None:
    name = unique("fly-dup")
    first = await fly_create(fly, local_provider, name=name)
    assert "errors" not in first, first
    add_on_id = first["data"]["createAddOn"]["addOn"]["id"]
    duplicate = await fly_create(fly, local_provider, name=name)
    assert duplicate["errors"][0]["extensions"]["code"] == "ALREADY_EXISTS"
    assert "already" in duplicate["errors"][0]["message"]

    unknown_org = await fly_create(fly, local_provider, organizationId="org_nope")
    assert unknown_org["errors"][0]["extensions"]["code"] == "NOT_FOUND"

    plans = await plan_ids(fly)
    same_region = await fly(
        UPDATE, addOnId=add_on_id, planId=plans["payg"], readRegions=["ams"], options={}, metadata={}
    )
    assert same_region["errors"][0]["extensions"]["code"] == "VALIDATION_ERROR"
    unknown = await fly(UPDATE, addOnId="nope", planId=plans["payg"], readRegions=[], options={}, metadata={})
    assert unknown["data"] == {"updateAddOn": None} and unknown["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    missing = await fly(GET, id="nope")
    assert missing["data"] == {"addOn": None} and missing["errors"][0]["message"] == "Could not find AddOn"
    await fly("mutation D($name: String) { deleteAddOn(input: {name: $name}) { deletedAddOnName } }", name=name)


@pytest.mark.parametrize(
    ("query", "variables", "fragment"),
    [
        ("query { launchRockets { id } }", {}, 'Cannot query field "launchRockets" on type "Query"'),
        ("mutation { addOn(id: 1) { id } }", {}, 'Cannot query field "addOn" on type "Mutation"'),
        ("query Get($id: ID) { addOn(id: $id) { id nonsense } }", {"id": "x"}, "Could not find AddOn"),
        ("query Org($slug: String!) { organization(slug: $slug) { id } }", {}, 'required type "String!"'),
        ("query { organization(slug: $undeclared) { id } }", {}, 'Variable "$undeclared" is not defined'),
        ("query { organization(slug: ", {}, "Syntax Error"),
        ("query Plans { addOnPlans(type: upstash_redis) { nodes { bogus } } }", {}, 'Cannot query field "bogus"'),
    ],
)
async def test_fly_bad_documents_get_graphql_errors(
    fly: Fly, query: str, variables: dict[str, Any], fragment: str
) -> None:
    body = await fly(query, **variables)
    assert any(fragment in error["message"] for error in body["errors"]), body


async def test_fly_aliases_and_operation_name(fly: Fly, local_provider: LocalProvider) -> None:
    document = """
    query A { first: organization(slug: "personal") { slug } second: organization(slug: "acme") { slug __typename } }
    query B { addOnPlans { nodes { id } } }
    """
    response = await fly.http.post("/graphql", json={"query": document, "operationName": "A"})
    assert response.json() == {
        "data": {"first": {"slug": "personal"}, "second": {"slug": "acme", "__typename": "Organization"}}
    }


# -- injected faults -------------------------------------------------------------------------------------------------


async def test_fail_next_503_then_success(local_provider: LocalProvider) -> None:
    local_provider.admin.reset_counters()
    local_provider.admin.faults(fail_next=2, fail_status=503)
    async with upstash(local_provider) as api:
        statuses = [(await api.get("/redis/databases")).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert local_provider.admin.counters()["upstash:list"] == 3


async def test_fail_next_429_with_retry_after_on_both_apis(fly: Fly, local_provider: LocalProvider) -> None:
    local_provider.admin.faults(fail_next=2, fail_status=429, retry_after=7)
    async with upstash(local_provider) as api:
        limited = await api.get("/redis/databases")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert limited.json() == {"error": "too many requests"}
    response = await fly.http.post("/graphql", json={"query": ORG, "variables": {"slug": "personal"}})
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert response.json()["errors"][0]["message"] == "too many requests"
    assert (await fly.data(ORG, slug="personal"))["organization"]["slug"] == "personal"


async def test_fly_503_and_counters(fly: Fly, local_provider: LocalProvider) -> None:
    local_provider.admin.reset_counters()
    local_provider.admin.faults(fail_next=1)
    response = await fly.http.post("/graphql", json={"query": ORG, "variables": {"slug": "personal"}})
    assert response.status_code == 503
    await fly.data(ORG, slug="personal")
    await plan_ids(fly)
    counters = local_provider.admin.counters()
    assert counters == {"fly:organization": 2, "fly:addOnPlans": 1}


async def test_admin_calls_are_not_faulted(local_provider: LocalProvider) -> None:
    local_provider.admin.faults(fail_next=5)
    assert local_provider.admin.health()["ok"] is True
    local_provider.admin.databases()
    assert local_provider.admin.faults()["fail_next"] == 5


async def test_latency_injection(local_provider: LocalProvider) -> None:
    async with upstash(local_provider) as api:
        local_provider.admin.faults(latency_ms=400)
        local_provider.admin.reset_counters()
        started = time.monotonic()
        assert (await api.get("/redis/databases")).status_code == 200
        slow = time.monotonic() - started
        assert local_provider.admin.counters_with_injected()["delayed"] == 1
        local_provider.admin.clear_faults()
        assert (await api.get("/redis/databases")).status_code == 200
    # a lower bound only (the latency was applied); cleared, no call is delayed (counted, not timed)
    assert slow >= 0.4
    assert local_provider.admin.counters_with_injected()["delayed"] == 1


async def test_bad_fault_request(local_provider: LocalProvider) -> None:
    async with httpx.AsyncClient(base_url=local_provider.url) as http:
        response = await http.post("/admin/faults", json={"fail_status": 418})
        assert response.status_code == 400
        response = await http.post("/admin/faults", json={"explode": True})
        assert response.status_code == 400


# -- drift -----------------------------------------------------------------------------------------------------------


async def test_drift_changes_the_database_behind_the_api(local_provider: LocalProvider) -> None:
    async with upstash(local_provider) as api:
        created = (await api.post("/redis/database", json=create_body())).json()
        database_id = created["database_id"]
        local_provider.admin.reset_counters()
        view = local_provider.admin.drift(database_id, read_regions=["eu-west-1"], eviction=True, plan="fixed_1gb")
        assert [item["region"] for item in view["replicas"]] == ["eu-west-1"]
        assert local_provider.admin.counters() == {}, "drift is not a wire call"
        fetched = (await api.get(f"/redis/database/{database_id}")).json()
        assert fetched["read_regions"] == ["eu-west-1"] and fetched["eviction"] is True
        assert fetched["plan"] == "fixed_1gb"
        async with httpx.AsyncClient(base_url=local_provider.url) as http:
            refused = await http.post(f"/admin/databases/{database_id}/drift", json={"read_regions": ["us-east-1"]})
            assert refused.status_code == 400
            unknown = await http.post("/admin/databases/nope/drift", json={"eviction": False})
            assert unknown.status_code == 404
        await api.delete(f"/redis/database/{database_id}")
