"""Fly adapter against canned GraphQL: documents and variables, error classification, parsing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from redisdb_operator.providers.base import (
    AlreadyExistsError,
    CreateDatabaseRequest,
    Database,
    DatabaseUpdate,
    InvalidRequestError,
    NotFoundError,
    ProviderClient,
    ProviderError,
    RateLimitedError,
    UnauthorizedError,
    UnavailableError,
)
from redisdb_operator.providers.fly import (
    FREE_PLAN_ID,
    PAYG_PLAN_ID,
    FlyClient,
    classify_graphql_errors,
    parse_add_on,
)
from redisdb_operator.providers.http import RetryPolicy

BASE = "https://api.fly.test"
TOKEN = "fo1_super-secret-fly-token"

ADD_ON: dict[str, Any] = {
    "id": "addon-1",
    "name": "cache",
    "primaryRegion": "mad",
    "readRegions": ["ams"],
    "status": "ready",
    "options": {"eviction": True, "auto_upgrade": True},
    "metadata": {"k": "v"},
    "publicUrl": "redis://default:pw-1@fly-cache.upstash.io:6379",
    "privateIp": "fdaa::3",
    "password": "pw-1",
    "hostname": "fly-cache.upstash.io",
    "addOnPlan": {"id": PAYG_PLAN_ID, "name": "payg", "displayName": "Pay-as-you-go"},
    "organization": {"id": "org-1", "slug": "personal"},
}
PLANS = [
    {"id": FREE_PLAN_ID, "name": "free", "displayName": "Free"},
    {"id": PAYG_PLAN_ID, "name": "payg", "displayName": "Pay-as-you-go"},
    {"id": "plan-1g", "name": "flyio_fixed_1gb", "displayName": "Fixed 1GB"},
]

Handler = Callable[[str, dict[str, Any]], dict[str, Any]]


class FakeGraphQL:
    """Answers by operation name (the word after query/mutation) and records every call."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {
            "Org": lambda q, v: {"data": {"organization": {"id": "org-1", "slug": v["slug"]}}},
            "Plans": lambda q, v: {"data": {"addOnPlans": {"nodes": PLANS}}},
            "Get": lambda q, v: {"data": {"addOn": {**ADD_ON, "id": v["id"]}}},
        }
        self.calls: list[tuple[str, dict[str, Any], httpx.Request]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        name = body["query"].split()[1].split("(")[0]
        self.calls.append((name, body["variables"], request))
        return httpx.Response(200, json=self.handlers[name](body["query"], body["variables"]))

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]

    def variables(self, name: str) -> dict[str, Any]:
        return next(v for n, v, _ in reversed(self.calls) if n == name)


@pytest.fixture
async def fly() -> AsyncIterator[FlyClient]:
    client = FlyClient(BASE, token=TOKEN, organization="personal", retry=RetryPolicy(base_delay=0.001))
    yield client
    await client.aclose()


@pytest.fixture
def graphql() -> Iterator[FakeGraphQL]:
    fake = FakeGraphQL()
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{BASE}/graphql").mock(side_effect=fake)
        yield fake


def test_implements_protocol() -> None:
    assert isinstance(FlyClient(BASE, token=TOKEN), ProviderClient)


# --- classification ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        ([{"message": "Could not find AddOn", "extensions": {"code": "NOT_FOUND"}}], NotFoundError),
        ([{"message": "x", "extensions": {"code": "ALREADY_EXISTS"}}], AlreadyExistsError),
        ([{"message": "bad", "extensions": {"code": "VALIDATION_ERROR"}}], InvalidRequestError),
        ([{"message": "You must be authenticated to view this."}], UnauthorizedError),
        ([{"message": "x", "extensions": {"code": "UNAUTHORIZED"}}], UnauthorizedError),
        ([{"message": "x", "extensions": {"code": "RATE_LIMITED"}}], RateLimitedError),
        ([{"message": "add-on not found"}], NotFoundError),
        ([{"message": "Name has already been taken"}], AlreadyExistsError),
        ([{"message": "name is taken"}], AlreadyExistsError),
        ([{"message": "region xyz is invalid"}], InvalidRequestError),
        (["not even an object"], ProviderError),
    ],
)
def test_graphql_error_classification(errors: list[Any], expected: type[Exception]) -> None:
    assert type(classify_graphql_errors(errors, operation="op")) is expected


def test_graphql_messages_are_joined_and_redacted() -> None:
    error = classify_graphql_errors(
        [{"message": "first"}, {"message": "url redis://default:pw@h:1"}], operation="fly op"
    )
    assert str(error) == "fly op failed: first, url redis://default:***@h:1"


# --- parsing -----------------------------------------------------------------------------------------------


def test_parse_add_on() -> None:
    database = parse_add_on(ADD_ON, operation="t")
    assert (database.id, database.name, database.primary_region, database.read_regions) == (
        "addon-1",
        "cache",
        "mad",
        ("ams",),
    )
    assert database.plan == "payg" and database.eviction is True and database.tls is False
    assert (database.host, database.port, database.password) == ("fly-cache.upstash.io", 6379, "pw-1")
    assert database.url == "redis://default:pw-1@fly-cache.upstash.io:6379"


