"""Named crash points, the per-database call log, credentials changed at runtime and exact creation times:
what the crash-safety and clock-skew end-to-end tests stand on, proven against the provider alone."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.harness.local_provider import LocalProvider

from .helpers import unique
from .test_fly_api import CREATE, ORG, Fly, plan_ids


@pytest.fixture(autouse=True)
def _no_holds(local_provider: LocalProvider) -> Iterator[None]:
    yield
    local_provider.admin.clear_holds()


def upstash(provider: LocalProvider) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=provider.upstash_url, auth=provider.upstash_auth, timeout=60)


def names(provider: LocalProvider) -> list[str]:
    return [database["name"] for database in provider.admin.databases()]


async def test_hold_before_create_then_answer(local_provider: LocalProvider) -> None:
    name = unique("held-before")
    admin = local_provider.admin
    hold = admin.hold("before_create", api="upstash", name=name)
    async with upstash(local_provider) as api:
        body = {"database_name": name, "region": "global", "primary_region": "eu-west-1"}
        create = asyncio.create_task(api.post("/redis/database", json=body))
        held = await asyncio.to_thread(admin.wait_held, hold, 30)
        assert held["state"] == "held" and held["held_name"] == name
        assert name not in names(local_provider), "held before the database exists"
        assert not create.done()
        admin.release(hold)
        response = await create
    assert response.status_code == 200 and response.json()["database_name"] == name
    assert names(local_provider).count(name) == 1
    assert [(c["operation"], c["outcome"]) for c in admin.calls(name=name)] == [("create", "answered")]


async def test_hold_after_create_then_drop(local_provider: LocalProvider) -> None:
    name = unique("held-after")
    admin = local_provider.admin
    hold = admin.hold("after_create", api="fly")
    fly = Fly(local_provider)
    try:
        org = (await fly.data(ORG, slug=local_provider.fly_org))["organization"]
        plans = await plan_ids(fly)
        variables = {
            "organizationId": org["id"],
            "name": name,
            "primaryRegion": "fra",
            "readRegions": [],
            "planId": plans["payg"],
            "type": "upstash_redis",
        }
        create = asyncio.create_task(fly(CREATE, input=variables))
        held = await asyncio.to_thread(admin.wait_held, hold, 30)
        assert held["held_name"] == name
        assert names(local_provider).count(name) == 1, "held after the database exists"
        assert not create.done(), "and before the answer is sent"
        admin.release(hold, "drop")
        with pytest.raises(httpx.TransportError):
            await create
    finally:
        await fly.aclose()
    calls = admin.calls(name=name)
    assert [(c["api"], c["operation"], c["outcome"]) for c in calls] == [("fly", "createAddOn", "dropped")]
    assert names(local_provider).count(name) == 1, "the database stays: only the answer was lost"


async def test_a_hold_times_out_as_408_and_only_matches_its_name(local_provider: LocalProvider) -> None:
    admin = local_provider.admin
    hold = admin.hold("before_create", name=unique("nobody"))
    async with upstash(local_provider) as api:
        other = unique("not-held")
        body = {"database_name": other, "region": "global", "primary_region": "eu-west-1"}
        assert (await api.post("/redis/database", json=body)).status_code == 200
    with pytest.raises(AssertionError, match="no call reached hold"):
        admin.wait_held(hold, timeout=0.5)
    assert names(local_provider).count(other) == 1


async def test_bad_holds_are_refused(local_provider: LocalProvider) -> None:
    async with httpx.AsyncClient(base_url=local_provider.url) as http:
        for body in ({"point": "sometime"}, {"point": "before_create", "api": "redis"}, {"point": "x", "y": 1}):
            assert (await http.post("/admin/holds", json=body)).status_code == 400
        assert (await http.post("/admin/holds/999/release", json={})).status_code == 404


async def test_call_log_follows_one_name_through_ids(local_provider: LocalProvider) -> None:
    name = unique("logged")
    async with upstash(local_provider) as api:
        body = {"database_name": name, "region": "global", "primary_region": "eu-west-1"}
        database_id = (await api.post("/redis/database", json=body)).json()["database_id"]
        await api.get(f"/redis/database/{database_id}")
        await api.post(f"/redis/enable-eviction/{database_id}")
        await api.get("/redis/databases")
        await api.delete(f"/redis/database/{database_id}")
    calls = local_provider.admin.calls(name=name)
    assert [c["operation"] for c in calls] == ["create", "get", "enable-eviction", "delete"]
    assert all(c["status"] == 200 for c in calls), calls


async def test_tokens_added_and_revoked_at_runtime(local_provider: LocalProvider) -> None:
    admin = local_provider.admin
    new_token = f"rotated-{unique('fly')}"
    admin.credentials(add_fly_tokens=[new_token])
    fresh = Fly(local_provider, token=new_token)
    try:
        assert (await fresh(ORG, slug=local_provider.fly_org)).get("data"), "the added token works at once"
        admin.credentials(revoke_fly_tokens=[new_token])
        refused = await fresh(ORG, slug=local_provider.fly_org)
        assert refused.get("errors") and not refused.get("data"), refused
    finally:
        await fresh.aclose()
    assert new_token in admin.issued_credentials()["tokens"], "a revoked token is still scanned for in logs"

    email, key = f"{unique('acct')}@example.com", unique("key")
    admin.credentials(add_upstash_accounts={email: key})
    async with httpx.AsyncClient(base_url=local_provider.upstash_url, auth=(email, key)) as api:
        assert (await api.get("/redis/databases")).status_code == 200
        admin.credentials(revoke_upstash_accounts=[email])
        assert (await api.get("/redis/databases")).status_code == 401


async def test_creation_time_set_to_the_second(local_provider: LocalProvider) -> None:
    async with upstash(local_provider) as api:
        body = {"database_name": unique("dated"), "region": "global", "primary_region": "eu-west-1"}
        database_id = (await api.post("/redis/database", json=body)).json()["database_id"]
        target = int(time.time()) - 11
        local_provider.admin.set_creation_time(database_id, target)
        assert (await api.get(f"/redis/database/{database_id}")).json()["creation_time"] == target
        async with httpx.AsyncClient(base_url=local_provider.url) as http:
            future = {"creation_time": int(time.time()) + 3600}
            assert (await http.post(f"/admin/databases/{database_id}/drift", json=future)).status_code == 400
        await api.delete(f"/redis/database/{database_id}")


async def test_a_reset_that_misses_a_replica_is_an_error(local_provider: LocalProvider) -> None:
    """A replica that cannot take the new password (stopped here) makes the reset fail, not succeed quietly."""
    async with upstash(local_provider) as api:
        body = {
            "database_name": unique("reset-replica"),
            "region": "global",
            "primary_region": "us-east-1",
            "read_regions": ["eu-west-1"],
        }
        database_id = (await api.post("/redis/database", json=body)).json()["database_id"]
        [replica] = local_provider.admin.database(database_id)["replicas"]
        os.kill(replica["pid"], signal.SIGSTOP)
        try:
            response = await api.post(f"/redis/reset-password/{database_id}")
        finally:
            os.kill(replica["pid"], signal.SIGCONT)
        assert response.status_code == 503, response.text
        assert "eu-west-1" in response.text and "reset it again" in response.text
        retried = await api.post(f"/redis/reset-password/{database_id}")
        assert retried.status_code == 200, retried.text
        await api.delete(f"/redis/database/{database_id}")
