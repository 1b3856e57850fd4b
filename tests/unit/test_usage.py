"""The pure rules of usage.py (the usage fields, the merge patch, the stagger, the token bucket) and the refresher's
read: capped per account, skipped while the account is held, nothing invented from odd answers."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from redisdb_operator import metrics
from redisdb_operator.provider_registry import ProviderHandle
from redisdb_operator.providers.base import DatabaseUsage, ProviderType, RateLimitedError, UnavailableError
from redisdb_operator.usage import (
    TokenBucket,
    UsageConfig,
    UsageRefresher,
    UsageSchedule,
    changed_fields,
    first_offset,
    usage_fields,
)

FLY, UPSTASH = ProviderType.FLY, ProviderType.UPSTASH


def test_usage_fields_carry_the_providers_own_bill_only_when_it_reports_one() -> None:
    reported = usage_fields(
        DatabaseUsage(requests=5, data_size_bytes=10, bandwidth_bytes=20, cost_usd=0.12345),
        provider_label="Upstash",
        observed_at="2026-11-30T12:00:00Z",
    )
    assert reported == {
        "requests": 5,
        "dataSizeBytes": 10,
        "bandwidthBytes": 20,
        "cost": {"amount": 0.1235, "currency": "USD", "basis": "reported by Upstash for this month so far"},
        "observedAt": "2026-11-30T12:00:00Z",
    }
    silent = usage_fields(DatabaseUsage(requests=5), provider_label="Fly.io", observed_at="t")
    assert silent["cost"] is None and silent["dataSizeBytes"] is None


def test_the_patch_holds_only_changes_and_clears_dropped_keys() -> None:
    current = {
        "dashboardURL": "https://console.upstash.com/redis/b",
        "planLimits": {"maxDataSizeBytes": 10, "maxRequestSizeBytes": 5},
        "estimatedMonthlyCost": None,
    }
    same = {"dashboardURL": current["dashboardURL"], "planLimits": {"maxDataSizeBytes": 10, "maxRequestSizeBytes": 5}}
    assert changed_fields(current, {**same, "estimatedMonthlyCost": None}) == {}
    assert changed_fields(current, {"planLimits": {"maxDataSizeBytes": 20}}) == {
        "planLimits": {"maxRequestSizeBytes": None, "maxDataSizeBytes": 20}
    }
    assert changed_fields(current, {"dashboardURL": None}) == {"dashboardURL": None}
    assert changed_fields({}, {"usage": {"requests": 1, "cost": None}}) == {"usage": {"requests": 1, "cost": None}}


def test_first_reads_are_spread_over_the_interval_and_stable() -> None:
    offsets = [first_offset(f"uid-{index}", 3600) for index in range(2000)]
    assert all(0 <= offset < 3600 for offset in offsets)
    assert first_offset("uid-7", 3600) == offsets[7]
    tenths = [sum(1 for offset in offsets if tenth * 360 <= offset < (tenth + 1) * 360) for tenth in range(10)]
    assert min(tenths) > 150 and statistics.pstdev(tenths) < 40  # about 200 in each tenth of the hour


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=0.5, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 1.0
    assert bucket.take() is False  # half a token
    clock.now += 1.0
    assert bucket.take() is True and bucket.take() is False
    clock.now += 3600
    assert sum(bucket.take() for _ in range(10)) == 3  # never more than the burst, however long it rested
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)


class UsageClient:
    """Only the stats call."""

    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.usage_calls = 0

    async def usage(self, database_id: str) -> DatabaseUsage | None:
        self.usage_calls += 1
        answer = self.answers.pop(0) if self.answers else DatabaseUsage(requests=1)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]


class Registry:
    def __init__(self, client: UsageClient) -> None:
        self.handle = ProviderHandle("acct", UPSTASH, client, ("1", "1"))  # type: ignore[arg-type]

    async def get(self, name: str) -> ProviderHandle:
        return self.handle

    def peek(self, name: str) -> ProviderHandle | None:
        return self.handle


class Kube:
    def __init__(self) -> None:
        self.patches: list[tuple[str, dict[str, Any]]] = []

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.patches.append((path, body))
        return body


def refresher(client: UsageClient, clock: Clock, calls_per_minute: float = 6) -> tuple[UsageRefresher, Kube]:
    kube = Kube()
    config = UsageConfig(interval=3600, calls_per_minute=calls_per_minute)
    return UsageRefresher(kube, Registry(client), config, clock=clock, rng=lambda: 0.5), kube  # type: ignore[arg-type]


def database_body(uid: str = "u1") -> dict[str, Any]:
    return {
        "metadata": {"uid": uid, "name": "cache", "namespace": "shop"},
        "spec": {"providerRef": {"name": "acct"}},
        "status": {"databaseId": "db-1", "plan": "payg"},
    }


async def test_reads_over_the_accounts_cap_are_skipped_not_sent() -> None:
    clock = Clock()
    client = UsageClient([])
    usage, kube = refresher(client, clock, calls_per_minute=6)  # 0.1 a second, a burst of 1
    body = database_body()
    before = metrics.USAGE_READS.value(provider="acct", outcome="rate_capped")
    first = await usage.refresh(body, body["status"], read_usage=True)
    second = await usage.refresh(body, body["status"], read_usage=True)
    assert client.usage_calls == 1
    assert first == 3600 and second is not None and 0 < second < 3600  # skipped: tried again soon, not in an hour
    assert metrics.USAGE_READS.value(provider="acct", outcome="rate_capped") == before + 1
    clock.now += 10
    await usage.refresh(body, body["status"], read_usage=True)
    assert client.usage_calls == 2
    path, patch = kube.patches[0]
    assert path == "/apis/redisdb.dev/v1alpha1/namespaces/shop/redisdatabases/cache/status"
    assert patch["status"]["usage"]["requests"] == 1
    assert patch["status"]["estimatedMonthlyCost"]["amount"] == pytest.approx(0.0)
    assert patch["status"]["dashboardURL"] == "https://console.upstash.com/redis/db-1"


async def test_a_held_account_skips_the_read_until_retry_after() -> None:
    clock = Clock()
    client = UsageClient([RateLimitedError("held", retry_after=900.0), UnavailableError("down"), None])
    usage, kube = refresher(client, clock, calls_per_minute=600)
    body = database_body()
    assert await usage.refresh(body, body["status"], read_usage=True) == 900.0
    assert await usage.refresh(body, body["status"], read_usage=True) == 3600  # an error waits a whole interval
    assert await usage.refresh(body, body["status"], read_usage=True) == 3600  # an unknown shape: nothing written
    assert all("usage" not in patch["status"] for _, patch in kube.patches)


async def test_nothing_is_read_or_written_before_the_database_exists() -> None:
    client = UsageClient([])
    usage, kube = refresher(client, Clock())
    body = database_body()
    body["status"] = {}
    assert await usage.refresh(body, {}, read_usage=True) is None
    assert client.usage_calls == 0 and kube.patches == []


def test_the_config_turns_reads_off_at_zero_and_bursts_ten_seconds_worth() -> None:
    assert not UsageConfig(interval=0).enabled and UsageConfig().enabled
    assert UsageConfig(calls_per_minute=60).burst == 10 and UsageConfig(calls_per_minute=3).burst == 1


def test_provider_totals_sum_per_provider_and_forget_a_database() -> None:
    gauge = metrics.Gauge("requests", "Requests.", ("provider",))
    totals = metrics.ProviderTotals({"requests": gauge})
    totals.set("a", provider="p", status={"usage": {"requests": 5}})
    totals.set("b", provider="p", status={"usage": {"requests": 7}})
    totals.set("a", provider="p", status={"usage": {"requests": 6}})
    assert gauge.value(provider="p") == 13
    totals.forget("b")
    totals.forget("b")
    assert gauge.value(provider="p") == 6


async def test_a_broken_provider_is_not_asked_about_on_every_check() -> None:
    clock = Clock()

    class Broken:
        def __init__(self) -> None:
            self.asked = 0

        async def get(self, name: str) -> ProviderHandle:
            self.asked += 1
            raise RuntimeError("no such RedisProvider")

        def peek(self, name: str) -> ProviderHandle | None:
            return None

    broken, kube = Broken(), Kube()
    usage = UsageRefresher(kube, broken, UsageConfig(), clock=clock)  # type: ignore[arg-type]
    body = database_body()
    for _ in range(5):
        assert await usage.refresh(body, body["status"], read_usage=False) is None
    assert broken.asked == 1 and kube.patches == []
    clock.now += 61
    await usage.refresh(body, body["status"], read_usage=False)
    assert broken.asked == 2


class Book:
    def __init__(self, *bodies: dict[str, Any]) -> None:
        self.bodies = {body["metadata"]["uid"]: body for body in bodies}
        self.walks = 0

    @property
    def membership(self) -> int:
        return hash(frozenset(self.bodies))

    def uids(self) -> set[str]:
        self.walks += 1
        return set(self.bodies)

    def get(self, uid: str) -> dict[str, Any] | None:
        return self.bodies.get(uid)


async def test_a_paused_database_gets_no_usage_read() -> None:
    clock = Clock()
    client = UsageClient([])
    usage, _ = refresher(client, clock)
    body = database_body()
    body["metadata"]["annotations"] = {"redisdb.dev/paused": "true"}
    schedule = UsageSchedule(usage, Book(body), clock=clock)
    for _ in range(3):
        await schedule.step()
        clock.now += 7200  # well past any read's due time
    assert client.usage_calls == 0
    body["metadata"]["annotations"] = {}
    await schedule.step()
    assert client.usage_calls == 1


async def test_one_schedule_reads_each_database_once_an_interval_and_forgets_the_deleted() -> None:
    clock = Clock()
    client = UsageClient([])
    usage, _ = refresher(client, clock, calls_per_minute=600)
    book = Book(*(database_body(f"u{index}") for index in range(20)))
    schedule = UsageSchedule(usage, book, clock=clock)
    for _ in range(3600 // 60):  # one interval, a step a minute
        await schedule.step()
        clock.now += 60
    assert client.usage_calls == 20  # each at its spread offset, once
    del book.bodies["u0"]
    await schedule.step()
    assert "u0" not in schedule._due


async def test_a_settled_database_costs_the_schedule_no_refresh_until_its_inputs_change() -> None:
    """At 10,000 databases the check every minute (no provider call) and the walk of every uid every second were
    most of an idle leader's CPU: both now happen only when something they depend on moved."""
    clock = Clock()
    client = UsageClient([])
    usage, kube = refresher(client, clock, calls_per_minute=600)
    registry = usage._registry  # type: ignore[attr-defined]
    bodies = [database_body(f"u{index}") for index in range(3)]
    for body in bodies:
        body["metadata"]["resourceVersion"] = "1"
    book = Book(*bodies)
    schedule = UsageSchedule(usage, book, clock=clock)
    assert await schedule.step() == 3  # first seen: each checked once (static fields written)
    checked = len(kube.patches)
    walks = book.walks
    for _ in range(5):  # five minutes of checks, no read due yet (rng 0.5 puts reads later than this)
        clock.now += 60
        assert await schedule.step() == 0
    assert len(kube.patches) == checked and book.walks == walks and client.usage_calls == 0
    bodies[0]["metadata"]["resourceVersion"] = "2"  # its status changed: checked again at its next check
    clock.now += 60
    assert await schedule.step() == 1
    registry.handle.live_catalog = {"plans": []}  # the provider check replaced the catalog with another one
    clock.now += 60
    assert await schedule.step() == 3
    registry.handle.live_catalog = {"plans": []}  # replaced by an equal one: nothing to check
    clock.now += 60
    assert await schedule.step() == 0
    del book.bodies["u2"]  # membership moved: walked once more, the gone one forgotten
    clock.now += 1
    await schedule.step()
    assert book.walks == walks + 1 and "u2" not in schedule._due
