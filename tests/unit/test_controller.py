"""The imperative shell's create decisions, with an in-memory provider that (unlike the local provider) lets
two databases share a name — the one behaviour the Upstash API does not rule out and a real server here will
not show. Everything else about the controller is proven end to end in tests/e2e."""

from __future__ import annotations

import datetime
import itertools
import logging
from collections.abc import Sequence
from typing import Any

import kopf
import pytest

from redisdb_operator.controller import ControllerConfig, DatabaseController
from redisdb_operator.provider_registry import ProviderHandle
from redisdb_operator.providers.base import (
    AlreadyExistsError,
    CreateDatabaseRequest,
    Database,
    DatabaseUpdate,
    NotFoundError,
    ProviderType,
    UnavailableError,
)
from redisdb_operator.reconcile import condition

LOGGER = logging.getLogger("test")


class InMemoryProvider:
    def __init__(self, *, names_are_unique: bool) -> None:
        self.provider_type = ProviderType.UPSTASH
        self.names_are_unique = names_are_unique
        self.databases: dict[str, Database] = {}
        self.calls: list[str] = []
        self._ids = itertools.count(1)
        self.time_out_next_create = False  # the next create is accepted but answered by a timeout
        self.in_flight: list[Database] = []  # accepted creates not yet visible; land() makes them so

    def land(self) -> None:
        for database in self.in_flight:
            self.databases[database.id] = database
        self.in_flight.clear()

    async def create(self, request: CreateDatabaseRequest) -> Database:
        self.calls.append("create")
        if self.names_are_unique and any(d.name == request.name for d in self.databases.values()):
            raise AlreadyExistsError("database name already exists")
        if self.time_out_next_create:
            self.time_out_next_create = False
            self.in_flight.append(self._database(request))
            raise UnavailableError("upstash create failed: timed out (ReadTimeout)", outcome_unknown=True)
        database = self._database(request)
        self.databases[database.id] = database
        return database

    def _database(self, request: CreateDatabaseRequest) -> Database:
        return Database(
            id=f"db-{next(self._ids)}",
            name=request.name,
            primary_region=request.primary_region,
            read_regions=request.read_regions,
            plan=request.plan or "payg",
            eviction=request.eviction,
            host="127.0.0.1",
            port=6379,
            password="pw",
            url="redis://default:pw@127.0.0.1:6379",
            created_at=datetime.datetime.now(datetime.UTC),
        )

    async def get(self, database_id: str) -> Database:
        self.calls.append("get")
        if database_id not in self.databases:
            raise NotFoundError("database not found")
        return self.databases[database_id]

    async def find_by_name(self, name: str) -> Database | None:
        self.calls.append("find_by_name")
        return next((d for d in self.databases.values() if d.name == name), None)

    async def list(self) -> Sequence[Database]:
        self.calls.append("list")
        return list(self.databases.values())

    async def update(self, database_id: str, update: DatabaseUpdate) -> None:
        self.calls.append("update")

    async def reset_password(self, database_id: str) -> Database:
        raise AssertionError("not used")

    async def delete(self, database_id: str) -> None:
        self.calls.append("delete")
        self.databases.pop(database_id, None)

    async def aclose(self) -> None:
        pass


class FakeKube:
    """Only the Secret verbs the controller uses."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}

    async def get(self, path: str) -> dict[str, Any] | None:
        return self.objects.get(path)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        stored = {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}
        self.objects[f"{path}/{body['metadata']['name']}"] = stored
        return stored

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.objects[path] = body
        return body


class OneProvider:
    def __init__(self, client: InMemoryProvider) -> None:
        self.handle = ProviderHandle("default", ProviderType.UPSTASH, client, ("1", "1"))

    async def get(self, name: str) -> ProviderHandle:
        return self.handle

    def invalidate(self, name: str) -> None:
        pass


def body(status: dict[str, Any] | None = None, **metadata: Any) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "redisdb.dev/v1alpha1",
            "kind": "RedisDatabase",
            "metadata": {"name": "cache", "namespace": "shop", "uid": "uid-1", "generation": 1, **metadata},
            "spec": {"primaryRegion": "us-east-1"},
            "status": status or {},
        }
    )


@pytest.fixture(autouse=True)
def _no_event_posting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kopf, "event", lambda *args, **kwargs: None)


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


def applied(status: dict[str, Any], patch: kopf.Patch) -> dict[str, Any]:
    """The status after kopf applied `patch` (a None value removes the field, as in a merge patch)."""
    merged = {**status, **patch.status}
    return {key: value for key, value in merged.items() if value is not None}


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
    database = provider._database(CreateDatabaseRequest(name="shop-cache", primary_region="us-east-1"))
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
    existing = provider._database(CreateDatabaseRequest(name="shop-cache", primary_region="mad", plan="pro_2k"))
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
