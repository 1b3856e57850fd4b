"""Crash safety: the operator SIGKILLed while a create is in flight adopts instead of duplicating on restart.

Its own module, because it runs its own operator (two operators on one cluster would both act)."""

from __future__ import annotations

from pathlib import Path

from tests.harness.cluster import Cluster, apply, get_json, wait_for
from tests.harness.local_provider import LocalProvider, redis_from_url
from tests.harness.operator import database, secret_data, start_operator, wait_ready


def test_operator_killed_mid_create_leaves_exactly_one_database(
    cluster: Cluster, providers: None, local_provider: LocalProvider, namespace: str, tmp_path: Path
) -> None:
    running = start_operator(cluster, tmp_path, webhook=False)
    try:
        local_provider.admin.faults(latency_ms=1500)  # keep the create call in flight long enough to kill it
        apply(database("cache"), namespace)
        name = f"{namespace}-cache"
        wait_for(
            lambda: any(d["name"] == name for d in local_provider.admin.databases()),
            60,
            0.02,
            message="provider database created",
        )
        running.kill()
        local_provider.admin.clear_faults()
        running.restart()
        wait_ready("cache", namespace, timeout=90)
        matching = [d for d in local_provider.admin.databases() if d["name"] == name]
        assert len(matching) == 1, matching
        obj = get_json("redisdatabase", "cache", namespace)
        assert obj is not None and obj["status"]["databaseId"] == matching[0]["id"]
        assert redis_from_url(secret_data("cache-redis", namespace)["REDIS_URL"]).ping()
    finally:
        local_provider.admin.clear_faults()
        running.runner.stop_all()
