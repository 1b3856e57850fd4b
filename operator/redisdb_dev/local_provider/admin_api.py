"""The admin API (no auth, meant for loopback): health, call counters, fault injection, inventory and drift.

It is how tests look behind the wire APIs: which calls an adapter made, which processes a database has, and
how to change a database behind the operator's back.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
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
        self.revoked_tokens: list[str] = []  # still reported by issued-credentials: they were accepted once
        gate.crash_points.name_of = self._name_of
        gate.crash_points.exists = self._exists

    def _name_of(self, database_id: str) -> str | None:
        database = self.registry.databases.get(database_id)
        return database.record.name if database is not None else None

    def _exists(self, api: str, name: str) -> bool:
        return any(d.record.api == api and d.record.name == name for d in self.registry.databases.values())

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
            web.get("/admin/holds", self.get_holds),
            web.post("/admin/holds", self.add_hold),
            web.delete("/admin/holds", self.clear_holds),
            web.post("/admin/holds/{id}/wait", self.wait_hold),
            web.post("/admin/holds/{id}/release", self.release_hold),
            web.get("/admin/calls", self.calls),
            web.delete("/admin/calls", self.clear_calls),
            web.post("/admin/credentials", self.change_credentials),
        ]

    async def health(self, request: web.Request) -> web.StreamResponse:
        tls_ca_file = str(self.registry.tls.ca) if self.registry.tls is not None else None
        return web.json_response(
            {"ok": True, "databases": len(self.registry.databases), "pid": os.getpid(), "tls_ca_file": tls_ca_file}
        )

    async def counters(self, request: web.Request) -> web.StreamResponse:
        calls = dict(sorted(self.gate.counters.items()))
        injected = dict(sorted(self.gate.injected.items()))
        return web.json_response(
            {"calls": calls, "total": sum(calls.values()), "injected": injected, "delayed": self.gate.delayed}
        )

    async def reset_counters(self, request: web.Request) -> web.StreamResponse:
        self.gate.counters.clear()
        self.gate.injected.clear()
        self.gate.delayed = 0
        return web.json_response({"calls": {}, "total": 0, "injected": {}, "delayed": 0})

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
            created = body.get("creation_time")
            if created is not None:
                if isinstance(created, bool) or not isinstance(created, int) or created > time.time() + 1:
                    return web.json_response(
                        {"error": "creation_time must be a Unix time in whole seconds, not in the future"}, status=400
                    )
                age = database.record.creation_time - created  # exact: the clock-skew edge is a matter of seconds
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
        tokens.extend(self.revoked_tokens)
        tokens.extend(self.registry.issued_rest_tokens())
        return web.json_response({"passwords": self.registry.issued_passwords(), "tokens": tokens})

    # -- crash points, the call log and credentials at runtime ------------------------------------------------

    async def get_holds(self, request: web.Request) -> web.StreamResponse:
        return web.json_response([hold.to_json() for hold in self.gate.crash_points.holds.values()])

    async def add_hold(self, request: web.Request) -> web.StreamResponse:
        """Arm a hold: the next create matching `api`/`name` stops at `point` (before_create: before the database
        exists; after_create: it exists, the answer is not sent) until released."""
        try:
            hold = self.gate.crash_points.add_hold(await _json_object(request))
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response(hold.to_json())

    async def clear_holds(self, request: web.Request) -> web.StreamResponse:
        """Release every held call (answering it) and forget every hold."""
        self.gate.crash_points.release_all()
        return web.json_response([])

    async def wait_hold(self, request: web.Request) -> web.StreamResponse:
        """Long-poll until a call is held at this hold (200) or `timeout` seconds pass (408, the hold unchanged)."""
        try:
            hold = self.gate.crash_points.holds[int(request.match_info["id"])]
            timeout = float(request.query.get("timeout", "30"))
        except (KeyError, ValueError):
            return web.json_response({"error": "no such hold (or a bad timeout)"}, status=404)
        try:
            await asyncio.wait_for(hold.reached.wait(), timeout)
        except TimeoutError:
            return web.json_response(hold.to_json(), status=408)
        return web.json_response(hold.to_json())

    async def release_hold(self, request: web.Request) -> web.StreamResponse:
        """Let the held call go on: `then` answer (send the answer) or drop (close the connection unanswered)."""
        body = await _json_object(request)
        try:
            hold = self.gate.crash_points.release(int(request.match_info["id"]), str(body.get("then", "answer")))
        except KeyError:
            return web.json_response({"error": "no such hold"}, status=404)
        except ValueError as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response(hold.to_json())

    async def calls(self, request: web.Request) -> web.StreamResponse:
        """Every management call, in order: api, operation, the database name (ids resolved), status, outcome;
        `?name=` keeps one database's calls, `?api=` one API's, `?account=` one Upstash account's (email) or
        Fly organization's (slug, for the calls that name one)."""
        entries = self.gate.crash_points.calls
        if "name" in request.query:
            entries = [entry for entry in entries if entry["name"] == request.query["name"]]
        if "api" in request.query:
            entries = [entry for entry in entries if entry["api"] == request.query["api"]]
        if "account" in request.query:
            entries = [entry for entry in entries if entry["account"] == request.query["account"]]
        return web.json_response(entries)

    async def clear_calls(self, request: web.Request) -> web.StreamResponse:
        self.gate.crash_points.calls.clear()
        return web.json_response([])

    async def change_credentials(self, request: web.Request) -> web.StreamResponse:
        """Add or revoke API credentials at runtime, as a user does in the provider's console:
        {"add_fly_tokens": [...], "revoke_fly_tokens": [...], "add_upstash_accounts": {email: key},
        "revoke_upstash_accounts": [email]}. Answers which Fly tokens and Upstash accounts are accepted now."""
        if self.settings is None:
            return web.json_response({"error": "no settings"}, status=500)
        body = await _json_object(request)
        allowed = {"add_fly_tokens", "revoke_fly_tokens", "add_upstash_accounts", "revoke_upstash_accounts"}
        if set(body) - allowed:
            return web.json_response({"error": f"unknown fields {sorted(set(body) - allowed)}"}, status=400)
        lists = [body.get(key, []) for key in ("add_fly_tokens", "revoke_fly_tokens", "revoke_upstash_accounts")]
        accounts = body.get("add_upstash_accounts", {})
        if not all(isinstance(items, list) and all(isinstance(i, str) and i for i in items) for items in lists) or not (
            isinstance(accounts, dict) and all(isinstance(v, str) and v for v in accounts.values())
        ):
            return web.json_response(
                {"error": "token lists must be lists of strings, accounts email -> key"}, status=400
            )
        add_fly, revoke_fly, revoke_accounts = lists
        settings = self.settings
        for token in revoke_fly:
            if token in settings.fly_tokens:
                settings.fly_tokens.remove(token)
                self.revoked_tokens.append(token)
        settings.fly_tokens.extend(token for token in add_fly if token not in settings.fly_tokens)
        for email in revoke_accounts:
            key = settings.upstash_accounts.pop(email, None)
            if key is not None:
                self.revoked_tokens.append(key)
        settings.upstash_accounts.update(accounts)
        return web.json_response(
            {"fly_tokens": len(settings.fly_tokens), "upstash_accounts": sorted(settings.upstash_accounts)}
        )
