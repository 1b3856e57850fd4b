"""The admin API (no auth, meant for loopback): health, call counters, fault injection, inventory and drift.

It is how tests look behind the wire APIs: which calls an adapter made, which processes a database has, and
how to change a database behind the operator's back.
"""

from __future__ import annotations

import json
import os
from typing import Any

from aiohttp import web

from redisdb_operator.providers import catalog

from .gate import WireGate
from .registry import Registry, RegistryError
from .settings import Settings


async def _json_object(request: web.Request) -> dict[str, Any]:
    text = await request.text()
    if not text.strip():
        return {}
    try:
        body = json.loads(text)
    except json.JSONDecodeError as error:
        raise web.HTTPBadRequest(text=json.dumps({"error": "body is not JSON"}), content_type="application/json") from (
            error
        )
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "body must be an object"}), content_type="application/json")
    return body


class AdminApi:
    def __init__(self, registry: Registry, gate: WireGate, settings: Settings | None = None) -> None:
        self.registry = registry
        self.gate = gate
        self.settings = settings

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/admin/health", self.health),
            web.get("/admin/counters", self.counters),
            web.post("/admin/counters/reset", self.reset_counters),
            web.get("/admin/faults", self.get_faults),
            web.post("/admin/faults", self.set_faults),
            web.delete("/admin/faults", self.clear_faults),
            web.get("/admin/databases", self.databases),
            web.get("/admin/databases/{id}", self.database),
            web.post("/admin/databases/{id}/drift", self.drift),
            web.get("/admin/issued-credentials", self.issued_credentials),
        ]

    async def health(self, request: web.Request) -> web.StreamResponse:
        tls_ca_file = str(self.registry.tls.ca) if self.registry.tls is not None else None
        return web.json_response(
            {"ok": True, "databases": len(self.registry.databases), "pid": os.getpid(), "tls_ca_file": tls_ca_file}
        )

    async def counters(self, request: web.Request) -> web.StreamResponse:
        calls = dict(sorted(self.gate.counters.items()))
        injected = dict(sorted(self.gate.injected.items()))
        return web.json_response({"calls": calls, "total": sum(calls.values()), "injected": injected})

    async def reset_counters(self, request: web.Request) -> web.StreamResponse:
        self.gate.counters.clear()
        self.gate.injected.clear()
        return web.json_response({"calls": {}, "total": 0, "injected": {}})

    async def get_faults(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.gate.faults.to_json())

    async def set_faults(self, request: web.Request) -> web.StreamResponse:
        try:
            faults = self.gate.set_faults(await _json_object(request))
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response(faults.to_json())

    async def clear_faults(self, request: web.Request) -> web.StreamResponse:
        self.gate.clear_faults()
        return web.json_response(self.gate.faults.to_json())

    async def databases(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([database.describe() for database in self.registry.databases.values()])

    async def database(self, request: web.Request) -> web.StreamResponse:
        try:
            return web.json_response(self.registry.get_any(request.match_info["id"]).describe())
        except RegistryError as error:
            return web.json_response({"error": error.message}, status=404)

    async def drift(self, request: web.Request) -> web.StreamResponse:
        """Change read regions, eviction and/or plan as if someone used the provider's console; `age_seconds`
        makes it older (a stranger's database, made long before the RedisDatabase naming it)."""
        body = await _json_object(request)
        try:
            database = self.registry.get_any(request.match_info["id"])
            plan = body.get("plan")
            if plan is not None:
                plan = catalog.canonical_plan_name(database.record.api, str(plan))
                if plan is None:
                    return web.json_response({"error": f"unknown plan {body['plan']!r}"}, status=400)
            regions = body.get("read_regions")
            if regions is not None and not (isinstance(regions, list) and all(isinstance(r, str) for r in regions)):
                return web.json_response({"error": "read_regions must be a list of region codes"}, status=400)
            eviction = body.get("eviction")
            if eviction is not None and not isinstance(eviction, bool):
                return web.json_response({"error": "eviction must be a boolean"}, status=400)
            age = body.get("age_seconds")
            if age is not None and (isinstance(age, bool) or not isinstance(age, int) or age < 0):
                return web.json_response({"error": "age_seconds must be a non-negative integer"}, status=400)
            if regions is not None or plan is not None or eviction is not None:
                await self.registry.update(database, read_regions=regions, plan=plan, eviction=eviction)
            if age:
                await self.registry.backdate(database, age)
        except RegistryError as error:
            return web.json_response({"error": error.message}, status=404 if error.kind == "not_found" else 400)
        return web.json_response(database.describe())

    async def issued_credentials(self, request: web.Request) -> web.StreamResponse:
        """TEST-ONLY: every password ever issued and every API token/key accepted, for secret-hygiene scans.

        Like the rest of the admin API this is unauthenticated and meant for loopback only; a real provider has
        no such thing. Tests use it to prove that no credential ever reached a log, an Event or a status.
        """
        if request.remote not in ("127.0.0.1", "::1"):
            return web.json_response({"error": "loopback only"}, status=403)
        tokens: list[str] = []
        if self.settings is not None:
            tokens = [*self.settings.fly_tokens, *self.settings.upstash_accounts.values()]
        tokens.extend(self.registry.issued_rest_tokens())
        return web.json_response({"passwords": self.registry.issued_passwords(), "tokens": tokens})
