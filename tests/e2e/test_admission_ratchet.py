"""Objects that slipped past admission while the webhook was down (failurePolicy Ignore) are reported at once.

Before the ratchet, the operator's own first write (its finalizer) was an UPDATE the webhook refused for the spec
the object already had, so such an object showed no status until the next resync. This operator resyncs every
300 s, so a Synced=False within a minute can only come from the first reconcile, and no provider call is made.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from redisdb_operator.models import ANNOTATION_FORCE_ORPHAN
from tests.harness.cluster import Cluster, KubectlError, apply, get_json, kubectl, wait_for
from tests.harness.local_provider import LocalProvider
from tests.harness.operator import OperatorProcess, condition, database, start_operator, webhook_down

CREATE_CALLS = ("fly:createAddOn", "upstash:create")
SLIPPED_PAST: dict[str, dict[str, Any]] = {
    # a Fly provider and an Upstash region: CEL accepts the format, only the webhook knows the region
    "wrong-region": {"primaryRegion": "us-east-1"},
    # a provider that does not exist
    "no-provider": {"primaryRegion": "cdg", "providerRef": {"name": "no-such-provider"}},
}
EXPECTED_REASON = {"wrong-region": "InvalidSpec", "no-provider": "ProviderNotFound"}


@pytest.fixture(scope="module")
def slow_resync_operator(
    cluster: Cluster, providers: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    running = start_operator(cluster, tmp_path_factory.mktemp("ratchet-operator"), resync_interval=300)
    try:
        yield running
    finally:
        running.runner.stop_all()


def creates(local_provider: LocalProvider) -> int:
    counters = local_provider.admin.counters()
    return sum(counters.get(call, 0) for call in CREATE_CALLS)


def synced_false(name: str, namespace: str) -> dict[str, Any] | None:
    synced = condition(get_json("redisdatabase", name, namespace), "Synced")
    return synced if synced is not None and synced.get("status") == "False" else None


def test_objects_that_slipped_past_admission_show_the_reason_at_once(
    slow_resync_operator: OperatorProcess, local_provider: LocalProvider, cluster: Cluster
) -> None:
    namespace = f"ratchet-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", namespace)
    try:
        with pytest.raises(KubectlError):  # the webhook is up: refused
            apply(database("wrong-region", **SLIPPED_PAST["wrong-region"]), namespace)
        creates_before = creates(local_provider)
        with webhook_down():
            for name, spec in SLIPPED_PAST.items():
                apply(database(name, **spec), namespace)
        for name in SLIPPED_PAST:
            synced = wait_for(lambda n=name: synced_false(n, namespace), 60, message=f"{name} Synced=False")
            assert synced["reason"] == EXPECTED_REASON[name], synced
        assert "us-east-1" in (synced_false("wrong-region", namespace) or {}).get("message", "")
        for name in SLIPPED_PAST:  # the operator's own metadata write (its finalizer) went through
            obj = get_json("redisdatabase", name, namespace)
            assert obj is not None and obj["metadata"].get("finalizers"), obj
        assert creates(local_provider) == creates_before, "a provider call was made for an invalid spec"

        # With the webhook up: metadata-only and problem-keeping updates pass, a new problem does not.
        kubectl("annotate", "rdb", "wrong-region", "-n", namespace, "team=shop")
        kubectl("patch", "rdb", "wrong-region", "-n", namespace, "--type=merge", "-p", '{"spec":{"eviction":true}}')
        with pytest.raises(KubectlError) as refusal:
            kubectl("patch", "rdb", "wrong-region", "-n", namespace, "--type=merge", "-p", '{"spec":{"plan":"nope"}}')
        assert "spec.plan nope" in refusal.value.stderr
        with pytest.raises(KubectlError) as immutable:
            kubectl(
                "patch",
                "rdb",
                "wrong-region",
                "-n",
                namespace,
                "--type=merge",
                "-p",
                '{"spec":{"primaryRegion":"ams"}}',
            )
        assert "immutable" in immutable.value.stderr
    finally:
        # A RedisDatabase whose provider never existed cannot be checked at a provider: its deletion waits for
        # the force-orphan annotation (as the condition says), so the test gives it before deleting the namespace.
        cluster.kubectl("annotate", "rdb", "--all", "-n", namespace, f"{ANNOTATION_FORCE_ORPHAN}=true", check=False)
        cluster.kubectl("delete", "rdb", "--all", "-n", namespace, "--timeout=60s", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
