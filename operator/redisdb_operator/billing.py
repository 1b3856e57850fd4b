"""What users look up next to the connection, as pure rules: the console link, the plan's limits, the cost.

Only what a source gives: the console link where one exists without a credential in it (Upstash; Fly's `ssoLink`
signs its holder in), limits and prices from the provider's own plan list when the last provider check read one
(Fly's `addOnPlans`: `RedisProvider.status.catalog`, the registry's `live_catalog`), else the static catalog
(`providers/catalog.py`), pay-as-you-go at the seed's $0.20 per 100k requests. The reconcile writes these with the
rest of the status (`status.observed_status`); the usage daemon (`usage.py`) adds the pay-as-you-go cost once it
has counted requests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .providers import catalog
from .providers.base import ProviderType
from .providers.kinds import kind_of

CURRENCY = "USD"


def dashboard_url(provider_type: ProviderType | str, database_id: str | None) -> str | None:
    """The provider's console page of one database, with no credential in it; None where none exists (Fly)."""
    template = kind_of(provider_type).console_url
    if template is None or not database_id:
        return None
    return template.format(database_id=database_id)


def plan_facts(
    provider_type: ProviderType | str, plan_name: str, live_catalog: Mapping[str, Any] | None = None
) -> tuple[catalog.Plan | None, str]:
    """(the plan, where its price comes from): the provider's live plan list wins for the price and the data size,
    the static catalog fills in what the list does not carry (read-region prices, request size)."""
    provider_type = ProviderType(provider_type)
    known = catalog.plan(provider_type, plan_name)
    listed = next(
        (
            entry
            for entry in (live_catalog or {}).get("plans") or ()
            if isinstance(entry, Mapping) and entry.get("name") == plan_name
        ),
        None,
    )
    source = f"{kind_of(provider_type).display_name}'s published plan prices"
    if listed is None:
        return known, source
    price, size = _amount(listed.get("pricePerMonth")), _amount(listed.get("maxDataSizeBytes"))
    base = known or catalog.Plan(plan_name, str(listed.get("displayName") or plan_name), 0, None, False)
    plan = dataclasses.replace(
        base,
        price_per_month=price if price is not None else base.price_per_month,
        max_data_size_bytes=int(size) if size else base.max_data_size_bytes,
    )
    if price is not None:
        source = f"{kind_of(provider_type).display_name}'s plan list"
    return plan, source


def _amount(value: Any) -> float | None:
    """A non-negative number from a published catalog; anything else is no value."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


def plan_limits(plan: catalog.Plan | None) -> dict[str, int] | None:
    """`status.planLimits`: only the limits a source gives for the plan."""
    if plan is None:
        return None
    limits = {
        "maxDataSizeBytes": plan.max_data_size_bytes or None,
        "maxDailyCommands": plan.max_daily_commands,
        "maxRequestSizeBytes": plan.max_request_size_bytes,
    }
    given = {key: value for key, value in limits.items() if value is not None}
    return given or None


def estimated_cost(
    plan: catalog.Plan | None, *, read_regions: int, requests: int | None, source: str = "published plan prices"
) -> dict[str, Any] | None:
    """`status.estimatedMonthlyCost`, only from prices a source gives; None where none does.

    A plan with a monthly price costs that (plus each read region's price, where the source prices them);
    pay-as-you-go costs $0.20 per 100k requests times the requests the provider counted this month so far.
    """
    if plan is None:
        return None
    if plan.name == "payg":
        if requests is None:
            return None
        amount = requests * catalog.PAYG_USD_PER_100K_REQUESTS / 100_000
        basis = (
            f"pay-as-you-go: ${catalog.PAYG_USD_PER_100K_REQUESTS:.2f} per 100k requests x {requests} requests "
            "counted this month so far"
        )
        return {"amount": round(amount, 4), "currency": CURRENCY, "basis": basis}
    if plan.price_per_month is None:
        return None
    amount = plan.price_per_month
    basis = f"{plan.display_name}: ${plan.price_per_month:g}/month"
    if read_regions and plan.price_per_read_region is not None:
        amount += read_regions * plan.price_per_read_region
        basis += f" + {read_regions} read region(s) x ${plan.price_per_read_region:g}/month"
    elif read_regions:
        basis += f" (its {read_regions} read region(s) are priced by no source: not included)"
    return {"amount": round(amount, 4), "currency": CURRENCY, "basis": f"{basis} ({source})"}


def billing_fields(
    provider_type: ProviderType | str,
    *,
    database_id: str | None,
    plan_name: str,
    read_regions: int,
    requests: int | None,
    live_catalog: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`dashboardURL`, `planLimits`, `estimatedMonthlyCost` (None where no source gives one). Pay-as-you-go's cost
    needs the request count the usage daemon reads; without it, None."""
    plan, source = plan_facts(provider_type, plan_name, live_catalog)
    return {
        "dashboardURL": dashboard_url(provider_type, database_id),
        "planLimits": plan_limits(plan),
        "estimatedMonthlyCost": estimated_cost(plan, read_regions=read_regions, requests=requests, source=source),
    }


def static_fields(
    provider_type: ProviderType | str, status: Mapping[str, Any], live_catalog: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The billing fields a status calls for, its counted requests (`status.usage.requests`) included."""
    requests = (status.get("usage") or {}).get("requests")
    return billing_fields(
        provider_type,
        database_id=status.get("databaseId"),
        plan_name=str(status.get("plan") or ""),
        read_regions=len(status.get("readRegions") or ()),
        requests=requests if isinstance(requests, int) and not isinstance(requests, bool) else None,
        live_catalog=live_catalog,
    )
