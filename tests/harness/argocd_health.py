"""Argo CD's health check for RedisDatabase (deploy/argocd/.../health.lua) evaluated by a real Lua 5.1 runtime
(lupa), as gopher-lua would: shared by the unit table tests and the GitOps end-to-end test."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from lupa import lua51

CHECK_DIR = Path(__file__).resolve().parents[2] / "deploy/argocd/resource_customizations/redisdb.dev/RedisDatabase"
HEALTH_LUA = CHECK_DIR / "health.lua"


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
