"""The one registry both wire APIs serve: validation, ownership and the redis-server processes per database.

The wire modules only translate shapes; every rule (catalogs, unique names, read region != primary) lives here
so the Upstash and Fly faces of the provider cannot disagree.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from redisdb_operator.providers import catalog
from redisdb_operator.providers.base import ProviderType

from .commands import CommandPool
from .processes import (
    POLICY_EVICTION_OFF,
    POLICY_EVICTION_ON,
    PooledInstance,
    PortAllocator,
    RedisInstance,
    RedisPool,
    RedisSettings,
    RedisStartError,
)
from .store import DatabaseRecord, Store
from .tls_files import TlsFiles

log = logging.getLogger(__name__)

# Upstash's rule for database names (letters, digits, '-', '_', at most 64); the Fly face uses the same one.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

ErrorKind = Literal["invalid", "exists", "not_found", "unavailable"]


class RegistryError(Exception):
    """A refused request; ``kind`` picks the wire status/code, ``message`` is safe to return to the caller."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class LocalDatabase:
    """A registered database: its durable record plus its running primary and replicas (one per read region)."""

    def __init__(self, record: DatabaseRecord, primary: RedisInstance, public_host: str | None = None) -> None:
        self.record = record
        self.primary = primary
        self.public_host = public_host or primary.host  # the endpoint clients are told (--advertise-host)
        self.replicas: dict[str, RedisInstance] = {}
        self.lock = asyncio.Lock()
        self._commands: CommandPool | None = None
        self.destroyed = False

    def instances(self) -> list[RedisInstance]:
        return [self.primary, *self.replicas.values()]

    async def commands(self) -> CommandPool:
        """The REST face's pool on the primary, remade when the primary's port or the password changed."""
        if self.destroyed:  # a REST call that raced the delete: no new pool nobody would close
            raise RedisConnectionError("the database was deleted")
        key = (self.primary.port, self.record.password)
        if self._commands is None or self._commands.key != key:
            stale, self._commands = self._commands, CommandPool(self.primary.host, *key, self.primary.settings.tls)
            if stale is not None:
                await stale.close()
        return self._commands

    async def close_commands(self) -> None:
        if self._commands is not None:
            pool, self._commands = self._commands, None
            await pool.close()

    def describe(self) -> dict[str, Any]:
        """The admin view: owner, settings, ports and pids (never the password)."""
        record = self.record
        return {
            "id": record.id,
            "api": record.api.value,
            "owner": record.owner,
            "name": record.name,
            "primary_region": record.primary_region,
            "read_regions": list(record.read_regions),
            "plan": record.plan,
            "eviction": record.eviction,
            "host": self.primary.host,
            "bind_host": self.primary.bind_host,
            "port": self.primary.port,
            "tls": self.primary.settings.tls is not None,
            "pid": self.primary.pid,
            "data_dir": str(self.primary.data_dir.parent),
            "replicas": [
                {"region": region, "port": replica.port, "pid": replica.pid}
                for region, replica in self.replicas.items()
            ],
        }


def _maxmemory(api: ProviderType, plan_name: str) -> int:
    found = catalog.plan(api, plan_name)
    assert found is not None, plan_name  # validated before any record is written
    return found.max_data_size_bytes


def serves_rest(api: ProviderType) -> bool:
    """Only the Upstash API hands out REST tokens; flyctl shows none, so Fly databases get none."""
    return api is ProviderType.UPSTASH


def _issue_rest_tokens(record: DatabaseRecord) -> None:
    record.rest_token = secrets.token_urlsafe(32)
    record.read_only_rest_token = secrets.token_urlsafe(32)


def _policy(eviction: bool) -> str:
    return POLICY_EVICTION_ON if eviction else POLICY_EVICTION_OFF


def validate_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise RegistryError(
            "invalid",
            f"invalid database name {name!r}: use 1 to 64 letters, digits, '-' or '_'",
        )


def validate_settings(api: ProviderType, primary_region: str, read_regions: list[str], plan_name: str) -> None:
    """The real APIs' placement and plan rules, from the catalog of the API that owns the database."""
    if catalog.region(api, primary_region) is None:
        raise RegistryError("invalid", f"unknown primary region {primary_region!r} for {api.value}")
    seen: set[str] = set()
    for code in read_regions:
        found = catalog.region(api, code)
        if found is None:
            raise RegistryError("invalid", f"unknown read region {code!r} for {api.value}")
        if not found.read_region_allowed:
            raise RegistryError("invalid", f"region {code!r} cannot be a read region")
        if code == primary_region:
            raise RegistryError("invalid", f"read region {code!r} is the primary region; remove it from read regions")
        if code in seen:
            raise RegistryError("invalid", f"read region {code!r} is listed twice")
        seen.add(code)
    plan = catalog.plan(api, plan_name)
    if plan is None:
        raise RegistryError("invalid", f"unknown plan {plan_name!r} for {api.value}")
    if plan.max_read_regions is not None and len(read_regions) > plan.max_read_regions:
        raise RegistryError(
            "invalid",
            f"plan {plan_name!r} allows at most {plan.max_read_regions} read regions, not {len(read_regions)}",
        )


