"""Table tests of the one reconcile decision: decide(facts, observation) -> plan, step by step as the shell feeds
each outcome back, and decide_deletion; plus whose database a found one is."""

from __future__ import annotations

import datetime

import pytest
from pydantic import ValidationError

from redisdb_operator.decision import (
    Delete,
    DeleteDuplicates,
    Facts,
    GiveUp,
    LookUp,
    Observation,
    ProviderFacts,
    Publish,
    Refuse,
    Release,
    ResetPassword,
    Resource,
    Step,
    Wait,
    stranger_database,
)
from redisdb_operator.deletion import decide_deletion
from redisdb_operator.desired import CreateAction, UpdateAction
from redisdb_operator.duplicates import duplicates_to_delete
from redisdb_operator.models import RedisDatabaseSpec
from redisdb_operator.providers.base import Database, ProviderType
from redisdb_operator.reconcile import decide
from redisdb_operator.status import condition


def observed(**overrides: object) -> Database:
    values: dict[str, object] = {
        "id": "db-1",
        "name": "shop-cache",
        "primary_region": "cdg",
        "read_regions": ("ams",),
        "plan": "payg",
        "eviction": False,
    }
    values.update(overrides)
    return Database(**values)  # type: ignore[arg-type]


NOW = datetime.datetime(2026, 11, 26, 10, 0, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("created_at", "resource_created", "adopt", "reason"),
    [
        (NOW - datetime.timedelta(hours=1), NOW, False, "NameTaken"),  # older than the resource: a stranger's
        (NOW - datetime.timedelta(hours=1), NOW, True, None),  # the user asked for the takeover
        (NOW + datetime.timedelta(seconds=2), NOW, False, None),  # made after the resource: ours
        (NOW - datetime.timedelta(seconds=9), NOW, False, None),  # within the clock skew allowance
        (NOW - datetime.timedelta(seconds=11), NOW, False, "NameTaken"),
        (None, NOW, False, None),  # the provider does not say: nothing to tell by
        (NOW - datetime.timedelta(hours=1), None, False, None),
    ],
)
def test_stranger_database(
    created_at: datetime.datetime | None, resource_created: datetime.datetime | None, adopt: bool, reason: str | None
) -> None:
    found = Database(id="db-9", name="shop-cache", primary_region="cdg", plan="free", created_at=created_at)
    verdict = stranger_database(found, resource_created=resource_created, adopt=adopt)
    assert (verdict.reason if verdict else None) == reason


# --- the one decision: decide(facts, observation) -> plan ------------------------------------------------------

T0 = datetime.datetime(2026, 11, 26, 10, 0, 0, tzinfo=datetime.UTC)


def facts(
    *,
    status: dict[str, object] | None = None,
    annotations: dict[str, str] | None = None,
    spec: dict[str, object] | None = None,
    fresh: bool = True,
    names_are_unique: bool = True,
    created: datetime.datetime | None = T0,
    pending: float = 0.0,
    generation: int = 1,
) -> Facts:
    raw_spec = spec if spec is not None else {"primaryRegion": "cdg", "readRegions": ["ams"]}
    try:
        parsed: RedisDatabaseSpec | None = RedisDatabaseSpec.model_validate(raw_spec)
        problem = ""
    except ValidationError as error:
        parsed, problem = None, str(error)
    resource = Resource(
        uid="uid-1",
        namespace="shop",
        name="cache",
        generation=generation,
        status=status or {},
        annotations=annotations or {},
        created=created,
        spec=parsed,
        spec_problem=problem,
    )
    provider = ProviderFacts("default", ProviderType.FLY, names_are_unique)
    return Facts(
        resource, provider, fresh=fresh, now=T0 + datetime.timedelta(minutes=1), create_pending_in_memory=pending
    )


def ours(**overrides: object) -> Database:
    values: dict[str, object] = {
        "host": "db.internal",
        "port": 6379,
        "password": "pw",
        "url": "redis://default:pw@db.internal:6379",
    }
    return observed(**{**values, **overrides})


