"""The Upstash v2 face end to end: every call over real HTTP, every effect checked on the real redis-servers."""

from __future__ import annotations

import functools

import httpx
import pytest
from redis.exceptions import AuthenticationError, ReadOnlyError

from redisdb_operator.providers import catalog
from redisdb_operator.providers.base import ProviderType
from tests.harness.local_provider import LocalProvider

from .helpers import config_get, eventually, pid_alive, port_open, redis_client, replica_value, unique

PAYG_BYTES = catalog.PLANS[ProviderType.UPSTASH]["payg"].max_data_size_bytes


def upstash(provider: LocalProvider) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=provider.upstash_url, auth=provider.upstash_auth, timeout=60)


async def test_upstash_database_lifecycle(local_provider: LocalProvider) -> None:
    name = unique("upstash-flow")
    async with upstash(local_provider) as api:
        response = await api.post(
            "/redis/database",
            json={
                "database_name": name,
                "region": "global",
                "primary_region": "us-east-1",
                "read_regions": ["us-west-2"],
                "plan": "payg",
            },
        )
        assert response.status_code == 200, response.text
        created = response.json()
        database_id = created["database_id"]
        assert created["database_name"] == name
        assert created["primary_region"] == "us-east-1"
        assert created["read_regions"] == ["us-west-2"]
        assert created["eviction"] is False and created["tls"] is True
        assert created["state"] == "active" and created["region"] == "global"
        assert created["user_email"] == local_provider.upstash_email
        assert "database_type" not in created and "plan" not in created and created["type"] == "payg"
        assert (
            created["rest_token"]
            and created["read_only_rest_token"]
            and created["rest_url"].endswith(created["database_id"])
        )
        password, port = created["password"], created["port"]

        # The returned URL parts reach a real redis-server that keeps data.
        async with redis_client(port, password, host=created["endpoint"], tls=True) as client:
            assert await client.set("greeting", "hello")
            assert await client.get("greeting") == "hello"
        assert await config_get(port, password, "maxmemory-policy", tls=True) == "noeviction"
        assert int(await config_get(port, password, "maxmemory", tls=True)) == PAYG_BYTES

        # The read region is a real, read-only replica with the primary's data.
        view = local_provider.admin.database(database_id)
        assert view["owner"] == local_provider.upstash_email and view["port"] == port
        assert pid_alive(view["pid"])
        [replica] = view["replicas"]
        assert replica["region"] == "us-west-2" and replica["port"] != port and pid_alive(replica["pid"])
        assert await eventually(lambda: replica_value(replica["port"], password, "greeting", tls=True)) == "hello"
        async with redis_client(replica["port"], password, tls=True) as client:
            with pytest.raises(ReadOnlyError):
                await client.set("greeting", "from a replica")
            assert (await client.config_get("replica-read-only"))["replica-read-only"] == "yes"

        # get, get without credentials, list.
        fetched = (await api.get(f"/redis/database/{database_id}")).json()
        assert fetched["password"] == password and fetched["port"] == port
        hidden = (await api.get(f"/redis/database/{database_id}", params={"credentials": "hide"})).json()
        assert "password" not in hidden and hidden["database_id"] == database_id
        listed = (await api.get("/redis/databases")).json()
        assert database_id in [item["database_id"] for item in listed]

        # update-regions takes the full new set: us-west-2 goes, eu-west-1 and ap-south-1 come.
        response = await api.post(
            f"/redis/update-regions/{database_id}", json={"read_regions": ["eu-west-1", "ap-south-1"]}
        )
        assert response.status_code == 200 and response.json() == "OK", response.text
        view = local_provider.admin.database(database_id)
        regions = {item["region"]: item for item in view["replicas"]}
        assert set(regions) == {"eu-west-1", "ap-south-1"}
        assert not pid_alive(replica["pid"]) and not port_open(replica["port"])
        for item in regions.values():
            assert pid_alive(item["pid"]) and port_open(item["port"])
            assert (
                await eventually(functools.partial(replica_value, item["port"], password, "greeting", tls=True))
                == "hello"
            )
        assert (await api.get(f"/redis/database/{database_id}")).json()["read_regions"] == ["eu-west-1", "ap-south-1"]
        response = await api.post(f"/redis/update-regions/{database_id}", json={"read_regions": []})
        assert response.json() == "OK"
        assert local_provider.admin.database(database_id)["replicas"] == []
        for item in regions.values():
            assert not pid_alive(item["pid"])

        # Eviction on and off.
        assert (await api.post(f"/redis/enable-eviction/{database_id}")).json() == "OK"
        assert await config_get(port, password, "maxmemory-policy", tls=True) == "allkeys-random"
        assert (await api.get(f"/redis/database/{database_id}")).json()["eviction"] is True
        assert (await api.post(f"/redis/disable-eviction/{database_id}")).json() == "OK"
        assert await config_get(port, password, "maxmemory-policy", tls=True) == "noeviction"
        assert (await api.get(f"/redis/database/{database_id}")).json()["eviction"] is False

        # Plan changes set maxmemory, through the current and the legacy endpoint.
        response = await api.post(f"/redis/{database_id}/change-plan", json={"plan_name": "fixed_1gb"})
        assert response.json() == "OK", response.text
        assert int(await config_get(port, password, "maxmemory", tls=True)) == catalog.GIB
        assert (await api.get(f"/redis/database/{database_id}")).json()["type"] == "paid"
        response = await api.post(f"/redis/change-plan/{database_id}", json={"plan": "fixed_250mb"})
        assert response.json() == "OK", response.text
        assert int(await config_get(port, password, "maxmemory", tls=True)) == 250 * catalog.MIB
        fetched = (await api.get(f"/redis/database/{database_id}")).json()
        assert fetched["type"] == "paid" and "database_type" not in fetched

        # Reset password: the old one is refused on the primary and on a replica, the new one works.
        await api.post(f"/redis/update-regions/{database_id}", json={"read_regions": ["eu-central-1"]})
        [replica] = local_provider.admin.database(database_id)["replicas"]
        response = await api.post(f"/redis/reset-password/{database_id}")
        assert response.status_code == 200, response.text
        new_password = response.json()["password"]
        assert new_password and new_password != password
        for target in (port, replica["port"]):
            with pytest.raises(AuthenticationError):
                async with redis_client(target, password, tls=True) as client:
                    await client.ping()
            assert await replica_value(target, new_password, "greeting", tls=True) == "hello"
        assert (await api.get(f"/redis/database/{database_id}")).json()["password"] == new_password

        # Delete: every process gone, ports closed, the id unknown, the name free again.
        pids = [view["pid"] for view in [local_provider.admin.database(database_id)]] + [replica["pid"]]
        response = await api.delete(f"/redis/database/{database_id}")
        assert response.status_code == 200 and response.json() == "OK"
        for pid in pids:
            assert not pid_alive(pid)
        assert not port_open(port) and not port_open(replica["port"])
        response = await api.get(f"/redis/database/{database_id}")
        assert response.status_code == 404 and response.json() == "database not found"
        assert database_id not in [item["id"] for item in local_provider.admin.databases()]
        response = await api.post(
            "/redis/database", json={"name": name, "region": "global", "primary_region": "eu-west-1"}
        )
        assert response.status_code == 200, "the name of a deleted database can be used again"
        assert (await api.delete(f"/redis/database/{response.json()['database_id']}")).json() == "OK"


