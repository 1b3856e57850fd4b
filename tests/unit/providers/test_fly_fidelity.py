"""The Fly adapter speaks Fly's API as flyctl/fly-go do (reference section 6), not as the local provider once read it.

Each test here failed on the adapter before issue 13's fixes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import respx

from redisdb_operator.models import ProviderCatalog
from redisdb_operator.provider_checks import ProviderChecker
from redisdb_operator.provider_registry import ProviderHandle
from redisdb_operator.providers import catalog
from redisdb_operator.providers.base import (
    Database,
    DatabaseUpdate,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    ProviderType,
)
from redisdb_operator.providers.fly import FlyClient, classify_graphql_errors, fly_authorization, parse_add_on
from redisdb_operator.providers.http import RetryPolicy

from .test_fly import ADD_ON, BASE, FakeGraphQL

OBSERVED = Database(id="addon-1", name="cache", primary_region="cdg", read_regions=("ams",), plan="payg")

MACAROON = "fm2_lJPECAAAAAAAAK0pxBCsGVwRExampleOnly,fm2_lJPEtwoExampleOnly"


@pytest.fixture
def graphql() -> Iterator[FakeGraphQL]:
    fake = FakeGraphQL()
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{BASE}/graphql").mock(side_effect=fake)
        yield fake


@pytest.fixture
async def fly() -> AsyncIterator[FlyClient]:
    client = FlyClient(BASE, token=f"FlyV1 {MACAROON}", retry=RetryPolicy(base_delay=0.001))
    yield client
    await client.aclose()


def _update_ok(graphql: FakeGraphQL) -> None:
    graphql.handlers["Update"] = lambda q, v: {"data": {"updateAddOn": {"addOn": {"id": v["addOnId"]}}}}


async def test_disabling_eviction_sends_false(fly: FlyClient, graphql: FakeGraphQL) -> None:
    """Fly keeps eviction as it is when the key is missing; only an explicit false turns it off (flyctl)."""
    _update_ok(graphql)
    await fly.update(OBSERVED, DatabaseUpdate(eviction=False))
    assert graphql.variables("Update")["options"]["eviction"] is False


async def test_prod_pack_is_never_echoed_in_options(fly: FlyClient, graphql: FakeGraphQL) -> None:
    """flyctl strips prod_pack from options: a stale echo once turned an active ProdPack off."""
    _update_ok(graphql)
    with_prod_pack = {**ADD_ON, "options": {"eviction": True, "prod_pack": True}}
    graphql.handlers["Get"] = lambda q, v: {"data": {"addOn": with_prod_pack}}
    await fly.update(OBSERVED, DatabaseUpdate(read_regions=("ams", "fra")))
    assert "prod_pack" not in graphql.variables("Update")["options"]


async def test_auto_upgrade_is_dropped_on_pay_as_you_go(fly: FlyClient, graphql: FakeGraphQL) -> None:
    """auto_upgrade exists only for fixed plans; flyctl deletes it for pay-as-you-go."""
    _update_ok(graphql)
    await fly.update(OBSERVED, DatabaseUpdate(eviction=True))  # ADD_ON is payg with auto_upgrade set
    assert graphql.variables("Update")["options"] == {"eviction": True}


@pytest.mark.parametrize(
    ("configured", "header"),
    [
        (f"FlyV1 {MACAROON}", f"FlyV1 {MACAROON}"),
        (MACAROON, f"FlyV1 {MACAROON}"),
        (f"Bearer {MACAROON}", f"FlyV1 {MACAROON}"),
        ("fm1r_readonly", "FlyV1 fm1r_readonly"),
        ("fm1a_access", "FlyV1 fm1a_access"),
        ("fo1_legacy-personal-token", "Bearer fo1_legacy-personal-token"),
        ("Bearer fo1_legacy", "Bearer fo1_legacy"),
        ("  FlyV1   fm2_spaced \n", "FlyV1 fm2_spaced"),
    ],
)
def test_authorization_scheme_follows_the_token(configured: str, header: str) -> None:
    assert fly_authorization(configured) == header


async def test_pasted_flyv1_token_is_sent_with_its_own_scheme(fly: FlyClient, graphql: FakeGraphQL) -> None:
    await fly.get("addon-1")
    assert graphql.calls[-1][2].headers["Authorization"] == f"FlyV1 {MACAROON}"


@pytest.mark.parametrize(
    "errors",
    [
        [{"message": "Something went wrong on our end"}],
        [{"message": "upstream request timeout", "path": ["createAddOn"]}],
        [{"message": "x", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}],
        ["not even an object"],
    ],
)
def test_unclassifiable_graphql_errors_are_temporary(errors: list[Any]) -> None:
    """No source documents Fly's error codes: an error we cannot name is not proof the request is wrong."""
    error = classify_graphql_errors(errors, operation="fly op")
    assert type(error) is ProviderError and error.temporary
    if isinstance(errors[0], dict):
        assert errors[0]["message"] in error.message


@pytest.mark.parametrize(
    "message",
    [
        'Cannot query field "nope" on type "AddOn".',
        'Variable "$input" got invalid value "x" at "input.type"; Value "x" does not exist in "AddOnType" enum.',
        "region mad is not available for upstash_redis: choose one of ams, fra",
        "ProdPack can only be changed together with a plan change",
    ],
)
def test_refusals_we_can_name_stay_permanent(message: str) -> None:
    assert type(classify_graphql_errors([{"message": message}], operation="op")) is InvalidRequestError


def test_error_status_shows_the_error_message() -> None:
    database = parse_add_on(
        {**ADD_ON, "status": "error", "errorMessage": "provisioning failed in region mad"}, operation="t"
    )
    assert database.state == "error"
    assert database.state_message == "provisioning failed in region mad"


