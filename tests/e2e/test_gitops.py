"""GitOps against the real apiserver: once a database is Ready, re-applying the same manifest server-side changes
nothing and `kubectl diff` (server-side and client-side) is empty, because the operator writes only status, its
own annotations and the finalizer, never spec. The same run evaluates the Argo CD health.lua on the live objects
and, with REDISDB_ARGOCD_TESTDATA=<dir>, writes them as the health check's testdata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from redisdb_dev.devrun import SYSTEM_NAMESPACE, fly_provider_manifests
from tests.harness.argocd_health import CUSTOMIZATIONS, health_of
from tests.harness.cluster import apply, get_json, kubectl, to_yaml, wait_for
from tests.harness.local_provider import FLY_ORG, FLY_TOKEN, LocalProvider
from tests.harness.operator import (
    FLY_PROVIDER,
    OperatorProcess,
    condition,
    delete_at_provider,
    wait_gone,
    wait_ready,
)

FIELD_MANAGER = "argocd-controller"
PERMANENT = {"InvalidRequest", "InvalidSpec", "PrimaryRegionMismatch", "DatabaseIdMismatch", "NameTaken"}


def manifest(name: str, read_regions: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "redisdb.dev/v1alpha1",
        "kind": "RedisDatabase",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "shop"}},
        "spec": {"providerRef": {"name": FLY_PROVIDER}, "primaryRegion": "cdg", "readRegions": read_regions},
    }


def server_side_apply(obj: dict[str, Any], namespace: str) -> None:
    kubectl(
        "apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-n", namespace, "-f", "-", input=to_yaml(obj)
    )


def diff(obj: dict[str, Any], namespace: str, *flags: str) -> tuple[int, str]:
    result = kubectl("diff", *flags, "-n", namespace, "-f", "-", input=to_yaml(obj), check=False)
    return result.returncode, result.stdout + result.stderr


def shape(obj: dict[str, Any]) -> dict[str, Any]:
    """What a live object of this state always has, whatever the run: its metadata and status fields, its
    conditions (type, status, reason, in order) and the health Argo CD gives it."""
    status = obj.get("status") or {}
    return {
        "metadata": sorted(key for key in obj["metadata"] if key != "managedFields"),
        "status": sorted(status),
        "conditions": [(c["type"], c["status"], c["reason"]) for c in status.get("conditions") or []],
        "health": health_of(obj)["status"],
    }


def save_testdata(obj: dict[str, Any], name: str) -> None:
    """With REDISDB_ARGOCD_TESTDATA=<dir>, write the live object into <dir>/<kind>/<name>.yaml (for
    resource_customizations/redisdb.dev/<kind>/testdata); always check the committed testdata has the live
    object's shape, so a hand-written or stale file fails here."""
    directory = os.environ.get("REDISDB_ARGOCD_TESTDATA")
    clean = {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}
    if directory:
        Path(directory, obj["kind"]).mkdir(parents=True, exist_ok=True)
        Path(directory, obj["kind"], f"{name}.yaml").write_text(yaml.safe_dump(clean, sort_keys=False))
    committed = yaml.safe_load((CUSTOMIZATIONS / obj["kind"] / "testdata" / f"{name}.yaml").read_text())
    assert shape(committed) == shape(clean), f"{obj['kind']}/testdata/{name}.yaml is not what the apiserver returns"


