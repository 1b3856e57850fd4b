"""The pure reconcile core: (desired spec, observed provider state, status, annotations, now) -> one plan.

Nothing here performs I/O, so every decision the operator makes is a table test away. The imperative shell
(`controller.py`) asks `decide` what to do, does it, and when the outcome changes what is known (a create answered,
a name was looked up) it hands that outcome back as the next `Observation` and asks again. `decide_deletion` does
the same for a deletion. This module imports neither `kube` nor `kopf` nor an HTTP client (a test enforces it).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping
from typing import Any, Literal

from .desired import (
    Action,
    ConflictAction,
    CreateAction,
    DesiredDatabase,
    FieldChange,
    NoAction,
    UpdateAction,
    catalog_problem,
    plan_action,
)
from .models import (
    ANNOTATION_ADOPT,
    ANNOTATION_FORCE_ORPHAN,
    ANNOTATION_PAUSED,
    ANNOTATION_ROTATE_PASSWORD,
    DeletionPolicy,
    LabelSelector,
    RedisDatabaseSpec,
)
from .providers import catalog
from .providers.base import Database, DatabaseUpdate, ProviderType
from .providers.kinds import kind_of
from .status import (
    UNCERTAIN_CREATE_FIELD,
    condition,
    failed_conditions,
    format_timestamp,
    observed_status,
    status_changes,
    succeeded_conditions,
    uncertain_create_remaining,
)
from .tenancy import namespace_problem

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


# kopf's bookkeeping before it moved to kopf.redisdb.dev/: while the marker stays, kopf's change detection
# ignores every redisdb.dev/* annotation (rotate-password included), so the first reconcile after an upgrade
# removes them, with the progress records an interrupted handler may have left.
LEGACY_KOPF_ANNOTATIONS = (
    "redisdb.dev/kopf-managed",
    "redisdb.dev/last-handled-configuration",
    "redisdb.dev/reconcile",
    "redisdb.dev/delete",
    "redisdb.dev/touch-dummy",
)


def legacy_annotations(annotations: Mapping[str, str]) -> list[str]:
    """The old kopf bookkeeping annotations present on the object: every reconcile removes them."""
    return [key for key in LEGACY_KOPF_ANNOTATIONS if key in annotations]


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
    GOT_BY_ID = "got_by_id"  # the provider's answer to a get of the recorded id (None: not found)
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


@dataclasses.dataclass(frozen=True)
class LookUp:
    """Read the provider: the snapshot (may be stale), a get of `database_id`, else a lookup by `name`."""

    then: Step
    name: str
    database_id: str | None = None
    snapshot: bool = False


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
class _Consequences:
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


# --- the one decision of a reconcile -------------------------------------------------------------------------


def decide(facts: Facts, seen: Observation) -> Plan:
    """The next step toward the desired database, given everything known so far in this event."""
    plan = _decide(facts, seen)
    if isinstance(plan.action, CreateAction) and (refusal := creation_refusal(facts)) is not None:
        # A retired region or a legacy plan: an existing database is managed, a new one is refused (issue 13).
        return refuse(facts, plan.progress, "InvalidSpec", refusal)
    return plan


def creation_refusal(facts: Facts) -> str | None:
    """Why the provider would not create this database now (a retired region, a legacy plan), or None."""
    assert facts.provider is not None
    desired = facts.resource.desired()
    return catalog.creation_refusal(
        facts.provider.type,
        desired.primary_region,
        desired.read_regions,
        desired.plan,
        dict(facts.provider.live_catalog) if facts.provider.live_catalog is not None else None,
    )


def plan_unobservable_note(desired: DesiredDatabase, observed: Database) -> str:
    """The Synced message when the provider does not say which plan the database is on ("" when it does)."""
    if observed.plan_observable:
        return ""
    shown = f"type {observed.plan!r}" if observed.plan else "no plan"
    return (
        f"the provider reports {shown}, not which plan: spec.plan {desired.plan} cannot be verified and is not "
        f"re-applied on every reconcile; check the plan in the provider's console"
    )


def _decide(facts: Facts, seen: Observation) -> Plan:
    resource = facts.resource
    if resource.spec is None:
        return refuse(facts, seen, "InvalidSpec", resource.spec_problem)
    if resource.paused:
        return refuse(facts, seen, "Paused", paused_message(resource))
    assert facts.provider is not None
    tenancy = namespace_problem(
        facts.provider.name, facts.provider.allowed_namespaces, resource.namespace, facts.namespace_labels
    )
    if tenancy:
        return refuse(facts, seen, "NamespaceNotAllowed", tenancy)
    desired = resource.desired()
    problem = catalog_problem(facts.provider.type, desired)
    if problem:
        return refuse(facts, seen, "InvalidSpec", problem)
    if seen.step is Step.START:
        return _first_look(facts, seen, desired)
    if seen.namesakes and (duplicates := _delete_duplicates(facts, seen)) is not None:
        return duplicates
    if seen.step in (Step.SNAPSHOT, Step.GOT_BY_ID, Step.FOUND_BY_NAME, Step.CONFIRMED_BY_ID):
        gone_by_id = seen.step is Step.CONFIRMED_BY_ID or (seen.step is Step.GOT_BY_ID and resource.observe_only)
        if gone_by_id and seen.database is None:
            return Plan(LookUp(Step.CONFIRMED_BY_NAME, desired.name), seen)
        return _observed(facts, seen, desired)
    if seen.step in (Step.CONFIRMED_BY_NAME, Step.NAME_TAKEN):
        if seen.database is not None:
            return _adopt(facts, seen, desired, seen.database)
        if seen.step is Step.NAME_TAKEN:
            return Plan(GiveUp(), seen)  # taken outside this organization or account: nothing of ours to adopt
        if resource.observe_only:
            return _nothing_to_observe(facts, seen, desired)
        return Plan(CreateAction(desired.create_request(), recreate=seen.known_id is not None), seen)
    if seen.step is Step.CREATE_TIMED_OUT:
        # The provider may still create it: remember, in memory and in the status, and never send it again
        # until the window has passed.
        since = seen.sent_at or facts.now
        status = {UNCERTAIN_CREATE_FIELD: format_timestamp(since)}
        return Plan(GiveUp(), seen, status=status, uncertain_create_since=since)
    if seen.step is Step.CREATED:
        return _created(facts, seen, desired)
    if seen.step is Step.UPDATED:
        return _updated(facts, seen, desired)
    if seen.step is Step.PASSWORD_RESET:
        assert seen.database is not None
        progress = dataclasses.replace(seen, password_reset=True)
        done = _Consequences(
            events=(KubeEvent("Normal", "PasswordRotated", "the provider issued a new password"),),
            remember=seen.database,
            counted=("reset_password",),
        )
        return _converge(facts, progress, desired, seen.database, done)
    raise AssertionError(f"no reconcile decision after {seen.step}")


def _first_look(facts: Facts, seen: Observation, desired: DesiredDatabase) -> Plan:
    assert facts.provider is not None
    if seen.known_id is None and facts.create_pending() > 0:
        # An earlier create timed out and may still land: look for it, never create a second one meanwhile.
        return Plan(LookUp(Step.FOUND_BY_NAME, desired.name), seen)
    observe_only = facts.resource.observe_only  # never creates: the create cannot be the lookup
    if (
        facts.fresh
        and seen.known_id is None
        and facts.provider.names_are_unique
        and not observe_only
        and creation_refusal(facts) is None
    ):
        # Nothing recorded yet and the provider refuses duplicate names: the create is keyed by the name, so its
        # answer is the observation (a taken name is looked up then), saving a call per create.
        return _observed(facts, dataclasses.replace(seen, step=Step.CREATE_IS_THE_LOOKUP), desired)
    if not facts.fresh:
        return Plan(LookUp(Step.SNAPSHOT, desired.name, seen.known_id, snapshot=True), seen)
    if seen.known_id is not None:
        return Plan(LookUp(Step.GOT_BY_ID, desired.name, seen.known_id), seen)
    return Plan(LookUp(Step.FOUND_BY_NAME, desired.name), seen)


def _observed(facts: Facts, seen: Observation, desired: DesiredDatabase) -> Plan:
    """A plain observation: refuse a stranger's database, create a missing one, converge an existing one."""
    database = seen.database
    if database is None and seen.known_id is None and (pending := facts.create_pending()) > 0:
        message = (
            f"an earlier create of {desired.name} timed out and may still land at the provider; "
            f"looking it up again, creating anew only after {pending:.0f}s"
        )
        return refuse(facts, seen, "CreateOutcomeUnknown", message, retry_delay=min(pending, 10.0) + 1.0)
    if database is not None and database.id != seen.known_id and (stranger := facts.stranger(database)):
        return refuse(facts, seen, stranger.reason, stranger.message)
    action = plan_action(desired, database, seen.known_id)
    if isinstance(action, CreateAction) and seen.step is Step.SNAPSHOT:
        # A snapshot may be stale: check the recorded id and the name at the provider before creating.
        if seen.known_id is not None:
            return Plan(LookUp(Step.CONFIRMED_BY_ID, desired.name, seen.known_id), seen)
        return Plan(LookUp(Step.CONFIRMED_BY_NAME, desired.name), seen)
    if isinstance(action, CreateAction):
        if facts.resource.observe_only:
            return _nothing_to_observe(facts, seen, desired)
        return Plan(action, seen)
    assert database is not None
    if seen.known_id is None or (facts.resource.observe_only and database.id != seen.known_id):
        # Found by name with nothing recorded (a create whose answer was lost, a timed-out create that landed,
        # Observe): a take-over, recorded, announced and counted as one.
        return _adopt(facts, seen, desired, database)
    return _converge(facts, seen, desired, database, _Consequences(), action)