async def test_get_selects_error_message(fly: FlyClient, graphql: FakeGraphQL) -> None:
    await fly.get("addon-1")
    query = graphql.calls[-1][2].content.decode()
    assert "errorMessage" in query


async def test_not_found_still_recognised_by_message(fly: FlyClient, graphql: FakeGraphQL) -> None:
    graphql.handlers["Get"] = lambda q, v: {"data": {"addOn": None}, "errors": [{"message": "Could not find AddOn"}]}
    with pytest.raises(NotFoundError):
        await fly.get("gone")


# --- the live catalog -----------------------------------------------------------------------------------------


async def test_live_catalog_from_regions_excluded_regions_and_plans(fly: FlyClient, graphql: FakeGraphQL) -> None:
    graphql.handlers["Catalog"] = lambda q, v: {
        "data": {
            "platform": {
                "regions": [
                    {"code": "ams", "name": "Amsterdam, Netherlands", "deprecated": False},
                    {"code": "mad", "name": "Madrid, Spain", "deprecated": True},
                    {"code": "jnb", "name": "Johannesburg, South Africa", "deprecated": False},
                ]
            },
            "addOnProvider": {"excludedRegions": [{"code": "jnb"}]},
            "addOnPlans": {
                "nodes": [
                    {"id": "p1", "name": "flyio_fixed_1gb", "displayName": "Fixed 1GB", "maxDataSize": "1 GB",
                     "pricePerMonth": 2000},
                    {"id": "p2", "name": "pro_2k", "displayName": "Pro 2k", "maxDataSize": "3 GB",
                     "pricePerMonth": None},
                    {"id": "p3", "name": "x", "displayName": "Starter", "maxDataSize": "lots", "pricePerMonth": 0},
                ]
            },
        }
    }  # fmt: skip
    live = await fly.catalog("2026-11-30T10:00:00Z")
    parsed = ProviderCatalog.model_validate(live)  # the CRD's shape
    assert parsed.source == "live" and parsed.observed_at == "2026-11-30T10:00:00Z"
    regions = {region.code: region for region in parsed.regions}
    assert regions["mad"].deprecated and not regions["mad"].read_region_allowed
    assert regions["jnb"].excluded and not regions["jnb"].read_region_allowed
    assert regions["ams"].read_region_allowed and not regions["ams"].excluded
    plans = {plan.display_name: plan for plan in parsed.plans}
    assert (plans["Fixed 1GB"].name, plans["Fixed 1GB"].price_per_month) == ("fixed_1gb", 20.0)
    assert plans["Fixed 1GB"].max_data_size_bytes == 1024**3 and not plans["Fixed 1GB"].legacy
    assert plans["Pro 2k"].legacy and plans["Pro 2k"].price_per_month is None
    assert plans["Starter"].legacy and plans["Starter"].max_data_size_bytes is None


def test_static_catalog_has_the_published_shape() -> None:
    for provider_type in ProviderType:
        parsed = ProviderCatalog.model_validate(catalog.static_catalog(provider_type, "2026-11-30T10:00:00Z"))
        assert parsed.source == "static" and parsed.regions and parsed.plans
    fly_static = ProviderCatalog.model_validate(catalog.static_catalog(ProviderType.FLY, "t"))
    assert {plan.name for plan in fly_static.plans if plan.legacy} == {"starter", "standard", "pro_2k", "pro_10k"}
    assert next(region for region in fly_static.regions if region.code == "mad").deprecated


async def test_a_failing_live_catalog_falls_back_to_the_static_one(fly: FlyClient, graphql: FakeGraphQL) -> None:
    graphql.handlers["Catalog"] = lambda q, v: {"errors": [{"message": "Cannot query field 'platform'"}]}
    handle = ProviderHandle("default", ProviderType.FLY, fly, ("1", "1"))
    published = await ProviderChecker._catalog(handle, "2026-11-30T10:00:00Z")
    assert published["source"] == "static"
    graphql.handlers["Catalog"] = lambda q, v: {
        "data": {"platform": {"regions": []}, "addOnProvider": {"excludedRegions": None}, "addOnPlans": {"nodes": []}}
    }
    assert (await ProviderChecker._catalog(handle, "t"))["source"] == "live"


def test_create_refusals_follow_the_live_catalog() -> None:
    live = {
        "source": "live",
        "observedAt": "t",
        "regions": [
            {"code": "ams", "name": "Amsterdam", "deprecated": False, "excluded": False},
            {"code": "jnb", "name": "Johannesburg", "deprecated": False, "excluded": True},
            {"code": "mad", "name": "Madrid", "deprecated": False, "excluded": False},  # were it offered again
            {"code": "zzz", "name": "New", "deprecated": False, "excluded": False},
        ],
        "plans": [{"name": "fixed_1gb", "displayName": "Fixed 1GB", "legacy": True}],
    }
    excluded = catalog.creation_refusal(ProviderType.FLY, "ams", ["jnb"], "payg", live)
    assert excluded is not None and "spec.readRegions jnb (Johannesburg) is not offered for Redis" in excluded
    assert "zzz" in excluded and "jnb" not in excluded.split("choose one of")[1]
    assert catalog.creation_refusal(ProviderType.FLY, "mad", [], "payg", live) is None
    legacy = catalog.creation_refusal(ProviderType.FLY, "ams", [], "fixed_1gb", live)
    assert legacy is not None and "legacy" in legacy
    static = catalog.creation_refusal(ProviderType.FLY, "mad", [], "payg")  # no live catalog: the static one
    assert static is not None and "mad (Madrid, Spain) is retired" in static
