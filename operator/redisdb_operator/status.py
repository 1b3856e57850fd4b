"""The RedisDatabase status: the Synced (did the last reconcile succeed) and Ready (is the database usable)
conditions, the mirror of the provider database, the marker of a create that may still land, and which failure
reasons are permanent (wait for a spec change) rather than retried. Pure: rendered here, written by the shell.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .billing import billing_fields
from .models import Condition
from .providers.base import Database, ProviderType

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
    {
        "InvalidRequest",
        "PrimaryRegionMismatch",
        "DatabaseIdMismatch",
        "InvalidSpec",
        "NameTaken",
        "NamespaceNotAllowed",
        "ObservedDatabaseNotFound",
        "DeletionProtected",
    }
)
# Permanent for Argo CD (a human decides) but cheap to look at again: the stranger's database may be deleted or
# renamed at the provider, the observed one created there, the namespace relabelled or the RedisProvider's
# allowedNamespaces widened, none of which a Kubernetes event on the RedisDatabase announces.
RECHECKED_BY_RESYNC = frozenset({"NameTaken", "NamespaceNotAllowed", "ObservedDatabaseNotFound"})
# Not a failure: a person said hands off (redisdb.dev/paused). Argo CD shows it as Suspended.
SUSPENDED_REASONS = frozenset({"Paused"})


def succeeded_conditions(
    conditions: Sequence[Mapping[str, Any]] | None,
    *,
    generation: int | None,
    now: str,
    state: str,
    secret_name: str,
    state_message: str = "",
    synced_message: str = "",
) -> list[dict[str, Any]]:
    """Synced=True, and the Ready rule: the provider says the database is usable (or says nothing).

    `synced_message` carries what succeeded with a caveat (a plan the provider does not report); `state_message`
    the provider's reason for a state that is not usable (Fly's errorMessage).
    """
    synced = set_condition(
        conditions,
        type_="Synced",
        status="True",
        reason="ReconcileSuccess",
        message=synced_message,
        generation=generation,
        now=now,
    )
    ready = state in ("active", "ready", "created", "")
    return set_condition(
        synced,
        type_="Ready",
        status="True" if ready else "False",
        reason="Available" if ready else "NotActive",
        message=f"secret {secret_name} holds the connection details"
        if ready
        else f"state is {state}" + (f": {state_message}" if state_message else ""),
        generation=generation,
        now=now,
    )


def failed_conditions(
    conditions: Sequence[Mapping[str, Any]] | None, *, reason: str, message: str, generation: int | None, now: str
) -> tuple[list[dict[str, Any]], bool]:
    """Synced=False with the reason (Ready=False too if the object never had a Ready condition), and whether the
    reason is new (the last Synced was not this failure)."""
    failed = set_condition(
        conditions, type_="Synced", status="False", reason=reason, message=message, generation=generation, now=now
    )
    if condition(failed, "Ready") is None:
        failed = set_condition(
            failed, type_="Ready", status="False", reason=reason, message=message, generation=generation, now=now
        )
    previous = condition(conditions, "Synced")
    new_reason = previous is None or previous.get("reason") != reason or previous.get("status") != "False"
    return failed, new_reason


def status_changes(current: Mapping[str, Any], rendered: Mapping[str, Any], *, now: str) -> dict[str, Any]:
    """The fields to write: none when nothing changed (an idle resync writes nothing; lastSyncTime moves only with
    a change), and the uncertain-create marker removed once the database is recorded."""
    comparable = {key: value for key, value in rendered.items() if value is not None}
    written: dict[str, Any] = {}
    if comparable != {key: current.get(key) for key in comparable}:
        written = {**comparable, "lastSyncTime": now}
    if current.get(UNCERTAIN_CREATE_FIELD):
        written[UNCERTAIN_CREATE_FIELD] = None  # nothing is left in flight
    return written


def observed_status(
    database: Database, provider_type: ProviderType | None = None, live_catalog: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The status fields that mirror the provider database (no credentials); with the provider's type also the
    console link, the plan's limits and a priced plan's cost (`billing.py`), so they land in the same write."""
    billing = {}
    if provider_type is not None:
        billing = billing_fields(
            provider_type,
            database_id=database.id,
            plan_name=database.plan,
            read_regions=len(database.read_regions),
            requests=None,  # pay-as-you-go's cost comes with usage (usage.py)
            live_catalog=live_catalog,
        )
    return {
        **billing,
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


def parse_timestamp(value: object) -> datetime.datetime | None:
    """A Kubernetes timestamp (RFC 3339, UTC, seconds) as an aware datetime; None when absent or unreadable."""
    try:
        return datetime.datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return None


def format_timestamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
