"""Argo CD's health checks (deploy/argocd/.../<Kind>/health.lua) evaluated by a real Lua 5.1 runtime (lupa), as
gopher-lua would: shared by the unit table tests and the GitOps end-to-end test."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from lupa import lua51

CUSTOMIZATIONS = Path(__file__).resolve().parents[2] / "deploy/argocd/resource_customizations/redisdb.dev"
KINDS = ("RedisDatabase", "RedisProvider")
CHECK_DIR = CUSTOMIZATIONS / "RedisDatabase"
HEALTH_LUA = CHECK_DIR / "health.lua"
PROVIDER_HEALTH_LUA = CUSTOMIZATIONS / "RedisProvider" / "health.lua"


@functools.cache
def _health_function(kind: str) -> Any:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True, register_eval=False, register_builtins=False)
    # As in Argo CD: no os/io/require; only the base functions (ipairs, tostring, ...) and the script.
    runtime.execute("os = nil; io = nil; require = nil; dofile = nil; loadfile = nil")
    script = (CUSTOMIZATIONS / kind / "health.lua").read_text()
    return runtime.eval(f"function(obj)\n{script}\nend"), runtime


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({key: _to_lua(runtime, item) for key, item in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, item) for item in value])
    return value


def health_of(obj: dict[str, Any], kind: str | None = None) -> dict[str, str]:
    """{'status': ..., 'message': ...} as Argo CD would compute it for `obj` (by its kind; RedisDatabase if none)."""
    function, runtime = _health_function(kind or obj.get("kind") or "RedisDatabase")
    result = function(_to_lua(runtime, obj))
    return {"status": str(result["status"]), "message": str(result["message"] or "")}