def test_a_fresh_create_on_a_unique_name_provider_goes_straight_to_the_provider() -> None:
    f = facts()
    plan = decide(f, Observation.first(f.resource))
    assert isinstance(plan.action, CreateAction) and not plan.action.recreate
    plan = decide(f, plan.observe(Step.CREATED, ours()))
    assert isinstance(plan.action, Publish) and plan.action.likely_absent
    assert plan.status == {"databaseId": "db-1"} and plan.counted == ("create",) and plan.remember == ours()
    assert [event.reason for event in plan.events] == ["Created"]
    status = plan.action.status
    assert status["databaseId"] == "db-1" and status["secretName"] == "cache-redis"
    assert condition(status["conditions"], "Ready")["reason"] == "Available"  # type: ignore[index]
    assert status["planLimits"]  # the billing fields land with Ready, in the same write (billing.py)


@pytest.mark.parametrize(
    ("fresh", "names_are_unique", "status", "lookup"),
    [
        (True, False, {}, LookUp(Step.FOUND_BY_NAME, "shop-cache")),
        # a spec change of a recorded database: the snapshot, not listed again for it (one call per update)
        (True, True, {"databaseId": "db-1"}, LookUp(Step.SNAPSHOT, "shop-cache", "db-1", True, False)),
        (False, True, {"databaseId": "db-1"}, LookUp(Step.SNAPSHOT, "shop-cache", "db-1", snapshot=True)),
    ],
)
def test_the_first_look(fresh: bool, names_are_unique: bool, status: dict[str, object], lookup: LookUp) -> None:
    f = facts(fresh=fresh, names_are_unique=names_are_unique, status=status)
    assert decide(f, Observation.first(f.resource)).action == lookup


def test_a_stale_snapshot_is_confirmed_at_the_provider_before_recreating() -> None:
    f = facts(fresh=False, status={"databaseId": "db-1", "observedGeneration": 1})
    plan = decide(f, Observation.first(f.resource))
    plan = decide(f, plan.observe(Step.SNAPSHOT, None))
    assert plan.action == LookUp(Step.CONFIRMED_BY_ID, "shop-cache", "db-1")
    plan = decide(f, plan.observe(Step.CONFIRMED_BY_ID, None))
    assert plan.action == LookUp(Step.CONFIRMED_BY_NAME, "shop-cache")
    plan = decide(f, plan.observe(Step.CONFIRMED_BY_NAME, None))
    assert isinstance(plan.action, CreateAction) and plan.action.recreate
    plan = decide(f, plan.observe(Step.CREATED, ours(id="db-2")))
    assert [event.reason for event in plan.events] == ["DriftRecreated"] and plan.drift_repaired
    assert plan.counted == ("recreate",) and plan.status == {"databaseId": "db-2"}


def test_a_taken_name_is_adopted_when_ours_and_refused_when_a_strangers() -> None:
    f = facts()
    create = decide(f, Observation.first(f.resource))
    adopted = decide(f, create.observe(Step.NAME_TAKEN, ours(created_at=T0 + datetime.timedelta(seconds=3))))
    assert [event.reason for event in adopted.events] == ["Adopted"] and adopted.counted == ("adopt",)
    assert adopted.status == {"databaseId": "db-1"} and isinstance(adopted.action, Publish)
    assert not adopted.action.likely_absent
    theirs = decide(f, create.observe(Step.NAME_TAKEN, ours(created_at=T0 - datetime.timedelta(hours=1))))
    assert theirs.action == Refuse("NameTaken", theirs.action.message)  # type: ignore[union-attr]
    assert "databaseId" not in theirs.status and theirs.remember is None
    assert isinstance(decide(f, create.observe(Step.NAME_TAKEN, None)).action, GiveUp)


