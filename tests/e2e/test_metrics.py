"""Prometheus metrics end to end: an operator started with --metrics-listen, scraped while databases come and go.

The module runs its own operator (overriding the harness's `operator` fixture) so that it can pass the flag.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from redisdb_dev.devrun import fly_provider_manifests
from redisdb_operator.metrics import CONTENT_TYPE
from tests.harness.cluster import Cluster, apply, get_json, kubectl, wait_for
from tests.harness.local_provider import FLY_ORG, FLY_TOKEN, LocalProvider
from tests.harness.operator import (
    OperatorProcess,
    condition,
    start_operator,
    wait_gone,
    wait_ready,
)
from tests.harness.prometheus import Sample, parse

# This module's own RedisProvider: the per-provider gauges then count only what this module made, whatever other
# modules' namespaces are still finalizing.
METRICS_PROVIDER = "metrics-fly"


@pytest.fixture(scope="module")
def metrics_provider(cluster: Cluster, providers: None, local_provider: LocalProvider) -> Iterator[str]:
    manifests = fly_provider_manifests(METRICS_PROVIDER, local_provider.url, organization=FLY_ORG, token=FLY_TOKEN)
    apply(manifests)
    try:
        yield METRICS_PROVIDER
    finally:
        kubectl("delete", "redisprovider", METRICS_PROVIDER, "--ignore-not-found", "--wait=false", check=False)


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, providers: None, metrics_provider: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    running = start_operator(
        cluster, tmp_path_factory.mktemp("operator"), extra_args=["--metrics-listen", "127.0.0.1:0"]
    )
    try:
        yield running
    finally:
        running.runner.stop_all()


@pytest.fixture
def metrics_url(operator: OperatorProcess) -> str:
    """The port the operator bound (port 0: the OS's choice), read back from its ports file."""
    return operator.metrics_url


def scrape(url: str) -> tuple[str, list[Sample]]:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    families, samples = parse(response.text)
    assert {"redisdb_reconcile_total", "redisdb_databases", "redisdb_provider_requests_total"} <= set(families)
    return response.text, samples


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of every sample of `name` whose labels include `labels` (a PromQL `sum` over the rest)."""
    wanted = set(labels.items())
    return sum(
        value for sample_name, sample_labels, value in samples if sample_name == name and wanted <= sample_labels
    )


def database(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "redisdb.dev/v1alpha1",
        "kind": "RedisDatabase",
        "metadata": {"name": name},
        "spec": {"providerRef": {"name": METRICS_PROVIDER}, "primaryRegion": "cdg"},
    }


def ready_gauge(url: str, ready: str) -> float:
    return total(scrape(url)[1], "redisdb_databases", provider=METRICS_PROVIDER, ready=ready)


def test_metrics_follow_a_database_through_create_delete_and_provider_errors(
    operator: OperatorProcess, metrics_url: str, local_provider: LocalProvider, namespace: str
) -> None:
    # The gauges are per provider, and this module's provider has only what this test makes: exact numbers.
    ready_before, not_ready_before = ready_gauge(metrics_url, "true"), ready_gauge(metrics_url, "false")
    assert (ready_before, not_ready_before) == (0, 0)
    ok = dict(provider_type="fly", operation="graphql:createAddOn", outcome="ok")
    counters = ("redisdb_reconcile_duration_seconds_count", "redisdb_secret_writes_total")
    before = scrape(metrics_url)[1]
    apply(database("cache"), namespace)
    database_id = wait_ready("cache", namespace)["status"]["databaseId"]

    text, samples = scrape(metrics_url)

    def grew(name: str, **labels: str) -> float:
        """How much a counter grew since `before`: what this test caused (other namespaces may add to it)."""
        return total(samples, name, **labels) - total(before, name, **labels)

    assert "# TYPE redisdb_reconcile_duration_seconds histogram" in text
    assert grew("redisdb_provider_actions_total", action="create") >= 1
    assert grew("redisdb_reconcile_total", trigger="change", result="success") >= 1
    assert all(grew(name) >= 1 for name in counters), {name: grew(name) for name in counters}
    assert total(samples, "redisdb_databases", provider=METRICS_PROVIDER, ready="true") == 1
    assert grew("redisdb_provider_requests_total", **ok) >= 1
    assert grew("redisdb_provider_request_duration_seconds_count", provider_type="fly") >= 1
    # no per-database labels: neither the provider id nor the provider-side name appears anywhere
    assert database_id not in text and f"{namespace}-cache" not in text

    kubectl("delete", "redisdatabase", "cache", "-n", namespace, "--timeout=60s")
    wait_gone("redisdatabase", "cache", namespace)
    wait_for(lambda: ready_gauge(metrics_url, "true") == ready_before, 30, message="redisdb_databases back to 0")
    before, samples = samples, scrape(metrics_url)[1]
    assert grew("redisdb_provider_actions_total", action="delete") >= 1
    assert grew("redisdb_reconcile_total", trigger="delete", result="success") >= 1

    unavailable = dict(provider_type="fly", outcome="UnavailableError")
    before = samples
    local_provider.admin.faults(fail_next=1000, fail_status=503)
    try:
        apply(database("second"), namespace)

        def refused() -> bool:
            synced = condition(get_json("redisdatabase", "second", namespace), "Synced")
            return synced is not None and synced["reason"] == "ProviderUnavailable"

        wait_for(refused, 60, message="Synced=False ProviderUnavailable while the provider answers 503")
        samples = scrape(metrics_url)[1]
        assert grew("redisdb_provider_requests_total", **unavailable) > 0
        assert grew("redisdb_reconcile_total", trigger="change", result="temporary_error") >= 1
        assert total(samples, "redisdb_databases", provider=METRICS_PROVIDER, ready="false") == 1
    finally:
        local_provider.admin.clear_faults()
    wait_ready("second", namespace)
    wait_for(lambda: ready_gauge(metrics_url, "true") == ready_before + 1, 30, message="the second one Ready")
    assert ready_gauge(metrics_url, "false") == not_ready_before

    kubectl("delete", "redisdatabase", "second", "-n", namespace, "--timeout=60s")
    wait_gone("redisdatabase", "second", namespace)
    wait_for(lambda: ready_gauge(metrics_url, "true") == ready_before, 30, message="redisdb_databases back to 0")
