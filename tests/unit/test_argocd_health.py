"""The Argo CD health check for RedisDatabase, run by a real Lua 5.1 runtime (lupa) over health_test.yaml.

Argo CD evaluates health.lua with gopher-lua (Lua 5.1) and no standard libraries; Lua 5.1 from lupa, with the
script given only `obj`, is the closest runtime Python has. The testdata objects were written by
tests/e2e/test_gitops.py from a real run (REDISDB_ARGOCD_TESTDATA=<dir>), and that test also evaluates the
script on the live objects.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

CHECK_DIR = Path(__file__).resolve().parents[2] / "deploy/argocd/resource_customizations/redisdb.dev/RedisDatabase"
HEALTH_LUA = CHECK_DIR / "health.lua"
CASES: list[dict[str, Any]] = yaml.safe_load((CHECK_DIR / "health_test.yaml").read_text())["tests"]


@functools.cache
def _health_function() -> Any:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False, register_builtins=False)
    # As in Argo CD: no os/io/require; only the base functions (ipairs, tostring, ...) and the script.
    runtime.execute("os = nil; io = nil; require = nil; dofile = nil; loadfile = nil")
    return runtime.eval(f"function(obj)\n{HEALTH_LUA.read_text()}\nend"), runtime


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({key: _to_lua(runtime, item) for key, item in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, item) for item in value])
    return value


def health_of(obj: dict[str, Any]) -> dict[str, str]:
    """{'status': ..., 'message': ...} as Argo CD would compute it for `obj`."""
    function, runtime = _health_function()
    result = function(_to_lua(runtime, obj))
    return {"status": str(result["status"]), "message": str(result["message"] or "")}


@pytest.mark.parametrize("case", CASES, ids=[Path(case["inputPath"]).stem for case in CASES])
def test_health_test_yaml(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((CHECK_DIR / case["inputPath"]).read_text())
    assert health_of(obj) == case["healthStatus"]


def test_testdata_are_real_objects() -> None:
    """Every case comes from the apiserver (uid, generation, managedFields stripped only). Only a sanity check:
    tests/e2e/test_gitops.py proves it, comparing each file's shape (metadata and status fields, conditions,
    health) with the live object of that state, so a hand-written or stale file fails there."""
    for case in CASES:
        obj = yaml.safe_load((CHECK_DIR / case["inputPath"]).read_text())
        assert obj["metadata"]["uid"] and obj["metadata"]["generation"] >= 1
        assert obj["metadata"]["resourceVersion"]


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


def test_script_uses_only_lua_51_base_functions() -> None:
    code = "\n".join(line for line in HEALTH_LUA.read_text().splitlines() if not line.lstrip().startswith("--"))
    for forbidden in ("string.", "table.", "os.", "io.", "require", "goto", "//"):
        assert forbidden not in code, forbidden


def test_argocd_cm_snippet_is_the_same_script() -> None:
    patch = yaml.safe_load((CHECK_DIR.parents[2] / "argocd-cm-patch.yaml").read_text())
    assert patch["data"]["resource.customizations.health.redisdb.dev_RedisDatabase"] == HEALTH_LUA.read_text()


def test_degraded_reasons_are_the_operators_permanent_reasons() -> None:
    """health.lua's `permanent` table and reconcile.PERMANENT_REASONS must not drift apart."""
    import re

    from redisdb_operator.reconcile import PERMANENT_REASONS

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
