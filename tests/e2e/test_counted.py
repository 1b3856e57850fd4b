"""Counted, not timed: what one create costs in provider calls and apiserver writes, and what the steady state
costs with 50 Ready databases on one provider (one list per resync interval, no per-database get), for each API.

Its own operators, on RedisProviders of their own (the Fly organization `acme`, a second Upstash account), so the
provider's call log attributes every call to this module: no other module's objects are counted.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from redisdb_dev.devrun import fly_provider_manifests, upstash_provider_manifests
from tests.harness.cluster import Cluster, apply, kubectl, tool, wait_for
from tests.harness.local_provider import (
    FLY_TOKEN,
    OTHER_FLY_ORG,
    OTHER_UPSTASH_API_KEY,
    OTHER_UPSTASH_EMAIL,
    LocalProvider,
)
from tests.harness.operator import OperatorProcess, condition, start_operator, wait_ready


@dataclass(frozen=True)
class Api:
    provider: str  # this module's RedisProvider
    account: str  # how the provider's call log names its calls: the Fly org slug or the Upstash account's email
    region: str
    list_operation: str  # the call that lists every database of the account
    create_operation: str


FLY = Api("counted-fly", OTHER_FLY_ORG, "cdg", "organization", "createAddOn")
UPSTASH = Api("counted-upstash", OTHER_UPSTASH_EMAIL, "us-east-1", "list", "create")
APIS = [pytest.param(FLY, id="fly"), pytest.param(UPSTASH, id="upstash")]


@pytest.fixture(scope="module")
def counted_providers(cluster: Cluster, providers: None, local_provider: LocalProvider) -> Iterator[None]:
    apply(
        [
            *fly_provider_manifests(FLY.provider, local_provider.url, organization=OTHER_FLY_ORG, token=FLY_TOKEN),
            *upstash_provider_manifests(
                UPSTASH.provider, local_provider.upstash_url, email=OTHER_UPSTASH_EMAIL, api_key=OTHER_UPSTASH_API_KEY
            ),
        ]
    )
    yield
    for api in (FLY, UPSTASH):
        kubectl("delete", "redisprovider", api.provider, "--ignore-not-found", "--wait=false", check=False)


def database(name: str, api: Api) -> dict[str, Any]:
    return {
        "apiVersion": "redisdb.dev/v1alpha1",
        "kind": "RedisDatabase",
        "metadata": {"name": name},
        "spec": {"providerRef": {"name": api.provider}, "primaryRegion": api.region},
    }


@dataclass
class WatchedWrites:
    """Every change the apiserver made to one kind in one namespace, seen through a watch (each write that changed
    the object is one event with a new resourceVersion; a no-op patch is none)."""

    kind: str
    namespace: str
    kubeconfig: Path
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, name, resourceVersion)
    process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        template = '{.type} {.object.metadata.name} {.object.metadata.resourceVersion}{"\\n"}'
        self.process = subprocess.Popen(
            [
                tool("kubectl"),
                f"--kubeconfig={self.kubeconfig}",
                "get",
                self.kind,
                "-n",
                self.namespace,
                "--watch",
                "--output-watch-events",
                "-o",
                f"jsonpath={template}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            parts = line.split()
            if len(parts) == 3:
                self.events.append((parts[0], parts[1], parts[2]))

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)

    def writes(self, name: str) -> list[str]:
        return [event for event, object_name, _ in self.events if object_name == name]


def settled(name: str, namespace: str) -> bool:
    """Ready, and kopf's bookkeeping finished (no progress annotations left): nothing more will be written."""
    obj = json.loads(kubectl("get", "redisdatabase", name, "-n", namespace, "-o", "json").stdout)
    ready = condition(obj, "Ready")
    annotations = obj["metadata"].get("annotations") or {}
    in_progress = [key for key in annotations if key.startswith("kopf.redisdb.dev/") and "last-handled" not in key]
    return bool(ready and ready["status"] == "True" and not in_progress)