def test_parse_add_on_with_fly_documented_url_shape() -> None:
    add_on = {"id": "a", "name": "n", "publicUrl": "rediss://pw-2@fly-x.upstash.io", "options": None}
    database = parse_add_on(add_on, operation="t")
    assert (database.password, database.host, database.port, database.tls) == ("pw-2", "fly-x.upstash.io", 6379, True)
    assert database.url == "rediss://default:pw-2@fly-x.upstash.io:6379"
    assert database.eviction is False and database.plan == ""


def test_parse_add_on_without_credentials() -> None:
    database = parse_add_on({"id": "a", "name": "n", "addOnPlan": {"displayName": "Fixed 1GB"}}, operation="t")
    assert database.url == "" and database.password == "" and database.port == 0
    assert database.plan == "fixed_1gb"


def test_parse_add_on_rejects_missing_id() -> None:
    with pytest.raises(Exception, match="no add-on id"):
        parse_add_on({"name": "x"}, operation="t")


# --- operations --------------------------------------------------------------------------------------------


async def test_create_sends_contract_input(fly: FlyClient, graphql: FakeGraphQL) -> None:
    graphql.handlers["Create"] = lambda q, v: {"data": {"createAddOn": {"addOn": {**ADD_ON, "name": "cache"}}}}
    database = await fly.create(
        CreateDatabaseRequest(name="cache", primary_region="mad", read_regions=("ams",), plan="fixed_1gb")
    )
    assert database.id == "addon-1"
    assert graphql.variables("Create")["input"] == {
        "organizationId": "org-1",
        "name": "cache",
        "primaryRegion": "mad",
        "readRegions": ["ams"],
        "planId": "plan-1g",
        "type": "upstash_redis",
    }
    request = graphql.calls[-1][2]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    # Org and plans are cached: a second create costs one call.
    await fly.create(CreateDatabaseRequest(name="c2", primary_region="mad", eviction=True))
    assert graphql.names() == ["Org", "Plans", "Create", "Create"]
    assert graphql.variables("Create")["input"]["options"] == {"eviction": True}
    assert graphql.variables("Create")["input"]["planId"] == PAYG_PLAN_ID


async def test_unknown_plan_is_invalid(fly: FlyClient, graphql: FakeGraphQL) -> None:
    with pytest.raises(InvalidRequestError, match="unknown plan 'gold'"):
        await fly.create(CreateDatabaseRequest(name="c", primary_region="mad", plan="gold"))


async def test_create_is_sent_once_on_503(fly: FlyClient) -> None:
    with respx.mock as router:
        route = router.post(f"{BASE}/graphql").mock(return_value=httpx.Response(503))
        fly._organization_id = "org-1"
        fly._plans = tuple(PLANS)
        with pytest.raises(UnavailableError):
            await fly.create(CreateDatabaseRequest(name="c", primary_region="mad"))
        assert route.call_count == 1


async def test_duplicate_create(fly: FlyClient, graphql: FakeGraphQL) -> None:
    graphql.handlers["Create"] = lambda q, v: {
        "data": None,
        "errors": [{"message": "Name has already been taken", "extensions": {"code": "ALREADY_EXISTS"}}],
    }
    with pytest.raises(AlreadyExistsError):
        await fly.create(CreateDatabaseRequest(name="cache", primary_region="mad"))


async def test_http_401_with_graphql_body(fly: FlyClient) -> None:
    body = {
        "data": None,
        "errors": [{"message": "You must be authenticated to view this.", "extensions": {"code": "UNAUTHORIZED"}}],
    }
    with respx.mock as router:
        router.post(f"{BASE}/graphql").mock(return_value=httpx.Response(401, json=body))
        with pytest.raises(UnauthorizedError, match="authenticated") as raised:
            await fly.list()
    assert TOKEN not in str(raised.value)


async def test_get_unknown_is_not_found_and_find_is_none(fly: FlyClient, graphql: FakeGraphQL) -> None:
    missing = {
        "data": {"addOn": None},
        "errors": [{"message": "Could not find AddOn", "extensions": {"code": "NOT_FOUND"}}],
    }
    graphql.handlers["Get"] = lambda q, v: missing
    graphql.handlers["GetByName"] = lambda q, v: missing
    with pytest.raises(NotFoundError):
        await fly.get("nope")
    assert await fly.find_by_name("nope") is None
    graphql.handlers["GetByName"] = lambda q, v: {"data": {"addOn": None}}
    assert await fly.find_by_name("nope") is None
    graphql.handlers["GetByName"] = lambda q, v: {"data": {"addOn": ADD_ON}}
    found = await fly.find_by_name("cache")
    assert found is not None and found.id == "addon-1"
    assert graphql.variables("GetByName") == {"name": "cache", "provider": "upstash_redis"}


