"""Region and plan catalogs per provider type: the single source of these facts.

Fly region codes come from Fly's docs (18 current codes) plus the retired codes Fly has used; retired ones are
flagged ``deprecated``: a new database there is refused at the reconcile's create (Fly no longer offers them,
reference section 6), an existing one is still managed. Fly's legacy plans are flagged ``legacy`` the same way.
Upstash codes and plan names come from the Upstash Developer API's OpenAPI document.
Sources: shared/reference/provider-apis.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .base import ProviderType

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True)
class Region:
    code: str
    name: str
    deprecated: bool = False
    read_region_allowed: bool = True


@dataclass(frozen=True)
class Plan:
    """A plan: ``name`` is the canonical name used in spec.plan; ``display_name`` is what the provider shows."""

    name: str
    display_name: str
    max_data_size_bytes: int
    max_read_regions: int | None  # None = unlimited, 0 = single region only
    fixed_price: bool
    # No longer offered for new databases, but existing ones may stay on it (Fly's seed-era plans; section 6).
    legacy: bool = False
    price_per_month: float | None = None  # US dollars, when a source states it
    # Only what a source states (provider-apis.md section 3.5, the seed); None means no source gives it.
    price_per_read_region: float | None = None  # US dollars a month for each read region on a fixed plan
    max_request_size_bytes: int | None = None
    max_daily_commands: int | None = None


_FLY_CURRENT = {
    "ams": "Amsterdam, Netherlands",
    "arn": "Stockholm, Sweden",
    "bom": "Mumbai, India",
    "cdg": "Paris, France",
    "dfw": "Dallas, Texas (US)",
    "ewr": "Secaucus, NJ (US)",
    "fra": "Frankfurt, Germany",
    "gru": "Sao Paulo, Brazil",
    "iad": "Ashburn, Virginia (US)",
    "jnb": "Johannesburg, South Africa",
    "lax": "Los Angeles, California (US)",
    "lhr": "London, United Kingdom",
    "nrt": "Tokyo, Japan",
    "ord": "Chicago, Illinois (US)",
    "sin": "Singapore, Singapore",
    "sjc": "San Jose, California (US)",
    "syd": "Sydney, Australia",
    "yyz": "Toronto, Canada",
}
_FLY_RETIRED = {
    "atl": "Atlanta, Georgia (US)",
    "bog": "Bogota, Colombia",
    "bos": "Boston, Massachusetts (US)",
    "den": "Denver, Colorado (US)",
    "eze": "Ezeiza, Argentina",
    "gdl": "Guadalajara, Mexico",
    "gig": "Rio de Janeiro, Brazil",
    "hkg": "Hong Kong, Hong Kong",
    "mad": "Madrid, Spain",
    "mia": "Miami, Florida (US)",
    "otp": "Bucharest, Romania",
    "phx": "Phoenix, Arizona (US)",
    "qro": "Queretaro, Mexico",
    "scl": "Santiago, Chile",
    "sea": "Seattle, Washington (US)",
    "waw": "Warsaw, Poland",
    "yul": "Montreal, Canada",
}

_UPSTASH_AWS = {
    "us-east-1": "US East (N. Virginia)",
    "us-east-2": "US East (Ohio)",
    "us-west-1": "US West (N. California)",
    "us-west-2": "US West (Oregon)",
    "ca-central-1": "Canada (Central)",
    "eu-central-1": "Europe (Frankfurt)",
    "eu-west-1": "Europe (Ireland)",
    "eu-west-2": "Europe (London)",
    "sa-east-1": "South America (Sao Paulo)",
    "ap-south-1": "Asia Pacific (Mumbai)",
    "ap-northeast-1": "Asia Pacific (Tokyo)",
    "ap-southeast-1": "Asia Pacific (Singapore)",
    "ap-southeast-2": "Asia Pacific (Sydney)",
    "af-south-1": "Africa (Cape Town)",
}
# af-south-1 and the GCP regions may be primaries but are not in the read-region enum.
_UPSTASH_PRIMARY_ONLY = {"af-south-1"}
_UPSTASH_GCP = {
    "us-central1": "GCP US Central (Iowa)",
    "us-east4": "GCP US East (N. Virginia)",
    "europe-west1": "GCP Europe West (Belgium)",
    "asia-northeast1": "GCP Asia Northeast (Tokyo)",
}

REGIONS: dict[ProviderType, dict[str, Region]] = {
    ProviderType.FLY: {
        **{code: Region(code, name) for code, name in _FLY_CURRENT.items()},
        **{code: Region(code, name, deprecated=True) for code, name in _FLY_RETIRED.items()},
    },
    ProviderType.UPSTASH: {
        **{
            code: Region(code, name, read_region_allowed=code not in _UPSTASH_PRIMARY_ONLY)
            for code, name in _UPSTASH_AWS.items()
        },
        **{code: Region(code, name, read_region_allowed=False) for code, name in _UPSTASH_GCP.items()},
    },
}

# Pay-as-you-go, as the seed and Fly's docs state it: $0.20 per 100k requests, a 10 MB request.
PAYG_USD_PER_100K_REQUESTS = 0.20
_PAYG_MAX_REQUEST_SIZE = 10 * MIB

_UPSTASH_PLANS = (
    Plan("free", "Free", 256 * MIB, 0, False),
    Plan("payg", "Pay as You Go", 10 * GIB, None, False, max_request_size_bytes=_PAYG_MAX_REQUEST_SIZE),
    Plan("fixed_250mb", "Fixed 250MB", 250 * MIB, None, True),
    Plan("fixed_1gb", "Fixed 1GB", 1 * GIB, None, True),
    Plan("fixed_5gb", "Fixed 5GB", 5 * GIB, None, True),
    Plan("fixed_10gb", "Fixed 10GB", 10 * GIB, None, True),
    Plan("fixed_50gb", "Fixed 50GB", 50 * GIB, None, True),
    Plan("fixed_100gb", "Fixed 100GB", 100 * GIB, None, True),
    Plan("fixed_500gb", "Fixed 500GB", 500 * GIB, None, True),
)
# Fly sells a subset; its display names are the ones `flyctl redis plans` prints.
_FLY_PLANS = (
    # Prices: Fly's docs (reference section 3.5), and each read region's surcharge; pay-as-you-go is per request.
    Plan("free", "Free", 100 * MIB, 0, False, price_per_month=0.0),
    Plan("payg", "Pay-as-you-go", 10 * GIB, None, False, max_request_size_bytes=_PAYG_MAX_REQUEST_SIZE),
    Plan("fixed_250mb", "Fixed 250MB", 250 * MIB, None, True, price_per_month=10.0, price_per_read_region=5.0),
    Plan("fixed_1gb", "Fixed 1GB", 1 * GIB, None, True, price_per_month=20.0, price_per_read_region=10.0),
    Plan("fixed_5gb", "Fixed 5GB", 5 * GIB, None, True, price_per_month=100.0, price_per_read_region=50.0),
    Plan("fixed_10gb", "Fixed 10GB", 10 * GIB, None, True, price_per_month=200.0, price_per_read_region=100.0),
    Plan("fixed_50gb", "Fixed 50GB", 50 * GIB, None, True, price_per_month=400.0, price_per_read_region=200.0),
    # flyctl's create refuses these display names for new databases (internal/command/redis/create.go); sizes are
    # the seed's. They stay known so that databases already on them are still managed.
    Plan("starter", "Starter", 100 * MIB, 0, True, legacy=True),
    Plan("standard", "Standard", 1 * GIB, None, True, legacy=True),
    Plan("pro_2k", "Pro 2k", 3 * GIB, None, True, legacy=True),
    Plan("pro_10k", "Pro 10k", 10 * GIB, None, True, legacy=True),
)

PLANS: dict[ProviderType, dict[str, Plan]] = {
    ProviderType.FLY: {plan.name: plan for plan in _FLY_PLANS},
    ProviderType.UPSTASH: {plan.name: plan for plan in _UPSTASH_PLANS},
}

DEFAULT_PLAN = "payg"


def region(provider_type: ProviderType, code: str) -> Region | None:
    return REGIONS[provider_type].get(code)


def plan(provider_type: ProviderType, name: str) -> Plan | None:
    return PLANS[provider_type].get(name)


def canonical_plan_name(provider_type: ProviderType, name_or_display: str) -> str | None:
    """Map a canonical name, a display name or a Fly ``flyio_fixed_*`` name to the canonical plan name."""
    wanted = name_or_display.strip().lower().replace("-", "_").replace(" ", "_")
    wanted = wanted.removeprefix("flyio_")
    for candidate in PLANS[provider_type].values():
        if wanted in (candidate.name, candidate.display_name.lower().replace("-", "_").replace(" ", "_")):
            return candidate.name
    if wanted in ("pay_as_you_go", "payasyougo"):
        return "payg"
    return None


def upstash_platform(code: str) -> str:
    """The current OpenAPI's ``platform`` of an Upstash primary region: ``gcp`` for the GCP codes, else ``aws``."""
    return "gcp" if code in _UPSTASH_GCP else "aws"


