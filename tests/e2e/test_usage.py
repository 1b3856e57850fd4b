"""Usage, cost, limits and the console link in status, end to end: the real operator reads the local provider's
stats calls (counted from the real redis-servers' INFO) on a short `--usage-interval`, capped per account by
`--usage-calls-per-minute`, and `kubectl redisdb status` shows what the status holds.

The module runs its own operator (overriding the harness's `operator` fixture) so that it can pass the flags.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.test_kubectl_plugin import plugin
from tests.harness.cluster import Cluster, apply, get_json, wait_for
from tests.harness.local_provider import LocalProvider, redis_from_url
from tests.harness.operator import (
    FLY_PROVIDER,
    UPSTASH_PROVIDER,
    OperatorProcess,
    secret_data,
    start_operator,
    wait_ready,
)
from tests.harness.prometheus import Sample, parse

USAGE_INTERVAL = 1.0
CALLS_PER_MINUTE = 30.0  # 0.5 a second, a burst of 5: below what three databases read every second would need
RATE, BURST = CALLS_PER_MINUTE / 60, CALLS_PER_MINUTE / 6
COMMANDS = 40


@pytest.fixture(scope="module")
def metrics_url(operator: OperatorProcess) -> str:
    """The port the operator bound (port 0: the OS's choice), read back from its ports file."""
    return operator.metrics_url


@pytest.fixture(scope="module")
def started() -> dict[str, float]:
    return {}


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster,
    providers: None,
    local_provider: LocalProvider,
    started: dict[str, float],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    started["calls"] = local_provider.admin.counters().get("upstash:stats", 0)
    started["at"] = time.monotonic()
    running = start_operator(
        cluster,
        tmp_path_factory.mktemp("operator"),
        extra_args=[
            "--metrics-listen",
            "127.0.0.1:0",
            "--usage-interval",
            str(USAGE_INTERVAL),
            "--usage-calls-per-minute",
            str(CALLS_PER_MINUTE),
        ],
    )
    try:
        yield running
    finally:
        running.runner.stop_all()


def manifest(name: str, provider: str, primary: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "redisdb.dev/v1alpha1",
        "kind": "RedisDatabase",
        "metadata": {"name": name},
        "spec": {"providerRef": {"name": provider}, "primaryRegion": primary, **spec},
    }


def observed_at(obj: dict[str, Any] | None) -> datetime.datetime | None:
    stamp = ((obj or {}).get("status") or {}).get("usage", {}).get("observedAt")
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC) if stamp else None


def usage_read_after(name: str, namespace: str, moment: datetime.datetime, timeout: float = 120) -> dict[str, Any]:
    """The object once its usage was read at or after `moment` (whole seconds, as observedAt is written)."""

    def read() -> dict[str, Any] | None:
        obj = get_json("redisdatabase", name, namespace)
        at = observed_at(obj)
        return obj if at is not None and at >= moment else None

    return wait_for(read, timeout, message=f"{name}: usage read after {moment.isoformat()}")


def scrape(url: str) -> list[Sample]:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    return parse(response.text)[1]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for sample, found, value in samples if sample == name and wanted <= found)


def test_usage_grows_with_commands_and_reads_stay_under_the_cap(
    operator: OperatorProcess,
    cluster: Cluster,
    namespace: str,
    local_provider: LocalProvider,
    metrics_url: str,
    started: dict[str, float],
) -> None:
    apply(
        [
            manifest("busy", UPSTASH_PROVIDER, "us-east-1"),
            manifest("idle", UPSTASH_PROVIDER, "us-east-1"),
            manifest("third", UPSTASH_PROVIDER, "eu-west-1"),
        ],
        namespace,
    )
    busy = wait_ready("busy", namespace)
    wait_ready("idle", namespace)
    wait_ready("third", namespace)
    # what the status says without a stats call, in the same write as Ready: the console link (no credential in
    # it) and the plan's limits
    database_id = busy["status"]["databaseId"]
    assert busy["status"]["dashboardURL"] == f"https://console.upstash.com/redis/{database_id}"
    assert busy["status"]["planLimits"] == {"maxDataSizeBytes": 10 * 1024**3, "maxRequestSizeBytes": 10 * 1024**2}

    first = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(seconds=1)
    busy_before = usage_read_after("busy", namespace, first)["status"]["usage"]["requests"]
    idle_before = usage_read_after("idle", namespace, first)["status"]["usage"]["requests"]

    client = redis_from_url(secret_data("busy-redis", namespace)["REDIS_URL"])
    for index in range(COMMANDS):
        client.set(f"key-{index}", "x" * 100)
    client.close()
    after_sends = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(seconds=1)

    busy = usage_read_after("busy", namespace, after_sends)
    idle = usage_read_after("idle", namespace, after_sends)
    busy_growth = busy["status"]["usage"]["requests"] - busy_before
    idle_growth = idle["status"]["usage"]["requests"] - idle_before
    assert busy_growth >= idle_growth + COMMANDS, (busy_growth, idle_growth)
    usage = busy["status"]["usage"]
    assert usage["dataSizeBytes"] > 0 and usage["bandwidthBytes"] > 0
    # pay-as-you-go: $0.20 per 100k requests times the requests counted; the provider's own bill beside it
    cost = busy["status"]["estimatedMonthlyCost"]
    assert cost["currency"] == "USD" and "pay-as-you-go" in cost["basis"]
    assert cost["amount"] == pytest.approx(round(usage["requests"] * 0.20 / 100_000, 4), abs=1e-9)
    assert usage["cost"]["currency"] == "USD" and "Upstash" in usage["cost"]["basis"]

    # `kubectl redisdb status` shows the status as written
    text = plugin(cluster, "status", "busy", "-n", namespace).stdout
    latest = get_json("redisdatabase", "busy", namespace)
    assert latest is not None
    dashboard_line = next(line for line in text.splitlines() if line.startswith("Dashboard:"))
    assert dashboard_line.split() == ["Dashboard:", f"https://console.upstash.com/redis/{database_id}"]
    assert "Requests:" in text and "Est. Monthly Cost:   $" in text and "pay-as-you-go" in text
    view = json.loads(plugin(cluster, "status", "busy", "-n", namespace, "-o", "json").stdout)
    assert view["dashboard"]["url"] == latest["status"]["dashboardURL"]
    assert view["planLimits"] == latest["status"]["planLimits"]
    assert view["usage"]["requests"] >= busy["status"]["usage"]["requests"]

    # the cap: three databases asking every second, the account allows 0.5 reads a second and a burst of 5, so the
    # bucket runs dry within seconds of the first reads; wait until a read was seen capped, then count
    def capped_reads() -> float | None:
        found = total(
            scrape(metrics_url), "redisdb_usage_reads_total", provider=UPSTASH_PROVIDER, outcome="rate_capped"
        )
        return found if found > 0 else None

    wait_for(capped_reads, 60, message="a usage read skipped because the account's bucket was empty")
    elapsed = time.monotonic() - started["at"]
    calls = local_provider.admin.counters().get("upstash:stats", 0) - started["calls"]
    assert 0 < calls <= BURST + RATE * elapsed + 1, (calls, elapsed)
    samples = scrape(metrics_url)
    asked = total(samples, "redisdb_provider_requests_total", provider_type="upstash", operation="stats")
    sent = asked - total(samples, "redisdb_provider_requests_total", operation="stats", outcome="held")  # not sent
    assert sent <= BURST + RATE * elapsed + 1 and sent <= calls
    assert total(samples, "redisdb_usage_requests", provider=UPSTASH_PROVIDER) >= busy["status"]["usage"]["requests"]