@pytest.mark.parametrize("fresh", [True, False])
def test_a_database_found_by_name_with_nothing_recorded_is_a_take_over(fresh: bool) -> None:
    """A create whose answer was lost (or that timed out and landed), met again by name: adopted, announced and
    counted as such, not silently recorded."""
    f = facts(fresh=fresh, names_are_unique=False)
    look = decide(f, Observation.first(f.resource))
    assert isinstance(look.action, LookUp) and look.action.database_id is None
    step = Step.FOUND_BY_NAME if fresh else Step.SNAPSHOT
    found = decide(f, look.observe(step, ours(created_at=T0 + datetime.timedelta(seconds=3))))
    assert [event.reason for event in found.events] == ["Adopted"] and found.counted == ("adopt",)
    assert found.status == {"databaseId": "db-1"} and isinstance(found.action, Publish)
    recorded = facts(fresh=fresh, names_are_unique=False, status={"databaseId": "db-1", "observedGeneration": 1})
    again = decide(
        recorded, Observation.first(recorded.resource).__class__(step=step, database=ours(), known_id="db-1")
    )
    assert again.events == () and again.counted == ()  # known by its id: nothing to announce


def test_an_adopted_database_that_differs_is_then_updated() -> None:
    f = facts(spec={"primaryRegion": "cdg", "readRegions": ["ams", "fra"]})
    plan = decide(f, Observation(step=Step.NAME_TAKEN, database=ours()))
    assert isinstance(plan.action, UpdateAction) and plan.action.update.read_regions == ("ams", "fra")
    assert plan.status == {"databaseId": "db-1"}
    updated = decide(f, plan.observe(Step.UPDATED, ours(read_regions=("ams", "fra")), changes=plan.action.changes))
    assert [event.reason for event in updated.events] == ["Updated"] and updated.counted == ("update",)
    assert isinstance(updated.action, Publish) and updated.action.status["readRegions"] == ["ams", "fra"]


def test_one_update_per_event_whatever_the_adapter_answers() -> None:
    f = facts(spec={"primaryRegion": "cdg", "readRegions": ["ams", "fra"]}, status={"databaseId": "db-1"})
    plan = decide(f, Observation(step=Step.SNAPSHOT, database=ours(), known_id="db-1"))
    assert isinstance(plan.action, UpdateAction)
    unchanged = decide(f, plan.observe(Step.UPDATED, ours(), changes=plan.action.changes))
    assert isinstance(unchanged.action, Publish)  # the next resync judges it, the event does not loop


def test_a_change_at_the_provider_found_by_the_resync_is_drift() -> None:
    f = facts(fresh=False, status={"databaseId": "db-1", "observedGeneration": 1})
    plan = decide(f, Observation(step=Step.SNAPSHOT, database=ours(eviction=True), known_id="db-1"))
    assert isinstance(plan.action, UpdateAction)
    done = decide(f, plan.observe(Step.UPDATED, ours(), changes=plan.action.changes))
    assert [event.type for event in done.events] == ["Warning"] and done.events[0].reason == "DriftRepaired"
    assert done.drift_repaired


def test_a_timed_out_create_is_remembered_and_then_awaited() -> None:
    f = facts()
    plan = decide(f, Observation(step=Step.CREATE_TIMED_OUT, sent_at=T0))
    assert isinstance(plan.action, GiveUp) and plan.uncertain_create_since == T0
    assert plan.status == {"createUncertainSince": "2026-11-26T10:00:00Z"}
    waiting = facts(status={"createUncertainSince": "2026-11-26T10:00:00Z"})
    first = decide(waiting, Observation.first(waiting.resource))
    assert first.action == LookUp(Step.FOUND_BY_NAME, "shop-cache")
    refused = decide(waiting, first.observe(Step.FOUND_BY_NAME, None))
    assert isinstance(refused.action, Refuse) and refused.action.reason == "CreateOutcomeUnknown"
    assert refused.action.retry_delay == 11.0  # 30 s of the window left: look again in 10 s (+1)
    landed = decide(waiting, first.observe(Step.FOUND_BY_NAME, ours(created_at=T0)))
    assert isinstance(landed.action, Publish) and landed.action.status["createUncertainSince"] is None
    assert landed.forget_uncertain_create


