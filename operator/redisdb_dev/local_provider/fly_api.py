"""The Fly.io GraphQL face (docs/wire-contract.md): ``POST /graphql`` with the add-on queries and mutations.

Field errors come back as HTTP 200 with ``errors[].message`` and ``extensions.code``, as Fly does; only an
injected fault or an internal failure changes the HTTP status.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from redisdb_operator.providers import catalog
from redisdb_operator.providers.base import ProviderType

from . import fly_schema, graphql, usage
from .gate import WireGate, counted_operation
from .registry import LocalDatabase, Registry, RegistryError
from .rest_api import base_url, url_host
from .settings import Settings

log = logging.getLogger(__name__)

API = ProviderType.FLY
# addOnProvider("upstash_redis").excludedRegions: the real list is runtime data no source prints (reference 3.7);
# one current region stands in for it, so that clients are seen to subtract it.
EXCLUDED_REGIONS = ("jnb",)
ADDON_TYPES = ("upstash_redis", "redis")  # "redis" is the deprecated enum value for the same thing

# flyctl hard-codes the first two ids (internal/command/redis); the fixed plans get stable local ids.
PLAN_IDS: dict[str, str] = {
    "free": "x7M0gyB764ggwt6YZLRK",
    "payg": "ekQ85Yjkw155ohQ5ALYq0M",
    **{name: f"local_{name}" for name in catalog.PLANS[API] if name not in ("free", "payg")},
}
PLAN_BY_ID = {plan_id: name for name, plan_id in PLAN_IDS.items()}
# Monthly prices in cents from Fly's docs (provider-apis.md §3.5); only `flyctl redis plans` shows them.
_PRICE_CENTS = {"fixed_250mb": 1000, "fixed_1gb": 2000, "fixed_5gb": 10000, "fixed_10gb": 20000, "fixed_50gb": 40000}

_CODES = {
    "invalid": "VALIDATION_ERROR",
    "exists": "ALREADY_EXISTS",
    "not_found": "NOT_FOUND",
    "unavailable": "SERVICE_UNAVAILABLE",
}
_UNAUTHORIZED = {
    "data": None,
    "errors": [{"message": "You must be authenticated to view this.", "extensions": {"code": "UNAUTHORIZED"}}],
}

Resolver = Callable[[dict[str, Any]], Awaitable[Any]]

# Per request: whether the query selects AddOn.stats (only then is each redis-server asked), and the base URL the
# dashboard links point at (the local provider serves them itself).
_STATS_SELECTED: ContextVar[bool] = ContextVar("stats_selected", default=False)
_BASE_URL: ContextVar[str] = ContextVar("base_url", default="")


def selects(
    selections: Sequence[graphql.Selection] | None, name: str, fragments: dict[str, list[graphql.Selection]]
) -> bool:
    """Whether a field called ``name`` is selected anywhere below ``selections`` (through fragments too)."""
    for selection in selections or []:
        if isinstance(selection, graphql.Field):
            if selection.name == name or selects(selection.selections, name, fragments):
                return True
        elif isinstance(selection, graphql.InlineFragment):
            if selects(selection.selections, name, fragments):
                return True
        elif selects(fragments.get(selection.name), name, fragments):
            return True
    return False


# The organizations the current request's token sees (set per request in FlyApi.handle).
_ORGS: contextvars.ContextVar[list[str]] = contextvars.ContextVar("fly_orgs")
MACAROON_PREFIXES = ("fm1r_", "fm1a_", "fm2_")
_SCHEMES = ("FlyV1 ", "Bearer ")


def is_macaroon(token: str) -> bool:
    return any(part.strip().startswith(MACAROON_PREFIXES) for part in token.split(","))


def bare_token(token: str) -> str:
    """A configured token without the scheme ``fly tokens create`` prints before it."""
    token = token.strip()
    for scheme in _SCHEMES:
        if token.startswith(scheme):
            return token[len(scheme) :].strip()
    return token


class _Invalid(Exception):
    """The document or its variables do not fit Fly's schema: errors already in Fly's shape."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"] if errors else "invalid")
        self.errors = errors


