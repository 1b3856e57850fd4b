"""One contract table per API: per operation, the request the adapter sends and an answer shaped as the provider
documents it (written from shared/reference/provider-apis.md, awkward cases included).

Each row runs twice (test_contract.py): against the adapter through httpx.MockTransport answering the documented
shape, and against the local provider over HTTP, whose real answer must have the documented keys, JSON types and
enum values. Rows the local provider cannot produce by design say why in ``mock_only``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from redisdb_operator.providers import fly
from redisdb_operator.providers.base import (
    CreateDatabaseRequest,
    Database,
    DatabaseUpdate,
    InvalidRequestError,
    NotFoundError,
    ProviderClient,
    ProviderError,
    ProviderType,
    UnauthorizedError,
)

Call = Callable[[ProviderClient, str], Awaitable[Any]]  # (adapter, id of an existing database) -> result


@dataclass(frozen=True)
class Row:
    id: str
    api: ProviderType
    call: Call
    route: Any  # Upstash: (method, path regex); Fly: the GraphQL document the answer belongs to
    documented: Any  # the answer's body as the provider documents it
    status: int = 200
    sent: Callable[[httpx.Request], None] | None = None  # what the request must look like
    result: Callable[[Any], None] | None = None  # what the adapter makes of the documented answer
    raises: type[Exception] | None = None
    temporary: bool | None = None  # for ``raises``: must the error be retried?
    mock_only: str | None = None  # why the local provider cannot produce this answer
    needs_database: bool = True  # the local half creates a database first
    wrong_credentials: bool = False
    nullable: frozenset[str] = field(default_factory=frozenset)
    allowed_extra: frozenset[str] = field(default_factory=frozenset)


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content) if request.content else None


def matches(row_api: ProviderType, route: Any, request: httpx.Request) -> bool:
    if row_api is ProviderType.UPSTASH:
        method, pattern = route
        return request.method == method and re.search(pattern, request.url.path) is not None
    return (body_of(request) or {}).get("query") == route


# --- Upstash Developer API v2 -------------------------------------------------------------------------------

# Database as the current OpenAPI has it (type free|payg|pro|paid, no database_type), plus the credentials every
# official client still reads (sections 1.5 and 6).
UPSTASH_DATABASE: dict[str, Any] = {
    "database_id": "96ad0856-03b1-4ee7-9666-e81abd0349e1",
    "database_name": "cache",
    "region": "global",
    "type": "payg",
    "port": 6379,
    "creation_time": 1752649602,
    "state": "active",
    "password": "038a8e27c45e43068d5f186085399884",
    "endpoint": "all-foxe-22421.upstash.io",
    "tls": True,
    "eviction": False,
    "primary_region": "us-east-1",
    "read_regions": ["us-west-1"],
    "rest_token": "AXW_ASQgcontract",
    "read_only_rest_token": "AnW_ASQgcontract",
}
# Every field some source documents for Database (section 1.5): the local provider may send these too.
UPSTASH_DOCUMENTED_FIELDS = frozenset(
    {
        *UPSTASH_DATABASE,
        "database_type", "user_email", "customer_id", "auto_upgrade", "consistent", "multizone",
        "prod_pack_enabled", "budget", "primary_members", "all_members", "modifying_state", "db_max_clients",
        "db_max_request_size", "db_disk_threshold", "db_max_entry_size", "db_memory_threshold",
        "db_daily_bandwidth_limit", "db_max_commands_per_second", "db_request_limit", "db_resource_size", "db_type",
        "db_conn_idle_timeout", "db_lua_timeout", "db_lua_credits_per_min", "db_store_max_idle",
        "db_max_loads_per_sec", "db_acl_enabled", "db_acl_default_user_status", "db_eviction",
        "last_plan_upgrade_time", "replicas", "daily_backup_enabled", "securityAddons", "prometheus_enabled",
        "reserved_per_region_price", "next_daily_backup_time", "allowed_ip_ranges", "cluster_id", "pool_id",
    }
)  # fmt: skip
# Sent only by the local provider (its REST server is not at https://{endpoint}); docs/wire-contract.md.
UPSTASH_LOCAL_ONLY = frozenset({"rest_url"})
UPSTASH_EXTRA = UPSTASH_DOCUMENTED_FIELDS | UPSTASH_LOCAL_ONLY


def _upstash_create_body(request: httpx.Request) -> None:
    body = body_of(request)
    # the form the live API is known to accept (upstash/cli's 2026 integration test)
    assert set(body) == {"database_name", "region", "primary_region", "read_regions", "eviction", "plan"}, body
    assert body["region"] == "global" and isinstance(body["read_regions"], list)


def _upstash_payg(database: Database) -> None:
    assert (database.plan, database.plan_observable) == ("payg", True)
    assert database.tls and database.url.startswith("rediss://default:")


def _upstash_paid_slug(database: Database) -> None:
    assert database.host == "all-foxe-22421.upstash.io"
    assert (database.plan, database.plan_observable) == ("paid", False)


def _json_body(expected: Any) -> Callable[[httpx.Request], None]:
    def check(request: httpx.Request) -> None:
        assert body_of(request) == expected, body_of(request)

    return check


def _create(primary: str, read: tuple[str, ...], plan: str = "payg") -> Call:
    async def call(client: ProviderClient, _: str) -> Any:
        return await client.create(
            CreateDatabaseRequest(name=f"contract-{client.provider_type.value}", primary_region=primary,
                                  read_regions=read, plan=plan)
        )  # fmt: skip

    return call


def _update(update: DatabaseUpdate) -> Call:
    async def call(client: ProviderClient, database_id: str) -> Any:
        # The adapter is handed the database as observed; the contract only needs its id.
        observed = Database(id=database_id, name="contract", primary_region="unknown", plan="payg")
        return await client.update(observed, update)

    return call


async def _get(client: ProviderClient, database_id: str) -> Any:
    return await client.get(database_id)


async def _get_unknown(client: ProviderClient, _: str) -> Any:
    return await client.get("no-such-database")


async def _list(client: ProviderClient, _: str) -> Any:
    return await client.list()


async def _reset(client: ProviderClient, database_id: str) -> Any:
    return await client.reset_password(database_id)


async def _delete(client: ProviderClient, database_id: str) -> Any:
    return await client.delete(database_id)


UPSTASH_ROWS = [
    Row(
        "create", ProviderType.UPSTASH, _create("us-east-1", ("us-west-1",)), ("POST", r"/redis/database$"),
        UPSTASH_DATABASE, sent=_upstash_create_body, result=_upstash_payg, needs_database=False,
        allowed_extra=UPSTASH_EXTRA,
    ),
    Row(
        "create-paid-slug", ProviderType.UPSTASH, _create("us-east-1", (), "fixed_1gb"), ("POST", r"/redis/database$"),
        {**UPSTASH_DATABASE, "type": "paid", "endpoint": "all-foxe-22421"}, result=_upstash_paid_slug,
        mock_only="the local provider serves full hosts, never a bare slug", needs_database=False,
    ),
    Row("get", ProviderType.UPSTASH, _get, ("GET", r"/redis/database/[^/]+$"), UPSTASH_DATABASE,
        allowed_extra=UPSTASH_EXTRA),
    Row("list", ProviderType.UPSTASH, _list, ("GET", r"/redis/databases$"), [UPSTASH_DATABASE],
        allowed_extra=UPSTASH_EXTRA, result=lambda databases: databases),
    Row("update-regions", ProviderType.UPSTASH, _update(DatabaseUpdate(read_regions=("us-west-1",))),
        ("POST", r"/redis/update-regions/[^/]+$"), "OK", sent=_json_body({"read_regions": ["us-west-1"]})),
    Row("disable-eviction", ProviderType.UPSTASH, _update(DatabaseUpdate(eviction=False)),
        ("POST", r"/redis/disable-eviction/[^/]+$"), "OK"),
    Row("enable-eviction", ProviderType.UPSTASH, _update(DatabaseUpdate(eviction=True)),
        ("POST", r"/redis/enable-eviction/[^/]+$"), "OK"),
    Row("change-plan", ProviderType.UPSTASH, _update(DatabaseUpdate(plan="fixed_250mb")),
        ("POST", r"/redis/[^/]+/change-plan$"), "OK", sent=_json_body({"plan_name": "fixed_250mb"})),
    Row("reset-password", ProviderType.UPSTASH, _reset, ("POST", r"/redis/reset-password/[^/]+$"), UPSTASH_DATABASE,
        allowed_extra=UPSTASH_EXTRA),
    Row("delete", ProviderType.UPSTASH, _delete, ("DELETE", r"/redis/database/[^/]+$"), "OK"),
    Row(
        "invalid-region", ProviderType.UPSTASH, _create("mars-1", ()), ("POST", r"/redis/database$"),
        "unknown primary region 'mars-1' for upstash", status=400, raises=InvalidRequestError, temporary=False,
        needs_database=False,
    ),
    Row(
        "unauthorized", ProviderType.UPSTASH, _list, ("GET", r"/redis/databases$"), {"error": "Unauthorized"},
        status=401, raises=UnauthorizedError, needs_database=False, wrong_credentials=True,
    ),
]  # fmt: skip


# --- Fly.io GraphQL -----------------------------------------------------------------------------------------

FLY_ADD_ON: dict[str, Any] = {
    "id": "BNjgx9jSD5iqGz8",
    "name": "contract-fly",
    "primaryRegion": "cdg",
    "readRegions": ["ams"],
    "status": "ready",
    "errorMessage": None,
    "options": {"eviction": False},
    "metadata": {},
    "publicUrl": "redis://default:0123456789abcdef@fly-contract-fly.upstash.io:6379",
    "privateIp": "fdaa:0:1::3",
    "password": "0123456789abcdef",
    "hostname": "fly-contract-fly.upstash.io",
    "createdAt": "2026-11-30T10:00:00Z",
    "addOnPlan": {"id": fly.PAYG_PLAN_ID, "name": "payg", "displayName": "Pay-as-you-go"},
    "organization": {"id": "org_1", "slug": "personal"},
}
FLY_PLANS = {
    "data": {
        "addOnPlans": {
            "nodes": [
                {"id": fly.FREE_PLAN_ID, "name": "free", "displayName": "Free", "maxDataSize": "100 MB",
                 "pricePerMonth": 0},
                {"id": fly.PAYG_PLAN_ID, "name": "payg", "displayName": "Pay-as-you-go", "maxDataSize": "10 GB",
                 "pricePerMonth": 0},
            ]
        }
    }
}  # fmt: skip
FLY_ORG = {"data": {"organization": {"id": "org_1", "slug": "personal"}}}
# GraphQL nullable fields: null on one side and a value on the other is the same shape.
FLY_NULLABLE = frozenset(
    {"errorMessage", "options", "metadata", "publicUrl", "privateIp", "password", "hostname", "name",
     "displayName", "primaryRegion", "readRegions", "status", "maxDataSize", "pricePerMonth", "deletedAddOnName"}
)  # fmt: skip
# Support answers for the calls a row makes before its own (organization id, plan ids, the add-on by id).
FLY_SUPPORT = {
    fly.ORG_QUERY: FLY_ORG,
    fly.PLANS_QUERY: FLY_PLANS,
    fly.GET_QUERY: {"data": {"addOn": FLY_ADD_ON}},
    fly.CREATE_MUTATION: {"data": {"createAddOn": {"addOn": FLY_ADD_ON}}},
}


def _fly_create_sent(request: httpx.Request) -> None:
    assert request.headers["Authorization"].startswith("FlyV1 fm2_")  # a macaroon goes with its own scheme
    add_on_input = body_of(request)["variables"]["input"]
    assert set(add_on_input) == {"organizationId", "name", "primaryRegion", "readRegions", "planId", "type"}
    assert add_on_input["type"] == "upstash_redis"


def _fly_eviction_off_sent(request: httpx.Request) -> None:
    options = body_of(request)["variables"]["options"]
    assert options.get("eviction") is False and "prod_pack" not in options, options


def _fly_error_state(database: Database) -> None:
    assert (database.state, database.state_message) == ("error", "provisioning failed: no capacity in cdg")


FLY_ROWS = [
    Row("createAddOn", ProviderType.FLY, _create("cdg", ("ams",)), fly.CREATE_MUTATION,
        {"data": {"createAddOn": {"addOn": FLY_ADD_ON}}}, sent=_fly_create_sent, needs_database=False,
        nullable=FLY_NULLABLE, result=lambda database: database),
    Row("organization", ProviderType.FLY, _create("cdg", ()), fly.ORG_QUERY, FLY_ORG, needs_database=False),
    Row("addOnPlans", ProviderType.FLY, _create("cdg", ()), fly.PLANS_QUERY, FLY_PLANS, needs_database=False,
        nullable=FLY_NULLABLE),
    Row("addOn", ProviderType.FLY, _get, fly.GET_QUERY, {"data": {"addOn": FLY_ADD_ON}}, nullable=FLY_NULLABLE),
    Row("organization.addOns", ProviderType.FLY, _list, fly.LIST_QUERY,
        # a Relay connection (flyctl's schema: AddOnConnection.pageInfo: PageInfo!); the adapter reads it page by page
        {"data": {"organization": {"addOns": {"nodes": [FLY_ADD_ON],
                                              "pageInfo": {"hasNextPage": False, "endCursor": "MQ"}}}}},
        nullable=FLY_NULLABLE),
    Row("updateAddOn", ProviderType.FLY, _update(DatabaseUpdate(eviction=False)), fly.UPDATE_MUTATION,
        {"data": {"updateAddOn": {"addOn": {"id": FLY_ADD_ON["id"]}}}}, sent=_fly_eviction_off_sent),
    Row("resetAddOnPassword", ProviderType.FLY, _reset, fly.RESET_MUTATION,
        {"data": {"resetAddOnPassword": {"addOn": FLY_ADD_ON}}}, nullable=FLY_NULLABLE),
    Row("deleteAddOn", ProviderType.FLY, _delete, fly.DELETE_MUTATION,
        {"data": {"deleteAddOn": {"deletedAddOnName": "contract-fly"}}}, nullable=FLY_NULLABLE),
    Row(
        "addOn-unknown", ProviderType.FLY, _get_unknown, fly.GET_QUERY,
        {"data": {"addOn": None}, "errors": [{"message": "Could not find AddOn", "path": ["addOn"]}]},
        raises=NotFoundError, needs_database=False, allowed_extra=frozenset({"extensions", "locations"}),
    ),
    Row(
        "errors-without-code", ProviderType.FLY, _get, fly.GET_QUERY,
        {"data": None, "errors": [{"message": "Something went wrong; please try again"}]},
        raises=ProviderError, temporary=True,
        mock_only="the local provider does not fail without a reason; fly-go shows no codes are promised",
    ),
    Row(
        "status-error", ProviderType.FLY, _get, fly.GET_QUERY,
        {"data": {"addOn": {**FLY_ADD_ON, "status": "error",
                            "errorMessage": "provisioning failed: no capacity in cdg"}}},
        result=_fly_error_state, mock_only="the local provider never fails a provisioning",
    ),
    Row(
        "unauthenticated", ProviderType.FLY, _list, fly.LIST_QUERY,
        {"data": None, "errors": [{"message": "You must be authenticated to view this."}]},
        raises=UnauthorizedError, needs_database=False, wrong_credentials=True,
        allowed_extra=frozenset({"extensions"}),
    ),
]  # fmt: skip

ROWS = UPSTASH_ROWS + FLY_ROWS
