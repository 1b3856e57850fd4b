"""The pure reconcile core: (desired spec, observed provider state, status, annotations, now) -> one plan.

Nothing here performs I/O, so every decision the operator makes is a table test away. The imperative shell
(`controller.py`) asks `decide` what to do, does it, and when the outcome changes what is known (a create answered,
a name was looked up) it hands that outcome back as the next `Observation` and asks again. The vocabulary (`Facts`,
`Observation`, `Plan` and its actions) lives in `decision.py`, the duplicate rule in `duplicates.py`, and
`deletion.decide_deletion` does the same for a deletion. This module imports neither `kube` nor `kopf` nor an HTTP
client (a test enforces it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .decision import (
    CREATED,
    Consequences,
    Facts,
    GiveUp,
    KubeEvent,
    LookUp,
    Observation,
    Plan,
    Publish,
    ResetPassword,
    Resource,
    Step,
    kubectl_target,
    refuse,
)
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
from .duplicates import delete_duplicates_plan
from .models import (
    ANNOTATION_PAUSED,
    ANNOTATION_ROTATE_PASSWORD,
)
from .providers import catalog
from .providers.base import Database, DatabaseUpdate
from .providers.kinds import kind_of
from .status import (
    UNCERTAIN_CREATE_FIELD,
    condition,
    format_timestamp,
    observed_status,
    status_changes,
    succeeded_conditions,
)
from .tenancy import namespace_problem

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


# kopf's diff base as an annotation, before it moved into the status (sweep.StatusDiffBaseStorage).
LEGACY_DIFF_BASE_ANNOTATION = "kopf.redisdb.dev/last-handled-configuration"


def legacy_annotations(annotations: Mapping[str, str], status: Mapping[str, Any] | None = None) -> list[str]:
    """The old kopf bookkeeping annotations present on the object: every reconcile removes them. The old diff
    base goes only once the status holds its successor: until then it is what kopf compares a change with."""
    legacy = [key for key in LEGACY_KOPF_ANNOTATIONS if key in annotations]
    if LEGACY_DIFF_BASE_ANNOTATION in annotations and ((status or {}).get("kopf") or {}).get(
        "lastHandledConfiguration"
    ):
        legacy.append(LEGACY_DIFF_BASE_ANNOTATION)
    return legacy


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
    if seen.namesakes and (duplicates := delete_duplicates_plan(facts, seen)) is not None:
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
        done = Consequences(
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
    if seen.known_id is not None and facts.read_before_update:
        return Plan(LookUp(Step.GOT_BY_ID, desired.name, seen.known_id), seen)
    if seen.known_id is not None:
        # A spec change of a recorded database: the shared snapshot already knows it (our own writes included), so
        # the change costs the provider one call, the update. What changed at the provider since the last list is
        # the next resync's drift to repair; a database deleted meanwhile fails the update, which forgets it.
        # (--read-before-update reads it first, docs/policies.md: fields the spec does not own are echoed.)
        return Plan(LookUp(Step.SNAPSHOT, desired.name, seen.known_id, snapshot=True, list_if_stale=False), seen)
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
    return _converge(facts, seen, desired, database, Consequences(), action)


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
    done = Consequences()
    progress = seen
    observe_only = facts.resource.observe_only
    if found.primary_region == desired.primary_region or observe_only:
        if seen.known_id is None:
            how = "read-only (managementPolicy Observe)" if observe_only else ""
            message = f"adopted the existing provider database {found.name} {how}".strip()
            done = Consequences(events=(KubeEvent("Normal", "Adopted", message),), counted=("adopt",))
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
        event = KubeEvent("Normal", CREATED, f"created {created.name} ({created.id}) in {created.primary_region}")
    done = Consequences(
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
    done = Consequences(events=(event,), remember=updated, counted=("update",), drift_repaired=is_drift)
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
    done: Consequences,
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


def paused_message(resource: Resource) -> str:
    return (
        f"reconciliation is paused ({ANNOTATION_PAUSED}=true): no provider calls and no Secret writes; changes at "
        f"the provider are kept. To resume: kubectl annotate {kubectl_target(resource)} {ANNOTATION_PAUSED}-"
    )
