"""The Upstash Developer API v2 face (docs/wire-contract.md): HTTP Basic auth, snake_case JSON, "OK" actions.

Errors use the real API's shapes: a bare JSON string for 400/404, ``{"error": ...}`` for 401/429/503.
The Database JSON also carries ``rest_url``, an extension: where this provider serves the database's Redis REST API
(the real API has no such field; real clients use ``https://<endpoint>``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from redisdb_operator.providers import catalog
from redisdb_operator.providers.base import ProviderType

from . import usage
from .gate import WireGate
from .registry import LocalDatabase, Registry, RegistryError
from .rest_api import rest_url
from .settings import Settings

log = logging.getLogger(__name__)

API = ProviderType.UPSTASH
_STATUS = {"invalid": 400, "exists": 400, "not_found": 404, "unavailable": 503}

Handler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


def database_json(database: LocalDatabase, request: web.Request, *, credentials: bool = True) -> dict[str, Any]:
    record = database.record
    body: dict[str, Any] = {
        "database_id": record.id,
        "database_name": record.name,
        "region": "global",
        # As the current OpenAPI: type is free|payg|pro|paid, and neither database_type nor plan exists, so a
        # fixed plan is not observable from an answer (reference section 6).
        "type": record.plan if record.plan in ("free", "payg") else "paid",
        "port": database.primary.port,
        "creation_time": record.creation_time,
        "state": "active",
        "user_email": record.owner,
        "endpoint": database.public_host,
        "tls": database.primary.settings.tls is not None,
        "eviction": record.eviction,
        "primary_region": record.primary_region,
        "read_regions": list(record.read_regions),
        "primary_members": [record.primary_region],
        "all_members": [record.primary_region, *record.read_regions],
        "budget": record.budget,
    }
    if record.rest_token:
        body["rest_url"] = rest_url(request, record.id)
    if credentials:
        body["password"] = record.password
        if record.rest_token:
            body["rest_token"] = record.rest_token
            body["read_only_rest_token"] = record.read_only_rest_token
    return body


class BadRequest(Exception):
    """A body that does not fit the documented schema: 400 with ``{"error": ...}``."""


_STRING: tuple[type, ...] = (str,)
_STRINGS: tuple[type, ...] = (list,)
_BOOL: tuple[type, ...] = (bool,)
_INT: tuple[type, ...] = (int,)
# Every field a source documents for the create body (the OpenAPI of 2025-09 and of 2025-11, the older docs'
# ``name``, Terraform's struct): anything else is refused, stricter than the real service, which would silently
# ignore a misspelt field (a bug of ours that must not pass a test).
CREATE_FIELDS: dict[str, tuple[type, ...]] = {
    "database_name": _STRING,
    "name": _STRING,
    "region": _STRING,
    "platform": _STRING,
    "primary_region": _STRING,
    "read_regions": _STRINGS,
    "plan": _STRING,
    "budget": _INT,
    "eviction": _BOOL,
    "tls": _BOOL,
    "auto_upgrade": _BOOL,
    "consistent": _BOOL,
    "multizone": _BOOL,
    "prod_pack_enabled": _BOOL,
}
CHANGE_PLAN_FIELDS: dict[str, tuple[type, ...]] = {
    "plan_name": _STRING,
    "database_id": _STRING,
    "auto_upgrade": _BOOL,
    "prod_pack_enabled": _BOOL,
}
LEGACY_CHANGE_PLAN_FIELDS = {**CHANGE_PLAN_FIELDS, "plan": _STRING}  # upstash/cli sends plan on the older path


def _checked(body: dict[str, Any], fields: dict[str, tuple[type, ...]], operation: str) -> dict[str, Any]:
    """The body, once every field is documented for this operation and has the documented type."""
    for key, value in body.items():
        if key not in fields:
            raise BadRequest(f"unknown field {key!r} in the {operation} request; known: {', '.join(sorted(fields))}")
        wanted = fields[key]
        if value is None or isinstance(value, bool) is not (wanted == _BOOL) or not isinstance(value, wanted):
            raise BadRequest(f"{key} must be {_TYPE_NAMES[wanted]}")
        if isinstance(value, list) and not all(isinstance(item, str) for item in value):
            raise BadRequest(f"{key} must be a list of strings")
    return body


_TYPE_NAMES: dict[tuple[type, ...], str] = {
    _STRING: "a string",
    _STRINGS: "a list of strings",
    _BOOL: "a boolean",
    _INT: "an integer",
}


def _error(status: int, message: str, headers: dict[str, str] | None = None, *, wrap: bool = False) -> web.Response:
    return web.json_response({"error": message} if wrap else message, status=status, headers=headers)


class UpstashApi:
    def __init__(self, registry: Registry, gate: WireGate, settings: Settings) -> None:
        self.registry = registry
        self.gate = gate
        self.settings = settings

    def routes(self) -> list[web.RouteDef]:
        wrap = self._wrap
        return [
            web.post("/v2/redis/database", wrap("create", self.create)),
            web.get("/v2/redis/databases", wrap("list", self.list)),
            web.get("/v2/redis/database/{id}", wrap("get", self.get)),
            web.delete("/v2/redis/database/{id}", wrap("delete", self.delete)),
            web.post("/v2/redis/update-regions/{id}", wrap("update-regions", self.update_regions)),
            web.post("/v2/redis/enable-eviction/{id}", wrap("enable-eviction", self.enable_eviction)),
            web.post("/v2/redis/disable-eviction/{id}", wrap("disable-eviction", self.disable_eviction)),
            web.post("/v2/redis/{id}/change-plan", wrap("change-plan", self.change_plan)),
            web.post("/v2/redis/change-plan/{id}", wrap("change-plan", self.change_plan)),
            web.post("/v2/redis/reset-password/{id}", wrap("reset-password", self.reset_password)),
            web.get("/v2/redis/stats/{id}", wrap("stats", self.stats)),
            web.route("*", "/v2/{tail:.*}", wrap("unknown", self.unknown)),
        ]

    def _account(self, request: web.Request) -> str | None:
        """The account email when the Basic credentials match a configured account."""
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return None
        try:
            email, _, key = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        expected = self.settings.upstash_accounts.get(email)
        if expected is None or not hmac.compare_digest(expected.encode(), key.encode()):
            return None
        return email

    def _wrap(self, operation: str, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            failure = await self.gate.enter([f"upstash:{operation}"])
            if failure is not None:
                return _error(failure.status, failure.message, failure.headers, wrap=True)
            account = self._account(request)
            if account is None:
                return _error(401, "Unauthorized", wrap=True)
            try:
                return await handler(request, account)
            except BadRequest as error:
                return _error(400, str(error), wrap=True)
            except RegistryError as error:
                return _error(_STATUS[error.kind], error.message)
            except RedisError:
                log.exception("upstash:%s failed talking to redis-server", operation)
                return _error(503, "database temporarily unavailable", wrap=True)

        return wrapped

    def _find(self, request: web.Request, account: str) -> LocalDatabase:
        return self.registry.get(API, [account], request.match_info["id"])

    async def _body(self, request: web.Request) -> dict[str, Any]:
        """The JSON object body; an empty body is an empty object (older clients send none)."""
        text = await request.text()
        if not text.strip():
            return {}
        try:
            body = json.loads(text)
        except json.JSONDecodeError as error:
            raise RegistryError("invalid", "request body is not valid JSON") from error
        if not isinstance(body, dict):
            raise RegistryError("invalid", "request body must be a JSON object")
        return body

    async def create(self, request: web.Request, account: str) -> web.StreamResponse:
        body = _checked(await self._body(request), CREATE_FIELDS, "create")
        name = body.get("database_name", body.get("name"))
        if not name:
            raise BadRequest("database_name is required")
        if "region" in body:
            if body["region"] != "global":
                raise RegistryError("invalid", "regional db creation is deprecated")
        elif "platform" in body:
            if body["platform"] not in ("aws", "gcp"):
                raise BadRequest("platform must be aws or gcp")
            if catalog.upstash_platform(str(body.get("primary_region"))) != body["platform"]:
                raise BadRequest(f"primary_region {body.get('primary_region')} is not a {body['platform']} region")
        else:
            raise BadRequest('platform ("aws" or "gcp") is required')
        primary_region = body.get("primary_region")
        if not primary_region:
            raise BadRequest("primary_region is required")
        read_regions = body.get("read_regions") or []
        plan = body.get("plan") or catalog.DEFAULT_PLAN
        eviction = body.get("eviction", False)
        budget = body.get("budget")
        # tls: every database is TLS-only whatever the request says (Terraform: "cannot be disabled").
        database = await self.registry.create(
            api=API,
            owner=account,
            name=name,
            primary_region=primary_region,
            read_regions=read_regions,
            plan=plan,
            eviction=eviction,
            budget=budget,
        )
        return web.json_response(database_json(database, request))

    async def list(self, request: web.Request, account: str) -> web.StreamResponse:
        return web.json_response([database_json(db, request) for db in self.registry.owned(API, [account])])

    async def get(self, request: web.Request, account: str) -> web.StreamResponse:
        hide = request.query.get("credentials") == "hide"
        return web.json_response(database_json(self._find(request, account), request, credentials=not hide))

    async def delete(self, request: web.Request, account: str) -> web.StreamResponse:
        await self.registry.delete(self._find(request, account))
        return web.json_response("OK")

    async def update_regions(self, request: web.Request, account: str) -> web.StreamResponse:
        database = self._find(request, account)
        body = _checked(await self._body(request), {"read_regions": _STRINGS}, "update-regions")
        regions = body.get("read_regions")
        if regions is None:
            raise BadRequest("read_regions (a list of region codes) is required")
        await self.registry.update(database, read_regions=regions)
        return web.json_response("OK")

    async def enable_eviction(self, request: web.Request, account: str) -> web.StreamResponse:
        await self.registry.update(self._find(request, account), eviction=True)
        return web.json_response("OK")

    async def disable_eviction(self, request: web.Request, account: str) -> web.StreamResponse:
        await self.registry.update(self._find(request, account), eviction=False)
        return web.json_response("OK")

    async def change_plan(self, request: web.Request, account: str) -> web.StreamResponse:
        database = self._find(request, account)
        fields = CHANGE_PLAN_FIELDS if request.path.endswith("/change-plan") else LEGACY_CHANGE_PLAN_FIELDS
        body = _checked(await self._body(request), fields, "change-plan")
        wanted = body.get("plan_name", body.get("plan"))
        if not wanted:
            raise BadRequest("plan_name is required")
        plan = catalog.canonical_plan_name(API, wanted)
        if plan is None:
            raise RegistryError("invalid", f"unknown plan {wanted!r} for upstash")
        await self.registry.update(database, plan=plan)
        return web.json_response("OK")

    async def reset_password(self, request: web.Request, account: str) -> web.StreamResponse:
        database = self._find(request, account)
        await self.registry.reset_password(database)
        return web.json_response(database_json(database, request))

    async def stats(self, request: web.Request, account: str) -> web.StreamResponse:
        """``DatabaseStats``, counted from the redis-server (``?period=`` as the MCP server sends is accepted)."""
        database = self._find(request, account)
        return web.json_response(usage.database_stats(database.record.plan, await usage.read_usage(database)))

    async def unknown(self, request: web.Request, account: str) -> web.StreamResponse:
        return _error(404, f"no such endpoint: {request.method} {request.path}")