async def test_list_and_unknown_organization(fly: FlyClient, graphql: FakeGraphQL) -> None:
    graphql.handlers["List"] = lambda q, v: {"data": {"organization": {"addOns": {"nodes": [ADD_ON, None]}}}}
    assert [d.name for d in await fly.list()] == ["cache"]
    graphql.handlers["List"] = lambda q, v: {"data": {"organization": None}}
    with pytest.raises(InvalidRequestError, match="organization 'personal' not found"):
        await fly.list()


async def test_update_is_one_mutation_with_edited_options(fly: FlyClient, graphql: FakeGraphQL) -> None:
    graphql.handlers["Update"] = lambda q, v: {"data": {"updateAddOn": {"addOn": {"id": v["addOnId"]}}}}
    observed = Database(id="addon-1", name="cache", primary_region="mad", read_regions=("ams",), plan="payg")
    updated = await fly.update(observed, DatabaseUpdate(eviction=False))
    assert graphql.names() == ["Get", "Update"]
    assert updated == observed.model_copy(update={"eviction": False})
    assert graphql.variables("Update") == {
        "addOnId": "addon-1",
        "planId": PAYG_PLAN_ID,
        "readRegions": ["ams"],
        "options": {"eviction": False},  # auto_upgrade is for fixed plans only; false is sent explicitly
        "metadata": {"k": "v"},
    }
    # The next update of what the last one answered needs no read: the adapter knows what it sent.
    calls = len(graphql.calls)
    again = await fly.update(updated, DatabaseUpdate(read_regions=()))
    assert graphql.names()[calls:] == ["Update"]
    assert graphql.variables("Update") == {
        "addOnId": "addon-1",
        "planId": PAYG_PLAN_ID,
        "readRegions": [],
        "options": {"eviction": False},
        "metadata": {"k": "v"},
    }
    # A database it has not seen as it is (another observation) is read first.
    stale = again.model_copy(update={"read_regions": ("fra",)})
    calls = len(graphql.calls)
    updated = await fly.update(stale, DatabaseUpdate(plan="fixed_1gb", read_regions=("ams", "fra"), eviction=True))
    assert graphql.names()[calls:] == ["Get", "Plans", "Update"]  # the plan catalog once, for the plan change
    assert (updated.plan, updated.read_regions, updated.eviction) == ("fixed_1gb", ("ams", "fra"), True)
    variables = graphql.variables("Update")
    assert variables["planId"] == "plan-1g"
    assert variables["readRegions"] == ["ams", "fra"]
    assert variables["options"] == {"eviction": True, "auto_upgrade": True}  # a fixed plan keeps auto_upgrade
    calls = len(graphql.calls)
    assert await fly.update(observed, DatabaseUpdate()) is observed
    assert len(graphql.calls) == calls
    # ...and what it sent for a plan change carries the plan's name, so the following update needs no read either.
    await fly.update(updated, DatabaseUpdate(eviction=False))
    assert graphql.names()[calls:] == ["Update"]
    assert graphql.variables("Update")["options"] == {"eviction": False, "auto_upgrade": True}


async def test_reset_password_by_name(fly: FlyClient, graphql: FakeGraphQL) -> None:
    graphql.handlers["Reset"] = lambda q, v: {
        "data": {
            "resetAddOnPassword": {
                "addOn": {**ADD_ON, "password": "new", "publicUrl": "redis://default:new@fly-cache.upstash.io:6379"}
            }
        }
    }
    database = await fly.reset_password("addon-1")
    assert database.password == "new" and "new@" in database.url
    assert graphql.variables("Reset") == {"name": "cache"}


async def test_delete_by_name_and_already_gone(fly: FlyClient, graphql: FakeGraphQL) -> None:
    graphql.handlers["Delete"] = lambda q, v: {"data": {"deleteAddOn": {"deletedAddOnName": v["name"]}}}
    await fly.delete("addon-1")
    assert graphql.variables("Delete") == {"name": "cache"}
    graphql.handlers["Get"] = lambda q, v: {"data": {"addOn": None}}
    await fly.delete("addon-1")
    assert graphql.names().count("Delete") == 1
    graphql.handlers["Get"] = lambda q, v: {"data": {"addOn": ADD_ON}}
    graphql.handlers["Delete"] = lambda q, v: {"data": None, "errors": [{"message": "add-on not found"}]}
    await fly.delete("addon-1")


async def test_queries_are_retried_on_503(fly: FlyClient) -> None:
    with respx.mock as router:
        route = router.post(f"{BASE}/graphql").mock(
            side_effect=[httpx.Response(503), httpx.Response(200, json={"data": {"addOn": ADD_ON}})]
        )
        assert (await fly.get("addon-1")).name == "cache"
        assert route.call_count == 2


async def test_find_by_name_ignores_other_organizations(fly: FlyClient, graphql: FakeGraphQL) -> None:
    other = {**ADD_ON, "organization": {"id": "org-2", "slug": "acme"}}
    graphql.handlers["GetByName"] = lambda q, v: {"data": {"addOn": other}}
    assert await fly.find_by_name("cache") is None
