"""`status.usage` (and with it pay-as-you-go's `status.estimatedMonthlyCost`), read from the provider's stats call.

The rules are pure (`usage_fields`, `changed_fields`, `TokenBucket`, `first_offset`; the console link, limits and
prices are `billing.py`'s), and `UsageRefresher` runs them for each database from one task on the leader
(`UsageSchedule`: a heap of when each database is next due; a kopf daemon per database was 10,000 tasks and
kopf's daemon machinery at 10,000 databases), apart from the reconcile: status fields of its own, written by merge
patch, so usage never waits on a reconcile nor a reconcile on usage. It also corrects the `billing` fields the
reconcile leaves as they were (a plan that lost its price).

Usage is read on a slow interval (default hourly), each database at its own offset in the interval (staggered by
uid), and every provider account has a token bucket: a read that finds it empty, or the account held after a 429
(`providers/http.py`), is skipped and tried again later. Reconciles therefore keep the account's quota; the resync's
one list per provider per interval is untouched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import heapq
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection, Hashable, Mapping
from typing import Any, Protocol

from . import metrics
from .billing import CURRENCY, static_fields
from .kube import KubeClient, KubeError, custom_path
from .models import ANNOTATION_PAUSED, GROUP, VERSION
from .provider_registry import ProviderHandle, ProviderRegistry
from .providers.base import DatabaseUsage, ProviderError, RateLimitedError
from .providers.kinds import kind_of

log = logging.getLogger(__name__)

# How often a database's billing fields are compared with its status (no provider call). The reconcile writes them
# with the status; this only catches what it leaves as it was (a plan that lost its price, a pay-as-you-go cost).
STATIC_CHECK_SECONDS = 60.0
UNRESOLVED_PROVIDER_TTL = 60.0  # a RedisProvider that could not be resolved is asked about again after this


# --- pure rules ----------------------------------------------------------------------------------------------


def usage_fields(usage: DatabaseUsage, *, provider_label: str, observed_at: str) -> dict[str, Any]:
    """`status.usage` from one stats answer; every key present (None clears it), so a merge patch replaces it all."""
    cost = None
    if usage.cost_usd is not None:
        basis = f"reported by {provider_label} for this month so far"
        cost = {"amount": round(usage.cost_usd, 4), "currency": CURRENCY, "basis": basis}
    return {
        "requests": usage.requests,
        "dataSizeBytes": usage.data_size_bytes,
        "bandwidthBytes": usage.bandwidth_bytes,
        "cost": cost,
        "observedAt": observed_at,
    }


def changed_fields(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that makes `current` hold `wanted`: a changed object is sent whole, its dropped keys as None."""
    patch: dict[str, Any] = {}
    for key, value in wanted.items():
        before = current.get(key)
        if _without_none(before) == _without_none(value):
            continue
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = {**{k: None for k in before if k not in value}, **value}
        else:
            patch[key] = value
    return patch


def _without_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _without_none(item) for key, item in value.items() if item is not None} or None
    return value


def _provider_name(body: Mapping[str, Any]) -> str:
    return str(((body.get("spec") or {}).get("providerRef") or {}).get("name") or "default")


def paused(body: Mapping[str, Any]) -> bool:
    """`redisdb.dev/paused: "true"` means no provider call at all (docs/policies.md): usage reads wait too."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return annotations.get(ANNOTATION_PAUSED) == "true"


def first_offset(uid: str, interval: float) -> float:
    """Where in the interval this database's first read falls: spread evenly by uid, the same after a restart."""
    fraction = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big") / 2**64
    return fraction * interval


class TokenBucket:
    """At most `rate` reads a second on average, `burst` at once: a full bucket lets a restart catch up a little,
    an empty one says skip (never wait: a waiting read would only queue behind the quota)."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


# --- the refresher -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UsageConfig:
    interval: float = 3600.0  # 0 turns usage reads off (the console link, limits and fixed prices stay)
    calls_per_minute: float = 60.0  # per provider account

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    @property
    def burst(self) -> float:
        """Ten seconds' worth of reads, at least one."""
        return max(1.0, self.calls_per_minute / 6)


