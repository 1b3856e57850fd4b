"""Shared fakes for the unit tests of the shell: an in-memory provider, the Secret verbs of the Kubernetes API,
a one-provider registry and RedisDatabase bodies.

The in-memory provider (unlike the local provider) lets two databases share a name — the one behaviour the Upstash
API does not rule out and a real server here will not show — and can answer a create with a timeout.
"""

from __future__ import annotations

import datetime
import itertools
import logging
from collections.abc import Sequence
from typing import Any

import kopf

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
            self.in_flight.append(self.database_for(request))
            raise UnavailableError("upstash create failed: timed out (ReadTimeout)", outcome_unknown=True)
        database = self.database_for(request)
        self.databases[database.id] = database
        return database

    def database_for(self, request: CreateDatabaseRequest) -> Database:
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

    async def update(self, database: Database, update: DatabaseUpdate) -> Database:
        if update.is_empty():
            return database
        self.calls.append("update")
        if database.id not in self.databases:
            raise NotFoundError("database not found")
        self.databases[database.id] = update.applied_to(self.databases[database.id])
        return update.applied_to(database)

    async def reset_password(self, database_id: str) -> Database:
        self.calls.append("reset_password")
        rotated = self.databases[database_id].model_copy(update={"password": "pw-new"})
        self.databases[database_id] = rotated
        return rotated

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


def body(status: dict[str, Any] | None = None, *, spec: dict[str, Any] | None = None, **metadata: Any) -> kopf.Body:
    """A RedisDatabase shop/cache on the one provider (Upstash, us-east-1 unless `spec` says otherwise)."""
    return kopf.Body(
        {
            "apiVersion": "redisdb.dev/v1alpha1",
            "kind": "RedisDatabase",
            "metadata": {"name": "cache", "namespace": "shop", "uid": "uid-1", "generation": 1, **metadata},
            "spec": spec or {"primaryRegion": "us-east-1"},
            "status": status or {},
        }
    )


def applied(status: dict[str, Any], patch: kopf.Patch) -> dict[str, Any]:
    """The status after kopf applied `patch` (a None value removes the field, as in a merge patch)."""
    merged = {**status, **patch.status}
    return {key: value for key, value in merged.items() if value is not None}
