"""The imperative shell carrying out the core's decisions against an in-memory provider (tests/unit/fakes.py): the
create paths a real server here will not show (shared names, a create that times out). Everything else about the
controller is proven end to end in tests/e2e."""

from __future__ import annotations

import datetime
from typing import Any

import kopf
import pytest

from redisdb_operator.controller import ControllerConfig, DatabaseController
from redisdb_operator.provider_registry import ProviderHandle
from redisdb_operator.providers.base import CreateDatabaseRequest, Database, ProviderType
from redisdb_operator.status import condition
from tests.unit.fakes import LOGGER, FakeKube, InMemoryProvider, OneProvider, applied, body

pytestmark = pytest.mark.usefixtures("posted_events")


async def one_created() -> tuple[InMemoryProvider, OneProvider, DatabaseController, kopf.Patch]:
    """A Fly-like provider (unique names), its controller, and the patch of one database's create."""
    provider = InMemoryProvider(names_are_unique=True)
    registry = OneProvider(provider)
    controller = DatabaseController(FakeKube(), registry, ControllerConfig())  # type: ignore[arg-type]
    created = kopf.Patch()
    await controller.reconcile(body(), fresh=True, patch=created, logger=LOGGER)
    return provider, registry, controller, created


@pytest.mark.parametrize("names_are_unique", [False, True])
async def test_a_create_whose_id_was_lost_adopts_instead_of_duplicating(names_are_unique: bool) -> None:
    provider = InMemoryProvider(names_are_unique=names_are_unique)
    controller = DatabaseController(FakeKube(), OneProvider(provider), ControllerConfig())  # type: ignore[arg-type]
    first = kopf.Patch()
    await controller.reconcile(body(), fresh=True, patch=first, logger=LOGGER)
    assert first.status["databaseId"] == "db-1"
    # a crash before kopf wrote the status patch: the next reconcile sees no recorded id
    second = kopf.Patch()
    await controller.reconcile(body(), fresh=True, patch=second, logger=LOGGER)
    assert list(provider.databases) == ["db-1"]
    assert second.status["databaseId"] == "db-1"
    assert provider.calls.count("create") == (2 if names_are_unique else 1)


async def test_a_provider_without_unique_names_is_asked_before_each_create() -> None:
    provider = InMemoryProvider(names_are_unique=False)
    controller = DatabaseController(FakeKube(), OneProvider(provider), ControllerConfig())  # type: ignore[arg-type]
    await controller.reconcile(body(), fresh=True, patch=kopf.Patch(), logger=LOGGER)
    assert provider.calls[:2] == ["find_by_name", "create"]


@pytest.mark.parametrize("names_are_unique", [False, True])
async def test_a_timed_out_create_is_awaited_not_repeated(names_are_unique: bool) -> None:
    provider = InMemoryProvider(names_are_unique=names_are_unique)
    provider.time_out_next_create = True
    controller = DatabaseController(FakeKube(), OneProvider(provider), ControllerConfig())  # type: ignore[arg-type]
    first = kopf.Patch()
    with pytest.raises(kopf.TemporaryError):
        await controller.reconcile(body(), fresh=True, patch=first, logger=LOGGER)
    assert first.status["createUncertainSince"]  # survives a restart of the operator
    status = applied({}, first)
    for fresh in (True, False):  # the create has not landed yet: looked up, never sent again
        again = kopf.Patch()
        with pytest.raises(kopf.TemporaryError, match="may still land"):
            await controller.reconcile(body(status), fresh=fresh, patch=again, logger=LOGGER)
        synced = condition(again.status["conditions"], "Synced")
        assert synced is not None and synced["reason"] == "CreateOutcomeUnknown"
    assert provider.calls.count("create") == 1
    provider.land()
    landed = kopf.Patch()
    await controller.reconcile(body(status), fresh=True, patch=landed, logger=LOGGER)
    assert landed.status["databaseId"] == "db-1"
    assert landed.status["createUncertainSince"] is None
    assert list(provider.databases) == ["db-1"] and provider.calls.count("create") == 1


async def test_a_restarted_operator_honours_the_status_marker_and_creates_once_the_window_passed() -> None:
    provider = InMemoryProvider(names_are_unique=False)
    config = ControllerConfig(uncertain_create_window=90.0)
    fresh_controller = DatabaseController(FakeKube(), OneProvider(provider), config)  # type: ignore[arg-type]
    recent = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=30)
    with pytest.raises(kopf.TemporaryError, match="may still land"):
        await fresh_controller.reconcile(
            body({"createUncertainSince": recent.strftime("%Y-%m-%dT%H:%M:%SZ")}),
            fresh=True,
            patch=kopf.Patch(),
            logger=LOGGER,
        )
    assert "create" not in provider.calls
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=91)
    patch = kopf.Patch()
    await fresh_controller.reconcile(
        body({"createUncertainSince": long_ago.strftime("%Y-%m-%dT%H:%M:%SZ")}), fresh=True, patch=patch, logger=LOGGER
    )
    assert provider.calls.count("create") == 1 and patch.status["databaseId"] == "db-1"


