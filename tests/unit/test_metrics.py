"""The hand-written Prometheus text exposition: parsed back by a small parser that follows the 0.0.4 format."""

from __future__ import annotations

import math
from typing import Any

import httpx
import kopf
import pytest

from redisdb_operator import metrics
from redisdb_operator.listeners import bound_port
from redisdb_operator.metrics import Counter, DatabaseReadiness, Gauge, Histogram, Registry
from redisdb_operator.providers.base import UnavailableError
from redisdb_operator.providers.http import HttpTransport, RetryPolicy
from tests.harness.prometheus import Sample, parse


def value_of(samples: list[Sample], name: str, **labels: str) -> float:
    wanted = frozenset(labels.items())
    found = [value for sample_name, sample_labels, value in samples if sample_name == name and sample_labels == wanted]
    assert len(found) == 1, f"{name}{labels}: {len(found)} samples"
    return found[0]


def test_counter_label_sets_and_help_type() -> None:
    registry = Registry()
    counter = registry.register(Counter("demo_total", "Demo things.", ("kind", "result")))
    counter.inc(kind="a", result="ok")
    counter.inc(2, kind="a", result="ok")
    counter.inc(kind="b", result="failed")
    families, samples = parse(registry.render())
    assert families == {"demo_total": ("counter", "Demo things.")}
    assert value_of(samples, "demo_total", kind="a", result="ok") == 3
    assert value_of(samples, "demo_total", kind="b", result="failed") == 1
    assert len(samples) == 2


def test_unlabelled_counter_is_exported_at_zero() -> None:
    registry = Registry()
    registry.register(Counter("nothing_yet_total", "Starts at zero."))
    assert registry.render() == (
        "# HELP nothing_yet_total Starts at zero.\n# TYPE nothing_yet_total counter\nnothing_yet_total 0\n"
    )


def test_label_values_and_help_are_escaped() -> None:
    registry = Registry()
    counter = registry.register(Counter("escaped_total", 'Help with \\ backslash\nand "quotes".', ("value",)))
    tricky = 'a "quoted" \\ back\nslash'
    counter.inc(value=tricky)
    text = registry.render()
    assert '# HELP escaped_total Help with \\\\ backslash\\nand "quotes".\n' in text
    assert 'escaped_total{value="a \\"quoted\\" \\\\ back\\nslash"} 1\n' in text
    families, samples = parse(text)
    assert families["escaped_total"][1] == 'Help with \\ backslash\nand "quotes".'
    assert value_of(samples, "escaped_total", value=tricky) == 1


def test_wrong_labels_and_negative_counts_are_refused() -> None:
    counter = Counter("strict_total", "Strict.", ("a",))
    with pytest.raises(ValueError, match="expected"):
        counter.inc(b="x")
    with pytest.raises(ValueError, match="expected"):
        counter.inc()
    with pytest.raises(ValueError, match="only goes up"):
        counter.inc(-1, a="x")
    with pytest.raises(ValueError, match="reserved"):
        Histogram("bad_seconds", "Bad.", ("le",))
    registry = Registry()
    registry.register(Counter("twice_total", "Once."))
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Counter("twice_total", "Twice."))


def test_histogram_buckets_sum_and_count() -> None:
    registry = Registry()
    histogram = registry.register(Histogram("op_seconds", "Op time.", ("op",), buckets=(0.1, 1.0, 0.5)))
    for value in (0.05, 0.1, 0.3, 0.7, 2.0):
        histogram.observe(value, op="get")
    histogram.observe(0.2, op="put")
    families, samples = parse(registry.render())
    assert families == {"op_seconds": ("histogram", "Op time.")}
    buckets = {
        dict(labels)["le"]: value
        for name, labels, value in samples
        if name == "op_seconds_bucket" and ("op", "get") in labels
    }
    # cumulative, sorted bounds, an upper bound equal to the value counts it (le), and +Inf holds everything
    assert buckets == {"0.1": 2, "0.5": 3, "1": 4, "+Inf": 5}
    assert value_of(samples, "op_seconds_sum", op="get") == pytest.approx(3.15)
    assert value_of(samples, "op_seconds_count", op="get") == 5
    assert value_of(samples, "op_seconds_bucket", op="put", le="0.1") == 0
    assert value_of(samples, "op_seconds_bucket", op="put", le="0.5") == 1
    assert value_of(samples, "op_seconds_count", op="put") == 1
    assert histogram.count(op="get") == 5
    text = registry.render()
    assert text.index('le="0.1"') < text.index('le="0.5"') < text.index('le="1"') < text.index('le="+Inf"')


def test_gauge_and_database_readiness_move_each_database_once() -> None:
    gauge = Gauge("dbs", "Databases.", ("provider", "ready"))
    readiness = DatabaseReadiness(gauge)
    readiness.set("uid-1", provider="p", ready=False)
    readiness.set("uid-1", provider="p", ready=True)
    readiness.set("uid-1", provider="p", ready=True)
    readiness.set("uid-2", provider="p", ready=True)
    assert gauge.value(provider="p", ready="true") == 2
    assert gauge.value(provider="p", ready="false") == 0
    readiness.forget("uid-1")
    readiness.forget("uid-1")
    readiness.forget("never-seen")
    assert gauge.value(provider="p", ready="true") == 1
    readiness.forget("uid-2")
    _, samples = parse(Registry().register(gauge).render())
    # emptied series stay, at 0, so "databases not ready" alerts see 0 rather than no data
    assert value_of(samples, "dbs", provider="p", ready="true") == 0
    gauge.set(7, provider="q", ready="false")
    assert gauge.value(provider="q", ready="false") == 7


