"""The vocabulary of the pure core: what the shell knows at one event (`Facts`, `Observation`), what it is told to
do (a `Plan` and its action), and the rules every decision shares: whose database a found one is, by creation time,
and how a failure is reported. Split from `reconcile.py` so that the reconcile (`reconcile.decide`), the duplicate
rule (`duplicates.py`) and the deletion (`deletion.decide_deletion`) each read as one decision. No I/O here: a
test enforces it.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .desired import (
    ConflictAction,
    CreateAction,
    DesiredDatabase,
    FieldChange,
    UpdateAction,
)
from .models import (
    ANNOTATION_ADOPT,
    ANNOTATION_PAUSED,
    DeletionPolicy,
    LabelSelector,
    RedisDatabaseSpec,
)
from .providers.base import Database, ProviderType
from .status import (
    failed_conditions,
    format_timestamp,
    uncertain_create_remaining,
)

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


def made_after_resource(found: Database, resource_created: datetime.datetime | None) -> bool:
    """Strictly ours by time: created after the RedisDatabase (within the clock-skew allowance). Unlike
    `stranger_database`, the adopt annotation and an unknown creation time do not count: only what this rule
    proves ours may ever be deleted as a duplicate."""
    if found.created_at is None or resource_created is None:
        return False
    return found.created_at >= resource_created - CLOCK_SKEW_ALLOWANCE


# --- what the shell knows at one event ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Resource:
    """The RedisDatabase as one event shows it, its spec parsed once (`spec` is None when it does not parse)."""

    uid: str
    namespace: str
    name: str
    generation: int | None
    status: Mapping[str, Any]
    annotations: Mapping[str, str]
    created: datetime.datetime | None
    spec: RedisDatabaseSpec | None
    spec_problem: str = ""

    @property
    def provider_name(self) -> str | None:
        return self.spec.effective_provider_name() if self.spec is not None else None

    def desired(self) -> DesiredDatabase:
        assert self.spec is not None
        return DesiredDatabase.from_spec(self.spec, namespace=self.namespace, metadata_name=self.name)

    def secret_name(self) -> str:
        assert self.spec is not None
        return self.spec.effective_secret_name(self.name)

    @property
    def adopt(self) -> bool:
        return self.annotations.get(ANNOTATION_ADOPT) == "true"

    @property
    def paused(self) -> bool:
        """`redisdb.dev/paused: "true"`: hands off: no provider call, no Secret write, until it is removed."""
        return self.annotations.get(ANNOTATION_PAUSED) == "true"

    @property
    def observe_only(self) -> bool:
        return self.spec is not None and self.spec.observe_only

    def needs_provider(self) -> bool:
        """Whether this event's decision can use the provider at all (the shell resolves it only then)."""
        return self.spec is not None and not self.paused


@dataclasses.dataclass(frozen=True)
class ProviderFacts:
    name: str
    type: ProviderType
    names_are_unique: bool
    # The provider's own regions and plans from the last provider check (RedisProvider.status.catalog's shape), or
    # None: a create is refused in a region or on a plan the provider no longer offers.
    live_catalog: Mapping[str, Any] | None = None
    allowed_namespaces: LabelSelector | None = None  # the RedisProvider's spec.allowedNamespaces


@dataclasses.dataclass(frozen=True)
class Facts:
    """Everything `decide` needs besides the observation; constant for the whole event."""

    resource: Resource
    provider: ProviderFacts | None  # None only when the spec does not parse (no provider to resolve)
    fresh: bool  # a spec change or a resume (authoritative reads) rather than the periodic resync (snapshot)
    now: datetime.datetime
    create_pending_in_memory: float = 0.0  # seconds a timed-out create may still land, by the shell's ledger
    uncertain_create_window: float = 90.0
    namespace_labels: Mapping[str, str] | None = None  # the namespace's labels (None: not known yet)
    default_deletion_policy: DeletionPolicy = DeletionPolicy.DELETE  # the operator's --default-deletion-policy
    read_before_update: bool = False  # the operator's --read-before-update: a spec change reads the database first

    def create_pending(self) -> float:
        """Seconds a timed-out create of this resource may still land for, by memory or by the status marker."""
        by_status = uncertain_create_remaining(self.resource.status, now=self.now, window=self.uncertain_create_window)
        return max(self.create_pending_in_memory, by_status)

    def stranger(self, found: Database) -> ConflictAction | None:
        """Observe adopts read-only by design: a database that predates the resource is what it is for."""
        adopt = self.resource.adopt or self.resource.observe_only
        return stranger_database(found, resource_created=self.resource.created, adopt=adopt)