async def test_deletion_waits_for_a_create_that_may_still_land_then_deletes_it() -> None:
    provider = InMemoryProvider(names_are_unique=True)
    provider.time_out_next_create = True
    controller = DatabaseController(FakeKube(), OneProvider(provider), ControllerConfig())  # type: ignore[arg-type]
    with pytest.raises(kopf.TemporaryError):
        await controller.reconcile(body(), fresh=True, patch=kopf.Patch(), logger=LOGGER)
    # the deletion arrives before kopf's status patch is visible: the controller's memory covers it
    with pytest.raises(kopf.TemporaryError, match="may still land"):
        await controller.delete(body(), patch=kopf.Patch(), logger=LOGGER)
    provider.land()
    await controller.delete(body(), patch=kopf.Patch(), logger=LOGGER)
    assert provider.databases == {} and provider.calls.count("delete") == 1


async def test_a_resync_that_waited_for_the_deletion_does_not_recreate() -> None:
    provider = InMemoryProvider(names_are_unique=True)
    controller = DatabaseController(FakeKube(), OneProvider(provider), ControllerConfig())  # type: ignore[arg-type]
    created = kopf.Patch()
    await controller.reconcile(body(), fresh=True, patch=created, logger=LOGGER)
    stale = body(applied({}, created))
    await controller.delete(stale, patch=kopf.Patch(), logger=LOGGER)
    assert provider.databases == {}
    await controller.reconcile(stale, fresh=False, patch=kopf.Patch(), logger=LOGGER)
    await controller.reconcile(
        body(applied({}, created), deletionTimestamp="2026-11-26T10:00:00Z"),
        fresh=False,
        patch=kopf.Patch(),
        logger=LOGGER,
    )
    assert provider.databases == {} and provider.calls.count("create") == 1


def iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def strangers_database(provider: InMemoryProvider, age: datetime.timedelta) -> Database:
    """A database of the resource's provider-side name, made by someone else `age` ago."""
    made = datetime.datetime.now(datetime.UTC) - age
    database = provider.database_for(CreateDatabaseRequest(name="shop-cache", primary_region="us-east-1"))
    database = database.model_copy(update={"created_at": made})
    provider.databases[database.id] = database
    return database


@pytest.mark.parametrize("names_are_unique", [False, True])
async def test_a_strangers_database_of_our_name_is_not_taken_over(names_are_unique: bool) -> None:
    provider = InMemoryProvider(names_are_unique=names_are_unique)
    theirs = strangers_database(provider, datetime.timedelta(hours=1))
    controller = DatabaseController(FakeKube(), OneProvider(provider), ControllerConfig())  # type: ignore[arg-type]
    created = iso(datetime.datetime.now(datetime.UTC))
    for fresh in (True, False):
        patch = kopf.Patch()
        await controller.reconcile(body(creationTimestamp=created), fresh=fresh, patch=patch, logger=LOGGER)
        synced = condition(patch.status["conditions"], "Synced")
        assert synced is not None and synced["reason"] == "NameTaken", synced
        assert "redisdb.dev/adopt=true" in synced["message"] and theirs.id in synced["message"]
        assert "databaseId" not in patch.status
    assert list(provider.databases) == [theirs.id] and "update" not in provider.calls
    # deleting the resource leaves their database alone
    await controller.delete(body(creationTimestamp=created), patch=kopf.Patch(), logger=LOGGER)
    assert list(provider.databases) == [theirs.id] and "delete" not in provider.calls
    # declared again and asked explicitly, the takeover happens
    adopting = kopf.Patch()
    annotated = body(creationTimestamp=created, uid="uid-2", annotations={"redisdb.dev/adopt": "true"})
    await controller.reconcile(annotated, fresh=True, patch=adopting, logger=LOGGER)
    assert adopting.status["databaseId"] == theirs.id


async def test_our_own_database_with_a_lost_id_is_still_adopted() -> None:
    provider = InMemoryProvider(names_are_unique=True)
    created = iso(datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=5))
    ours = strangers_database(provider, datetime.timedelta(seconds=1))  # made after the resource: by us
    patch = kopf.Patch()
    controller = DatabaseController(FakeKube(), OneProvider(provider), ControllerConfig())  # type: ignore[arg-type]
    await controller.reconcile(body(creationTimestamp=created), fresh=True, patch=patch, logger=LOGGER)
    assert patch.status["databaseId"] == ours.id