class FieldError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _size_text(size: int) -> str:
    gib, mib = 1024**3, 1024**2
    return f"{size // gib} GB" if size % gib == 0 else f"{size // mib} MB"


def plan_json(name: str) -> dict[str, Any]:
    plan = catalog.plan(API, name)
    assert plan is not None
    return {
        "__typename": "AddOnPlan",
        "id": PLAN_IDS[name],
        "name": name,
        "displayName": plan.display_name,
        "description": f"{plan.display_name} plan (local provider)",
        "maxDataSize": _size_text(plan.max_data_size_bytes),
        "pricePerMonth": _PRICE_CENTS.get(name, 0),
        "maxCommandsPerSec": None,
        "maxConcurrentConnections": None,
        "maxDailyBandwidth": None,
        "maxDailyCommands": None,
        "maxRequestSize": None,
    }


def _provider_json() -> dict[str, Any]:
    return {
        "__typename": "AddOnProvider",
        "id": "upstash_redis",
        "name": "upstash_redis",
        "displayName": "Upstash for Redis",
        "excludedRegions": [_region_json(code) for code in EXCLUDED_REGIONS],
        "regions": [_region_json(code) for code in catalog.REGIONS[API]],
        "asyncProvisioning": False,
        "autoProvision": True,
        "beta": False,
        "selectName": True,
        "selectRegion": True,
        "selectReplicaRegions": True,
        "tosAgreement": None,
        "tosUrl": None,
    }


def _region_json(code: str) -> dict[str, Any]:
    region = catalog.region(API, code)
    assert region is not None
    return {
        "__typename": "Region",
        "code": code,
        "name": region.name,
        "deprecated": region.deprecated,
        "gatewayAvailable": code not in ("gru", "jnb"),
        "requiresPaidPlan": False,
        "latitude": None,
        "longitude": None,
        "processGroup": None,
    }


def _offered(code: str) -> None:
    """Refuse a new database (or replica) where flyctl offers none: a deprecated or excluded region."""
    region = catalog.region(API, code)
    if region is not None and (region.deprecated or code in EXCLUDED_REGIONS):
        current = [c for c, r in catalog.REGIONS[API].items() if not r.deprecated and c not in EXCLUDED_REGIONS]
        why = "deprecated" if region.deprecated else "excluded for upstash_redis"
        raise FieldError(
            "VALIDATION_ERROR", f"region {code} is not available ({why}); choose one of {', '.join(current)}"
        )