async def test_eviction_and_plan_at_create(local_provider: LocalProvider) -> None:
    async with upstash(local_provider) as api:
        response = await api.post(
            "/redis/database",
            json={
                "database_name": unique("evicting"),
                "platform": "aws",
                "primary_region": "eu-central-1",
                "plan": "fixed_250mb",
                "eviction": True,
                "budget": 50,
            },
        )
        assert response.status_code == 200, response.text
        created = response.json()
        assert created["eviction"] is True and created["type"] == "paid" and created["budget"] == 50
        assert await config_get(created["port"], created["password"], "maxmemory-policy", tls=True) == "allkeys-random"
        assert int(await config_get(created["port"], created["password"], "maxmemory", tls=True)) == 250 * catalog.MIB
        await api.delete(f"/redis/database/{created['database_id']}")


async def test_accounts_are_isolated(local_provider: LocalProvider) -> None:
    """Each email is its own account: same name allowed, other account's ids invisible."""
    from tests.harness.local_provider import OTHER_UPSTASH_API_KEY, OTHER_UPSTASH_EMAIL

    name = unique("shared-name")
    body = {"database_name": name, "region": "global", "primary_region": "us-east-1"}
    async with (
        upstash(local_provider) as mine,
        httpx.AsyncClient(
            base_url=local_provider.upstash_url, auth=(OTHER_UPSTASH_EMAIL, OTHER_UPSTASH_API_KEY), timeout=60
        ) as theirs,
    ):
        first = await mine.post("/redis/database", json=body)
        second = await theirs.post("/redis/database", json=body)
        assert first.status_code == 200 and second.status_code == 200, (first.text, second.text)
        their_id = second.json()["database_id"]
        assert (await mine.get(f"/redis/database/{their_id}")).status_code == 404
        assert (await mine.delete(f"/redis/database/{their_id}")).status_code == 404
        assert their_id not in [item["database_id"] for item in (await mine.get("/redis/databases")).json()]
        owners = {item["id"]: item["owner"] for item in local_provider.admin.databases()}
        assert owners[their_id] == OTHER_UPSTASH_EMAIL
        await mine.delete(f"/redis/database/{first.json()['database_id']}")
        await theirs.delete(f"/redis/database/{their_id}")