async def test_an_update_publishes_what_the_provider_answered_without_reading_again(
    posted_events: list[tuple[str, str, str]],
) -> None:
    provider, _, controller, created = await one_created()
    provider.calls.clear()
    changed = kopf.Patch()
    spec = {"primaryRegion": "us-east-1", "eviction": True}
    await controller.reconcile(
        body(applied({}, created), spec=spec, generation=2), fresh=True, patch=changed, logger=LOGGER
    )
    # no resync has listed the provider yet: the recorded id is read (not a list of every database for one)
    assert provider.calls == ["get", "update"]  # observed once, changed once, never read back
    assert changed.status["eviction"] is True and changed.status["observedGeneration"] == 2
    assert ("Normal", "Updated", "updated at the provider: eviction: false -> true") in posted_events


async def test_a_spec_change_costs_one_provider_call_once_the_resync_has_listed() -> None:
    provider, registry, controller, created = await one_created()
    await registry.handle.observer.refresh(max_age=0)  # the resync's list
    provider.calls.clear()
    status = applied({}, created)
    for generation, eviction in ((2, True), (3, False)):
        changed = kopf.Patch()
        spec = {"primaryRegion": "us-east-1", "eviction": eviction}
        await controller.reconcile(
            body(status, spec=spec, generation=generation), fresh=True, patch=changed, logger=LOGGER
        )
        status = applied(status, changed)
        assert status["eviction"] is eviction and status["observedGeneration"] == generation
    assert provider.calls == ["update", "update"]  # the snapshot (with our own writes) is the observation
    assert provider.databases["db-1"].eviction is False
    # --read-before-update: the same change reads the database first, however current the snapshot
    careful = DatabaseController(FakeKube(), registry, ControllerConfig(read_before_update=True))  # type: ignore[arg-type]
    provider.calls.clear()
    spec = {"primaryRegion": "us-east-1", "eviction": True}
    await careful.reconcile(body(status, spec=spec, generation=4), fresh=True, patch=kopf.Patch(), logger=LOGGER)
    assert provider.calls == ["get", "update"]


async def test_a_spec_change_of_a_database_deleted_since_the_list_recreates_it() -> None:
    provider, registry, controller, created = await one_created()
    await registry.handle.observer.refresh(max_age=0)
    provider.databases.clear()  # deleted outside Kubernetes; the snapshot still shows it
    status = applied({}, created)
    spec = {"primaryRegion": "us-east-1", "eviction": True}
    with pytest.raises(kopf.TemporaryError):
        await controller.reconcile(body(status, spec=spec, generation=2), fresh=True, patch=kopf.Patch(), logger=LOGGER)
    retried = kopf.Patch()  # kopf's retry: the snapshot forgot it, the id is asked at the provider, then recreated
    await controller.reconcile(body(status, spec=spec, generation=2), fresh=True, patch=retried, logger=LOGGER)
    assert retried.status["databaseId"] == "db-2" and list(provider.databases) == ["db-2"]
    assert provider.databases["db-2"].eviction is True


# --- issue 13: what real providers answer ---------------------------------------------------------------------


def fly_body(spec: dict[str, Any], status: dict[str, Any] | None = None) -> kopf.Body:
    raw = dict(body(status))
    raw["spec"] = spec
    return kopf.Body(raw)


def fly_controller(provider: InMemoryProvider) -> DatabaseController:
    provider.provider_type = ProviderType.FLY
    registry = OneProvider(provider)
    registry.handle = ProviderHandle("default", ProviderType.FLY, provider, ("1", "1"))
    return DatabaseController(FakeKube(), registry, ControllerConfig())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"primaryRegion": "mad"}, "spec.primaryRegion mad"),
        ({"primaryRegion": "ams", "readRegions": ["mad"]}, "spec.readRegions mad"),
        ({"primaryRegion": "ams", "plan": "pro_2k"}, "spec.plan pro_2k"),
    ],
)
async def test_a_new_database_in_a_retired_region_or_on_a_legacy_plan_is_refused(
    spec: dict[str, Any], named: str
) -> None:
    provider = InMemoryProvider(names_are_unique=True)
    controller = fly_controller(provider)
    patch = kopf.Patch()
    await controller.reconcile(fly_body(spec), fresh=True, patch=patch, logger=LOGGER)
    synced = condition(patch.status["conditions"], "Synced")
    assert synced is not None and synced["status"] == "False" and synced["reason"] == "InvalidSpec"
    assert named in synced["message"] and "choose one of" in synced["message"]
    assert "create" not in provider.calls