class FlyApi:
    def __init__(self, registry: Registry, gate: WireGate, settings: Settings) -> None:
        self.registry = registry
        self.gate = gate
        self.settings = settings
        self.org_slugs = settings.fly_org_ids()  # id -> slug
        self._sso_key = secrets.token_bytes(32)  # signs the dashboard sign-on links for this process's lifetime
        self.queries: dict[str, Resolver] = {
            "organization": self.organization,
            "addOnPlans": self.add_on_plans,
            "addOn": self.add_on,
            "addOns": self.add_ons,
            "addOnProvider": self.add_on_provider,
            "platform": self.platform,
        }
        self.mutations: dict[str, Resolver] = {
            "createAddOn": self.create_add_on,
            "updateAddOn": self.update_add_on,
            "deleteAddOn": self.delete_add_on,
            "resetAddOnPassword": self.reset_add_on_password,
        }

    @property
    def tokens(self) -> list[tuple[str, list[str]]]:
        """(token, organizations it sees): "ORG:TOKEN" scopes a token to one organization, a bare token sees all.

        Read from the settings at each request: the admin API adds and revokes tokens while the provider runs.
        """
        settings = self.settings
        tokens: list[tuple[str, list[str]]] = []
        for entry in settings.fly_tokens:
            org, sep, rest = entry.partition(":")
            if sep and org in settings.fly_orgs:
                tokens.append((bare_token(rest), [org]))
            else:
                tokens.append((bare_token(entry), list(settings.fly_orgs)))
        return tokens

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/graphql", self.handle), web.get("/dashboard/sso/{kind}/{ident}", self.dashboard)]

    # -- transport -----------------------------------------------------------------------------------------------

    def _token_orgs(self, request: web.Request) -> list[str] | None:
        """The organizations the request's token may see, or None when it is not a known token sent as Fly wants.

        As fly-go sends them: macaroon tokens (``fm1r_``, ``fm1a_``, ``fm2_``) with the ``FlyV1`` scheme, older
        tokens with ``Bearer``; a token pasted with its scheme into the other (``Bearer FlyV1 fm2_...``) is refused.
        """
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if not token or scheme != ("FlyV1" if is_macaroon(token) else "Bearer"):
            return None
        for known, orgs in self.tokens:
            if hmac.compare_digest(token.encode(), known.encode()):
                return orgs
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        orgs = self._token_orgs(request)  # before any injected fault: Fly authenticates first
        if orgs is None:
            self.gate.count(["fly:unauthorized"])
            return web.json_response(_UNAUTHORIZED)
        try:
            body = json.loads(await request.text())
            if not isinstance(body, dict) or not isinstance(body.get("query"), str):
                raise graphql.GraphQLError('The request body must be a JSON object with a "query" string.')
            variables = body.get("variables") or {}
            if not isinstance(variables, dict):
                raise graphql.GraphQLError('"variables" must be a JSON object.')
            errors, coerced = fly_schema.check(body["query"], variables, body.get("operationName"))
            if errors:
                raise _Invalid(errors)
            document = graphql.parse(body["query"])
            operation = document.operation(body.get("operationName"))
            fields = graphql.root_fields(operation, document.fragments)
        except (json.JSONDecodeError, graphql.GraphQLError, _Invalid) as error:
            failure = await self.gate.enter(["fly:invalid"])
            if failure is not None:
                return self._failure(failure.status, failure.message, failure.headers)
            if isinstance(error, _Invalid):
                return web.json_response({"errors": error.errors})
            message = str(error) if isinstance(error, graphql.GraphQLError) else "The request body is not JSON."
            return web.json_response({"errors": [{"message": message}]})

        failure = await self.gate.enter([f"fly:{counted_operation(selected)}" for selected in fields])
        if failure is not None:
            return self._failure(failure.status, failure.message, failure.headers)
        token = _ORGS.set(orgs)
        try:
            _BASE_URL.set(base_url(request))
            _STATS_SELECTED.set(selects(fields, "stats", document.fragments))
            return web.json_response(await self._execute(operation.kind, fields, document.fragments, dict(coerced)))
        except graphql.GraphQLError as error:
            return web.json_response({"errors": [{"message": str(error)}]})
        finally:
            _ORGS.reset(token)

    @staticmethod
    def _failure(status: int, message: str, headers: dict[str, str]) -> web.Response:
        return web.json_response({"errors": [{"message": message}]}, status=status, headers=headers)

    async def _execute(
        self,
        kind: str,
        fields: list[graphql.Field],
        fragments: dict[str, list[graphql.Selection]],
        variables: dict[str, Any],
    ) -> dict[str, Any]:
        resolvers = self.mutations if kind == "mutation" else self.queries if kind == "query" else {}
        type_name = "Mutation" if kind == "mutation" else "Query"
        for selected in fields:
            if selected.name not in resolvers and selected.name != "__typename":
                raise graphql.GraphQLError(f'Cannot query field "{selected.name}" on type "{type_name}".')
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for selected in fields:
            if selected.name == "__typename":
                data[selected.key] = type_name
                continue
            arguments = graphql.resolve_value(selected.arguments, variables)
            try:
                value = await resolvers[selected.name](arguments)
                data[selected.key] = graphql.project(value, selected.selections, fragments, variables)
            except FieldError as error:
                data[selected.key] = None
                errors.append({"message": error.message, "path": [selected.key], "extensions": {"code": error.code}})
            except RegistryError as error:
                data[selected.key] = None
                code = _CODES[error.kind]
                message = "Name has already been taken" if error.kind == "exists" else error.message
                errors.append({"message": message, "path": [selected.key], "extensions": {"code": code}})
            except RedisError:
                log.exception("fly:%s failed talking to redis-server", selected.name)
                data[selected.key] = None
                errors.append(
                    {
                        "message": "database temporarily unavailable",
                        "path": [selected.key],
                        "extensions": {"code": "SERVICE_UNAVAILABLE"},
                    }
                )
        result: dict[str, Any] = {"data": data}
        if errors:
            result["errors"] = errors
        return result

    # -- shapes --------------------------------------------------------------------------------------------------

    def _org_json(self, slug: str) -> dict[str, Any]:
        def add_ons(arguments: dict[str, Any]) -> dict[str, Any]:
            wanted = arguments.get("type")
            nodes = [] if wanted not in (None, *ADDON_TYPES) else self.registry.owned(API, [slug])
            page, page_info = connection_page(nodes, arguments)
            return {"nodes": [self._add_on_json(db) for db in page], "pageInfo": page_info, "totalCount": len(nodes)}

        return {
            "__typename": "Organization",
            "id": next(org for org, org_slug in self.org_slugs.items() if org_slug == slug),
            "slug": slug,
            "name": slug,
            "rawSlug": slug,
            "paidPlan": True,
            "addOns": add_ons,
            "addOnSsoLink": self._sso_link("org", slug),
        }

    def _sso_token(self, kind: str, ident: str) -> str:
        return hmac.new(self._sso_key, f"{kind}:{ident}".encode(), hashlib.sha256).hexdigest()

    def _sso_link(self, kind: str, ident: str) -> str:
        """A sign-on link as Fly's ``ssoLink``: whoever holds it is signed in, so it is a credential."""
        return f"{_BASE_URL.get()}/dashboard/sso/{kind}/{ident}?token={self._sso_token(kind, ident)}"

    async def _stats(self, database: LocalDatabase) -> dict[str, Any] | None:
        """``AddOn.stats`` when the query asks for it: the Upstash stats object (the Fly shape is undocumented)."""
        if not _STATS_SELECTED.get():
            return None
        try:
            return usage.database_stats(database.record.plan, await usage.read_usage(database))
        except RedisError:
            log.warning("fly: no stats for %s: its redis-server did not answer", database.record.id)
            return None

    async def dashboard(self, request: web.Request) -> web.StreamResponse:
        """The page a sign-on link opens: the add-on (or the organization's add-ons), never a password."""
        kind, ident = request.match_info["kind"], request.match_info["ident"]
        token = request.query.get("token", "")
        if kind not in ("addon", "org") or not hmac.compare_digest(token, self._sso_token(kind, ident)):
            return web.Response(status=401, text="sign-on link invalid or expired\n")
        if kind == "org":
            databases = self.registry.owned(API, [ident])
        else:
            databases = [db for db in self.registry.owned(API, self.settings.fly_orgs) if db.record.id == ident]
        rows = "".join(
            f"<li>{db.record.name}: {db.record.plan}, {db.record.primary_region}"
            f"{' + ' + ', '.join(db.record.read_regions) if db.record.read_regions else ''}</li>"
            for db in databases
        )
        return web.Response(
            text=f"<html><body><h1>Upstash Redis (local)</h1><ul>{rows}</ul></body></html>\n", content_type="text/html"
        )

    def _add_on_json(self, database: LocalDatabase, stats: dict[str, Any] | None = None) -> dict[str, Any]:
        record = database.record
        host, port = database.public_host, database.primary.port
        url = f"redis://default:{record.password}@{url_host(host)}:{port}"
        created = datetime.fromtimestamp(record.creation_time, UTC).isoformat().replace("+00:00", "Z")
        return {
            "__typename": "AddOn",
            "id": record.id,
            "name": record.name,
            "primaryRegion": record.primary_region,
            "readRegions": list(record.read_regions),
            "status": "ready",
            "errorMessage": None,
            "options": {"eviction": record.eviction},
            "metadata": dict(record.metadata),
            "publicUrl": url,
            "privateIp": host,
            "password": record.password,
            "hostname": host,
            "environment": {"REDIS_URL": url},
            "ssoLink": self._sso_link("addon", record.id),
            "createdAt": created,
            "updatedAt": created,
            "addOnPlan": plan_json(record.plan),
            "addOnPlanName": catalog.PLANS[API][record.plan].display_name,
            "addOnProvider": _provider_json(),
            "organization": self._org_json(record.owner),
            "app": None,
            "apps": {"nodes": []},
            "stats": stats,
        }

    def _find(self, arguments: dict[str, Any]) -> LocalDatabase:
        add_on_id, name = arguments.get("addOnId") or arguments.get("id"), arguments.get("name")
        orgs = _ORGS.get()
        database: LocalDatabase | None = None
        if isinstance(add_on_id, str) and add_on_id:
            try:
                database = self.registry.get(API, orgs, add_on_id)
            except RegistryError:
                database = None
        elif isinstance(name, str) and name:
            database = self.registry.find_by_name(API, orgs, name)
        if database is None:
            raise FieldError("NOT_FOUND", "Could not find AddOn")
        return database

    # -- queries -------------------------------------------------------------------------------------------------

    async def organization(self, arguments: dict[str, Any]) -> Any:
        slug = arguments.get("slug")
        if slug not in _ORGS.get():
            raise FieldError("NOT_FOUND", "Could not find Organization")
        return self._org_json(slug)

    async def add_on_plans(self, arguments: dict[str, Any]) -> Any:
        if arguments.get("type") not in (None, *ADDON_TYPES):
            return {"nodes": []}
        return {"nodes": [plan_json(name) for name in catalog.PLANS[API]]}

    async def add_on(self, arguments: dict[str, Any]) -> Any:
        database = self._find(arguments)
        return self._add_on_json(database, await self._stats(database))

    async def add_ons(self, arguments: dict[str, Any]) -> Any:
        if arguments.get("type") not in (None, *ADDON_TYPES):
            return {"nodes": []}
        nodes = self.registry.owned(API, _ORGS.get())
        page, page_info = connection_page(nodes, arguments)
        stats = await asyncio.gather(*(self._stats(db) for db in page))
        return {
            "nodes": [self._add_on_json(db, s) for db, s in zip(page, stats, strict=True)],
            "pageInfo": page_info,
            "totalCount": len(nodes),
        }

    async def add_on_provider(self, arguments: dict[str, Any]) -> Any:
        if arguments.get("name") not in ADDON_TYPES:
            raise FieldError("NOT_FOUND", "Could not find AddOnProvider")
        return _provider_json()

    async def platform(self, arguments: dict[str, Any]) -> Any:
        return {
            "__typename": "FlyPlatform",
            "requestRegion": None,
            "regions": [_region_json(code) for code in catalog.REGIONS[API]],
        }

    # -- mutations -----------------------------------------------------------------------------------------------

    @staticmethod
    def _input(arguments: dict[str, Any]) -> dict[str, Any]:
        value = arguments.get("input")
        if not isinstance(value, dict):
            raise FieldError("VALIDATION_ERROR", "input is required")
        return value

    @staticmethod
    def _plan(plan_id: Any) -> str:
        if not isinstance(plan_id, str) or plan_id not in PLAN_BY_ID:
            raise FieldError("VALIDATION_ERROR", f"unknown plan id {plan_id!r}; list plans with addOnPlans")
        return PLAN_BY_ID[plan_id]

    @staticmethod
    def _regions(value: Any) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(code, str) for code in value):
            raise FieldError("VALIDATION_ERROR", "readRegions must be a list of region codes")
        return value

    @staticmethod
    def _options(value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if isinstance(value, str):  # JSON scalars sometimes arrive encoded
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise FieldError("VALIDATION_ERROR", "options must be a JSON object") from error
        if not isinstance(value, dict):
            raise FieldError("VALIDATION_ERROR", "options must be a JSON object")
        return value

    async def create_add_on(self, arguments: dict[str, Any]) -> Any:
        request = self._input(arguments)
        if request.get("type") not in ADDON_TYPES:
            raise FieldError("VALIDATION_ERROR", f"unsupported add-on type {request.get('type')!r}; use upstash_redis")
        slug = self.org_slugs.get(str(request.get("organizationId")))
        if slug is None or slug not in _ORGS.get():
            raise FieldError("NOT_FOUND", "Could not find Organization")
        primary_region = request.get("primaryRegion")
        if not isinstance(primary_region, str) or not primary_region:
            raise FieldError("VALIDATION_ERROR", "primaryRegion is required")
        name = request.get("name") or f"local-redis-{secrets.token_hex(3)}"
        if not isinstance(name, str):
            raise FieldError("VALIDATION_ERROR", "name must be a string")
        plan = self._plan(request["planId"]) if request.get("planId") else catalog.DEFAULT_PLAN
        read_regions = self._regions(request.get("readRegions"))
        for code in [primary_region, *read_regions]:
            _offered(code)
        if catalog.PLANS[API][plan].legacy:
            raise FieldError(
                "VALIDATION_ERROR",
                f"plan {catalog.PLANS[API][plan].display_name} is a legacy plan: not offered for new databases",
            )
        options = self._options(request.get("options"))
        database = await self.registry.create(
            api=API,
            owner=slug,
            name=name,
            primary_region=primary_region,
            read_regions=read_regions,
            plan=plan,
            eviction=bool(options.get("eviction")),
            id_style="short",
        )
        return {"addOn": self._add_on_json(database)}

    async def update_add_on(self, arguments: dict[str, Any]) -> Any:
        request = self._input(arguments)
        database = self._find(request)
        if request.get("readRegions") is not None:
            for code in set(self._regions(request["readRegions"])) - set(database.record.read_regions):
                _offered(code)  # a replica that already exists stays where it is
        options = self._options(request["options"]) if "options" in request else None
        metadata = request.get("metadata")
        await self.registry.update(
            database,
            read_regions=self._regions(request["readRegions"]) if request.get("readRegions") is not None else None,
            plan=self._plan(request["planId"]) if request.get("planId") else None,
            # Fly keeps the current state when the key is missing; only an explicit false turns eviction off.
            eviction=bool(options["eviction"]) if options is not None and "eviction" in options else None,
            metadata=metadata if isinstance(metadata, dict) else None,
        )
        return {"addOn": self._add_on_json(database)}

    async def delete_add_on(self, arguments: dict[str, Any]) -> Any:
        database = self._find(self._input(arguments))
        await self.registry.delete(database)
        return {"deletedAddOnName": database.record.name}

    async def reset_add_on_password(self, arguments: dict[str, Any]) -> Any:
        database = self._find(self._input(arguments))
        await self.registry.reset_password(database)
        return {"addOn": self._add_on_json(database)}


def _cursor(index: int) -> str:
    """An opaque cursor, as graphql-ruby's connections hand out (base64 of the position)."""
    return base64.b64encode(f"cursor:{index}".encode()).decode()


def _position(cursor: Any) -> int | None:
    if not isinstance(cursor, str) or not cursor:
        return None
    try:
        return int(base64.b64decode(cursor).decode().removeprefix("cursor:"))
    except ValueError as error:
        raise FieldError("INVALID_CURSOR", f"invalid cursor {cursor!r}") from error


def connection_page(items: list[Any], arguments: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """A Relay connection's page of `items` for first/after (and last/before), with its pageInfo."""
    start, end = 0, len(items)
    after, before = _position(arguments.get("after")), _position(arguments.get("before"))
    if after is not None:
        start = min(len(items), after + 1)
    if before is not None:
        end = max(start, min(end, before))
    first, last = arguments.get("first"), arguments.get("last")
    if isinstance(first, int) and first >= 0:
        end = min(end, start + first)
    if isinstance(last, int) and last >= 0:
        start = max(start, end - last)
    page = items[start:end]
    return page, {
        "hasNextPage": end < len(items),
        "hasPreviousPage": start > 0,
        "startCursor": _cursor(start) if page else None,
        "endCursor": _cursor(end - 1) if page else None,
    }
