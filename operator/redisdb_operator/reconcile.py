"""The pure reconcile core: (desired spec, observed provider state) -> what to do, and the status to show.

Nothing here performs I/O, so every decision the operator makes is a table test away. The imperative shell
(`controller.py`) observes, asks this module what to do, does it, and writes back what this module renders.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .kube import KubeError, KubeUnavailable
from .models import ANNOTATION_ADOPT, Condition, RedisDatabaseSpec
from .providers import catalog
from .providers.base import (
    AlreadyExistsError,
    CreateDatabaseRequest,
    Database,
    DatabaseUpdate,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    ProviderType,
    RateLimitedError,
    UnauthorizedError,
    UnavailableError,
)


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


# --- errors -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ErrorVerdict:
    """How the shell must react to a failure: retry later (temporary) or wait for a spec change (permanent)."""

    reason: str
    message: str
    temporary: bool
    retry_after: float | None = None


class ConfigurationError(Exception):
    """Something the user must fix in Kubernetes (a missing RedisProvider or credentials Secret/key)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def classify_error(error: BaseException) -> ErrorVerdict:
    """Map any failure to a condition reason and a retry decision."""
    if isinstance(error, ConfigurationError):
        # The user fixes it by creating/updating an object: poll for that with growing (capped) delays.
        return ErrorVerdict(error.reason, error.message, temporary=True)
    if isinstance(error, RateLimitedError):
        return ErrorVerdict("RateLimited", f"provider rate limit: {error.message}", True, error.retry_after)
    if isinstance(error, UnavailableError):
        return ErrorVerdict("ProviderUnavailable", f"provider unavailable: {error.message}", True, error.retry_after)
    if isinstance(error, UnauthorizedError):
        return ErrorVerdict(
            "Unauthorized",
            f"the provider refused the credentials ({error.message}); fix the credentials Secret of the RedisProvider",
            temporary=True,
        )
    if isinstance(error, AlreadyExistsError):
        return ErrorVerdict("AlreadyExists", f"provider: {error.message}", temporary=True, retry_after=10.0)
    if isinstance(error, InvalidRequestError):
        return ErrorVerdict("InvalidRequest", f"the provider refused the request: {error.message}", False)
    if isinstance(error, NotFoundError):
        return ErrorVerdict("NotFound", f"provider: {error.message}", temporary=True, retry_after=5.0)
    if isinstance(error, ProviderError):
        return ErrorVerdict("ProviderError", error.message, temporary=error.temporary)
    if isinstance(error, KubeUnavailable):
        # An apiserver restart or an etcd outage: expected, retried, and no reason for a traceback.
        return ErrorVerdict("KubernetesUnavailable", f"the Kubernetes API is unavailable: {error.message}", True, 5.0)
    if isinstance(error, KubeError):
        return ErrorVerdict("KubernetesError", str(error), temporary=True)
    return ErrorVerdict("InternalError", f"{type(error).__name__}: {error}", temporary=True)


def backoff_delay(retry: int, retry_after: float | None, *, base: float = 2.0, cap: float = 300.0) -> float:
    """Delay before the next attempt: the provider's Retry-After when given, else capped exponential + jitter."""
    if retry_after is not None and retry_after > 0:
        return min(float(retry_after), cap)
    exponential = min(cap, base * float(2 ** min(retry, 16)))
    return exponential / 2 + random.uniform(0, exponential / 2)


# --- conditions and status ----------------------------------------------------------------------------------

Status = Literal["True", "False", "Unknown"]


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    *,
    type_: str,
    status: Status,
    reason: str,
    message: str,
    generation: int | None,
    now: str,
) -> list[dict[str, Any]]:
    """Return the condition list with one condition replaced; lastTransitionTime moves only when status does."""
    result: list[dict[str, Any]] = []
    previous: Mapping[str, Any] | None = None
    for condition in conditions or ():
        if condition.get("type") == type_:
            previous = condition
        else:
            result.append(dict(condition))
    transition = now if previous is None or previous.get("status") != status else previous.get("lastTransitionTime")
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        observed_generation=generation,
        last_transition_time=transition or now,
    )
    result.append(new.model_dump(by_alias=True, exclude_none=True))
    return sorted(result, key=lambda c: str(c.get("type")))


def observed_status(database: Database) -> dict[str, Any]:
    """The status fields that mirror the provider database (no credentials)."""
    return {
        "databaseId": database.id,
        "providerName": database.name,
        "endpoint": database.host or None,
        "port": database.port or None,
        "primaryRegion": database.primary_region,
        "readRegions": sorted(database.read_regions),
        "plan": database.plan,
        "eviction": database.eviction,
        "tls": database.tls,
        "state": database.state,
    }