def test_values_are_formatted_as_prometheus_reads_them() -> None:
    assert metrics.format_value(3.0) == "3"
    assert metrics.format_value(0.25) == "0.25"
    assert metrics.format_value(math.inf) == "+Inf"
    assert metrics.format_value(-math.inf) == "-Inf"
    assert metrics.format_value(math.nan) == "NaN"


def test_the_operator_registry_has_every_documented_family() -> None:
    families, _ = parse(metrics.REGISTRY.render())
    assert {name: kind for name, (kind, _) in families.items()} == {
        "redisdb_reconcile_total": "counter",
        "redisdb_reconcile_duration_seconds": "histogram",
        "redisdb_provider_requests_total": "counter",
        "redisdb_provider_request_duration_seconds": "histogram",
        "redisdb_provider_actions_total": "counter",
        "redisdb_databases": "gauge",
        "redisdb_drift_repairs_total": "counter",
        "redisdb_usage_reads_total": "counter",
        "redisdb_usage_requests": "gauge",
        "redisdb_usage_data_size_bytes": "gauge",
        "redisdb_usage_bandwidth_bytes": "gauge",
        "redisdb_estimated_monthly_cost_usd": "gauge",
        "redisdb_secret_writes_total": "counter",
        "redisdb_resync_sweeps_total": "counter",
        "redisdb_resync_woken_total": "counter",
        "redisdb_leader": "gauge",
    }


@pytest.mark.parametrize(
    ("listen", "expected"),
    [("0.0.0.0:9090", ("0.0.0.0", 9090)), (":9090", (None, 9090)), ("[::1]:9090", ("::1", 9090))],
)
def test_split_listen(listen: str, expected: tuple[str | None, int]) -> None:
    assert metrics.split_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9090", "host:", "host:http"])
def test_split_listen_refuses_garbage(listen: str) -> None:
    with pytest.raises(ValueError, match="ADDR:PORT"):
        metrics.split_listen(listen)


async def test_transport_counts_each_attempt_by_operation_and_outcome() -> None:
    statuses = [503, 503, 200, 503, 200]  # get: two 503s then ok; create: one 503, never retried; list: ok

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(statuses.pop(0), json={"id": "abc123"})

    async def no_sleep(_: float) -> None:
        return None

    transport = HttpTransport(
        "http://provider.test",
        provider="unit-test",
        transport=httpx.MockTransport(handler),
        sleep=no_sleep,
        retry=RetryPolicy(max_attempts=3),
    )
    try:
        await transport.request("GET", "/db/abc123", operation="get database abc123", idempotent=True)
        with pytest.raises(UnavailableError, match="HTTP 503"):
            await transport.request("POST", "/db", operation="create database 'x'", idempotent=False)
        await transport.request(
            "GET", "/dbs", operation="list databases abc123", idempotent=True, metric_operation="list"
        )
    finally:
        await transport.aclose()
    requests = metrics.PROVIDER_REQUESTS
    # without metric_operation the verb of `operation` stands in: never the id it carries
    assert requests.value(provider_type="unit-test", operation="get", outcome="UnavailableError") == 2
    assert requests.value(provider_type="unit-test", operation="get", outcome="ok") == 1
    assert requests.value(provider_type="unit-test", operation="create", outcome="UnavailableError") == 1
    assert requests.value(provider_type="unit-test", operation="list", outcome="ok") == 1
    assert metrics.PROVIDER_REQUEST_DURATION.count(provider_type="unit-test", operation="get") == 3
    assert not statuses
    assert "abc123" not in metrics.REGISTRY.render()


async def test_server_serves_the_registry() -> None:
    registry = Registry()
    registry.register(Counter("served_total", "Served.")).inc()
    runner = await metrics.start_server("127.0.0.1:0", registry)  # the OS picks the port; read it back
    port = bound_port(runner)
    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/metrics")
            missing = await client.get(f"http://127.0.0.1:{port}/other")
    finally:
        await runner.cleanup()
    assert response.status_code == 200
    assert response.headers["content-type"] == metrics.CONTENT_TYPE
    assert response.text == registry.render()
    assert missing.status_code == 404


def test_controller_counts_a_reported_conflict_as_permanent_and_places_the_database() -> None:
    from redisdb_operator.controller import DatabaseController, resource_of

    raw: dict[str, Any] = {
        "metadata": {"name": "cache", "namespace": "shop", "uid": "uid-unit-metrics", "generation": 1},
        "spec": {"providerRef": {"name": "unit-provider"}, "primaryRegion": "mad"},
    }
    written = [
        {"type": "Synced", "status": "False", "reason": "PrimaryRegionMismatch"},
        {"type": "Ready", "status": "False", "reason": "PrimaryRegionMismatch"},
    ]
    before = metrics.RECONCILES.value(trigger="change", result="permanent_error")
    DatabaseController._record_reconcile(resource_of(kopf.Body(raw)), written, "change", "success", 0.0)
    assert metrics.RECONCILES.value(trigger="change", result="permanent_error") == before + 1
    assert metrics.DATABASES.value(provider="unit-provider", ready="false") == 1
    # a later success with no status change keeps the Ready condition the object already shows
    raw["status"] = {"conditions": [{"type": "Synced", "status": "True"}, {"type": "Ready", "status": "True"}]}
    DatabaseController._record_reconcile(resource_of(kopf.Body(raw)), None, "resync", "success", 0.0)
    assert metrics.DATABASES.value(provider="unit-provider", ready="false") == 0
    assert metrics.DATABASES.value(provider="unit-provider", ready="true") == 1
    metrics.DATABASE_READINESS.forget("uid-unit-metrics")
    assert metrics.DATABASES.value(provider="unit-provider", ready="true") == 0