def made_after_resource(found: Database, resource_created: datetime.datetime | None) -> bool:
    """Strictly ours by time: created after the RedisDatabase (within the clock-skew allowance). Unlike
    `stranger_database`, the adopt annotation and an unknown creation time do not count: only what this rule
    proves ours may ever be deleted as a duplicate."""
    if found.created_at is None or resource_created is None:
        return False
    return found.created_at >= resource_created - CLOCK_SKEW_ALLOWANCE


def _oldest_first(database: Database) -> tuple[datetime.datetime, str]:
    assert database.created_at is not None
    return (database.created_at, database.id)


def duplicates_to_delete(facts: Facts, seen: Observation) -> tuple[Database | None, tuple[Database, ...]]:
    """Of several databases of one name, the one to keep and the duplicates of ours to delete.

    The one kept: the one recorded in status.databaseId when it is among them: the Secret was written from it by
    the reconcile that recorded it, so clients already use its password. With none recorded among them, the oldest
    one of ours: a duplicate is a create released late (held or timed out at the provider while the operator that
    sent it crashed or gave up), so it lands after the create whose answer was seen and published; the oldest is
    the likeliest to be the one a Secret already points at, and it is the same choice at every resync and in every
    replica. Deleted: only the others proven ours by time (`made_after_resource`); a database older than the
    RedisDatabase, or of unknown age, is someone else's (or cannot be told) and is never touched; so is every
    duplicate of a custom spec.name. Observe never deletes anything.

    Where it applies: the shell fills `namesakes` from the shared snapshot (every resync reads it). A fresh lookup
    by name is one adapter call that answers one database (Upstash: the newest of the name); the one it takes
    over is recorded, and from then on the recorded one is kept here at the next resync.
    """
    resource = facts.resource
    if resource.observe_only or (resource.adopt and seen.known_id is None):
        # An adoption asked by annotation with nothing recorded yet: which one the person meant is theirs to say.
        return None, ()
    if resource.desired().name != f"{resource.namespace}-{resource.name}":
        # A custom spec.name: another RedisDatabase may claim it too (the webhook refuses that, but it may have
        # been down), and its database is as new as ours; only the default name (namespace-name, unique in the
        # cluster) proves a duplicate is this resource's own.
        return None, ()
    created = facts.resource.created
    mine = sorted((d for d in seen.namesakes if made_after_resource(d, created)), key=_oldest_first)
    recorded = next((d for d in seen.namesakes if d.id == seen.known_id), None)
    if seen.known_id is not None and recorded is None:
        return None, ()  # the recorded one is missing: the confirm-then-recreate path decides, not this one
    keep = recorded if recorded is not None else (mine[0] if mine else None)
    if keep is None:
        return None, ()
    return keep, tuple(d for d in mine if d.id != keep.id)


