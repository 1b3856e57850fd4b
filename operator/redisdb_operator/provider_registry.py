"""Resolve a RedisProvider name to a live provider client, and share one observation of each provider.

Clients are cached per (RedisProvider generation, credentials Secret resourceVersion) pair, so a fixed Secret takes
effect on the next reconcile without a restart. Observations are shared: the periodic resync of N databases
costs one `list` call per provider per interval, not N `get` calls.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigurationError
from .kube import KubeClient, custom_path, secret_path
from .models import GROUP, VERSION, LabelSelector, RedisProviderSpec
from .providers.base import Database, ProviderClient, ProviderType
from .providers.factory import make_client
from .providers.kinds import kind_of

ClientFactory = Callable[[ProviderType, "str | None", Mapping[str, str], "str | None"], ProviderClient]


@dataclass
class ProviderHandle:
    name: str
    provider_type: ProviderType
    client: ProviderClient
    version_key: tuple[str, str]
    allowed_namespaces: LabelSelector | None = None  # spec.allowedNamespaces
    observer: ProviderObserver = field(init=False)
    # The provider's own regions and plans from the last provider check (Fly; RedisProvider.status.catalog's shape):
    # a create is refused in a region or on a plan it no longer offers, naming what it does offer.
    live_catalog: dict[str, Any] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.observer = ProviderObserver(self.client)


class ProviderObserver:
    """One shared snapshot of every database at a provider, refreshed by a single in-flight `list` call."""

    def __init__(self, client: ProviderClient) -> None:
        self._client = client
        self._by_id: dict[str, Database] = {}
        self._by_name: dict[str, Database] = {}
        self._shared_names: set[str] = set()  # names more than one database had in the last list
        self._taken_at = float("-inf")
        self._failed_at = float("-inf")
        self._failure: Exception | None = None
        self._lock = asyncio.Lock()
        # Our own writes while a list is in flight (None: no list in flight), replayed over its answer: a list of
        # 10,000 databases takes seconds (20 pages), and a database created meanwhile on a page already read would
        # be missing from the new snapshot (a sweep would then confirm it at the provider by id).
        self._written_during_list: list[tuple[str, Database | None]] | None = None

    @property
    def age(self) -> float:
        return time.monotonic() - self._taken_at

    @property
    def database_count(self) -> int:
        return len(self._by_id)

    async def refresh(self, max_age: float) -> None:
        """Refresh when older than `max_age`; a failed refresh is shared for as long, so that while a provider
        is down every database's resync waits on one probe instead of sending its own."""
        if self.age <= max_age:
            return
        async with self._lock:
            if self.age <= max_age:  # another task refreshed while we waited
                return
            if self._failure is not None and time.monotonic() - self._failed_at <= max_age:
                raise self._failure
            started = time.monotonic()
            written: list[tuple[str, Database | None]] = []
            self._written_during_list = written
            try:
                databases = await self._client.list()
            except Exception as error:
                self._failure, self._failed_at = error, started
                raise
            finally:
                self._written_during_list = None
            self._failure = None
            self._by_id = {database.id: database for database in databases}
            self._by_name = {database.name: database for database in databases}
            self._shared_names = {name for name, n in collections.Counter(d.name for d in databases).items() if n > 1}
            self._taken_at = started
            for database_id, database in written:  # newer than whatever page the list read them on
                if database is None:
                    self.forget(database_id)
                else:
                    self.remember(database)

    async def lookup(self, *, database_id: str | None, name: str, max_age: float) -> Database | None:
        await self.refresh(max_age)
        if database_id is not None:
            return self._by_id.get(database_id)
        return self._by_name.get(name)

    def namesakes(self, name: str) -> tuple[Database, ...]:
        """Every database of this name in the snapshot when there is more than one (else empty): names are not
        unique at every provider, and a create released after a crash can make a second one of ours."""
        if name not in self._shared_names:
            return ()  # the common case, without a scan of every database at every resync
        found = tuple(database for database in self._by_id.values() if database.name == name)
        return found if len(found) > 1 else ()

    def cached(self, database_id: str | None, name: str) -> Database | None:
        """The snapshot's answer without refreshing it (the resync sweep refreshed it once for all)."""
        if database_id is not None:
            return self._by_id.get(database_id)
        return self._by_name.get(name)

    def remember(self, database: Database) -> None:
        """Write-through after our own create/update, so the next lookup does not see stale state."""
        if self._written_during_list is not None:
            self._written_during_list.append((database.id, database))
        self._by_id[database.id] = database
        self._by_name[database.name] = database

    def forget(self, database_id: str) -> None:
        if self._written_during_list is not None:
            self._written_during_list.append((database_id, None))
        database = self._by_id.pop(database_id, None)
        if database is not None and self._by_name.get(database.name) is database:
            self._by_name.pop(database.name)
            # another database of the name (a duplicate's deletion keeps one) stays findable by it
            for other in self._by_id.values():
                if other.name == database.name:
                    self._by_name[other.name] = other