def test_fly_fixed_plan_is_priced_from_its_plan_and_has_no_dashboard_link(
    operator: OperatorProcess, cluster: Cluster, namespace: str, metrics_url: str
) -> None:
    apply(manifest("fixed", FLY_PROVIDER, "ams", plan="fixed_1gb", readRegions=["fra"]), namespace)
    wait_ready("fixed", namespace)

    def priced() -> dict[str, Any] | None:
        obj = get_json("redisdatabase", "fixed", namespace)
        status = (obj or {}).get("status") or {}
        return obj if status.get("estimatedMonthlyCost") and status.get("usage") else None

    fixed = wait_for(priced, 120, message="fixed: cost and usage in status")
    status = fixed["status"]
    # Fixed 1GB is $20/month and $10 for each read region (Fly's published prices)
    assert status["estimatedMonthlyCost"]["amount"] == 30
    assert (
        "Fixed 1GB" in status["estimatedMonthlyCost"]["basis"]
        and "1 read region" in status["estimatedMonthlyCost"]["basis"]
    )
    assert status["planLimits"] == {"maxDataSizeBytes": 1024**3}
    # Fly's only console link is ssoLink, a sign-on credential: none is published
    assert "dashboardURL" not in status
    assert "sso" not in json.dumps(status) and "token=" not in json.dumps(status)
    assert isinstance(status["usage"]["requests"], int)
    samples = scrape(metrics_url)
    assert total(samples, "redisdb_estimated_monthly_cost_usd", provider=FLY_PROVIDER) >= 30
    assert total(samples, "redisdb_provider_requests_total", provider_type="fly", operation="graphql:addOn.stats") > 0


def test_a_429_holds_usage_reads_and_reconciles_go_on_after_it(
    operator: OperatorProcess, namespace: str, local_provider: LocalProvider, metrics_url: str
) -> None:
    apply(manifest("held", UPSTASH_PROVIDER, "us-east-1"), namespace)
    wait_ready("held", namespace)
    usage_read_after("held", namespace, datetime.datetime.now(datetime.UTC).replace(microsecond=0))

    def held_reads() -> float:
        return total(scrape(metrics_url), "redisdb_usage_reads_total", provider=UPSTASH_PROVIDER, outcome="held")

    before = held_reads()
    try:
        # every call answers 429 with Retry-After: 2 (whichever account asks first, each one is held in turn) until
        # a usage read of this account is seen skipped
        local_provider.admin.faults(fail_status=429, fail_next=10_000, retry_after=2)
        wait_for(lambda: held_reads() > before, 60, message="a usage read skipped while the account is held")
    finally:
        local_provider.admin.clear_faults()
    # the hold ends and the account's quota is the reconciles': a spec change lands
    apply(manifest("held", UPSTASH_PROVIDER, "us-east-1", eviction=True), namespace)

    def evicting() -> dict[str, Any] | None:
        obj = get_json("redisdatabase", "held", namespace)
        status = (obj or {}).get("status") or {}
        return obj if status.get("eviction") is True and status.get("observedGeneration") == 2 else None

    wait_for(evicting, 120, message="held: eviction enabled after the hold")