def _delete_duplicates(facts: Facts, seen: Observation) -> Plan | None:
    """Delete the duplicates of ours a lookup by name met (see `duplicates_to_delete`), then go on with the kept one
    as the observation's database; None when there is nothing to delete."""
    keep, extra = duplicates_to_delete(facts, seen)
    if keep is None or not extra:
        return None
    ids = tuple(d.id for d in extra)
    done = KubeEvent(
        "Warning",
        "DuplicateDeleted",
        f"deleted {len(ids)} duplicate provider database(s) named {keep.name} made by this RedisDatabase "
        f"(a create that landed late): {', '.join(ids)}; kept {keep.id}",
    )
    progress = dataclasses.replace(seen, database=keep, namesakes=())
    return Plan(DeleteDuplicates(ids, keep.id, done), progress)


def _nothing_to_observe(facts: Facts, seen: Observation, desired: DesiredDatabase) -> Plan:
    """Observe never creates: say so and look again at the resync (the database may appear)."""
    message = (
        f"spec.managementPolicy is Observe but the provider has no database named {desired.name}; Observe never "
        f"creates one: create it at the provider (it is picked up at the next resync), fix spec.name, or set "
        f"managementPolicy: Manage to have it created"
    )
    return refuse(facts, seen, "ObservedDatabaseNotFound", message)