@pytest.mark.parametrize(
    ("status", "created_now", "resets"),
    [
        ({"databaseId": "db-1"}, False, True),  # asked for the first time
        ({"databaseId": "db-1", "lastHandledRotation": "1"}, False, True),  # asked again with a new value
        ({"databaseId": "db-1", "lastHandledRotation": "2"}, False, False),  # already handled
        ({}, True, False),  # a database created in this event has a fresh password
    ],
)
def test_password_rotation(status: dict[str, object], created_now: bool, resets: bool) -> None:
    f = facts(status=status, annotations={"redisdb.dev/rotate-password": "2"})
    known_id = str(status["databaseId"]) if "databaseId" in status else None
    seen = Observation(step=Step.SNAPSHOT, database=ours(), known_id=known_id, created=created_now)
    plan = decide(f, seen)
    assert isinstance(plan.action, ResetPassword) == resets
    if resets:
        plan = decide(f, plan.observe(Step.PASSWORD_RESET, ours(password="pw-2")))
        assert [event.reason for event in plan.events] == ["PasswordRotated"]
        assert plan.counted == ("reset_password",)
    assert isinstance(plan.action, Publish)
    assert plan.action.status["lastHandledRotation"] == "2"
    assert ("passwordRotatedAt" in plan.action.status) == resets


def test_an_idle_resync_writes_no_status() -> None:
    f = facts(status={"databaseId": "db-1"})
    first = decide(f, Observation(step=Step.SNAPSHOT, database=ours(), known_id="db-1"))
    assert isinstance(first.action, Publish)
    settled = facts(fresh=False, status=dict(first.action.status))
    again = decide(settled, Observation(step=Step.SNAPSHOT, database=ours(), known_id="db-1"))
    assert isinstance(again.action, Publish) and again.action.status == {} and again.events == ()


def test_the_ready_rule_follows_the_provider_state() -> None:
    f = facts(status={"databaseId": "db-1"})
    plan = decide(f, Observation(step=Step.SNAPSHOT, database=ours(state="creating"), known_id="db-1"))
    assert isinstance(plan.action, Publish)
    ready = condition(plan.action.status["conditions"], "Ready")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "NotActive")


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"primaryRegion": 7}, "InvalidSpec"),
        ({"primaryRegion": "us-east-1"}, "InvalidSpec"),  # not a Fly.io region: the catalog check
    ],
)
def test_an_invalid_spec_is_refused_before_any_provider_call(spec: dict[str, object], reason: str) -> None:
    f = facts(spec=spec)
    plan = decide(f, Observation.first(f.resource))
    assert isinstance(plan.action, Refuse) and plan.action.reason == reason and plan.action.retry_delay is None
    synced = condition(plan.status["conditions"], "Synced")
    assert synced is not None and synced["status"] == "False" and synced["observedGeneration"] == 1
    assert [event.reason for event in plan.events] == [reason]
    # the same failure again posts no second Event
    repeated = facts(spec=spec, status=dict(plan.status))
    assert decide(repeated, Observation.first(repeated.resource)).events == ()


def test_a_primary_region_mismatch_is_a_conflict() -> None:
    f = facts(status={"databaseId": "db-1"})
    plan = decide(f, Observation(step=Step.SNAPSHOT, database=ours(primary_region="ams"), known_id="db-1"))
    assert isinstance(plan.action, Refuse) and plan.action.reason == "PrimaryRegionMismatch"


# --- the deletion decision ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "annotations", "event"),
    [
        ({"primaryRegion": 7}, {}, ("Warning", "Orphaned")),
        ({"primaryRegion": "cdg", "deletionPolicy": "Orphan"}, {}, ("Normal", "Orphaned")),
        ({"primaryRegion": "cdg"}, {"redisdb.dev/force-orphan": "true"}, ("Warning", "Orphaned")),
    ],
)
def test_a_kept_database_is_released_without_the_provider(
    spec: dict[str, object], annotations: dict[str, str], event: tuple[str, str]
) -> None:
    f = facts(spec=spec, annotations=annotations, status={"databaseId": "db-1"})
    plan = decide_deletion(f, Observation.first(f.resource))
    assert isinstance(plan.action, Release)
    assert [(e.type, e.reason) for e in plan.events] == [event]