class Registry:
    def __init__(
        self,
        state_dir: Path,
        host: str = "127.0.0.1",
        tls: TlsFiles | None = None,
        *,
        bind_host: str | None = None,
        public_host: str | None = None,
        pool_size: int = 0,
    ) -> None:
        """``host``: where this provider reaches its redis-servers; ``bind_host``: where they listen (default
        ``host``; 0.0.0.0 for every interface); ``public_host``: the endpoint handed to clients (default ``host``);
        ``pool_size``: the benchmark-only pooled mode (--pool-size)."""
        self.state_dir = state_dir
        self.host = host
        self.bind_host = bind_host or host
        self.public_host = public_host or host
        self.tls = tls
        self.ports = PortAllocator(self.bind_host)
        # Benchmark-only pooled mode (--pool-size): databases share a bounded set of redis-servers (no isolation).
        self.pool = RedisPool(size=pool_size, state_dir=state_dir, host=host, ports=self.ports) if pool_size else None
        self.store = Store(state_dir / "registry.sqlite3")
        self.databases: dict[str, LocalDatabase] = {}
        # (api, owner, name) -> ids: a create's "name taken?" without a walk of every database (10,000 in the bench)
        self._by_name: dict[tuple[ProviderType, str, str], dict[str, None]] = {}  # ids in creation order
        self._reserved: set[tuple[ProviderType, str, str]] = set()

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def _instance(self, record: DatabaseRecord, region: str | None) -> RedisInstance:
        base = self.state_dir / "databases" / record.id
        label = f"{record.id}/{region or record.primary_region}"
        data_dir = base / (f"replica-{region}" if region else "primary")
        settings = RedisSettings(
            password=record.password,
            maxmemory=_maxmemory(record.api, record.plan),
            policy=_policy(record.eviction),
            # Upstash databases are TLS-only (reference section 6); Fly's private-network ones have none.
            tls=self.tls if record.api is ProviderType.UPSTASH else None,
        )
        if self.pool is not None:
            return PooledInstance(label=label, data_dir=data_dir, host=self.host, pool=self.pool, settings=settings)
        return RedisInstance(
            label=label,
            data_dir=data_dir,
            host=self.host,
            bind_host=self.bind_host,
            ports=self.ports,
            settings=settings,
        )

    async def _start_replica(self, database: LocalDatabase, region: str, preferred_port: int | None) -> None:
        replica = self._instance(database.record, region)
        replica.settings.replica_of = database.primary.port
        database.replicas[region] = replica
        await replica.start(preferred_port)
        await replica.wait_replica_synced()

    async def _start(self, database: LocalDatabase, *, restoring: bool) -> None:
        record = database.record
        await database.primary.start(record.port if restoring else None)
        await asyncio.gather(
            *(
                self._start_replica(database, region, record.replica_ports.get(region) if restoring else None)
                for region in record.read_regions
            )
        )
        record.port = database.primary.port
        record.replica_ports = {region: replica.port for region, replica in database.replicas.items()}

    async def restore(self, concurrency: int = 8) -> None:
        """Start every stored database (same ids, passwords and data; same ports when still free)."""
        records = self.store.load()
        if not records:
            return
        limit = asyncio.Semaphore(concurrency)
        started = time.monotonic()

        async def bring_back(record: DatabaseRecord) -> None:
            database = LocalDatabase(record, self._instance(record, None), self.public_host)
            self._add(database)
            if serves_rest(record.api) and not record.rest_token:  # written before the store had REST tokens
                _issue_rest_tokens(record)
                self._record_issued_tokens(record)
                self.store.save(record)
            async with limit:
                try:
                    await self._start(database, restoring=True)
                    self.store.save(record)
                except RedisStartError:
                    log.exception("could not restore database %s (%s)", record.id, record.name)

        await asyncio.gather(*(bring_back(record) for record in records))
        log.info("restored %d databases in %.1fs", len(records), time.monotonic() - started)

    async def close(self) -> None:
        """Stop every redis-server this provider started; nothing may outlive the provider."""
        instances = [instance for database in self.databases.values() for instance in database.instances()]
        if self.pool is not None:
            instances = []  # passwords on the shared servers: stopping the pool is enough
        await asyncio.gather(
            *(database.close_commands() for database in self.databases.values()), return_exceptions=True
        )
        await asyncio.gather(*(instance.stop() for instance in instances), return_exceptions=True)
        if self.pool is not None:
            await self.pool.close()
        self.store.close()
        log.info("stopped %d redis-server processes", len(instances))

    def _add(self, database: LocalDatabase) -> None:
        record = database.record
        self.databases[record.id] = database
        self._by_name.setdefault((record.api, record.owner, record.name), {})[record.id] = None

    def _remove(self, database: LocalDatabase) -> None:
        record = database.record
        del self.databases[record.id]
        key = (record.api, record.owner, record.name)
        ids = self._by_name.get(key)
        if ids is not None:
            ids.pop(record.id, None)
            if not ids:
                del self._by_name[key]

    # -- queries -------------------------------------------------------------------------------------------------

    def owned(self, api: ProviderType, owners: Iterable[str]) -> list[LocalDatabase]:
        wanted = set(owners)
        return [db for db in self.databases.values() if db.record.api is api and db.record.owner in wanted]

    def get(self, api: ProviderType, owners: Iterable[str], database_id: str) -> LocalDatabase:
        database = self.databases.get(database_id)
        if database is None or database.record.api is not api or database.record.owner not in set(owners):
            raise RegistryError("not_found", "database not found")
        return database

    def find_by_name(self, api: ProviderType, owners: Iterable[str], name: str) -> LocalDatabase | None:
        for owner in owners:
            for database_id in self._by_name.get((api, owner, name), ()):
                return self.databases[database_id]
        return None

    def get_any(self, database_id: str) -> LocalDatabase:
        """For the admin API: any database regardless of owner."""
        database = self.databases.get(database_id)
        if database is None:
            raise RegistryError("not_found", "database not found")
        return database

    def issued_passwords(self) -> list[dict[str, Any]]:
        """Test-only: every password this provider ever issued (durable across restarts), newest last."""
        return [
            {
                "database_id": database_id,
                "name": name,
                "password": password,
                "issued_at": issued_at,
                "current": database_id in self.databases and self.databases[database_id].record.password == password,
            }
            for database_id, name, password, issued_at in self.store.issued()
        ]

    def issued_rest_tokens(self) -> list[str]:
        """Test-only: every REST token this provider ever issued (durable across restarts)."""
        return self.store.issued_rest_tokens()

    def _record_issued_tokens(self, record: DatabaseRecord) -> None:
        self.store.record_issued_rest_tokens(record.id, (record.rest_token, record.read_only_rest_token), time.time())

    # -- changes -------------------------------------------------------------------------------------------------

    async def create(
        self,
        *,
        api: ProviderType,
        owner: str,
        name: str,
        primary_region: str,
        read_regions: list[str],
        plan: str,
        eviction: bool = False,
        budget: int | None = None,
        metadata: dict[str, Any] | None = None,
        id_style: Literal["uuid", "short"] = "uuid",
    ) -> LocalDatabase:
        validate_name(name)
        validate_settings(api, primary_region, read_regions, plan)
        key = (api, owner, name)
        # Fly refuses a second add-on of one name; no Upstash source says its names are unique, so two may share one.
        if api is ProviderType.FLY and (key in self._reserved or self.find_by_name(api, [owner], name) is not None):
            raise RegistryError("exists", "database name already exists")
        self._reserved.add(key)
        try:
            record = DatabaseRecord(
                id=str(uuid.uuid4()) if id_style == "uuid" else _short_id(),
                api=api,
                owner=owner,
                name=name,
                primary_region=primary_region,
                read_regions=list(read_regions),
                plan=plan,
                eviction=eviction,
                budget=budget,
                metadata=dict(metadata or {}),
                password=secrets.token_hex(16),
                creation_time=int(time.time()),
            )
            if serves_rest(api):
                _issue_rest_tokens(record)
            database = LocalDatabase(record, self._instance(record, None), self.public_host)
            try:
                await self._start(database, restoring=False)
            except RedisStartError as error:
                await self._destroy(database)
                log.error("create of %s (%s) failed: %s", record.id, name, error)
                raise RegistryError("unavailable", "could not start the database; try again") from error
            self.store.save(record)
            self.store.record_issued(record.id, name, record.password, time.time())
            if record.rest_token:
                self._record_issued_tokens(record)
            self._add(database)
        finally:
            self._reserved.discard(key)
        log.info("created database %s (%s, %s) for %s", record.id, name, api.value, owner)
        return database

    async def _destroy(self, database: LocalDatabase) -> None:
        database.destroyed = True
        await database.close_commands()
        await asyncio.gather(*(instance.stop() for instance in database.instances()), return_exceptions=True)
        shutil.rmtree(self.state_dir / "databases" / database.record.id, ignore_errors=True)

    async def delete(self, database: LocalDatabase) -> None:
        async with database.lock:
            if self.databases.get(database.record.id) is not database:
                raise RegistryError("not_found", "database not found")
            self._remove(database)
            self.store.delete(database.record.id)
            await self._destroy(database)
        log.info("deleted database %s (%s)", database.record.id, database.record.name)

    async def update(
        self,
        database: LocalDatabase,
        *,
        read_regions: list[str] | None = None,
        plan: str | None = None,
        eviction: bool | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Change read regions (the full set), plan and/or eviction in place; ``None`` keeps the current value."""
        async with database.lock:
            record = database.record
            if self.databases.get(record.id) is not database:
                raise RegistryError("not_found", "database not found")
            new_regions = list(record.read_regions if read_regions is None else read_regions)
            new_plan = record.plan if plan is None else plan
            new_eviction = record.eviction if eviction is None else eviction
            validate_settings(record.api, record.primary_region, new_regions, new_plan)

            if new_plan != record.plan or new_eviction != record.eviction:
                values = {
                    "maxmemory": str(_maxmemory(record.api, new_plan)),
                    "maxmemory-policy": _policy(new_eviction),
                }
                for instance in database.instances():
                    await instance.config_set(values)
                    instance.settings.maxmemory = int(values["maxmemory"])
                    instance.settings.policy = values["maxmemory-policy"]
                record.plan, record.eviction = new_plan, new_eviction

            removed = [region for region in database.replicas if region not in new_regions]
            added = [region for region in new_regions if region not in database.replicas]
            for region in removed:
                await database.replicas.pop(region).stop()
                shutil.rmtree(self.state_dir / "databases" / record.id / f"replica-{region}", ignore_errors=True)
            try:
                await asyncio.gather(*(self._start_replica(database, region, None) for region in added))
            except RedisStartError as error:
                for region in added:
                    replica = database.replicas.pop(region, None)
                    if replica is not None:
                        await replica.stop()
                raise RegistryError("unavailable", "could not start a read replica; try again") from error
            finally:
                record.read_regions = [region for region in new_regions if region in database.replicas]
                record.replica_ports = {region: replica.port for region, replica in database.replicas.items()}
                if metadata is not None:
                    record.metadata = dict(metadata)
                self.store.save(record)
        log.info(
            "updated database %s (%s): read_regions=%s plan=%s eviction=%s",
            record.id,
            record.name,
            ",".join(record.read_regions) or "-",
            record.plan,
            record.eviction,
        )

    async def backdate(self, database: LocalDatabase, seconds: int) -> None:
        """Make the database look `seconds` older, as one someone made long ago would (admin API, tests)."""
        async with database.lock:
            if self.databases.get(database.record.id) is not database:
                raise RegistryError("not_found", "database not found")
            database.record.creation_time -= seconds
            self.store.save(database.record)

    async def reset_password(self, database: LocalDatabase) -> None:
        """New password on the primary, then on each replica (requirepass and masterauth); the old one is refused.

        Like Upstash's reset-password, this also replaces both REST tokens, so the old ones are refused as well.
        """
        async with database.lock:
            record = database.record
            if self.databases.get(record.id) is not database:
                raise RegistryError("not_found", "database not found")
            new_password = secrets.token_hex(16)
            await database.primary.set_password(new_password)
            record.password = new_password
            if serves_rest(record.api):
                _issue_rest_tokens(record)
                self._record_issued_tokens(record)
            self.store.save(record)
            self.store.record_issued(record.id, record.name, new_password, time.time())
            await database.close_commands()
            failed = []
            for region, replica in database.replicas.items():
                try:
                    await replica.set_password(new_password)
                except RedisError:
                    log.error("could not change the password of replica %s/%s", record.id, region)
                    failed.append(region)
            if failed:
                # A replica still taking the old password is a failed reset, not a success: say so, so the
                # caller retries (a new reset changes every instance again).
                raise RegistryError(
                    "unavailable",
                    f"the password changed on the primary but not on the replicas in {', '.join(sorted(failed))}; "
                    "reset it again",
                )
        log.info("reset the password of database %s (%s)", record.id, record.name)


def _short_id() -> str:
    """Fly add-on ids look like ``aaV829vaMVQGbi5``: 15 letters and digits."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(15))
