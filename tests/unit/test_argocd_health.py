"""The Argo CD health checks for RedisDatabase and RedisProvider, run by a real Lua 5.1 runtime (lupa) over each
kind's health_test.yaml.

Argo CD evaluates health.lua with gopher-lua (Lua 5.1) and no standard libraries; Lua 5.1 from lupa, with the
script given only `obj`, is the closest runtime Python has. The testdata objects were written by
tests/e2e/test_gitops.py from a real run (REDISDB_ARGOCD_TESTDATA=<dir>), and that test also evaluates the
script on the live objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.argocd_health import CUSTOMIZATIONS, HEALTH_LUA, KINDS, PROVIDER_HEALTH_LUA, health_of

CASES: list[tuple[str, dict[str, Any]]] = [
    (kind, case)
    for kind in KINDS
    for case in yaml.safe_load((CUSTOMIZATIONS / kind / "health_test.yaml").read_text())["tests"]
]


@pytest.mark.parametrize(("kind", "case"), CASES, ids=[f"{k}-{Path(c['inputPath']).stem}" for k, c in CASES])
def test_health_test_yaml(kind: str, case: dict[str, Any]) -> None:
    obj = yaml.safe_load((CUSTOMIZATIONS / kind / case["inputPath"]).read_text())
    assert obj["kind"] == kind
    assert health_of(obj, kind) == case["healthStatus"]


def test_testdata_are_real_objects() -> None:
    """Every case comes from the apiserver (uid, generation, managedFields stripped only). Only a sanity check:
    tests/e2e/test_gitops.py proves it, comparing each file's shape (metadata and status fields, conditions,
    health) with the live object of that state, so a hand-written or stale file fails there."""
    for kind, case in CASES:
        obj = yaml.safe_load((CUSTOMIZATIONS / kind / case["inputPath"]).read_text())
        assert obj["metadata"]["uid"] and obj["metadata"]["generation"] >= 1
        assert obj["metadata"]["resourceVersion"]


def test_every_kind_has_degraded_and_healthy_cases() -> None:
    for kind in KINDS:
        statuses = {case["healthStatus"]["status"] for k, case in CASES if k == kind}
        assert {"Healthy", "Degraded"} <= statuses, kind


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, "Progressing"),
        ({}, "Progressing"),
        ({"conditions": []}, "Progressing"),
        (
            {
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Available", "observedGeneration": 1},
                    {"type": "Synced", "status": "False", "reason": "InvalidSpec", "observedGeneration": 1},
                ]
            },
            "Progressing",  # the permanent error is about generation 1; generation 2 is not reconciled yet
        ),
        (
            {
                "observedGeneration": 2,
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Available"},
                    {"type": "Synced", "status": "True", "reason": "ReconcileSuccess"},
                ],
            },
            "Healthy",  # conditions without observedGeneration fall back to status.observedGeneration
        ),
        (
            {
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "NotActive", "observedGeneration": 2},
                    {"type": "Synced", "status": "True", "reason": "ReconcileSuccess", "observedGeneration": 2},
                ]
            },
            "Progressing",
        ),
    ],
)
def test_edge_cases(status: dict[str, Any] | None, expected: str) -> None:
    obj: dict[str, Any] = {"apiVersion": "redisdb.dev/v1alpha1", "kind": "RedisDatabase", "metadata": {"generation": 2}}
    if status is not None:
        obj["status"] = status
    assert health_of(obj)["status"] == expected


@pytest.mark.parametrize("kind", KINDS)
def test_script_uses_only_lua_51_base_functions(kind: str) -> None:
    script = (CUSTOMIZATIONS / kind / "health.lua").read_text()
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    for forbidden in ("string.", "table.", "os.", "io.", "require", "goto", "//"):
        assert forbidden not in code, forbidden


@pytest.mark.parametrize("kind", KINDS)
def test_argocd_cm_snippet_is_the_same_script(kind: str) -> None:
    patch = yaml.safe_load((CUSTOMIZATIONS.parents[1] / "argocd-cm-patch.yaml").read_text())
    script = (CUSTOMIZATIONS / kind / "health.lua").read_text()
    assert patch["data"][f"resource.customizations.health.redisdb.dev_{kind}"] == script


def test_degraded_reasons_are_the_operators_permanent_reasons() -> None:
    """health.lua's `permanent` table and reconcile.PERMANENT_REASONS must not drift apart."""
    import re

    from redisdb_operator.status import PERMANENT_REASONS

    table = re.search(r"local permanent = \{(.*?)\}", HEALTH_LUA.read_text(), re.S)
    assert table is not None
    assert set(re.findall(r"(\w+) = true", table.group(1))) == set(PERMANENT_REASONS)
    for reason in PERMANENT_REASONS:
        obj = {
            "metadata": {"generation": 3},
            "status": {
                "conditions": [{"type": "Synced", "status": "False", "reason": reason, "observedGeneration": 3}]
            },
        }
        assert health_of(obj)["status"] == "Degraded", reason