def _adopt(facts: Facts, seen: Observation, desired: DesiredDatabase, found: Database) -> Plan:
    """A database of our name met when ours was missing: ours to take over unless it is a stranger's.

    One in another primary region is left to plan_action's conflict (and not recorded).
    """
    if found.id != seen.known_id and (stranger := facts.stranger(found)):
        return refuse(facts, seen, stranger.reason, stranger.message)
    done = _Consequences()
    progress = seen
    observe_only = facts.resource.observe_only
    if found.primary_region == desired.primary_region or observe_only:
        if seen.known_id is None:
            how = "read-only (managementPolicy Observe)" if observe_only else ""
            message = f"adopted the existing provider database {found.name} {how}".strip()
            done = _Consequences(events=(KubeEvent("Normal", "Adopted", message),), counted=("adopt",))
        done = dataclasses.replace(done, status=_record_id(facts, found.id), remember=found)
        progress = dataclasses.replace(seen, known_id=found.id)
    return _converge(facts, progress, desired, found, done, plan_action(desired, found, found.id))


def _created(facts: Facts, seen: Observation, desired: DesiredDatabase) -> Plan:
    created = seen.database
    assert created is not None
    recreated_id = seen.known_id  # the database we had recorded, gone at the provider
    if recreated_id is not None:
        event = KubeEvent(
            "Warning",
            "DriftRecreated",
            f"the provider database {recreated_id} was deleted outside Kubernetes; created {created.id}",
        )
    else:
        event = KubeEvent("Normal", "Created", f"created {created.name} ({created.id}) in {created.primary_region}")
    done = _Consequences(
        events=(event,),
        status=_record_id(facts, created.id),
        remember=created,
        counted=("recreate" if recreated_id is not None else "create",),
        drift_repaired=recreated_id is not None,
    )
    progress = dataclasses.replace(seen, known_id=created.id, created=True)
    return _converge(facts, progress, desired, created, done, plan_action(desired, created, created.id))


def _updated(facts: Facts, seen: Observation, desired: DesiredDatabase) -> Plan:
    updated = seen.database
    assert updated is not None
    summary = "; ".join(change.describe() for change in seen.changes)
    resource = facts.resource
    is_drift = resource.generation == resource.status.get("observedGeneration") and not facts.fresh
    if is_drift:
        event = KubeEvent("Warning", "DriftRepaired", f"changed at the provider, repaired: {summary}")
    else:
        event = KubeEvent("Normal", "Updated", f"updated at the provider: {summary}")
    done = _Consequences(events=(event,), remember=updated, counted=("update",), drift_repaired=is_drift)
    # One update per event: whatever the answer shows, the next observation (the resync) judges it, so an adapter
    # that answers less than it changed can never make the event loop.
    return _converge(facts, seen, desired, updated, done, NoAction())


def _record_id(facts: Facts, database_id: str) -> dict[str, Any]:
    """The provider id for the status, written whether the rest of the event succeeds or fails.

    Not a PATCH of its own: a crash before the status is written loses nothing, since the next reconcile meets
    the taken name and adopts the database.
    """
    return {} if facts.resource.status.get("databaseId") == database_id else {"databaseId": database_id}