class UsageRefresher:
    """One per operator: the per-account buckets, the per-provider totals, and one database's refresh."""

    def __init__(
        self,
        kube: KubeClient,
        registry: ProviderRegistry,
        config: UsageConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._kube = kube
        self._registry = registry
        self._config = config
        self._clock = clock
        self._rng = rng
        self._buckets: dict[str, TokenBucket] = {}
        self._unresolved: dict[str, float] = {}  # provider name -> when resolving it last failed
        self._catalogs: dict[str, tuple[object, int]] = {}  # provider name -> (its live catalog, a serial)
        self._checked: dict[str, Hashable] = {}  # uid -> the static inputs of its last check that wrote all it had to

    @property
    def config(self) -> UsageConfig:
        return self._config

    def bucket(self, provider_name: str) -> TokenBucket:
        bucket = self._buckets.get(provider_name)
        if bucket is None:
            rate = self._config.calls_per_minute / 60
            bucket = self._buckets[provider_name] = TokenBucket(rate, self._config.burst, self._clock)
        return bucket

    def static_inputs(self, body: Mapping[str, Any]) -> Hashable | None:
        """What a check without a usage read depends on: the object's version and its provider's handle and live
        catalog. The same inputs as at the last check mean nothing to write (None: not known without a read)."""
        meta = body.get("metadata") or {}
        provider_name = _provider_name(body)
        handle = self._registry.peek(provider_name)
        if handle is None or not meta.get("resourceVersion"):
            return None
        catalog = handle.live_catalog
        seen = self._catalogs.get(provider_name)
        if seen is None or seen[0] is not catalog:  # replaced at each provider check; a new serial only if changed
            serial = 0 if seen is None else seen[1] + (seen[0] != catalog)
            self._catalogs[provider_name] = seen = (catalog, serial)
        return (str(meta["resourceVersion"]), provider_name, handle.version_key, seen[1])

    def settled(self, body: Mapping[str, Any]) -> bool:
        """A check without a usage read would see what the last one saw (and wrote): nothing to do."""
        inputs = self.static_inputs(body)
        return inputs is not None and self._checked.get(str((body.get("metadata") or {}).get("uid"))) == inputs

    def forget(self, uid: str) -> None:
        self._checked.pop(uid, None)
        metrics.USAGE_TOTALS.forget(uid)

    async def refresh(self, body: Mapping[str, Any], status: Mapping[str, Any], *, read_usage: bool) -> float | None:
        """Write what changed; with `read_usage`, ask the provider first. Returns when to read usage again (None:
        no read was due)."""
        meta = body.get("metadata") or {}
        provider_name = _provider_name(body)
        uid = str(meta.get("uid"))
        inputs = self.static_inputs(body)
        self._checked.pop(uid, None)
        handle = await self._provider(provider_name, status)
        if handle is None:
            return None
        retry_in: float | None = None
        observed: dict[str, Any] = {}
        if read_usage:
            retry_in, usage = await self._read(handle, str(status["databaseId"]))
            if usage is not None:
                observed["usage"] = usage
        current = {**status, **observed}
        wanted = {**observed, **static_fields(handle.provider_type, current, handle.live_catalog)}
        patch = changed_fields(status, wanted)
        if patch:
            path = custom_path(
                GROUP, VERSION, "redisdatabases", f"{meta.get('name')}/status", str(meta.get("namespace"))
            )
            try:
                await self._kube.merge_patch(path, {"status": patch})
            except KubeError as error:
                log.warning("usage of %s/%s: status not written: %s", meta.get("namespace"), meta.get("name"), error)
                inputs = None  # checked again at the next check
        if inputs is not None:
            self._checked[uid] = inputs
        metrics.USAGE_TOTALS.set(uid, provider=provider_name, status={**status, **wanted})
        return retry_in

    async def _provider(self, provider_name: str, status: Mapping[str, Any]) -> ProviderHandle | None:
        """The RedisProvider's handle (the registry caches it); one that cannot be resolved is remembered for a while,
        so that the checks of many databases do not read a broken RedisProvider and its Secret again and again."""
        if not status.get("databaseId"):
            return None
        failed_at = self._unresolved.get(provider_name)
        if failed_at is not None and self._clock() - failed_at < UNRESOLVED_PROVIDER_TTL:
            return None
        try:
            handle = await self._registry.get(provider_name)
        except Exception:  # the reconcile reports what is wrong with the provider; usage just waits
            self._unresolved[provider_name] = self._clock()
            return None
        self._unresolved.pop(provider_name, None)
        return handle

    async def _read(self, handle: ProviderHandle, database_id: str) -> tuple[float, dict[str, Any] | None]:
        """(when to read again, the new `status.usage` or None)."""
        provider_name = handle.name
        interval = self._config.interval
        later = interval * (0.05 + 0.1 * self._rng())  # a skipped read comes back soon, spread out
        if not self.bucket(provider_name).take():
            metrics.USAGE_READS.inc(provider=provider_name, outcome="rate_capped")
            return later, None
        observed_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            usage = await handle.client.usage(database_id)
        except RateLimitedError as error:  # a 429 now, or the account still held by one: reconciles go first
            metrics.USAGE_READS.inc(provider=provider_name, outcome="held")
            return max(later, error.retry_after or 0.0), None
        except ProviderError as error:
            metrics.USAGE_READS.inc(provider=provider_name, outcome="error")
            log.info("usage of %s at %s: %s", database_id, provider_name, error.message)
            return interval, None
        if usage is None:
            metrics.USAGE_READS.inc(provider=provider_name, outcome="unknown_shape")
            return interval, None
        metrics.USAGE_READS.inc(provider=provider_name, outcome="ok")
        label = kind_of(handle.provider_type).display_name
        return interval, usage_fields(usage, provider_label=label, observed_at=observed_at)


class Databases(Protocol):
    """What the schedule reads: the RedisDatabases this process knows (database_book.DatabaseBook)."""

    membership: int  # changes whenever a uid comes or goes

    def uids(self) -> Collection[str]: ...

    def get(self, uid: str, /) -> Mapping[str, Any] | None: ...


class UsageSchedule:
    """Every database's usage loop (the former per-database daemon's `run`) from one task: a heap of (when next
    due, uid). A database is checked when it first appears (its static fields), then every STATIC_CHECK_SECONDS
    (or the usage interval, if shorter), and reads its usage at its spread offset, then every interval; a skipped
    read (bucket empty, account held) comes back when `refresh` says."""

    TICK = 1.0
    CONCURRENCY = 8  # refreshes in flight: a slow provider call never holds the others

    def __init__(
        self,
        refresher: UsageRefresher,
        databases: Databases,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._refresher = refresher
        self._databases = databases
        self._clock = clock
        self._due: dict[str, float] = {}  # uid -> when its usage is read next
        self._heap: list[tuple[float, str]] = []
        self._admitted: int | None = None  # the book's membership at the last admission

    def _admit(self) -> None:
        """New databases get a spread first read and a check now; gone ones are forgotten (only after the book's
        membership moved: walking 10,000 uids every second was most of an idle leader's CPU)."""
        membership = self._databases.membership
        if membership == self._admitted:
            return
        self._admitted = membership
        config = self._refresher.config
        now = self._clock()
        known = self._databases.uids()
        for uid in [uid for uid in self._due if uid not in known]:
            del self._due[uid]
            self._refresher.forget(uid)
        for uid in known:
            if uid not in self._due:
                self._due[uid] = now + first_offset(uid, config.interval) if config.enabled else float("inf")
                heapq.heappush(self._heap, (now, uid))

    def _unchanged(self, uid: str, now: float) -> bool:
        """No usage read is due and the check would see what the last one saw: nothing to do, no task."""
        body = self._databases.get(uid)
        return body is not None and now < self._due[uid] and self._refresher.settled(body)

    def _next_check(self, uid: str, due: float) -> None:
        config = self._refresher.config
        check = min(STATIC_CHECK_SECONDS, config.interval) if config.enabled else STATIC_CHECK_SECONDS
        now = self._clock()
        heapq.heappush(self._heap, (now + max(0.0, min(check, due - now)), uid))

    async def step(self) -> int:
        """Refresh every database that is due now; returns how many."""
        self._admit()
        now = self._clock()
        batch: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            _, uid = heapq.heappop(self._heap)
            if uid not in self._due:
                continue
            if self._unchanged(uid, now):
                self._next_check(uid, self._due[uid])
            else:
                batch.append(uid)
        limit = asyncio.Semaphore(self.CONCURRENCY)

        async def one(uid: str) -> None:
            async with limit:
                await self._refresh(uid)

        await asyncio.gather(*(one(uid) for uid in batch))
        return len(batch)

    async def _refresh(self, uid: str) -> None:
        body = self._databases.get(uid)
        meta = (body or {}).get("metadata") or {}
        if body is None or meta.get("deletionTimestamp"):
            self._due.pop(uid, None)
            self._refresher.forget(uid)
            return
        interval = self._refresher.config.interval
        status = dict(body.get("status") or {})
        due = self._due[uid]
        ask = self._clock() >= due and bool(status.get("databaseId")) and not paused(body)
        try:
            retry_in = await self._refresher.refresh(body, status, read_usage=ask)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("usage of %s/%s: refresh failed", meta.get("namespace"), meta.get("name"))
            retry_in = interval if ask else None
        if retry_in is not None:
            due = self._clock() + retry_in
        if uid in self._due:
            self._due[uid] = due
            self._next_check(uid, due)

    async def run(self, ready: Callable[[], Awaitable[Any]]) -> None:
        """Forever: wait until the databases are known (`ready`), then a step every TICK."""
        await ready()
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("usage schedule: a step failed")
            await asyncio.sleep(self.TICK)
