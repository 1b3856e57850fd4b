"""Table tests of the policy decisions in the pure core (issue 17 items 2 and 3): pause, Observe, deletion
protection, the operator's default deletionPolicy and allowedNamespaces, each as decide/decide_deletion sees it."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from redisdb_operator.decision import (
    Delete,
    Facts,
    Hold,
    LookUp,
    Observation,
    ProviderFacts,
    Publish,
    Refuse,
    Release,
    ResetPassword,
    Resource,
    Step,
)
from redisdb_operator.deletion import decide_deletion
from redisdb_operator.desired import CreateAction, UpdateAction
from redisdb_operator.models import DeletionPolicy, LabelSelector, RedisDatabaseSpec
from redisdb_operator.providers.base import Database, ProviderType
from redisdb_operator.reconcile import decide
from redisdb_operator.status import PERMANENT_REASONS, RECHECKED_BY_RESYNC, condition, waiting_for_spec_change

T0 = datetime.datetime(2026, 11, 26, 10, 0, 0, tzinfo=datetime.UTC)
PAUSED = {"redisdb.dev/paused": "true"}
OBSERVE = {"primaryRegion": "cdg", "managementPolicy": "Observe"}


def facts(
    *,
    spec: dict[str, object] | None = None,
    status: dict[str, object] | None = None,
    annotations: dict[str, str] | None = None,
    fresh: bool = True,
    selector: dict[str, object] | None = None,
    namespace_labels: dict[str, str] | None = None,
    default_policy: DeletionPolicy = DeletionPolicy.DELETE,
) -> Facts:
    parsed = RedisDatabaseSpec.model_validate(spec or {"primaryRegion": "cdg"})
    resource = Resource(
        uid="uid-1",
        namespace="shop",
        name="cache",
        generation=1,
        status=status or {},
        annotations=annotations or {},
        created=T0,
        spec=parsed,
    )
    allowed = LabelSelector.model_validate(selector) if selector is not None else None
    provider = ProviderFacts("default", ProviderType.FLY, True, allowed_namespaces=allowed)
    return Facts(
        resource,
        provider,
        fresh=fresh,
        now=T0 + datetime.timedelta(minutes=1),
        namespace_labels=namespace_labels,
        default_deletion_policy=default_policy,
    )


def database(**overrides: object) -> Database:
    values: dict[str, object] = {
        "id": "db-1",
        "name": "shop-cache",
        "primary_region": "cdg",
        "plan": "payg",
        "host": "db.internal",
        "port": 6379,
        "password": "pw",
        "url": "redis://default:pw@db.internal:6379",
        "created_at": T0 - datetime.timedelta(days=30),  # long before the resource: a stranger's, for Manage
    }
    return Database(**{**values, **overrides})  # type: ignore[arg-type]


# --- pause ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fresh", [True, False])
@pytest.mark.parametrize("status", [{}, {"databaseId": "db-1", "conditions": []}])
def test_a_paused_resource_makes_no_provider_call(fresh: bool, status: dict[str, object]) -> None:
    f = facts(annotations=PAUSED, fresh=fresh, status=status)
    plan = decide(f, Observation.first(f.resource))
    assert isinstance(plan.action, Refuse) and plan.action.reason == "Paused"
    assert plan.action.retry_delay is None  # no retry loop: unpausing is an event of its own
    assert "redisdb.dev/paused-" in plan.action.message
    synced = condition(plan.status["conditions"], "Synced")
    assert synced is not None and (synced["status"], synced["reason"]) == ("False", "Paused")
    assert "Paused" not in PERMANENT_REASONS  # the resync keeps looking (and keeps its hands off)


def test_a_paused_resource_keeps_ready_as_it_was() -> None:
    ready = {"type": "Ready", "status": "True", "reason": "Available", "observedGeneration": 1}
    f = facts(annotations=PAUSED, status={"databaseId": "db-1", "conditions": [ready]})
    plan = decide(f, Observation.first(f.resource))
    assert condition(plan.status["conditions"], "Ready") == ready


def test_the_pause_annotation_must_say_true() -> None:
    f = facts(annotations={"redisdb.dev/paused": "false"})
    assert isinstance(decide(f, Observation.first(f.resource)).action, CreateAction)
    assert not f.resource.paused and f.resource.needs_provider()
    assert not facts(annotations=PAUSED).resource.needs_provider()


def test_deleting_a_paused_resource_waits_and_says_how_to_go_on() -> None:
    f = facts(annotations=PAUSED, status={"databaseId": "db-1"})
    plan = decide_deletion(f, Observation.first(f.resource))
    assert isinstance(plan.action, Hold) and plan.action.reason == "Paused"
    assert "redisdb.dev/paused-" in plan.action.message and "redisdb.dev/force-orphan=true" in plan.action.message
    assert [(event.type, event.reason) for event in plan.events] == [("Warning", "Paused")]
    forced = facts(annotations={**PAUSED, "redisdb.dev/force-orphan": "true"}, status={"databaseId": "db-1"})
    assert isinstance(decide_deletion(forced, Observation.first(forced.resource)).action, Release)
    orphan = facts(annotations=PAUSED, spec={"primaryRegion": "cdg", "deletionPolicy": "Orphan"})
    assert isinstance(decide_deletion(orphan, Observation.first(orphan.resource)).action, Release)  # no provider


# --- Observe ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fresh", [True, False])
def test_observe_never_creates(fresh: bool) -> None:
    f = facts(spec=OBSERVE, fresh=fresh)
    plan = decide(f, Observation.first(f.resource))
    assert isinstance(plan.action, LookUp)  # not the create-is-the-lookup shortcut
    final = decide(f, plan.observe(plan.action.then, None))
    if isinstance(final.action, LookUp):  # a snapshot is confirmed at the provider first
        final = decide(f, final.observe(final.action.then, None))
    assert isinstance(final.action, Refuse) and final.action.reason == "ObservedDatabaseNotFound"
    assert "shop-cache" in final.action.message and "managementPolicy: Manage" in final.action.message
    assert "ObservedDatabaseNotFound" in RECHECKED_BY_RESYNC  # the database may appear at the provider


def test_observe_adopts_an_older_database_read_only_and_changes_nothing() -> None:
    f = facts(spec={**OBSERVE, "readRegions": ["ams"], "plan": "fixed_1gb", "eviction": True})
    found = database(read_regions=(), plan="payg", eviction=False)  # differs in every changeable field
    plan = decide(f, Observation(step=Step.FOUND_BY_NAME, database=found))
    assert isinstance(plan.action, Publish)  # no NameTaken, no update
    assert plan.status == {"databaseId": "db-1"} and [event.reason for event in plan.events] == ["Adopted"]
    assert "Observe" in plan.events[0].message
    status = plan.action.status
    assert (status["plan"], status["readRegions"], status["eviction"]) == ("payg", [], False)  # the provider's


def test_observe_follows_the_name_when_the_recorded_id_is_gone() -> None:
    f = facts(spec=OBSERVE, status={"databaseId": "db-1"})
    plan = decide(f, Observation.first(f.resource))
    assert plan.action == LookUp(Step.SNAPSHOT, "shop-cache", "db-1", snapshot=True, list_if_stale=False)
    plan = decide(f, plan.observe(Step.SNAPSHOT, None))
    assert plan.action == LookUp(Step.CONFIRMED_BY_ID, "shop-cache", "db-1")
    plan = decide(f, plan.observe(Step.CONFIRMED_BY_ID, None))
    assert plan.action == LookUp(Step.CONFIRMED_BY_NAME, "shop-cache")
    plan = decide(f, plan.observe(Step.CONFIRMED_BY_NAME, database(id="db-2")))
    assert isinstance(plan.action, Publish) and plan.status == {"databaseId": "db-2"}


def test_observe_publishes_even_another_primary_region_and_never_rotates() -> None:
    f = facts(spec=OBSERVE, status={"databaseId": "db-1"}, annotations={"redisdb.dev/rotate-password": "now"})
    plan = decide(f, Observation(step=Step.SNAPSHOT, database=database(primary_region="ams"), known_id="db-1"))
    assert isinstance(plan.action, Publish) and plan.action.status["primaryRegion"] == "ams"
    managed = facts(status={"databaseId": "db-1"}, annotations={"redisdb.dev/rotate-password": "now"})
    step = Observation(step=Step.SNAPSHOT, database=database(), known_id="db-1")
    assert isinstance(decide(managed, step).action, ResetPassword)  # the same facts under Manage do rotate


def test_manage_still_updates_and_refuses_a_strangers_database() -> None:
    f = facts(spec={"primaryRegion": "cdg", "readRegions": ["ams"]})
    plan = decide(f, Observation(step=Step.FOUND_BY_NAME, database=database()))
    assert isinstance(plan.action, Refuse) and plan.action.reason == "NameTaken"
    plan = decide(f, Observation(step=Step.SNAPSHOT, database=database(), known_id="db-1"))
    assert isinstance(plan.action, UpdateAction)


def test_deleting_an_observed_resource_never_deletes_the_database() -> None:
    f = facts(spec={**OBSERVE, "deletionPolicy": "Delete"}, status={"databaseId": "db-1"})
    plan = decide_deletion(f, Observation.first(f.resource))
    assert isinstance(plan.action, Release) and [e.reason for e in plan.events] == ["Orphaned"]


# --- deletion protection and the default deletionPolicy ---------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "annotations"),
    [
        ({"primaryRegion": "cdg", "deletionProtection": True}, {}),
        ({"primaryRegion": "cdg", "deletionProtection": True, "deletionPolicy": "Orphan"}, {}),
        ({"primaryRegion": "cdg", "deletionProtection": True}, {"redisdb.dev/force-orphan": "true"}),
        ({**OBSERVE, "deletionProtection": True}, {}),
    ],
)
def test_deletion_protection_holds_whatever_else_is_set(spec: dict[str, object], annotations: dict[str, str]) -> None:
    f = facts(spec=spec, annotations=annotations, status={"databaseId": "db-1"})
    plan = decide_deletion(f, Observation.first(f.resource))
    assert isinstance(plan.action, Hold) and plan.action.reason == "DeletionProtected"
    assert (
        '"deletionProtection":false' in plan.action.message and "kubectl patch rdb cache -n shop" in plan.action.message
    )
    synced = condition(plan.status["conditions"], "Synced")
    assert synced is not None and synced["reason"] == "DeletionProtected" and synced["message"] == plan.action.message
    assert "DeletionProtected" in PERMANENT_REASONS  # Argo CD: Degraded, a person decides


def test_a_held_deletion_posts_its_event_once() -> None:
    f = facts(spec={"primaryRegion": "cdg", "deletionProtection": True})
    first = decide_deletion(f, Observation.first(f.resource))
    again = dataclasses.replace(f, resource=dataclasses.replace(f.resource, status=first.status))
    assert decide_deletion(again, Observation.first(again.resource)).events == ()


@pytest.mark.parametrize(
    ("spec_policy", "default", "deletes"),
    [
        (None, DeletionPolicy.DELETE, True),
        (None, DeletionPolicy.ORPHAN, False),
        ("Delete", DeletionPolicy.ORPHAN, True),  # the resource's own policy wins
        ("Orphan", DeletionPolicy.DELETE, False),
    ],
)
def test_the_operators_default_deletion_policy(spec_policy: str | None, default: DeletionPolicy, deletes: bool) -> None:
    spec: dict[str, object] = {"primaryRegion": "cdg"}
    if spec_policy:
        spec["deletionPolicy"] = spec_policy
    f = facts(spec=spec, status={"databaseId": "db-1"}, default_policy=default)
    action = decide_deletion(f, Observation.first(f.resource)).action
    assert action == Delete("db-1") if deletes else isinstance(action, Release)


# --- allowedNamespaces ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "allowed"),
    [
        (None, {}, True),
        ({}, {}, True),
        ({"matchLabels": {"team": "shop"}}, {"team": "shop"}, True),
        ({"matchLabels": {"team": "shop"}}, {"team": "ads"}, False),
        ({"matchLabels": {"team": "shop"}}, None, True),  # labels not known yet: the webhook/the resync judge later
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["prod"]}]}, {"tier": "prod"}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["prod"]}]}, {"tier": "prod"}, False),
        ({"matchExpressions": [{"key": "billing", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "sandbox", "operator": "DoesNotExist"}]}, {"sandbox": "1"}, False),
    ],
)
def test_allowed_namespaces_at_reconcile(
    selector: dict[str, object] | None, labels: dict[str, str] | None, allowed: bool
) -> None:
    f = facts(selector=selector, namespace_labels=labels)
    plan = decide(f, Observation.first(f.resource))
    if allowed:
        assert isinstance(plan.action, CreateAction)
        return
    assert isinstance(plan.action, Refuse) and plan.action.reason == "NamespaceNotAllowed"
    assert "namespace shop may not use RedisProvider default" in plan.action.message
    assert "spec.allowedNamespaces" in plan.action.message
    status = {"conditions": plan.status["conditions"]}
    assert not waiting_for_spec_change(status, 1)  # the resync looks again: a relabelled namespace is let in


def test_the_refusal_names_the_selector() -> None:
    selector = {
        "matchLabels": {"team": "shop"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}],
    }
    f = facts(selector=selector, namespace_labels={})
    plan = decide(f, Observation.first(f.resource))
    assert isinstance(plan.action, Refuse) and "team=shop,tier in (a,b)" in plan.action.message


# --- Argo CD ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "health"),
    [("Paused", "Suspended"), ("DeletionProtected", "Degraded"), ("NamespaceNotAllowed", "Degraded")],
)
def test_argocd_health_of_the_policy_reasons(reason: str, health: str) -> None:
    from tests.harness.argocd_health import health_of

    synced = {"type": "Synced", "status": "False", "reason": reason, "message": "m", "observedGeneration": 1}
    ready = {"type": "Ready", "status": "True", "reason": "Available", "observedGeneration": 1}
    obj = {
        "apiVersion": "redisdb.dev/v1alpha1",
        "kind": "RedisDatabase",
        "metadata": {"generation": 1},
        "status": {"conditions": [ready, synced]},
    }
    assert health_of(obj) == {"status": health, "message": f"{reason}: m"}