class Step(enum.StrEnum):
    """How the database in an Observation became known (or was found missing)."""

    START = "start"  # nothing looked up yet in this event
    CREATE_IS_THE_LOOKUP = "create_is_the_lookup"  # nothing recorded, names unique: the create's answer tells
    SNAPSHOT = "snapshot"  # the shared per-provider snapshot: may be stale
    GOT_BY_ID = "got_by_id"  # the provider's answer to a get of the recorded id (--read-before-update)
    FOUND_BY_NAME = "found_by_name"  # the provider's answer to a lookup by name
    CONFIRMED_BY_ID = "confirmed_by_id"  # the snapshot said missing: the recorded id asked again at the provider
    CONFIRMED_BY_NAME = "confirmed_by_name"  # ... and then the name
    CREATED = "created"  # our create's answer
    NAME_TAKEN = "name_taken"  # the create was refused as AlreadyExists; the name looked up (None: not ours)
    CREATE_TIMED_OUT = "create_timed_out"  # the create may still land at the provider
    UPDATED = "updated"
    PASSWORD_RESET = "password_reset"
    DELETED = "deleted"


@dataclasses.dataclass(frozen=True)
class Observation:
    """What is known about the provider database now, how it was learned, and what this event already did."""

    step: Step = Step.START
    database: Database | None = None
    changes: tuple[FieldChange, ...] = ()  # UPDATED: what the update changed
    sent_at: datetime.datetime | None = None  # CREATE_TIMED_OUT: when the create was sent
    # Every database of the desired name the lookup saw, `database` among them, when there is more than one (a
    # provider whose names are not unique: a create released after a crash may have made a second one).
    namesakes: tuple[Database, ...] = ()
    # carried from step to step by Plan.observe
    known_id: str | None = None  # the provider id this event has recorded (status.databaseId at first)
    created: bool = False
    password_reset: bool = False

    @classmethod
    def first(cls, resource: Resource) -> Observation:
        return cls(known_id=resource.status.get("databaseId"))


# --- the plan -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KubeEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


CREATED = "Created"
SECRET_WRITTEN = "SecretWritten"


def one_event_per_create(events: Sequence[KubeEvent]) -> tuple[KubeEvent, ...]:
    """A create and the first write of its Secret as one Created Event (its message names both): at 10,000
    creates the second Event was 10,000 apiserver writes saying what Ready already says."""
    created = next((event for event in events if event.reason == CREATED), None)
    written = next((event for event in events if event.reason == SECRET_WRITTEN), None)
    if created is None or written is None:
        return tuple(events)
    merged = dataclasses.replace(created, message=f"{created.message}; {written.message}")
    return tuple(merged if event is created else event for event in events if event is not written)


@dataclasses.dataclass(frozen=True)
class LookUp:
    """Read the provider: the snapshot (may be stale), a get of `database_id`, else a lookup by `name`."""

    then: Step
    name: str
    database_id: str | None = None
    snapshot: bool = False
    # A spec change reads the snapshot only while the resync keeps it current (two intervals, controller._look_up):
    # a stale one is not listed again for one database (thousands of add-ons, many pages); the id is read instead.
    list_if_stale: bool = True


@dataclasses.dataclass(frozen=True)
class ResetPassword:
    database_id: str


@dataclasses.dataclass(frozen=True)
class Publish:
    """Done with the provider: write the connection Secret, then `status` (the status once it is written)."""

    database: Database
    secret_name: str
    likely_absent: bool  # just created: POST the Secret first, read only if the name is taken
    status: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Refuse:
    """Report a failure as the Synced condition; retry after `retry_delay`, or (None) wait for a spec change."""

    reason: str
    message: str
    retry_delay: float | None = None


@dataclasses.dataclass(frozen=True)
class GiveUp:
    """The error the last action raised is the outcome: the shell raises it again (and reports it as any other)."""


