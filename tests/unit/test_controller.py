"""The imperative shell's create decisions, with an in-memory provider that (unlike the local provider) lets
two databases share a name — the one behaviour the Upstash API does not rule out and a real server here will
not show. Everything else about the controller is proven end to end in tests/e2e."""

from __future__ import annotations

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
)

LOGGER = logging.getLogger("test")


class InMemoryProvider:
    def __init__(self, *, names_are_unique: bool) -> None:
        self.provider_type = ProviderType.UPSTASH
        self.names_are_unique = names_are_unique
        self.databases: dict[str, Database] = {}
        self.calls: list[str] = []
        self._ids = itertools.count(1)

    async def create(self, request: CreateDatabaseRequest) -> Database:
        self.calls.append("create")
        if self.names_are_unique and any(d.name == request.name for d in self.databases.values()):
            raise AlreadyExistsError("database name already exists")
        database = Database(
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
        )
        self.databases[database.id] = database
        return database

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
        self.databases.pop(database_id, None)

    async def aclose(self) -> None:
        pass


class FakeKube:
    """Only the verbs the controller uses: Secrets, and status patches (kept as the apiserver would keep them)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.status: dict[str, Any] = {}

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert path.endswith("/status")
        self.status.update(body["status"])
        return body

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


def body(status: dict[str, Any] | None = None, annotations: dict[str, str] | None = None) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "redisdb.dev/v1alpha1",
            "kind": "RedisDatabase",
            "metadata": {
                "name": "cache",
                "namespace": "shop",
                "uid": "uid-1",
                "generation": 1,
                "annotations": annotations or {},
            },
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
    kube = FakeKube()
    controller = DatabaseController(kube, OneProvider(provider), ControllerConfig())  # type: ignore[arg-type]
    first = kopf.Patch()
    await controller.reconcile(body(), fresh=True, patch=first, logger=LOGGER)
    assert first.status["databaseId"] == "db-1"
    assert kube.status["createPending"]  # persisted before the provider was asked
    # a crash before kopf wrote the status patch: the next reconcile sees no id, but the create marker
    second = kopf.Patch()
    await controller.reconcile(body(status=dict(kube.status)), fresh=True, patch=second, logger=LOGGER)
    assert list(provider.databases) == ["db-1"]
    assert second.status["databaseId"] == "db-1"
    assert provider.calls.count("create") == (2 if names_are_unique else 1)


async def test_a_provider_without_unique_names_is_asked_before_each_create() -> None:
    provider = InMemoryProvider(names_are_unique=False)
    controller = DatabaseController(FakeKube(), OneProvider(provider), ControllerConfig())  # type: ignore[arg-type]
    await controller.reconcile(body(), fresh=True, patch=kopf.Patch(), logger=LOGGER)
    assert provider.calls[:2] == ["find_by_name", "create"]


@pytest.mark.parametrize("names_are_unique", [False, True])
async def test_someone_elses_database_of_our_name_is_left_alone_unless_handed_over(names_are_unique: bool) -> None:
    provider = InMemoryProvider(names_are_unique=names_are_unique)
    foreign = await provider.create(CreateDatabaseRequest(name="shop-cache", primary_region="us-east-1"))
    provider.calls.clear()
    controller = DatabaseController(FakeKube(), OneProvider(provider), ControllerConfig())  # type: ignore[arg-type]
    refused = kopf.Patch()
    await controller.reconcile(body(), fresh=True, patch=refused, logger=LOGGER)
    synced = next(c for c in refused.status["conditions"] if c["type"] == "Synced")
    assert (synced["status"], synced["reason"]) == ("False", "NameTaken")
    assert "redisdb.dev/adopt=true" in synced["message"] and foreign.id in synced["message"]
    assert "databaseId" not in refused.status
    assert list(provider.databases) == [foreign.id]  # neither duplicated nor taken
    assert refused.status["createPending"] is None  # a marker set by this attempt is withdrawn with the refusal

    handed_over = kopf.Patch()
    await controller.reconcile(
        body(annotations={"redisdb.dev/adopt": "true"}), fresh=True, patch=handed_over, logger=LOGGER
    )
    assert handed_over.status["databaseId"] == foreign.id
    assert list(provider.databases) == [foreign.id]
