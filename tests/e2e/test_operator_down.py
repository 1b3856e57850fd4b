"""The operator absent or doubled: the webhook with failurePolicy Fail while the operator is down, and two operator
processes at once without leader election (what happens today; later issues add election).

Its own module: it runs its own operators, stops them, and needs stretches with none serving the webhook.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from redisdb_dev.devrun import WEBHOOK_CONFIGURATION
from tests.harness.cluster import Cluster, KubectlError, apply, get_json, kubectl, wait_for
from tests.harness.local_provider import LocalProvider
from tests.harness.operator import FLY_PROVIDER, UPSTASH_PROVIDER, events_for, start_operator, wait_gone, wait_ready


def database(name: str, provider: str = FLY_PROVIDER) -> dict[str, Any]:
    region = "cdg" if provider == FLY_PROVIDER else "us-east-1"
    return {
        "apiVersion": "redisdb.dev/v1alpha1",
        "kind": "RedisDatabase",
        "metadata": {"name": name},
        "spec": {"providerRef": {"name": provider}, "primaryRegion": region},
    }


def set_failure_policy(policy: str) -> None:
    configuration = get_json("validatingwebhookconfiguration", WEBHOOK_CONFIGURATION)
    if configuration is None or not configuration.get("webhooks"):
        return
    patch = [
        {"op": "replace", "path": f"/webhooks/{index}/failurePolicy", "value": policy}
        for index in range(len(configuration.get("webhooks") or []))
    ]
    kubectl("patch", "validatingwebhookconfiguration", WEBHOOK_CONFIGURATION, "--type=json", "-p", json.dumps(patch))


def test_failure_policy_fail_with_the_operator_down_refuses_clearly(
    cluster: Cluster, providers: None, local_provider: LocalProvider, namespace: str, tmp_path: Path
) -> None:
    running = start_operator(cluster, tmp_path, extra_args=["--webhook-failure-policy", "Fail"])
    try:
        policies = {
            w["failurePolicy"] for w in get_json("validatingwebhookconfiguration", WEBHOOK_CONFIGURATION)["webhooks"]
        }  # type: ignore[index]
        assert policies == {"Fail"}
        # Down as a crash or a lost pod leaves it: SIGKILL (a clean stop makes kopf remove its managed webhooks,
        # which the chart's own configuration would not do).
        running.kill()
        with pytest.raises(KubectlError) as refused:
            apply(database("cache"), namespace)
        message = str(refused.value)
        assert "failed calling webhook" in message and "validate-redisdatabase" in message, message
        assert get_json("redisdatabase", "cache", namespace) is None, "nothing half-applied"
        assert not [d for d in local_provider.admin.databases() if d["name"] == f"{namespace}-cache"]
    finally:
        running.runner.stop_all()
        set_failure_policy("Ignore")  # a stopped operator's Fail would refuse every later test's objects


@pytest.mark.parametrize("provider", [FLY_PROVIDER, UPSTASH_PROVIDER])
def test_two_operators_without_election(
    cluster: Cluster,
    providers: None,
    local_provider: LocalProvider,
    namespace: str,
    tmp_path: Path,
    provider: str,
) -> None:
    """What happens today with two standalone operators on one cluster (no peering, no election): both reconcile
    every object. Measured here and asserted as today's behaviour: one provider database per resource (the local
    provider refuses a second database of one name, Fly by its rules, Upstash by the local provider's), both
    processes stay up, and deletion leaves nothing behind. The numbers (creates sent, conflicts) are printed."""
    first = start_operator(cluster, tmp_path / "first", webhook=False)
    second = start_operator(cluster, tmp_path / "second", webhook=False)
    names = [f"db{index}" for index in range(5)]
    try:
        local_provider.admin.clear_calls()
        apply([database(name, provider) for name in names], namespace)
        for name in names:
            wait_ready(name, namespace, timeout=120)
        for name in names:
            matching = [d for d in local_provider.admin.databases() if d["name"] == f"{namespace}-{name}"]
            assert len(matching) == 1, matching
            obj = get_json("redisdatabase", name, namespace)
            assert obj is not None and obj["status"]["databaseId"] == matching[0]["id"]
        creates = Counter(
            call["name"] for call in local_provider.admin.calls() if call["operation"] in ("create", "createAddOn")
        )
        reasons = Counter(event["reason"] for name in names for event in events_for(name, namespace))
        conflicts = sum(log.count("409") for log in (first.log(), second.log()))
        print(
            f"\ntwo operators, {provider}: create calls per name {dict(creates)}; events {dict(reasons)}; "
            f"409s in the logs {conflicts}"
        )
        assert first.process.alive and second.process.alive
        kubectl("delete", "redisdatabases", "--all", "-n", namespace, "--timeout=120s")
        for name in names:
            wait_gone("redisdatabase", name, namespace)
        wait_for(
            lambda: not [d for d in local_provider.admin.databases() if d["name"].startswith(f"{namespace}-")],
            60,
            message="every provider database deleted",
        )
    finally:
        first.runner.stop_all()
        second.runner.stop_all()
