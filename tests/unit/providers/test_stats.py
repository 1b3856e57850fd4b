"""Reading Upstash's DatabaseStats (and Fly's undocumented AddOn.stats) defensively, and the adapters' stats calls:
sent once, never while the account is held."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from redisdb_dev.local_provider.usage import Usage, database_stats
from redisdb_operator.providers.base import DatabaseUsage, RateLimitedError, UnavailableError
from redisdb_operator.providers.fly import FlyClient
from redisdb_operator.providers.stats import parse_stats
from redisdb_operator.providers.upstash import UpstashClient


def test_upstash_stats_become_usage() -> None:
    served = database_stats(
        "payg",
        Usage(
            requests=1234,
            read_requests=1000,
            write_requests=234,
            script_requests=0,
            bandwidth_bytes=5678,
            storage_bytes=910,
            keys=3,
            connections=1,
            hits=1,
            misses=0,
            observed_at=1_764_500_000.0,
        ),
    )
    usage = parse_stats(json.loads(json.dumps(served)))
    assert usage is not None and usage.cost_usd == pytest.approx(1234 * 0.20 / 100_000)
    assert (usage.requests, usage.data_size_bytes, usage.bandwidth_bytes) == (1234, 910, 5678)


@pytest.mark.parametrize(
    "body",
    [None, "OK", [], {}, {"unrelated": 1}, {"total_monthly_requests": "12"}, {"total_monthly_requests": -1}],
)
def test_shapes_we_do_not_know_give_no_usage(body: Any) -> None:
    assert parse_stats(body) is None


def test_odd_values_are_dropped_not_guessed() -> None:
    usage = parse_stats(
        {
            "total_monthly_requests": 10.0,
            "current_storage": True,
            "diskusage": [{"x": "t0", "y": 1}, {"x": "t1", "y": 42}],
            "total_monthly_bandwidth": 1.5,
            "total_monthly_billing": float("nan"),
        }
    )
    assert usage == DatabaseUsage(requests=10, data_size_bytes=42)


async def test_upstash_stats_are_one_get_without_retries() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        return httpx.Response(503, json={"error": "maintenance"})

    client = UpstashClient("https://api.test/v2", email="e", api_key="k", transport=httpx.MockTransport(answer))
    with pytest.raises(UnavailableError):
        await client.usage("db-1")
    assert seen == ["GET /v2/redis/stats/db-1"]  # one attempt: a missed read waits for the next interval
    await client.aclose()


async def test_a_held_account_sends_no_stats_call() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(429, headers={"Retry-After": "120"}, json={"error": "slow down"})

    client = UpstashClient("https://api.test/v2", email="e", api_key="k", transport=httpx.MockTransport(answer))
    with pytest.raises(RateLimitedError):
        await client.get("db-1")
    seen.clear()
    with pytest.raises(RateLimitedError) as held:
        await client.usage("db-1")
    assert seen == [] and held.value.retry_after is not None and held.value.retry_after > 100
    await client.aclose()


@pytest.mark.parametrize(("stats", "expected"), [(None, None), ("{}", None), ({"total_monthly_requests": 7}, 7)])
async def test_fly_reads_addon_stats_defensively(stats: Any, expected: int | None) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert "stats" in body["query"] and body["variables"] == {"id": "a1"}
        return httpx.Response(200, json={"data": {"addOn": {"id": "a1", "stats": stats}}})

    client = FlyClient("https://api.test", token="t", transport=httpx.MockTransport(answer))
    usage = await client.usage("a1")
    assert (usage.requests if usage else None) == expected
    await client.aclose()
