"""The desired database (the spec with every default applied), the one catalog check, and what differs from the
observed database as typed field changes: pure functions of (spec, observed) with table tests, no I/O.

Admission runs `catalog_problem` at the door and the reconcile core before any provider call: one check, one
wording per refusal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from .models import ANNOTATION_ADOPT, RedisDatabaseSpec
from .providers import catalog
from .providers.base import CreateDatabaseRequest, Database, DatabaseUpdate, ProviderType
from .providers.kinds import kind_of


@dataclasses.dataclass(frozen=True)
class DesiredDatabase:
    """The spec with every default applied: what the provider database must look like."""

    name: str
    primary_region: str
    read_regions: frozenset[str]
    plan: str
    eviction: bool
    tls: bool | None

    @classmethod
    def from_spec(cls, spec: RedisDatabaseSpec, *, namespace: str, metadata_name: str) -> DesiredDatabase:
        return cls(
            name=spec.effective_name(namespace, metadata_name),
            primary_region=spec.primary_region,
            read_regions=frozenset(spec.read_regions or ()),
            plan=spec.plan or catalog.DEFAULT_PLAN,
            eviction=bool(spec.eviction),
            tls=spec.tls,
        )

    def create_request(self) -> CreateDatabaseRequest:
        return CreateDatabaseRequest(
            name=self.name,
            primary_region=self.primary_region,
            read_regions=tuple(sorted(self.read_regions)),
            plan=self.plan,
            eviction=self.eviction,
            tls=self.tls,
        )


@dataclasses.dataclass(frozen=True)
class FieldChange:
    field: str
    observed: Any
    desired: Any

    def describe(self) -> str:
        return f"{self.field}: {_show(self.observed)} -> {_show(self.desired)}"


def _show(value: Any) -> str:
    if isinstance(value, frozenset | set | tuple | list):
        return "[" + ",".join(sorted(str(v) for v in value)) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclasses.dataclass(frozen=True)
class CreateAction:
    request: CreateDatabaseRequest
    recreate: bool  # the database we had recorded is gone at the provider


@dataclasses.dataclass(frozen=True)
class UpdateAction:
    update: DatabaseUpdate
    changes: tuple[FieldChange, ...]


@dataclasses.dataclass(frozen=True)
class ConflictAction:
    """The provider database differs in a way that cannot be changed in place; a human must decide."""

    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class NoAction:
    pass


Action = CreateAction | UpdateAction | ConflictAction | NoAction


def plan_action(desired: DesiredDatabase, observed: Database | None, recorded_id: str | None) -> Action:
    """Decide the one provider action that moves the observed database toward the desired one."""
    if observed is None:
        return CreateAction(desired.create_request(), recreate=recorded_id is not None)
    if observed.primary_region != desired.primary_region:
        return ConflictAction(
            "PrimaryRegionMismatch",
            f"the provider database {observed.name!r} has primary region {observed.primary_region!r} but "
            f"spec.primaryRegion is {desired.primary_region!r}; a primary region can't be changed: create a new "
            f"RedisDatabase (or set spec.name) for the new region",
        )
    if recorded_id is not None and observed.id != recorded_id:
        return ConflictAction(
            "DatabaseIdMismatch",
            f"status.databaseId is {recorded_id!r} but the provider database named {observed.name!r} has id "
            f"{observed.id!r}; delete the RedisDatabase with deletionPolicy Orphan and re-create it annotated "
            f"{ANNOTATION_ADOPT}=true to adopt",
        )
    changes: list[FieldChange] = []
    read_regions: tuple[str, ...] | None = None
    plan: str | None = None
    eviction: bool | None = None
    if frozenset(observed.read_regions) != desired.read_regions:
        read_regions = tuple(sorted(desired.read_regions))
        changes.append(FieldChange("readRegions", frozenset(observed.read_regions), desired.read_regions))
    if observed.plan_observable and observed.plan != desired.plan:  # an unreadable plan is never "different"
        plan = desired.plan
        changes.append(FieldChange("plan", observed.plan, desired.plan))
    if observed.eviction != desired.eviction:
        eviction = desired.eviction
        changes.append(FieldChange("eviction", observed.eviction, desired.eviction))
    if not changes:
        return NoAction()
    return UpdateAction(DatabaseUpdate(read_regions=read_regions, plan=plan, eviction=eviction), tuple(changes))


# --- the one catalog check ----------------------------------------------------------------------------------


def _listing(codes: Iterable[str]) -> str:
    return ", ".join(codes)


def catalog_problem(provider_type: ProviderType, desired: DesiredDatabase) -> str | None:
    """Regions and plans the referenced provider's type offers, and the plan's limits; None when all fit."""
    kind = kind_of(provider_type)
    label = kind.label
    regions = kind.regions
    current = [code for code, region in regions.items() if not region.deprecated]
    if desired.primary_region not in regions:
        return (
            f"spec.primaryRegion {desired.primary_region} is not {label} region: use one of {_listing(current)} "
            f"(or reference a RedisProvider of the other type)"
        )
    if desired.primary_region in desired.read_regions:
        return (
            f"spec.readRegions must not contain the primary region {desired.primary_region}: the primary already "
            f"serves reads; remove {desired.primary_region} from readRegions"
        )
    readable = [code for code in current if regions[code].read_region_allowed and code != desired.primary_region]
    for code in sorted(desired.read_regions):
        region = regions.get(code)
        if region is None:
            return f"spec.readRegions: {code} is not {label} region: use one of {_listing(readable)}"
        if not region.read_region_allowed:
            return (
                f"spec.readRegions: {code} ({region.name}) can be {label} primary region but not a read region: "
                f"remove it, or use one of {_listing(readable)}"
            )
    plans = kind.plans
    plan = plans.get(desired.plan)
    if plan is None:
        offered = [name for name, candidate in plans.items() if not candidate.legacy]
        return f"spec.plan {desired.plan} is not {label} plan: use one of {_listing(offered)}"
    if plan.max_read_regions is not None and len(desired.read_regions) > plan.max_read_regions:
        multi_region = [
            name for name, candidate in plans.items() if candidate.max_read_regions is None and not candidate.legacy
        ]
        limit = "single-region" if plan.max_read_regions == 0 else f"limited to {plan.max_read_regions} read regions"
        return (
            f"spec.readRegions: plan {plan.name} is {limit} but readRegions has {len(desired.read_regions)} "
            f"({_listing(sorted(desired.read_regions))}): remove readRegions, or choose a plan with read regions: "
            f"{_listing(multi_region)}"
        )
    return None