def test_server_side_reapply_and_diff_are_clean(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str
) -> None:
    desired = manifest("orders", ["ams"])
    server_side_apply(desired, namespace)
    ready = wait_ready("orders", namespace)
    assert health_of(ready)["status"] == "Healthy"
    save_testdata(ready, "healthy")
    version = ready["metadata"]["resourceVersion"]

    server_side_apply(desired, namespace)
    again = get_json("redisdatabase", "orders", namespace)
    assert again is not None
    assert again["metadata"]["resourceVersion"] == version, "re-applying the same manifest changed the object"
    assert again["metadata"]["generation"] == ready["metadata"]["generation"] == 1
    for flags in (("--server-side", f"--field-manager={FIELD_MANAGER}"), ()):
        code, output = diff(desired, namespace, *flags)
        assert code == 0, f"kubectl diff {' '.join(flags)} shows drift:\n{output}"

    # Nobody but the GitOps applier owns anything in spec; the operator owns status and metadata only.
    managed = kubectl("get", "redisdatabase", "orders", "-n", namespace, "-o", "json", "--show-managed-fields")
    for entry in json.loads(managed.stdout)["metadata"]["managedFields"]:
        if entry["manager"] != FIELD_MANAGER:
            assert "f:spec" not in entry.get("fieldsV1", {}), entry
    assert again["spec"] == desired["spec"], "no defaulting drift: the stored spec is exactly the manifest"
    kubectl("delete", "redisdatabase", "orders", "-n", namespace, "--timeout=60s")
    wait_gone("redisdatabase", "orders", namespace)


def test_health_of_live_objects_through_a_lifecycle(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str
) -> None:
    admin = local_provider.admin
    try:
        # Creating while the provider answers 503: Synced=False (temporary), Progressing.
        admin.faults(fail_next=1000, fail_status=503)
        server_side_apply(manifest("billing", ["ams"]), namespace)

        def synced_false() -> dict[str, Any] | None:
            obj = get_json("redisdatabase", "billing", namespace)
            synced = condition(obj, "Synced")
            return obj if synced and synced["status"] == "False" else None

        retrying = wait_for(synced_false, 60, message="Synced=False while the provider is down")
        assert health_of(retrying)["status"] == "Progressing", health_of(retrying)
        save_testdata(retrying, "progressing-retrying")
        admin.clear_faults()
        ready = wait_ready("billing", namespace)
        assert health_of(ready)["status"] == "Healthy"

        # Updating: generation 2 is applied while the provider is slow, so Ready is about generation 1.
        admin.faults(latency_ms=4000)
        server_side_apply(manifest("billing", ["ams", "fra"]), namespace)
        updating = get_json("redisdatabase", "billing", namespace)
        assert updating is not None and updating["metadata"]["generation"] == 2
        assert health_of(updating)["status"] == "Progressing", health_of(updating)
        save_testdata(updating, "progressing-updating")
        admin.clear_faults()
        wait_ready("billing", namespace, generation=2)
    finally:
        admin.clear_faults()

    # A permanent error: the database is orphaned at the provider, then declared again in another region; the
    # operator finds a database of that name made before the new resource and does not take it over
    # (NameTaken: a human decides, with redisdb.dev/adopt=true or another spec.name) -> Degraded.
    orphaned = manifest("billing", ["ams", "fra"])
    orphaned["spec"]["deletionPolicy"] = "Orphan"
    server_side_apply(orphaned, namespace)
    kept_id = wait_ready("billing", namespace, generation=3)["status"]["databaseId"]
    kubectl("delete", "redisdatabase", "billing", "-n", namespace, "--timeout=60s")
    wait_gone("redisdatabase", "billing", namespace)
    assert kept_id in {item["id"] for item in admin.databases()}, "deletionPolicy Orphan kept it"
    admin.drift(kept_id, age_seconds=3600)  # as if made long before the next RedisDatabase of the name
    moved = manifest("billing", [])
    moved["spec"]["primaryRegion"] = "ams"
    del moved["spec"]["readRegions"]
    server_side_apply(moved, namespace)

    def refused() -> dict[str, Any] | None:
        obj = get_json("redisdatabase", "billing", namespace)
        synced = condition(obj, "Synced")
        return obj if synced and synced["status"] == "False" and synced["reason"] in PERMANENT else None

    degraded = wait_for(refused, 60, message="Synced=False with a permanent reason")
    assert health_of(degraded)["status"] == "Degraded", health_of(degraded)
    save_testdata(degraded, "degraded-permanent-error")
    kubectl("delete", "redisdatabase", "billing", "-n", namespace, "--timeout=60s")
    wait_gone("redisdatabase", "billing", namespace)
    assert kept_id in {item["id"] for item in admin.databases()}, "never adopted, so never deleted"
    delete_at_provider(local_provider, kept_id)


