"""What each Fly operation costs at the provider (issue 15): one call per create, update and delete once the
database has been observed, one organization and one plan look-up however many creates run at once, and a list
read page by page."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from redisdb_operator.providers import fly
from redisdb_operator.providers.base import CreateDatabaseRequest, DatabaseUpdate, ProviderType
from redisdb_operator.providers.fly import FlyClient
from tests.harness.local_provider import LocalProvider

from .conftest import make_adapter

PRIMARY = "cdg"


@pytest.fixture
async def fly_client(provider: LocalProvider) -> AsyncIterator[FlyClient]:
    client = make_adapter(ProviderType.FLY, provider)
    assert isinstance(client, FlyClient)
    yield client
    await client.aclose()


def _fly_calls(provider: LocalProvider) -> dict[str, int]:
    return {key: value for key, value in provider.admin.counters().items() if key.startswith("fly:")}


def _name() -> str:
    return f"t-calls-{uuid.uuid4().hex[:8]}"


async def test_concurrent_creates_share_one_organization_and_plan_look_up(
    fly_client: FlyClient, provider: LocalProvider
) -> None:
    provider.admin.reset_counters()
    names = [_name() for _ in range(8)]
    created = await asyncio.gather(
        *(fly_client.create(CreateDatabaseRequest(name=name, primary_region=PRIMARY)) for name in names)
    )
    calls = _fly_calls(provider)
    try:
        assert calls.get("fly:createAddOn") == 8
        assert calls.get("fly:organization", 0) == 1 and calls.get("fly:addOnPlans", 0) == 1, calls
    finally:
        for database in created:
            await fly_client.delete(database.id)


async def test_an_observed_database_is_updated_and_deleted_with_one_call_each(
    fly_client: FlyClient, provider: LocalProvider
) -> None:
    created = await fly_client.create(CreateDatabaseRequest(name=_name(), primary_region=PRIMARY))
    observed = await fly_client.get(created.id)  # what a reconcile does before an update
    provider.admin.reset_counters()
    updated = await fly_client.update(observed, DatabaseUpdate(read_regions=("ams",), eviction=True))
    assert _fly_calls(provider) == {"fly:updateAddOn": 1}
    assert updated.read_regions == ("ams",) and updated.eviction
    after = provider.admin.database(created.id)
    assert after["read_regions"] == ["ams"] and after["eviction"] is True

    provider.admin.reset_counters()
    await fly_client.delete(created.id)  # right after the update, as a delete of a just-edited resource
    assert _fly_calls(provider) == {"fly:deleteAddOn": 1}
    assert created.id not in {database["id"] for database in provider.admin.databases()}


async def test_consecutive_updates_cost_one_call_each_and_a_usage_read_is_counted_apart(
    fly_client: FlyClient, provider: LocalProvider
) -> None:
    created = await fly_client.create(CreateDatabaseRequest(name=_name(), primary_region=PRIMARY))
    try:
        provider.admin.reset_counters()
        first = await fly_client.update(created, DatabaseUpdate(read_regions=("ams",)))
        await fly_client.update(first, DatabaseUpdate(eviction=True))  # what the last update left: no read
        assert _fly_calls(provider) == {"fly:updateAddOn": 2}
        after = provider.admin.database(created.id)
        assert after["read_regions"] == ["ams"] and after["eviction"] is True
        provider.admin.reset_counters()
        await fly_client.usage(created.id)
        assert _fly_calls(provider) == {"fly:addOn.stats": 1}  # the usage read, apart from the reconcile's reads
    finally:
        await fly_client.delete(created.id)


async def test_an_update_of_a_database_never_observed_reads_it_first(
    fly_client: FlyClient, provider: LocalProvider
) -> None:
    created = await fly_client.create(CreateDatabaseRequest(name=_name(), primary_region=PRIMARY))
    other_client = make_adapter(ProviderType.FLY, provider)
    try:
        provider.admin.reset_counters()
        await other_client.update(created, DatabaseUpdate(eviction=True))
        assert _fly_calls(provider) == {"fly:addOn": 1, "fly:updateAddOn": 1}
    finally:
        await other_client.aclose()
        await fly_client.delete(created.id)


async def test_the_list_is_read_page_by_page(
    fly_client: FlyClient, provider: LocalProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = [await fly_client.create(CreateDatabaseRequest(name=_name(), primary_region=PRIMARY)) for _ in range(5)]
    try:
        everything = {database.id for database in await fly_client.list()}
        monkeypatch.setattr(fly, "LIST_PAGE_SIZE", 2)
        provider.admin.reset_counters()
        paged = await fly_client.list()
        assert {database.id for database in paged} == everything
        assert len(paged) == len(everything)
        pages = _fly_calls(provider)["fly:organization"]  # one GraphQL request per page
        assert pages == (len(everything) + 1) // 2  # pages of 2, the last one says there is no next page
        assert {database.id for database in created} <= everything
    finally:
        for database in created:
            await fly_client.delete(database.id)
