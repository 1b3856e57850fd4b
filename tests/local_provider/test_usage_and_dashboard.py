"""Usage and dashboard links through both wire APIs, as the adapters would read them (issue 16, item 4).

Usage is counted by the real redis-server (``INFO``): after N commands to one database and none to another, the
first's request count grew by at least N more than the idle one's.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.harness.local_provider import LocalProvider

from .helpers import redis_client, unique
from .test_fly_api import Fly

N = 25
STATS = 'query Stats($name: String) { addOn(name: $name, provider: "upstash_redis") { id stats ssoLink } }'
LIST_STATS = "query { addOns(type: upstash_redis) { nodes { id stats } } }"
ORG_SSO = "query Org($slug: String!) { organization(slug: $slug) { addOnSsoLink } }"
UPSTASH_STATS_NUMBERS = (
    "daily_net_commands",
    "daily_read_requests",
    "daily_write_requests",
    "total_monthly_requests",
    "total_monthly_read_requests",
    "total_monthly_write_requests",
    "total_monthly_bandwidth",
    "current_storage",
    "total_monthly_billing",
)


async def _upstash_create(api: httpx.AsyncClient, name: str) -> dict[str, Any]:
    response = await api.post(
        "/redis/database",
        json={"database_name": name, "platform": "aws", "primary_region": "us-east-1", "plan": "payg"},
    )
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


async def _send_commands(port: int, password: str, count: int, *, tls: bool = False) -> None:
    async with redis_client(port, password, tls=tls) as client:
        for index in range(count):
            await client.set(f"k{index}", "v")


async def test_upstash_stats_count_commands_from_the_redis_server(local_provider: LocalProvider) -> None:
    async with httpx.AsyncClient(
        base_url=local_provider.upstash_url, auth=local_provider.upstash_auth, timeout=60
    ) as api:
        busy = await _upstash_create(api, unique("usage-busy"))
        idle = await _upstash_create(api, unique("usage-idle"))

        async def requests(database_id: str) -> int:
            response = await api.get(f"/redis/stats/{database_id}")
            assert response.status_code == 200, response.text
            stats = response.json()
            for key in UPSTASH_STATS_NUMBERS:
                assert isinstance(stats[key], int | float), key
            assert stats["dailyrequests"][0]["x"].endswith("+0000 UTC")
            count: int = stats["total_monthly_requests"]
            return count

        before_busy, before_idle = await requests(busy["database_id"]), await requests(idle["database_id"])
        await _send_commands(busy["port"], busy["password"], N, tls=True)  # Upstash databases are TLS-only
        after_busy, after_idle = await requests(busy["database_id"]), await requests(idle["database_id"])
        assert (after_busy - before_busy) - (after_idle - before_idle) >= N

        stats = (await api.get(f"/redis/stats/{busy['database_id']}")).json()
        assert stats["daily_write_requests"] >= N  # SET is a write, by the server's own command flags
        assert stats["keyspace"][0]["y"] == N and stats["current_storage"] > 0
        assert stats["total_monthly_billing"] > 0  # pay-as-you-go: $0.20 per 100k requests

        unknown = await api.get("/redis/stats/no-such-database")
        assert unknown.status_code == 404
        for created in (busy, idle):
            await api.delete(f"/redis/database/{created['database_id']}")


async def test_fly_stats_and_sso_links(local_provider: LocalProvider) -> None:
    fly = Fly(local_provider)
    try:
        made = {}
        for role in ("busy", "idle"):
            name = unique(f"fly-usage-{role}")
            made[role] = (name, await fly.create_add_on(name, "iad", org_slug=local_provider.fly_org))

        async def requests(role: str) -> int:
            add_on = (await fly.data(STATS, name=made[role][0]))["addOn"]
            count: int = add_on["stats"]["total_monthly_requests"]
            return count

        before = {role: await requests(role) for role in made}
        url = httpx.URL(made["busy"][1]["publicUrl"])
        assert url.port is not None
        await _send_commands(url.port, url.password or "", N)
        after = {role: await requests(role) for role in made}
        assert (after["busy"] - before["busy"]) - (after["idle"] - before["idle"]) >= N

        # Lists carry stats too when asked; a query that does not ask gets none computed.
        nodes = (await fly.data(LIST_STATS))["addOns"]["nodes"]
        busy_node = next(node for node in nodes if node["id"] == made["busy"][1]["id"])
        assert busy_node["stats"]["total_monthly_requests"] >= N

        # ssoLink signs the holder in (a credential): it opens the dashboard, a forged one does not.
        link = (await fly.data(STATS, name=made["busy"][0]))["addOn"]["ssoLink"]
        async with httpx.AsyncClient(timeout=30) as http:
            page = await http.get(link)
            assert page.status_code == 200 and made["busy"][0] in page.text
            assert made["busy"][1]["password"] not in page.text
            forged = await http.get(str(httpx.URL(link).copy_with(query=b"token=0")))
            assert forged.status_code == 401
            org_link = (await fly.data(ORG_SSO, slug=local_provider.fly_org))["organization"]["addOnSsoLink"]
            org_page = await http.get(org_link)
            assert org_page.status_code == 200 and made["busy"][0] in org_page.text
    finally:
        await fly.aclose()
