"""billing.py: the console link, the plan's limits and the cost, only from what a source gives; and the reconcile
writing them with the rest of the status (`status.observed_status`)."""

from __future__ import annotations

from typing import Any

import pytest

from redisdb_operator.billing import (
    billing_fields,
    dashboard_url,
    estimated_cost,
    plan_facts,
    plan_limits,
    static_fields,
)
from redisdb_operator.providers import catalog
from redisdb_operator.providers.base import Database, ProviderType
from redisdb_operator.status import observed_status

FLY, UPSTASH = ProviderType.FLY, ProviderType.UPSTASH
GIB = catalog.GIB


def test_the_console_link_is_upstashs_page_and_fly_has_none() -> None:
    assert dashboard_url(UPSTASH, "db-1") == "https://console.upstash.com/redis/db-1"
    assert dashboard_url(UPSTASH, None) is None
    assert dashboard_url(FLY, "db-1") is None  # ssoLink is a credential; no credential-free link exists


def test_plan_limits_hold_only_what_a_source_gives() -> None:
    assert plan_limits(catalog.plan(UPSTASH, "payg")) == {
        "maxDataSizeBytes": 10 * catalog.GIB,
        "maxRequestSizeBytes": 10 * catalog.MIB,
    }
    assert plan_limits(catalog.plan(FLY, "fixed_1gb")) == {"maxDataSizeBytes": catalog.GIB}
    assert plan_limits(None) is None


@pytest.mark.parametrize(
    ("provider_type", "plan", "read_regions", "requests", "amount", "in_basis"),
    [
        (UPSTASH, "payg", 0, 250_000, 0.5, "$0.20 per 100k requests x 250000 requests"),
        (FLY, "payg", 2, 100_000, 0.2, "pay-as-you-go"),  # read regions cost nothing extra on pay-as-you-go
        (FLY, "fixed_1gb", 0, None, 20.0, "Fixed 1GB: $20/month"),
        (FLY, "fixed_250mb", 2, 999, 20.0, "2 read region(s) x $5/month"),
        (FLY, "free", 0, 10, 0.0, "Free"),
    ],
)
def test_cost_comes_from_a_price_a_source_gives(
    provider_type: ProviderType, plan: str, read_regions: int, requests: int | None, amount: float, in_basis: str
) -> None:
    cost = estimated_cost(catalog.plan(provider_type, plan), read_regions=read_regions, requests=requests)
    assert cost is not None
    assert cost["amount"] == pytest.approx(amount) and cost["currency"] == "USD" and in_basis in cost["basis"]


@pytest.mark.parametrize(
    ("provider_type", "plan", "requests"),
    [
        (UPSTASH, "fixed_1gb", None),  # no source read prices Upstash's fixed plans
        (UPSTASH, "free", None),  # nor Upstash's free plan (the catalog says no price, not $0)
        (UPSTASH, "fixed_500gb", 10),
        (UPSTASH, "payg", None),  # pay-as-you-go before any request count
        (FLY, "no_such_plan", 10),
    ],
)
def test_no_cost_where_no_source_prices_the_plan(provider_type: ProviderType, plan: str, requests: int | None) -> None:
    assert estimated_cost(catalog.plan(provider_type, plan), read_regions=1, requests=requests) is None


def test_static_fields_follow_the_status_and_payg_cost_waits_for_usage() -> None:
    fly = static_fields(FLY, {"databaseId": "a", "plan": "fixed_5gb", "readRegions": ["ams", "fra"]})
    assert fly["dashboardURL"] is None and fly["planLimits"] == {"maxDataSizeBytes": 5 * catalog.GIB}
    assert fly["estimatedMonthlyCost"]["amount"] == 200  # $100 + 2 x $50
    upstash = static_fields(UPSTASH, {"databaseId": "b", "plan": "payg"})
    assert upstash["dashboardURL"] == "https://console.upstash.com/redis/b" and upstash["estimatedMonthlyCost"] is None
    counted = static_fields(UPSTASH, {"databaseId": "b", "plan": "payg", "usage": {"requests": 1_000_000}})
    assert counted["estimatedMonthlyCost"]["amount"] == 2.0


def test_the_reconcile_writes_the_billing_fields_with_the_mirror() -> None:
    fixed = Database(id="a1", name="n", primary_region="ams", read_regions=("fra",), plan="fixed_1gb")
    mirrored = observed_status(fixed, FLY)
    assert mirrored["planLimits"] == {"maxDataSizeBytes": catalog.GIB} and mirrored["dashboardURL"] is None
    assert mirrored["estimatedMonthlyCost"]["amount"] == 30
    payg = observed_status(fixed.model_copy(update={"plan": "payg", "id": "u1"}), UPSTASH)
    assert payg["dashboardURL"] == "https://console.upstash.com/redis/u1" and payg["estimatedMonthlyCost"] is None
    assert "planLimits" not in observed_status(fixed)  # without the provider's type: the mirror only


def test_the_providers_live_plan_list_wins_for_price_and_size() -> None:
    one_gb = {"name": "fixed_1gb", "displayName": "Fixed 1GB", "pricePerMonth": 25.0, "maxDataSizeBytes": 2 * GIB}
    pro = {"name": "pro_2k", "displayName": "Pro 2k", "pricePerMonth": 280, "maxDataSizeBytes": None}
    live = {"source": "live", "plans": [one_gb, {"name": "fixed_5gb", "pricePerMonth": None}, pro, "not a plan"]}

    def fields(plan: str, read_regions: int) -> dict[str, Any]:
        return billing_fields(
            FLY, database_id="a", plan_name=plan, read_regions=read_regions, requests=None, live_catalog=live
        )

    listed = fields("fixed_1gb", 1)
    assert listed["planLimits"] == {"maxDataSizeBytes": 2 * GIB}
    cost = listed["estimatedMonthlyCost"]
    assert cost["amount"] == 35 and "Fly.io's plan list" in cost["basis"]  # $25 listed + $10 per read region
    assert fields("fixed_5gb", 0)["estimatedMonthlyCost"]["amount"] == 100  # listed without a price: the static one
    legacy = fields("pro_2k", 0)
    assert legacy["estimatedMonthlyCost"]["amount"] == 280 and legacy["planLimits"] == {"maxDataSizeBytes": 3 * GIB}
    plan, source = plan_facts(FLY, "fixed_1gb", None)
    assert plan is not None and plan.price_per_month == 20 and "published plan prices" in source
