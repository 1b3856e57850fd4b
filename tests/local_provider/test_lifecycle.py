"""The provider's own lifecycle: restarts keep every database and its data; no redis-server outlives it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from tests.harness.local_provider import LocalProvider, redis_servers_under, running_local_provider

from .helpers import eventually, pid_alive, redis_client, replica_value, unique
from .test_fly_api import GET, Fly, host_port


async def test_restart_keeps_databases_and_data(own_local_provider: LocalProvider) -> None:
    local_provider = own_local_provider  # restarted below: not the session's provider
    async with httpx.AsyncClient(
        base_url=local_provider.upstash_url, auth=local_provider.upstash_auth, timeout=60
    ) as api:
        created = (
            await api.post(
                "/redis/database",
                json={
                    "database_name": unique("survivor"),
                    "region": "global",
                    "primary_region": "eu-west-1",
                    "read_regions": ["eu-central-1"],
                    "eviction": True,
                },
            )
        ).json()
    database_id, password, port = created["database_id"], created["password"], created["port"]
    async with redis_client(port, password, tls=True) as client:
        await client.set("durable", "yes")
        await client.hset("hash", mapping={"a": "1", "b": "2"})
    fly = Fly(local_provider)
    add_on = await fly.create_add_on(unique("fly-survivor"), "fra", [])
    await fly.aclose()
    fly_password, _, fly_port = host_port(add_on["publicUrl"])
    async with redis_client(fly_port, fly_password) as client:
        await client.set("fly-durable", "yes")
    old_pids = {local_provider.admin.database(database_id)["pid"], local_provider.admin.database(add_on["id"])["pid"]}

    local_provider.restart()

    assert not any(pid_alive(pid) for pid in old_pids), "the old processes were stopped"
    async with httpx.AsyncClient(
        base_url=local_provider.upstash_url, auth=local_provider.upstash_auth, timeout=60
    ) as api:
        fetched = (await api.get(f"/redis/database/{database_id}")).json()
    assert fetched["password"] == password and fetched["eviction"] is True
    assert fetched["read_regions"] == ["eu-central-1"]
    assert fetched["port"] == port, "the port was free, so it was kept"
    async with redis_client(fetched["port"], password, tls=True) as client:
        assert await client.get("durable") == "yes"
        assert await client.hgetall("hash") == {"a": "1", "b": "2"}
        assert (await client.config_get("maxmemory-policy"))["maxmemory-policy"] == "allkeys-random"
    [replica] = local_provider.admin.database(database_id)["replicas"]
    assert await eventually(lambda: replica_value(replica["port"], password, "durable", tls=True)) == "yes"

    fly = Fly(local_provider)
    again = (await fly.data(GET, id=add_on["id"]))["addOn"]
    await fly.aclose()
    assert again["password"] == fly_password and again["name"] == add_on["name"]
    _, _, again_port = host_port(again["publicUrl"])
    assert await replica_value(again_port, fly_password, "fly-durable") == "yes"


async def test_sigkill_of_the_provider_leaves_no_redis_server(tmp_path: Path) -> None:
    with running_local_provider(tmp_path / "killed") as provider:
        async with httpx.AsyncClient(base_url=provider.upstash_url, auth=provider.upstash_auth, timeout=60) as api:
            for index in range(2):
                response = await api.post(
                    "/redis/database",
                    json={
                        "database_name": f"doomed-{index}",
                        "region": "global",
                        "primary_region": "us-east-1",
                        "read_regions": ["us-west-1"],
                    },
                )
                assert response.status_code == 200, response.text
        provider.remember_pids()
        assert len(provider.pids_seen) == 4
        assert len(redis_servers_under(provider.state_dir)) == 4
        assert provider.stop(signal.SIGKILL) == -signal.SIGKILL
        assert provider.leftover_redis_servers(timeout=15) == []

        provider.start()  # and it all comes back from the registry
        assert {db["name"] for db in provider.admin.databases()} == {"doomed-0", "doomed-1"}
        assert all(pid_alive(db["pid"]) for db in provider.admin.databases())


async def test_sigterm_stops_every_redis_server(tmp_path: Path) -> None:
    with running_local_provider(tmp_path / "stopped") as provider:
        async with httpx.AsyncClient(base_url=provider.upstash_url, auth=provider.upstash_auth, timeout=60) as api:
            response = await api.post(
                "/redis/database",
                json={"database_name": "one", "region": "global", "primary_region": "us-east-1"},
            )
            assert response.status_code == 200
        provider.remember_pids()
        assert provider.stop() == 0
        assert provider.leftover_redis_servers(timeout=0) == [], "SIGTERM waits for its redis-servers"
        assert not provider.port_file.exists()


async def test_a_crashed_redis_server_is_restarted_with_its_data(local_provider: LocalProvider) -> None:
    async with httpx.AsyncClient(
        base_url=local_provider.upstash_url, auth=local_provider.upstash_auth, timeout=60
    ) as api:
        created = (
            await api.post(
                "/redis/database",
                json={"database_name": unique("crashy"), "region": "global", "primary_region": "us-west-1"},
            )
        ).json()
        database_id, password, port = created["database_id"], created["password"], created["port"]
        async with redis_client(port, password, tls=True) as client:
            await client.set("before-crash", "kept")
        old_pid = local_provider.admin.database(database_id)["pid"]
        os.kill(old_pid, signal.SIGKILL)

        async def restarted() -> bool:
            pid = local_provider.admin.database(database_id)["pid"]
            return (
                bool(pid) and pid != old_pid and await replica_value(port, password, "before-crash", tls=True) == "kept"
            )

        assert await eventually(restarted, within=15)
        assert local_provider.admin.database(database_id)["port"] == port
        await api.delete(f"/redis/database/{database_id}")