class ProviderRegistry:
    def __init__(self, kube: KubeClient, *, client_factory: ClientFactory = make_client, ttl: float = 10.0) -> None:
        self._kube = kube
        self._factory = client_factory
        self._ttl = ttl
        self._handles: dict[str, ProviderHandle] = {}
        self._checked_at: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def aclose(self) -> None:
        for handle in self._handles.values():
            await handle.client.aclose()
        self._handles.clear()

    def invalidate(self, provider_name: str) -> None:
        self._checked_at.pop(provider_name, None)

    def peek(self, provider_name: str) -> ProviderHandle | None:
        """The handle held now, without checking it again (None: not loaded yet)."""
        return self._handles.get(provider_name)

    async def get(self, provider_name: str) -> ProviderHandle:
        """The handle for a RedisProvider; raises ConfigurationError naming what to fix."""
        handle = self._handles.get(provider_name)
        if handle is not None and time.monotonic() - self._checked_at.get(provider_name, float("-inf")) < self._ttl:
            return handle
        lock = self._locks.setdefault(provider_name, asyncio.Lock())
        async with lock:
            handle = self._handles.get(provider_name)
            if handle is not None and time.monotonic() - self._checked_at.get(provider_name, float("-inf")) < self._ttl:
                return handle
            return await self._load(provider_name)

    async def _load(self, provider_name: str) -> ProviderHandle:
        body = await self._kube.get(custom_path(GROUP, VERSION, "redisproviders", provider_name))
        if body is None:
            raise ConfigurationError(
                "ProviderNotFound",
                f"RedisProvider {provider_name!r} (spec.providerRef.name) does not exist; create it or point "
                "spec.providerRef.name at an existing one",
            )
        spec = RedisProviderSpec.model_validate(body.get("spec") or {})
        ref = spec.credentials_secret_ref
        secret = await self._kube.get(secret_path(ref.namespace, ref.name))
        if secret is None:
            raise ConfigurationError(
                "CredentialsNotFound",
                f"the credentials Secret {ref.namespace}/{ref.name} of RedisProvider {provider_name!r} does not "
                "exist; create it (the database is created as soon as it appears)",
            )
        data = {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}
        kind = kind_of(spec.type)
        wanted = {
            logical: getattr(ref, key.override_field) or key.default_key for logical, key in kind.credentials.items()
        }
        credentials: dict[str, str] = {}
        for logical, key in wanted.items():
            if not data.get(key):
                raise ConfigurationError(
                    "CredentialsInvalid",
                    f"the credentials Secret {ref.namespace}/{ref.name} has no key {key!r} (the {logical} for "
                    f"{spec.type.value}); add it or set spec.credentialsSecretRef of RedisProvider {provider_name!r}",
                )
            credentials[logical] = data[key]
        # The spec's generation, not its resourceVersion: status writes must not replace the client (and with
        # it the shared snapshot); the Secret has no generation, and any change of it matters.
        version_key = (
            str(body.get("metadata", {}).get("generation")),
            str(secret.get("metadata", {}).get("resourceVersion")),
        )
        old = self._handles.get(provider_name)
        if old is not None and old.version_key == version_key:
            self._checked_at[provider_name] = time.monotonic()
            return old
        if kind.requires_organization and not spec.organization:
            raise ConfigurationError(
                "InvalidProvider",
                f"RedisProvider {provider_name!r}: spec.organization is required for type {kind.type.value}",
            )
        client = self._factory(spec.type, spec.url, credentials, spec.organization)
        handle = ProviderHandle(provider_name, spec.type, client, version_key, spec.allowed_namespaces)
        self._handles[provider_name] = handle
        self._checked_at[provider_name] = time.monotonic()
        if old is not None:
            await old.client.aclose()
        return handle