def creation_refusal(
    provider_type: ProviderType,
    primary_region: str,
    read_regions: Iterable[str],
    plan_name: str,
    live: Mapping[str, Any] | None = None,
) -> str | None:
    """Why a *new* database cannot be created with these settings (a retired or excluded region, a legacy plan),
    or None.

    Admission only warns about these (it cannot know whether the database already exists); the reconciler asks
    this just before a create. ``live`` is the provider's own catalog (RedisProvider.status.catalog's shape, read
    at the last provider check); without it, the static catalog decides and names the alternatives.
    """
    regions: dict[str, tuple[str, str | None]] = {  # code -> (name, why it is not offered, or None)
        code: (known.name, "retired" if known.deprecated else None) for code, known in REGIONS[provider_type].items()
    }
    for region in (live or {}).get("regions") or ():
        why = "retired" if region.get("deprecated") else "not offered for Redis" if region.get("excluded") else None
        regions[str(region.get("code"))] = (str(region.get("name") or region.get("code")), why)
    current = sorted(code for code, (_, why) in regions.items() if why is None)
    for field, code in [
        ("spec.primaryRegion", primary_region),
        *(("spec.readRegions", c) for c in sorted(read_regions)),
    ]:
        name, why = regions.get(code, (code, None))
        if why is not None:
            return (
                f"{field} {code} ({name}) is {why}: {provider_type.value} no longer creates databases there; "
                f"choose one of {', '.join(current)}"
            )
    plans: dict[str, tuple[str, bool]] = {
        name: (known.display_name, known.legacy) for name, known in PLANS[provider_type].items()
    }
    for offered_plan in (live or {}).get("plans") or ():
        plans[str(offered_plan.get("name"))] = (
            str(offered_plan.get("displayName") or offered_plan.get("name")),
            bool(offered_plan.get("legacy")),
        )
    display, legacy = plans.get(plan_name, (plan_name, False))
    if legacy:
        offered = [name for name, (_, is_legacy) in plans.items() if not is_legacy]
        return (
            f"spec.plan {plan_name} ({display}) is a legacy {provider_type.value} plan: new databases "
            f"cannot use it; choose one of {', '.join(offered)}"
        )
    return None


def static_catalog(provider_type: ProviderType, observed_at: str) -> dict[str, object]:
    """The static catalog in RedisProvider.status.catalog's shape (source "static")."""
    return {
        "source": "static",
        "observedAt": observed_at,
        "regions": [
            {
                "code": known.code,
                "name": known.name,
                "deprecated": known.deprecated,
                "excluded": False,
                "readRegionAllowed": known.read_region_allowed and not known.deprecated,
            }
            for known in sorted(REGIONS[provider_type].values(), key=lambda r: r.code)
        ],
        "plans": [plan_entry(known) for known in PLANS[provider_type].values()],
    }


def plan_entry(known: Plan, *, price_per_month: float | None = None) -> dict[str, object]:
    return {
        "name": known.name,
        "displayName": known.display_name,
        "pricePerMonth": price_per_month if price_per_month is not None else known.price_per_month,
        "maxDataSizeBytes": known.max_data_size_bytes,
        "maxReadRegions": known.max_read_regions,
        "legacy": known.legacy,
    }