def _converge(
    facts: Facts,
    seen: Observation,
    desired: DesiredDatabase,
    database: Database,
    done: _Consequences,
    action: Action | None = None,
) -> Plan:
    """With the database known: repair what differs, rotate the password if asked, else publish.

    Observe only publishes: no repair, no rotation, whatever differs (the status shows the provider's values).
    """
    observe_only = facts.resource.observe_only
    if observe_only:
        action = NoAction()
    elif action is None:
        action = plan_action(desired, database, seen.known_id)
    if isinstance(action, ConflictAction):
        failed = refuse(facts, seen, action.reason, action.message)
        return dataclasses.replace(
            failed,
            events=done.events + failed.events,
            status={**done.status, **failed.status},
            remember=done.remember,
            counted=done.counted,
            drift_repaired=done.drift_repaired,
        )
    if not observe_only and not database.plan_observable and seen.step is not Step.UPDATED:
        action = _apply_plan_change_unseen(facts, seen, desired, database, action)
    if isinstance(action, UpdateAction | CreateAction):
        return done.plan(action, seen)
    resource = facts.resource
    rotation = resource.annotations.get(ANNOTATION_ROTATE_PASSWORD)
    handled_rotation = resource.status.get("lastHandledRotation")
    rotation_asked = bool(rotation) and rotation != handled_rotation and not observe_only
    # A database created in this event has a fresh password already: only later changes of the annotation ask.
    if rotation_asked and not seen.password_reset and not (seen.created and handled_rotation is None):
        return done.plan(ResetPassword(database.id), seen)
    plan_note = plan_unobservable_note(desired, database)
    status = _ready_status(facts, seen, database, rotation if rotation_asked else handled_rotation, plan_note)
    previous_synced = condition(resource.status.get("conditions"), "Synced")
    if plan_note and (previous_synced is None or previous_synced.get("message") != plan_note):
        # Once: the note stays in Synced's message, and the Event is sent again only when it changes.
        done = dataclasses.replace(done, events=(*done.events, KubeEvent("Warning", "PlanNotObservable", plan_note)))
    publish = Publish(database, resource.secret_name(), likely_absent=seen.created, status=status)
    return done.plan(publish, seen, forget_uncertain_create=True)


def last_applied_plan(facts: Facts, seen: Observation, desired: DesiredDatabase, database: Database) -> str | None:
    """The plan the database is on: as the provider says it, or, when its answer does not say (Upstash `type:
    paid`), the plan this operator last set — the one it created the database with, or status.plan as written."""
    if database.plan_observable:
        return database.plan
    if seen.created:
        return desired.plan
    recorded = facts.resource.status.get("plan")
    assert facts.provider is not None
    return recorded if isinstance(recorded, str) and recorded in kind_of(facts.provider.type).plans else None


def _apply_plan_change_unseen(
    facts: Facts, seen: Observation, desired: DesiredDatabase, database: Database, action: Action
) -> Action:
    """A spec.plan change on a database whose plan the provider does not report is sent once: judged against the
    plan last set (status.plan), never against the provider's unreadable word, so it can never loop."""
    last = last_applied_plan(facts, seen, desired, database)
    if last is None or last == desired.plan or not isinstance(action, NoAction | UpdateAction):
        return action
    change = FieldChange("plan", last, desired.plan)
    if isinstance(action, UpdateAction):
        return UpdateAction(action.update.model_copy(update={"plan": desired.plan}), (*action.changes, change))
    return UpdateAction(DatabaseUpdate(plan=desired.plan), (change,))


def _ready_status(
    facts: Facts, seen: Observation, database: Database, handled_rotation: str | None, synced_message: str = ""
) -> dict[str, Any]:
    """The status once the Secret is published: the Ready rule, the mirror of the database, rotation bookkeeping."""
    resource = facts.resource
    assert facts.provider is not None
    now = format_timestamp(facts.now)
    secret_name = resource.secret_name()
    conditions = succeeded_conditions(
        resource.status.get("conditions"),
        generation=resource.generation,
        now=now,
        state=database.state,
        secret_name=secret_name,
        state_message=database.state_message,
        synced_message=synced_message,
    )
    shown = database
    if not database.plan_observable and (last := last_applied_plan(facts, seen, resource.desired(), database)):
        shown = database.model_copy(update={"plan": last})  # what we set, not the provider's unreadable word
    rendered: dict[str, Any] = {
        **observed_status(shown, facts.provider.type, facts.provider.live_catalog),
        "provider": facts.provider.name,
        "secretName": secret_name,
        "observedGeneration": resource.generation,
        "conditions": conditions,
        "lastHandledRotation": handled_rotation,
        "passwordRotatedAt": now if seen.password_reset else resource.status.get("passwordRotatedAt"),
    }
    return status_changes(resource.status, rendered, now=now)


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


# --- the one decision of a deletion --------------------------------------------------------------------------