@pytest.mark.parametrize("api", APIS)
def test_one_create_costs_a_fixed_number_of_calls_and_writes(
    cluster: Cluster,
    counted_providers: None,
    local_provider: LocalProvider,
    namespace: str,
    tmp_path: Path,
    api: Api,
) -> None:
    running = start_operator(cluster, tmp_path, webhook=False, resync_interval=300.0)
    watches = [WatchedWrites(kind, namespace, cluster.kubeconfig) for kind in ("redisdatabases", "secrets")]
    try:
        # A first database warms the provider client (organization id, plan ids): those calls are per process.
        apply(database("warm", api), namespace)
        wait_ready("warm", namespace)
        wait_for(lambda: settled("warm", namespace), 60, message="warm-up settled")
        for watch in watches:
            watch.start()
        wait_for(lambda: all(watch.events for watch in watches), 30, message="the watches listing")
        local_provider.admin.clear_calls()

        apply(database("cache", api), namespace)
        wait_ready("cache", namespace)
        wait_for(lambda: settled("cache", namespace), 60, message="kopf's bookkeeping finished")
        rd_writes, secret_writes = watches[0].writes("cache"), watches[1].writes("cache-redis")
        calls = local_provider.admin.calls(account=api.account) + [
            call for call in local_provider.admin.calls(name=f"{namespace}-cache") if call["account"] != api.account
        ]
        operations = sorted(call["operation"] for call in calls)
    finally:
        for watch in watches:
            watch.stop()
        kubectl("delete", "redisdatabases", "--all", "-n", namespace, "--timeout=120s", check=False)
        running.runner.stop_all()
    report = {"provider calls": operations, "RedisDatabase events": rd_writes, "Secret events": secret_writes}
    print(json.dumps(report))
    expected_calls = {FLY.provider: [FLY.create_operation], UPSTASH.provider: [UPSTASH.list_operation, "create"]}
    assert operations == sorted(expected_calls[api.provider]), report
    # the user's create, then the operator's writes: the finalizer, and the status (with the id) together with
    # kopf's record of what it handled (status.kopf: one write, not an annotation write of its own)
    assert rd_writes[0] == "ADDED" and len(rd_writes) - 1 == OPERATOR_RD_WRITES, report
    assert secret_writes == ["ADDED"], report


OPERATOR_RD_WRITES = 2


@pytest.mark.parametrize("api", APIS)
def test_fifty_ready_databases_cost_one_list_per_resync_interval_and_no_gets(
    cluster: Cluster,
    counted_providers: None,
    local_provider: LocalProvider,
    namespace: str,
    tmp_path: Path,
    api: Api,
) -> None:
    resync = 6.0
    # Usage reads (status.usage) are per database by design (one stats read each, spread over --usage-interval,
    # capped per provider; tests/e2e/test_usage.py counts them): off here, this counts what reconciling costs.
    running: OperatorProcess = start_operator(
        cluster, tmp_path, webhook=False, resync_interval=resync, extra_args=["--usage-interval", "0"]
    )
    names = [f"db{index:02d}" for index in range(50)]
    try:
        kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all([database(n, api) for n in names]))

        def all_ready() -> bool:
            listed = json.loads(kubectl("get", "redisdatabases", "-n", namespace, "-o", "json").stdout)["items"]
            return len(listed) == 50 and all(
                (condition(item, "Ready") or {}).get("status") == "True" for item in listed
            )

        wait_for(all_ready, 600, 1.0, message="50 databases Ready")
        local_provider.admin.clear_calls()

        def lists() -> list[dict[str, Any]] | None:
            made = [c for c in local_provider.admin.calls(account=api.account) if c["operation"] == api.list_operation]
            return made if len(made) >= 4 else None

        listed = wait_for(lists, 10 * resync, 0.5, message="four resync intervals")
        window = [call for call in local_provider.admin.calls() if call["seq"] <= listed[3]["seq"]]
    finally:
        kubectl("delete", "redisdatabases", "--all", "-n", namespace, "--timeout=300s", check=False)
        running.runner.stop_all()
    ours = [
        call for call in window if call["account"] == api.account or str(call["name"] or "").startswith(f"{namespace}-")
    ]
    per_database = [call for call in ours if call["name"]]
    assert per_database == [], per_database[:5]
    assert {call["operation"] for call in ours} == {api.list_operation}, ours
    starts = [call["at"] for call in listed[:4]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    # one list serves every database for 0.9 of an interval: never two within that (a lower bound on time)
    assert all(gap >= 0.8 * resync for gap in gaps), gaps