def _lua_table(script: Path, name: str) -> set[str]:
    import re

    table = re.search(rf"local {name} = \{{(.*?)\}}", script.read_text(), re.S)
    assert table is not None, name
    return set(re.findall(r"(\w+) = true", table.group(1)))


def test_credential_reasons_are_the_operators() -> None:
    """Both scripts' `credentials` tables are provider_checks.CREDENTIAL_REASONS, and the operator really uses
    each of those reasons (the provider's refusal, and the registry's missing Secret or key)."""
    from redisdb_operator.errors import classify_error
    from redisdb_operator.provider_checks import CREDENTIAL_REASONS
    from redisdb_operator.providers.base import UnauthorizedError

    assert _lua_table(HEALTH_LUA, "credentials") == set(CREDENTIAL_REASONS)
    assert _lua_table(PROVIDER_HEALTH_LUA, "credentials") == set(CREDENTIAL_REASONS)
    registry = (Path(__file__).resolve().parents[2] / "operator/redisdb_operator/provider_registry.py").read_text()
    for reason in CREDENTIAL_REASONS - {"Unauthorized"}:
        assert f'"{reason}"' in registry, reason
    assert classify_error(UnauthorizedError("bad token", status=401)).reason == "Unauthorized"


@pytest.mark.parametrize("reason", ["Unauthorized", "CredentialsNotFound", "CredentialsInvalid"])
def test_credentials_problems_are_degraded(reason: str) -> None:
    """Retried by the operator, yet Degraded for Argo CD: wrong credentials must not look like Progressing forever."""
    database = {
        "kind": "RedisDatabase",
        "metadata": {"generation": 1},
        "status": {"conditions": [{"type": "Synced", "status": "False", "reason": reason, "observedGeneration": 1}]},
    }
    provider = {
        "kind": "RedisProvider",
        "metadata": {"generation": 1},
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": reason, "observedGeneration": 1}]},
    }
    assert health_of(database)["status"] == "Degraded"
    assert health_of(provider)["status"] == "Degraded"


@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [
        (None, 1, "Progressing"),
        ({"conditions": []}, 1, "Progressing"),
        ({"conditions": [{"type": "Ready", "status": "True", "reason": "CredentialsAccepted"}]}, 1, "Progressing"),
        (
            {
                "observedGeneration": 1,
                "conditions": [{"type": "Ready", "status": "True", "reason": "CredentialsAccepted"}],
            },
            1,
            "Healthy",
        ),
        (
            {"conditions": [{"type": "Ready", "status": "False", "reason": "Unauthorized", "observedGeneration": 1}]},
            2,
            "Progressing",  # generation 2 (perhaps the fix) is not checked yet
        ),
        (
            {
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "ProviderUnavailable", "observedGeneration": 2}
                ]
            },
            2,
            "Progressing",  # an outage is retried and ends by itself
        ),
        (
            {"conditions": [{"type": "Ready", "status": "False", "reason": "RateLimited", "observedGeneration": 2}]},
            2,
            "Progressing",
        ),
    ],
)
def test_provider_edge_cases(status: dict[str, Any] | None, generation: int, expected: str) -> None:
    obj: dict[str, Any] = {"kind": "RedisProvider", "metadata": {"generation": generation}}
    if status is not None:
        obj["status"] = status
    assert health_of(obj)["status"] == expected