async def test_an_existing_database_in_a_retired_region_is_still_managed() -> None:
    provider = InMemoryProvider(names_are_unique=True)
    existing = provider.database_for(CreateDatabaseRequest(name="shop-cache", primary_region="mad", plan="pro_2k"))
    provider.databases[existing.id] = existing
    controller = fly_controller(provider)
    spec = {"primaryRegion": "mad", "plan": "pro_2k", "eviction": True}
    patch = kopf.Patch()
    await controller.reconcile(fly_body(spec), fresh=True, patch=patch, logger=LOGGER)
    assert patch.status["databaseId"] == existing.id
    assert "create" not in provider.calls and "update" in provider.calls  # eviction was applied


async def test_an_unobservable_plan_is_reported_once_and_never_changed() -> None:
    provider = InMemoryProvider(names_are_unique=False)
    controller = DatabaseController(FakeKube(), OneProvider(provider), ControllerConfig())  # type: ignore[arg-type]
    events: list[str] = []
    status: dict[str, Any] = {}
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(kopf, "event", lambda *a, **kw: events.append(kw["reason"]))
        for _ in range(3):
            patch = kopf.Patch()
            await controller.reconcile(body(status), fresh=True, patch=patch, logger=LOGGER)
            status = applied(status, patch)
            for database_id, database in provider.databases.items():  # Upstash answers type "paid"
                provider.databases[database_id] = database.model_copy(update={"plan": "paid", "plan_observable": False})
    assert "update" not in provider.calls
    assert events.count("PlanNotObservable") == 1
    synced = condition(status["conditions"], "Synced")
    assert synced is not None and synced["status"] == "True" and "cannot be verified" in synced["message"]


async def test_an_add_on_in_error_shows_the_providers_reason() -> None:
    provider = InMemoryProvider(names_are_unique=False)
    controller = DatabaseController(FakeKube(), OneProvider(provider), ControllerConfig())  # type: ignore[arg-type]
    first = kopf.Patch()
    await controller.reconcile(body(), fresh=True, patch=first, logger=LOGGER)
    provider.databases["db-1"] = provider.databases["db-1"].model_copy(
        update={"state": "error", "state_message": "provisioning failed: capacity"}
    )
    second = kopf.Patch()
    await controller.reconcile(body(applied({}, first)), fresh=True, patch=second, logger=LOGGER)
    ready = condition(second.status["conditions"], "Ready")
    assert ready is not None and ready["status"] == "False"
    assert ready["message"] == "state is error: provisioning failed: capacity"


async def test_a_late_landing_duplicate_of_ours_is_deleted_at_the_resync(
    posted_events: list[tuple[str, str, str]],
) -> None:
    """A create released after the operator that sent it crashed lands next to the one the restarted operator made
    (names are not unique): the resync deletes the extra, keeps the recorded one, and says so in an Event."""
    provider = InMemoryProvider(names_are_unique=False)
    controller = DatabaseController(FakeKube(), OneProvider(provider), ControllerConfig())  # type: ignore[arg-type]
    created_at = datetime.datetime.now(datetime.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    first = kopf.Patch()
    await controller.reconcile(body(creationTimestamp=created_at), fresh=True, patch=first, logger=LOGGER)
    status = applied({}, first)
    late = provider.database_for(CreateDatabaseRequest(name="shop-cache", primary_region="us-east-1"))
    provider.databases[late.id] = late
    resync = kopf.Patch()
    await controller.reconcile(body(status, creationTimestamp=created_at), fresh=False, patch=resync, logger=LOGGER)
    assert list(provider.databases) == ["db-1"] and provider.calls.count("delete") == 1
    deleted = [message for _, reason, message in posted_events if reason == "DuplicateDeleted"]
    assert len(deleted) == 1 and late.id in deleted[0]


async def test_a_create_and_its_secret_are_one_event_and_a_later_secret_write_its_own(
    posted_events: list[tuple[str, str, str]],
) -> None:
    provider, _, controller, created = await one_created()
    assert [(kind, reason) for kind, reason, _ in posted_events] == [("Normal", "Created")]
    message = posted_events[0][2]
    assert message.startswith("created ") and message.endswith("; wrote connection Secret cache-redis")
    posted_events.clear()
    provider.databases["db-1"] = provider.databases["db-1"].model_copy(update={"password": "pw-rotated"})
    await controller.reconcile(body(applied({}, created)), fresh=False, patch=kopf.Patch(), logger=LOGGER)
    assert ("Normal", "SecretWritten", "updated connection Secret cache-redis") in posted_events
