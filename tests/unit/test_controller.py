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


def body(status: dict[str, Any] | None = None) -> kopf.Body:
    return kopf.Body(
        {
            "apiVersion": "redisdb.dev/v1alpha1",
            "kind": "RedisDatabase",
            "metadata": {"name": "cache", "namespace": "shop", "uid": "uid-1", "generation": 1},
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
