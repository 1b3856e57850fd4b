"""The benchmark-only pooled mode (--pool-size): many databases, a bounded number of redis-servers.

Published URLs keep their shape (default:PASSWORD@host:port), each password opens its database and a deleted or
rotated one is refused; Upstash-type databases still speak verified TLS.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import redis.exceptions

from tests.harness.local_provider import redis_servers_under, running_local_provider

from .helpers import redis_client, unique
from .test_fly_api import Fly, host_port


async def test_many_databases_share_a_bounded_pool(tmp_path: Path) -> None:
    with running_local_provider(tmp_path / "pooled", extra_args=["--pool-size", "2"]) as provider:
        async with httpx.AsyncClient(base_url=provider.upstash_url, auth=provider.upstash_auth, timeout=60) as api:
            upstash = []
            for _ in range(5):
                response = await api.post(
                    "/redis/database",
                    json={"database_name": unique("pooled"), "region": "global", "primary_region": "us-east-1"},
                )
                assert response.status_code == 200, response.text
                upstash.append(response.json())
            fly = Fly(provider)
            fly_urls = []
            for _ in range(5):
                add_on = await fly.create_add_on(unique("fly-pooled"), "fra", [])
                assert add_on["publicUrl"].startswith("redis://default:")
                fly_urls.append(add_on["publicUrl"])
            await fly.aclose()
            # 10 databases, at most 2 plain + 2 TLS servers
            assert len(redis_servers_under(provider.state_dir)) <= 4

            for created in upstash:
                async with redis_client(created["port"], created["password"], tls=True) as client:
                    assert await client.ping()
            for url in fly_urls:
                password, _, port = host_port(url)
                async with redis_client(port, password) as client:
                    assert await client.ping()

            gone = upstash[0]
            assert (await api.delete(f"/redis/database/{gone['database_id']}")).status_code == 200
            with pytest.raises(redis.exceptions.AuthenticationError):
                async with redis_client(gone["port"], gone["password"], tls=True) as client:
                    await client.ping()
            rotated = upstash[1]
            response = await api.post(f"/redis/reset-password/{rotated['database_id']}")
            assert response.status_code == 200, response.text
            with pytest.raises(redis.exceptions.AuthenticationError):
                async with redis_client(rotated["port"], rotated["password"], tls=True) as client:
                    await client.ping()
            async with redis_client(rotated["port"], response.json()["password"], tls=True) as client:
                assert await client.ping()