@dataclasses.dataclass(frozen=True)
class Delete:
    database_id: str


@dataclasses.dataclass(frozen=True)
class DeleteDuplicates:
    """Delete these databases of ours that duplicate the one kept (`keep_id`), then post `done` and go on."""

    database_ids: tuple[str, ...]
    keep_id: str
    done: KubeEvent


@dataclasses.dataclass(frozen=True)
class Release:
    """The deletion is finished: let Kubernetes remove the RedisDatabase."""


@dataclasses.dataclass(frozen=True)
class Wait:
    """Keep the resource a little longer (a create may still land), then look again."""

    message: str
    delay: float


@dataclasses.dataclass(frozen=True)
class Hold:
    """Keep the finalizer and touch nothing at the provider until a person changes something (the plan's status
    says what); look again after `delay`."""

    reason: str
    message: str
    delay: float = 10.0


PlanAction = (
    LookUp
    | CreateAction
    | UpdateAction
    | ResetPassword
    | Publish
    | Refuse
    | GiveUp
    | Delete
    | DeleteDuplicates
    | Release
    | Wait
    | Hold
)


@dataclasses.dataclass(frozen=True)
class Plan:
    """One decision: the next action, and what the step just observed means for Kubernetes and the metrics."""

    action: PlanAction
    progress: Observation
    events: tuple[KubeEvent, ...] = ()
    status: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # written whatever follows
    remember: Database | None = None  # write-through to the shared snapshot
    counted: tuple[str, ...] = ()  # provider actions that completed (redisdb_provider_actions_total)
    drift_repaired: bool = False
    uncertain_create_since: datetime.datetime | None = None  # remember in memory: a create may still land
    forget_uncertain_create: bool = False

    def observe(
        self,
        step: Step,
        database: Database | None = None,
        *,
        changes: tuple[FieldChange, ...] = (),
        sent_at: datetime.datetime | None = None,
        namesakes: tuple[Database, ...] = (),
    ) -> Observation:
        """The outcome of this plan's action as the next observation, carrying what the event already did."""
        return dataclasses.replace(
            self.progress, step=step, database=database, changes=changes, sent_at=sent_at, namesakes=namesakes
        )


@dataclasses.dataclass(frozen=True)
class Consequences:
    """What a completed step means, gathered before the next action is chosen."""

    events: tuple[KubeEvent, ...] = ()
    status: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    remember: Database | None = None
    counted: tuple[str, ...] = ()
    drift_repaired: bool = False

    def plan(self, action: PlanAction, progress: Observation, **extra: Any) -> Plan:
        return Plan(
            action,
            progress,
            events=self.events,
            status=self.status,
            remember=self.remember,
            counted=self.counted,
            drift_repaired=self.drift_repaired,
            **extra,
        )


# --- how a failure is reported ------------------------------------------------------------------------------


def failure_status(resource: Resource, reason: str, message: str, now: datetime.datetime) -> Plan:
    """Synced=False with the reason; a Warning Event only when the reason is new, so a retried failure does not
    flood the Events."""
    conditions, new_reason = failed_conditions(
        resource.status.get("conditions"),
        reason=reason,
        message=message,
        generation=resource.generation,
        now=format_timestamp(now),
    )
    events = (KubeEvent("Warning", reason, message),) if new_reason else ()
    return Plan(Refuse(reason, message), Observation.first(resource), events=events, status={"conditions": conditions})


def refuse(facts: Facts, seen: Observation, reason: str, message: str, *, retry_delay: float | None = None) -> Plan:
    failed = failure_status(facts.resource, reason, message, facts.now)
    return dataclasses.replace(failed, action=Refuse(reason, message, retry_delay), progress=seen)


def hold(facts: Facts, seen: Observation, reason: str, message: str) -> Plan:
    """Synced=False with the reason (a Warning Event when it is new), the finalizer kept, nothing done."""
    failed = failure_status(facts.resource, reason, message, facts.now)
    return dataclasses.replace(failed, action=Hold(reason, message), progress=seen)


def kubectl_target(resource: Resource) -> str:
    return f"rdb {resource.name} -n {resource.namespace}"