def test_deletion_deletes_the_recorded_or_found_database() -> None:
    recorded = facts(status={"databaseId": "db-1"})
    plan = decide_deletion(recorded, Observation.first(recorded.resource))
    assert plan.action == Delete("db-1")
    done = decide_deletion(recorded, plan.observe(Step.DELETED))
    assert isinstance(done.action, Release) and done.counted == ("delete",)
    assert [e.message for e in done.events] == ["deleted provider database db-1"]
    unrecorded = facts()
    plan = decide_deletion(unrecorded, Observation.first(unrecorded.resource))
    assert plan.action == LookUp(Step.FOUND_BY_NAME, "shop-cache")
    assert decide_deletion(unrecorded, plan.observe(Step.FOUND_BY_NAME, ours(created_at=T0))).action == Delete("db-1")


def test_deletion_keeps_a_strangers_database_and_waits_for_a_create_that_may_land() -> None:
    f = facts()
    theirs = ours(created_at=T0 - datetime.timedelta(hours=1))
    plan = decide_deletion(f, Observation(step=Step.FOUND_BY_NAME, database=theirs))
    assert isinstance(plan.action, Release) and [e.reason for e in plan.events] == ["Kept"]
    pending = facts(pending=40.0)
    plan = decide_deletion(pending, Observation(step=Step.FOUND_BY_NAME, database=None))
    assert isinstance(plan.action, Wait) and plan.action.delay == 11.0


def test_a_plan_change_the_provider_cannot_show_is_sent_once_against_the_plan_last_set() -> None:
    """Upstash answers `type: paid` for every fixed plan: the spec is judged against status.plan (what we set)."""
    unreadable = ours(plan="paid", plan_observable=False)
    status = {"databaseId": "db-1", "observedGeneration": 1, "plan": "fixed_1gb"}
    changed = facts(spec={"primaryRegion": "cdg", "readRegions": ["ams"], "plan": "fixed_5gb"}, status=status)
    plan = decide(changed, Observation(step=Step.SNAPSHOT, database=unreadable, known_id="db-1"))
    assert isinstance(plan.action, UpdateAction) and plan.action.update.plan == "fixed_5gb"
    assert [change.describe() for change in plan.action.changes] == ["plan: fixed_1gb -> fixed_5gb"]
    updated = decide(changed, plan.observe(Step.UPDATED, plan.action.update.applied_to(unreadable)))
    assert isinstance(updated.action, Publish) and updated.action.status["plan"] == "fixed_5gb"

    settled = facts(
        spec={"primaryRegion": "cdg", "readRegions": ["ams"], "plan": "fixed_5gb"},
        status={**status, "plan": "fixed_5gb"},
        fresh=False,
    )
    again = decide(settled, Observation(step=Step.SNAPSHOT, database=unreadable, known_id="db-1"))
    assert isinstance(again.action, Publish)  # the provider still says "paid": no change-plan, ever again
    assert again.action.status.get("plan", "fixed_5gb") == "fixed_5gb"


def test_a_database_created_on_a_plan_the_provider_cannot_show_records_the_plan_asked_for() -> None:
    f = facts(spec={"primaryRegion": "cdg", "readRegions": ["ams"], "plan": "fixed_1gb"}, names_are_unique=False)
    created = decide(f, Observation(step=Step.CREATED, database=ours(plan="paid", plan_observable=False)))
    assert isinstance(created.action, Publish) and created.action.status["plan"] == "fixed_1gb"


# --- duplicates of ours (names not unique: a create released after a crash lands as a second database) --------


def made(database_id: str, seconds_after_resource: float) -> Database:
    return ours(id=database_id, created_at=T0 + datetime.timedelta(seconds=seconds_after_resource))