def condition(conditions: Sequence[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for item in conditions or ():
        if item.get("type") == type_:
            return item
    return None


def waiting_for_spec_change(status: Mapping[str, Any] | None, generation: int | None) -> bool:
    """True when the last attempt at this generation failed permanently: retrying it cannot succeed."""
    synced = condition((status or {}).get("conditions"), "Synced")
    return bool(
        synced
        and synced.get("status") == "False"
        and synced.get("reason") in PERMANENT_REASONS - RECHECKED_BY_RESYNC
        and synced.get("observedGeneration") == generation
    )


PERMANENT_REASONS = frozenset(
    {"InvalidRequest", "PrimaryRegionMismatch", "DatabaseIdMismatch", "InvalidSpec", "NameTaken"}
)
# Permanent for Argo CD (a human decides) but cheap to look at again from the shared snapshot: the stranger's
# database may be deleted or renamed at the provider, which no Kubernetes event announces.
RECHECKED_BY_RESYNC = frozenset({"NameTaken"})


def plan_unobservable_note(desired: DesiredDatabase, observed: Database) -> str:
    """The Synced message when the provider does not say which plan the database is on ("" when it does)."""
    if observed.plan_observable:
        return ""
    shown = f"type {observed.plan!r}" if observed.plan else "no plan"
    return (
        f"the provider reports {shown}, not which plan: spec.plan {desired.plan} cannot be verified and is not "
        f"re-applied on every reconcile; check the plan in the provider's console"
    )


def validate_against_catalog(provider_type: ProviderType, desired: DesiredDatabase) -> str | None:
    """Catch what the provider would refuse before calling it; the message names the field and the fix."""
    regions = catalog.REGIONS[provider_type]
    if desired.primary_region not in regions:
        return (
            f"spec.primaryRegion {desired.primary_region!r} is not a {provider_type.value} region; use one of: "
            + ", ".join(sorted(r.code for r in regions.values() if not r.deprecated))
        )
    for region in sorted(desired.read_regions):
        known = regions.get(region)
        if known is None or not known.read_region_allowed:
            return f"spec.readRegions: {region!r} is not a {provider_type.value} read region; use one of: " + ", ".join(
                sorted(r.code for r in regions.values() if r.read_region_allowed and not r.deprecated)
            )
    if desired.primary_region in desired.read_regions:
        return f"spec.readRegions must not contain the primary region {desired.primary_region!r}; remove it"
    plan = catalog.plan(provider_type, desired.plan)
    if plan is None:
        return f"spec.plan {desired.plan!r} is not a {provider_type.value} plan; use one of: " + ", ".join(
            name for name, candidate in catalog.PLANS[provider_type].items() if not candidate.legacy
        )
    if plan.max_read_regions is not None and len(desired.read_regions) > plan.max_read_regions:
        return (
            f"spec.plan {plan.name!r} allows at most {plan.max_read_regions} read regions but spec.readRegions has "
            f"{len(desired.read_regions)}; remove read regions or choose a larger plan"
        )
    return None


# --- creates whose outcome is unknown -------------------------------------------------------------------------

UNCERTAIN_CREATE_FIELD = "createUncertainSince"


def uncertain_create_remaining(status: Mapping[str, Any] | None, *, now: datetime.datetime, window: float) -> float:
    """Seconds a timed-out create may still land for, by the status marker (0 when there is none or it is over).

    A provider may act on a create after our client gave up waiting; until the window has passed, creating again
    could make a twin and releasing the resource could leave the late database behind with no owner.
    """
    since = (status or {}).get(UNCERTAIN_CREATE_FIELD)
    if not since or (status or {}).get("databaseId"):
        return 0.0
    sent = parse_timestamp(since)
    if sent is None:
        return window  # unreadable (edited by hand?): assume the whole window, the safe side
    elapsed = (now - sent).total_seconds()
    return max(0.0, min(window, window - elapsed))


# --- whose database is it -----------------------------------------------------------------------------------

# How far the provider's clock may run behind the apiserver's: a database of ours is never created before its
# RedisDatabase, so one created earlier than this margin is someone else's.
CLOCK_SKEW_ALLOWANCE = datetime.timedelta(seconds=10)


def stranger_database(
    found: Database, *, resource_created: datetime.datetime | None, adopt: bool
) -> ConflictAction | None:
    """A conflict when a database found by name (not by our recorded id) is not ours to take over, else None.

    Ours: created after this RedisDatabase (by us, with the id lost to a crash or a timeout), or the user asked
    for the takeover with the adopt annotation. Anything older is someone else's: managing it from here would
    let a `kubectl delete` destroy it. Without a creation time on either side there is nothing to tell by, and the
    database is taken over as before.
    """
    if adopt or found.created_at is None or resource_created is None:
        return None
    if found.created_at >= resource_created - CLOCK_SKEW_ALLOWANCE:
        return None
    return ConflictAction(
        "NameTaken",
        f"a provider database named {found.name!r} ({found.id}) already exists, created "
        f"{found.created_at.strftime('%Y-%m-%dT%H:%M:%SZ')}, before this RedisDatabase; it is not taken over "
        f"implicitly. To manage (and on deletion destroy) it from here, annotate the RedisDatabase "
        f"{ANNOTATION_ADOPT}=true; for a new database, re-create the RedisDatabase with another spec.name",
    )


def parse_timestamp(value: object) -> datetime.datetime | None:
    """A Kubernetes timestamp (RFC 3339, UTC, seconds) as an aware datetime; None when absent or unreadable."""
    try:
        return datetime.datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return None
