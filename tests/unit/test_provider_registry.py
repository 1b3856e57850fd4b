"""The shared per-provider snapshot: one list call serves every lookup, and a failed one is shared too."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from redisdb_operator.provider_registry import ProviderObserver
from redisdb_operator.providers.base import Database, UnavailableError


class CountingClient:
    def __init__(self) -> None:
        self.calls = 0
        self.down = False

    async def list(self) -> Sequence[Database]:
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.down:
            raise UnavailableError("503")
        return [Database(id="db-1", name="shop-cache", primary_region="mad", plan="payg")]


async def test_concurrent_lookups_share_one_list_call() -> None:
    client = CountingClient()
    observer = ProviderObserver(client)  # type: ignore[arg-type]
    found = await asyncio.gather(
        *(observer.lookup(database_id=None, name="shop-cache", max_age=60) for _ in range(100))
    )
    assert client.calls == 1
    assert all(database is not None and database.id == "db-1" for database in found)
    assert observer.database_count == 1


async def test_a_failed_list_is_shared_for_max_age_then_retried() -> None:
    client = CountingClient()
    client.down = True
    observer = ProviderObserver(client)  # type: ignore[arg-type]
    for _ in range(20):
        with pytest.raises(UnavailableError):
            await observer.lookup(database_id="db-1", name="x", max_age=60)
    assert client.calls == 1  # twenty resyncs during an outage, one probe
    client.down = False
    assert await observer.lookup(database_id="db-1", name="x", max_age=0) is not None
    assert client.calls == 2


class TwoOfOneName:
    async def list(self) -> Sequence[Database]:
        return [
            Database(id="db-1", name="shop-cache", primary_region="mad", plan="payg"),
            Database(id="db-2", name="shop-cache", primary_region="mad", plan="payg"),
            Database(id="db-3", name="shop-other", primary_region="mad", plan="payg"),
        ]


async def test_namesakes_and_forgetting_one_of_them() -> None:
    """Every database of a name when there are several (the duplicates decision needs them all); forgetting the
    one the name pointed at leaves the other findable by the name."""
    observer = ProviderObserver(TwoOfOneName())  # type: ignore[arg-type]
    found = await observer.lookup(database_id=None, name="shop-cache", max_age=60)
    assert found is not None
    assert sorted(d.id for d in observer.namesakes("shop-cache")) == ["db-1", "db-2"]
    assert observer.namesakes("shop-other") == ()  # one alone is no duplicate
    observer.forget(found.id)
    left = await observer.lookup(database_id=None, name="shop-cache", max_age=60)
    assert left is not None and left.id != found.id
    assert observer.namesakes("shop-cache") == ()


class SlowList:
    """A list whose answer was read before the writes made while it is in flight (its pages were read earlier)."""

    def __init__(self) -> None:
        self.answered = asyncio.Event()

    async def list(self) -> Sequence[Database]:
        await self.answered.wait()
        return [
            Database(id="db-1", name="shop-cache", primary_region="mad", plan="payg"),
            Database(id="db-2", name="shop-gone", primary_region="mad", plan="payg"),
        ]


async def test_our_writes_during_a_list_survive_its_answer() -> None:
    """A database created (or deleted) by us while a 20-page list was in flight stays in (or out of) the snapshot:
    a sweep would confirm every missing one at the provider by id."""
    client = SlowList()
    observer = ProviderObserver(client)  # type: ignore[arg-type]
    refreshing = asyncio.create_task(observer.refresh(max_age=0))
    await asyncio.sleep(0)
    created = Database(id="db-3", name="shop-new", primary_region="mad", plan="payg")
    observer.remember(created)
    observer.forget("db-2")
    client.answered.set()
    await refreshing
    assert observer.cached("db-3", "shop-new") == created
    assert observer.cached("db-2", "shop-gone") is None
    assert observer.cached("db-1", "shop-cache") is not None