def provider_ready(name: str, *, reason: str, generation: int) -> dict[str, Any]:
    def checked() -> dict[str, Any] | None:
        obj = get_json("redisprovider", name)
        ready = condition(obj, "Ready")
        if obj and ready and ready["reason"] == reason and ready.get("observedGeneration") == generation:
            return obj
        return None

    return wait_for(checked, 90, message=f"RedisProvider {name} Ready reason {reason} at generation {generation}")


def test_health_of_providers_and_databases_with_bad_credentials(
    operator: OperatorProcess, local_provider: LocalProvider, namespace: str
) -> None:
    """Wrong credentials are Degraded in Argo CD (not Progressing forever), on the RedisProvider and on a database
    using it; pointing the RedisProvider at the right Secret makes both Healthy."""
    name = f"argo-{namespace[-6:]}"
    secret, provider = fly_provider_manifests(name, local_provider.url, organization=FLY_ORG, token=FLY_TOKEN)
    wrong_secret = {**secret, "metadata": {**secret["metadata"], "name": f"{name}-wrong"}}
    wrong_secret["stringData"] = {"token": "not-the-token"}

    def provider_using(secret_name: str) -> dict[str, Any]:
        reference = {"namespace": SYSTEM_NAMESPACE, "name": secret_name}
        return {**provider, "spec": {**provider["spec"], "credentialsSecretRef": reference}}

    try:
        apply(provider_using(f"{name}-missing"))  # generation 1: no such Secret
        not_found = provider_ready(name, reason="CredentialsNotFound", generation=1)
        assert health_of(not_found)["status"] == "Degraded", health_of(not_found)
        save_testdata(not_found, "degraded-credentials-not-found")

        apply([wrong_secret, provider_using(f"{name}-wrong")])  # generation 2: a token the provider refuses
        unauthorized = provider_ready(name, reason="Unauthorized", generation=2)
        assert health_of(unauthorized)["status"] == "Degraded", health_of(unauthorized)
        save_testdata(unauthorized, "degraded-unauthorized")

        database = manifest("ledger", [])
        database["spec"]["providerRef"] = {"name": name}
        del database["spec"]["readRegions"]
        server_side_apply(database, namespace)

        def synced_unauthorized() -> dict[str, Any] | None:
            obj = get_json("redisdatabase", "ledger", namespace)
            synced = condition(obj, "Synced")
            return obj if synced and synced["status"] == "False" and synced["reason"] == "Unauthorized" else None

        refused = wait_for(synced_unauthorized, 60, message="Synced=False Unauthorized on the database")
        assert health_of(refused)["status"] == "Degraded", health_of(refused)
        save_testdata(refused, "degraded-unauthorized")

        apply([secret, provider])  # generation 3: the right Secret
        accepted = provider_ready(name, reason="CredentialsAccepted", generation=3)
        assert health_of(accepted)["status"] == "Healthy", health_of(accepted)
        save_testdata(accepted, "healthy")
        ready = wait_ready("ledger", namespace, timeout=180)
        assert health_of(ready)["status"] == "Healthy"
        kubectl("delete", "redisdatabase", "ledger", "-n", namespace, "--timeout=60s")
        wait_gone("redisdatabase", "ledger", namespace)
    finally:
        kubectl("delete", "redisprovider", name, "--ignore-not-found", "--timeout=60s", check=False)
        for secret_name in (f"{name}-credentials", f"{name}-wrong"):
            kubectl("delete", "secret", secret_name, "-n", SYSTEM_NAMESPACE, "--ignore-not-found", check=False)
