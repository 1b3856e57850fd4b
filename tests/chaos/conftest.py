"""Chaos fixtures: a dedicated local provider, its two RedisProviders, one operator, and the closing report.

`REDISDB_CHAOS=long` (what `make chaos` sets) selects the long soak; the default is the short version that
runs inside `make test`. Every scenario records its counts in `REPORT`, printed at the end of the run (and
written as JSON to $REDISDB_CHAOS_REPORT when set).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from redisdb_dev.devrun import fly_provider_manifests, upstash_provider_manifests
from redisdb_operator.providers.base import ProviderType
from tests.harness.cluster import Cluster, apply, get_json
from tests.harness.local_provider import (
    FLY_ORG,
    FLY_TOKEN,
    UPSTASH_API_KEY,
    UPSTASH_EMAIL,
    LocalProvider,
    running_local_provider,
)
from tests.harness.operator import SYSTEM_NAMESPACE, OperatorProcess, start_operator

LONG = os.environ.get("REDISDB_CHAOS", "").lower() == "long"
CHAOS_FLY = "chaos-fly"
CHAOS_UPSTASH = "chaos-upstash"
CHAOS_PROVIDERS = {CHAOS_FLY: ProviderType.FLY, CHAOS_UPSTASH: ProviderType.UPSTASH}
RESYNC_INTERVAL = 5.0

REPORT: dict[str, dict[str, Any]] = {}


def record(fault: str, **counts: Any) -> None:
    REPORT.setdefault(fault, {}).update(counts)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT:
        return
    terminalreporter.section(f"chaos report ({'long' if LONG else 'short'} mode)")
    for fault, counts in REPORT.items():
        terminalreporter.write_line(f"{fault}:")
        for key, value in counts.items():
            terminalreporter.write_line(f"    {key}: {value}")
    if path := os.environ.get("REDISDB_CHAOS_REPORT"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({"mode": "long" if LONG else "short", "faults": REPORT}, indent=2))


@pytest.fixture(scope="package")
def chaos_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalProvider]:
    """A local provider of its own: its counters, restarts and inventory belong to the chaos suite alone."""
    with running_local_provider(tmp_path_factory.mktemp("chaos-provider")) as provider:
        yield provider


@pytest.fixture(scope="package")
def chaos_providers(cluster: Cluster, crds: None, chaos_provider: LocalProvider) -> Iterator[dict[str, ProviderType]]:
    if get_json("namespace", SYSTEM_NAMESPACE, kubeconfig=cluster.kubeconfig) is None:
        cluster.kubectl("create", "namespace", SYSTEM_NAMESPACE)
    apply(
        [
            *fly_provider_manifests(CHAOS_FLY, chaos_provider.url, organization=FLY_ORG, token=FLY_TOKEN),
            *upstash_provider_manifests(
                CHAOS_UPSTASH, chaos_provider.upstash_url, email=UPSTASH_EMAIL, api_key=UPSTASH_API_KEY
            ),
        ],
        kubeconfig=cluster.kubeconfig,
    )
    yield dict(CHAOS_PROVIDERS)
    # Leave the session's cluster as found: later suites list the known RedisProviders in their messages.
    cluster.kubectl("delete", "redisprovider", CHAOS_FLY, CHAOS_UPSTASH, "--ignore-not-found", "--wait=false")
    cluster.kubectl(
        "delete",
        "secret",
        "chaos-fly-credentials",
        "chaos-upstash-credentials",
        "-n",
        SYSTEM_NAMESPACE,
        "--ignore-not-found",
    )


@pytest.fixture(scope="package")
def chaos_operator(
    cluster: Cluster, chaos_providers: dict[str, ProviderType], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    running = start_operator(cluster, tmp_path_factory.mktemp("chaos-operator"), resync_interval=RESYNC_INTERVAL)
    try:
        yield running
    finally:
        running.runner.stop_all()


@pytest.fixture(scope="package")
def orphans() -> set[str]:
    """Provider-side names deliberately kept (deletionPolicy Orphan) across the chaos suite."""
    return set()