@pytest.mark.parametrize(
    ("recorded", "namesakes", "keep", "deleted"),
    [
        # the recorded one is kept (the Secret was written from it), whether older or newer
        ("db-b", [made("db-a", 5), made("db-b", 3)], "db-b", ["db-a"]),
        ("db-a", [made("db-a", 5), made("db-b", 3)], "db-a", ["db-b"]),
        # nothing recorded: the oldest of ours, whatever order the listing gives
        (None, [made("db-a", 5), made("db-b", 3), made("db-c", 4)], "db-b", ["db-c", "db-a"]),
        # within the 10 s clock-skew allowance: ours, deleted when not kept
        ("db-b", [made("db-a", -9), made("db-b", 3)], "db-b", ["db-a"]),
        # older than the allowance: someone else's, never deleted, whichever is kept
        ("db-b", [made("db-a", -11), made("db-b", 3)], "db-b", []),
        (None, [made("db-a", -3600), made("db-b", 3)], "db-b", []),
        # no creation time: cannot be told ours, never deleted
        ("db-b", [ours(id="db-a", created_at=None), made("db-b", 3)], "db-b", []),
        # the recorded one is not among them: not this path's decision
        ("db-z", [made("db-a", 5), made("db-b", 3)], None, []),
    ],
)
def test_duplicates_of_ours_keep_the_recorded_else_the_oldest_and_never_a_strangers(
    recorded: str | None, namesakes: list[Database], keep: str | None, deleted: list[str]
) -> None:
    status = {"databaseId": recorded, "observedGeneration": 1} if recorded else {}
    f = facts(fresh=False, names_are_unique=False, status=status)
    seen = Observation(step=Step.SNAPSHOT, known_id=recorded, namesakes=tuple(namesakes))
    kept, extra = duplicates_to_delete(f, seen)
    assert (kept.id if kept else None) == keep
    assert [d.id for d in extra] == deleted


def test_a_resync_that_sees_a_duplicate_of_ours_deletes_it_then_goes_on_with_the_one_kept() -> None:
    f = facts(fresh=False, names_are_unique=False, status={"databaseId": "db-b", "observedGeneration": 1})
    first = decide(f, Observation.first(f.resource))
    assert first.action == LookUp(Step.SNAPSHOT, "shop-cache", "db-b", snapshot=True)
    kept, late = made("db-b", 3), made("db-a", 40)
    plan = decide(f, first.observe(Step.SNAPSHOT, kept, namesakes=(late, kept)))
    assert isinstance(plan.action, DeleteDuplicates)
    assert plan.action.database_ids == ("db-a",) and plan.action.keep_id == "db-b"
    assert plan.action.done.reason == "DuplicateDeleted" and "db-a" in plan.action.done.message
    assert "pw" not in plan.action.done.message  # no secret values
    assert plan.events == () and plan.counted == ()  # the Event is posted by the shell once the delete is done
    after = decide(f, plan.progress)
    assert isinstance(after.action, Publish) and after.action.database.id == "db-b"


def test_with_nothing_recorded_the_oldest_of_ours_is_kept_and_adopted() -> None:
    f = facts(fresh=False, names_are_unique=False)
    first = decide(f, Observation.first(f.resource))
    plan = decide(f, first.observe(Step.SNAPSHOT, made("db-a", 40), namesakes=(made("db-a", 40), made("db-b", 3))))
    assert isinstance(plan.action, DeleteDuplicates) and plan.action.database_ids == ("db-a",)
    after = decide(f, plan.progress)
    assert isinstance(after.action, Publish) and after.action.database.id == "db-b"
    assert after.status["databaseId"] == "db-b" and [e.reason for e in after.events] == ["Adopted"]


def test_no_duplicate_is_deleted_under_observe_an_adoption_asked_by_annotation_or_a_custom_name() -> None:
    """Observe never deletes; with the adopt annotation the person says which one; a custom spec.name may be
    claimed by another RedisDatabase too (the webhook down), whose database is as new as ours."""
    namesakes = (made("db-a", 40), made("db-b", 3))
    observe = facts(fresh=False, names_are_unique=False, spec={"primaryRegion": "cdg", "managementPolicy": "Observe"})
    adopt = facts(fresh=False, names_are_unique=False, annotations={"redisdb.dev/adopt": "true"})
    custom = facts(fresh=False, names_are_unique=False, spec={"primaryRegion": "cdg", "name": "shop-cache-shared"})
    custom_namesakes = tuple(d.model_copy(update={"name": "shop-cache-shared"}) for d in namesakes)
    assert duplicates_to_delete(custom, Observation(step=Step.SNAPSHOT, namesakes=custom_namesakes)) == (None, ())
    for f in (observe, adopt):
        assert duplicates_to_delete(f, Observation(step=Step.SNAPSHOT, namesakes=namesakes)) == (None, ())