def decide_deletion(facts: Facts, seen: Observation) -> Plan:
    """Keep or destroy the provider database of a RedisDatabase being deleted (`facts.provider` is not needed).

    In this order: deletion protection holds everything (whatever the policy); Observe never deletes; the
    force-orphan annotation keeps the database; a paused resource waits; then deletionPolicy (the resource's, else
    the operator's default).
    """
    resource = facts.resource
    if resource.spec is None:
        event = KubeEvent("Warning", "Orphaned", "the spec is invalid; nothing was deleted at the provider")
        return Plan(Release(), seen, events=(event,))
    if seen.step is Step.START:
        if resource.spec.deletion_protection:
            return hold(facts, seen, "DeletionProtected", deletion_protected_message(resource))
        if resource.observe_only:
            message = "managementPolicy is Observe: the provider database is never deleted"
            event = KubeEvent("Normal", "Orphaned", message)
            return Plan(Release(), seen, events=(event,))
        if resource.annotations.get(ANNOTATION_FORCE_ORPHAN) == "true":
            event = KubeEvent("Warning", "Orphaned", f"{ANNOTATION_FORCE_ORPHAN} is set: the database is kept")
            return Plan(Release(), seen, events=(event,))
        policy = resource.spec.effective_deletion_policy(facts.default_deletion_policy)
        if policy is DeletionPolicy.ORPHAN:
            event = KubeEvent("Normal", "Orphaned", "deletionPolicy is Orphan: the provider database is kept")
            return Plan(Release(), seen, events=(event,))
        if resource.paused:
            return hold(facts, seen, "Paused", paused_deletion_message(resource))
        if seen.known_id is not None:
            return Plan(Delete(seen.known_id), seen)
        return Plan(LookUp(Step.FOUND_BY_NAME, resource.desired().name), seen)
    if seen.step is Step.FOUND_BY_NAME:
        found = seen.database
        events: tuple[KubeEvent, ...] = ()
        if found is not None and facts.stranger(found) is not None:
            message = (
                f"the provider database {found.name} ({found.id}) predates this RedisDatabase and was never "
                f"adopted: not deleted"
            )
            events, found = (KubeEvent("Warning", "Kept", message),), None
        if found is not None:
            return Plan(Delete(found.id), dataclasses.replace(seen, known_id=found.id))
        if (pending := facts.create_pending()) > 0:
            # Releasing now would leave a late-landing database with no owner: wait for it, then delete it.
            message = (
                f"an earlier create timed out and may still land at the provider; checking again for up to "
                f"{pending:.0f}s before releasing the resource"
            )
            return Plan(Wait(message, min(pending, 10.0) + 1.0), seen, events=events)
        return Plan(Release(), seen, events=events)
    if seen.step is Step.DELETED:
        event = KubeEvent("Normal", "Deleted", f"deleted provider database {seen.known_id}")
        return Plan(Release(), seen, events=(event,), counted=("delete",))
    raise AssertionError(f"no deletion decision after {seen.step}")


def hold(facts: Facts, seen: Observation, reason: str, message: str) -> Plan:
    """Synced=False with the reason (a Warning Event when it is new), the finalizer kept, nothing done."""
    failed = failure_status(facts.resource, reason, message, facts.now)
    return dataclasses.replace(failed, action=Hold(reason, message), progress=seen)


def _kubectl_target(resource: Resource) -> str:
    return f"rdb {resource.name} -n {resource.namespace}"


def paused_message(resource: Resource) -> str:
    return (
        f"reconciliation is paused ({ANNOTATION_PAUSED}=true): no provider calls and no Secret writes; changes at "
        f"the provider are kept. To resume: kubectl annotate {_kubectl_target(resource)} {ANNOTATION_PAUSED}-"
    )


def paused_deletion_message(resource: Resource) -> str:
    return (
        f"the deletion waits: the resource is paused ({ANNOTATION_PAUSED}=true) and deletionPolicy Delete needs "
        f"the provider. Unpause to delete the provider database (kubectl annotate {_kubectl_target(resource)} "
        f"{ANNOTATION_PAUSED}-), or keep it and let the resource go (kubectl annotate "
        f"{_kubectl_target(resource)} {ANNOTATION_FORCE_ORPHAN}=true)"
    )


def deletion_protected_message(resource: Resource) -> str:
    return (
        "the deletion is held: spec.deletionProtection is true, so the resource stays and the provider database is "
        "untouched. To let the deletion proceed (by deletionPolicy), release it: kubectl patch "
        f"{_kubectl_target(resource)} --type=merge -p "
        '\'{"spec":{"deletionProtection":false}}\''
    )


def deletion_failure_message(message: str) -> str:
    return (
        f"cannot delete the provider database: {message}. To remove the RedisDatabase without deleting it at the "
        f"provider, annotate it {ANNOTATION_FORCE_ORPHAN}=true"
    )
