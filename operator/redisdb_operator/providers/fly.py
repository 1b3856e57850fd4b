"""Fly.io GraphQL adapter for Upstash Redis add-ons, speaking the documents in docs/wire-contract.md.

Fly addresses most mutations by add-on *name* while the operator stores the *id*, and changes plan, regions
and options in one ``updateAddOn``; so update, reset and delete first read the add-on, then act.
GraphQL reports failures as HTTP 200 with ``errors[]``; those are classified here into the typed errors.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

from . import catalog
from .base import (
    AlreadyExistsError,
    CreateDatabaseRequest,
    Database,
    DatabaseUpdate,
    DatabaseUsage,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    ProviderType,
    RateLimitedError,
    UnauthorizedError,
)
from .http import DEFAULT_RETRY, DEFAULT_TIMEOUTS, HttpTransport, RetryPolicy, Timeouts, redact
from .stats import parse_stats

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.fly.io"
ADD_ON_TYPE = "upstash_redis"
# flyctl hard-codes these two (internal/command/redis/create.go); they double as a fallback plan table.
FREE_PLAN_ID = "x7M0gyB764ggwt6YZLRK"
PAYG_PLAN_ID = "ekQ85Yjkw155ohQ5ALYq0M"
_KNOWN_PLAN_IDS = {FREE_PLAN_ID: "free", PAYG_PLAN_ID: "payg"}

_FRAGMENT = """
fragment AddOn on AddOn { id name primaryRegion readRegions status errorMessage options metadata publicUrl privateIp
  password hostname createdAt addOnPlan { id name displayName } organization { id slug } }"""

ORG_QUERY = "query Org($slug: String!) { organization(slug: $slug) { id slug } }"
PLANS_QUERY = (
    "query Plans { addOnPlans(type: upstash_redis) { nodes { id name displayName maxDataSize pricePerMonth } } }"
)
CREATE_MUTATION = (
    "mutation Create($input: CreateAddOnInput!) { createAddOn(input: $input) { addOn { ...AddOn } } }" + _FRAGMENT
)
GET_QUERY = "query Get($id: ID) { addOn(id: $id) { ...AddOn } }" + _FRAGMENT
GET_BY_NAME_QUERY = (
    "query GetByName($name: String, $provider: String) { addOn(name: $name, provider: $provider) { ...AddOn } }"
    + _FRAGMENT
)
# A connection (reference section 6: first/after/before/last): read page by page, LIST_PAGE_SIZE add-ons at a time.
LIST_QUERY = (
    "query List($slug: String!, $first: Int, $after: String) { organization(slug: $slug) { "
    "addOns(type: upstash_redis, first: $first, after: $after) { nodes { ...AddOn } pageInfo { hasNextPage endCursor } "
    "} } }" + _FRAGMENT
)
LIST_PAGE_SIZE = 500
UPDATE_MUTATION = (
    "mutation Update($addOnId: ID!, $planId: ID!, $readRegions: [String!]!, $options: JSON!, $metadata: JSON!) {\n"
    "  updateAddOn(input: {addOnId: $addOnId, planId: $planId, readRegions: $readRegions, options: $options, "
    "metadata: $metadata}) { addOn { id } } }"
)
DELETE_MUTATION = (
    'mutation Delete($name: String) { deleteAddOn(input: {name: $name, provider: "upstash_redis"}) '
    "{ deletedAddOnName } }"
)
# `AddOn.stats` is JSON ("Redis database statistics") whose shape no source documents: read as Upstash's stats.
STATS_QUERY = "query Stats($id: ID) { addOn(id: $id) { id stats } }"
RESET_MUTATION = (
    "mutation Reset($name: String!) { resetAddOnPassword(input: {name: $name}) { addOn { ...AddOn } } }" + (_FRAGMENT)
)

# The live catalog flyctl builds its prompts from (reference sections 3.7 and 6): regions with their deprecated flag,
# the ones Upstash excludes, and the plans with prices (cents per month) and sizes.
CATALOG_QUERY = (
    "query Catalog { platform { regions { code name deprecated } } "
    'addOnProvider(name: "upstash_redis") { excludedRegions { code } } '
    "addOnPlans(type: upstash_redis) { nodes { id name displayName maxDataSize pricePerMonth } } }"
)

# What each document is called in metrics: its root field (ids and names stay out of metric labels).
_METRIC_OPERATIONS = {
    ORG_QUERY: "graphql:organization",
    PLANS_QUERY: "graphql:addOnPlans",
    CREATE_MUTATION: "graphql:createAddOn",
    GET_QUERY: "graphql:addOn",
    GET_BY_NAME_QUERY: "graphql:addOnByName",
    LIST_QUERY: "graphql:organization.addOns",
    UPDATE_MUTATION: "graphql:updateAddOn",
    DELETE_MUTATION: "graphql:deleteAddOn",
    RESET_MUTATION: "graphql:resetAddOnPassword",
    STATS_QUERY: "graphql:addOn.stats",
    CATALOG_QUERY: "graphql:catalog",
}


# fly-go's tokens.GraphQLHeader: macaroon tokens (these prefixes, possibly several joined by commas) go with the
# FlyV1 scheme, older tokens with Bearer (reference section 6, "Auth").
_MACAROON_PREFIXES = ("fm1r_", "fm1a_", "fm2_")
_SCHEMES = ("bearer ", "flyv1 ")


def fly_authorization(token: str) -> str:
    """The ``Authorization`` value for a Fly token, whatever scheme (if any) the user pasted with it.

    ``fly tokens create org`` prints ``FlyV1 fm2_…``; sending that as ``Bearer FlyV1 fm2_…`` is refused.
    """
    bare = token.strip()
    while bare.lower().startswith(_SCHEMES):
        bare = bare.split(None, 1)[1].strip() if len(bare.split(None, 1)) > 1 else ""
    if any(part.strip().startswith(_MACAROON_PREFIXES) for part in bare.split(",")):
        return f"FlyV1 {bare}"
    return f"Bearer {bare}"


class FlyClient:
    """One Fly organization's Upstash Redis add-ons, through Fly's GraphQL API."""

    provider_type = ProviderType.FLY
    names_are_unique = True  # add-ons are looked up by name alone (`addOn(name:, provider:)`)

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        token: str,
        organization: str = "personal",
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy = DEFAULT_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        base_url = base_url.rstrip("/").removesuffix("/graphql")
        self.organization = organization
        self._http = HttpTransport(
            base_url,
            provider="fly",
            headers={"Authorization": fly_authorization(token), "Content-Type": "application/json"},
            secrets=(token, fly_authorization(token).split(" ", 1)[1]),
            timeouts=timeouts,
            retry=retry,
            transport=transport,
        )
        self._organization_id: str | None = None
        self._plans: tuple[Mapping[str, Any], ...] | None = None
        # One in-flight fill of each look-up cache: 32 concurrent creates must not each ask for the organization.
        self._org_lock = asyncio.Lock()
        self._plans_lock = asyncio.Lock()
        # What the last observation of each add-on showed beyond the Database (plan id, options, metadata): an
        # update of the observed Database, a delete or a password reset need no read of their own.
        self._seen: dict[str, tuple[Database, Mapping[str, Any]]] = {}
        self._names: dict[str, str] = {}  # id -> name of every add-on observed (names never change)

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- protocol ----------------------------------------------------------------------------------------

    def _observed(self, add_on: Any, *, operation: str) -> Database:
        """parse_add_on, remembering what update/delete/reset need of this add-on (see _seen)."""
        database = parse_add_on(add_on, operation=operation)
        self._seen[database.id] = (database, _mutable_part(add_on))
        self._names[database.id] = database.name
        return database

    async def create(self, request: CreateDatabaseRequest) -> Database:
        organization_id = await self._org_id()
        plan_id = await self._plan_id(request.plan or catalog.DEFAULT_PLAN)
        add_on_input: dict[str, Any] = {
            "organizationId": organization_id,
            "name": request.name,
            "primaryRegion": request.primary_region,
            "readRegions": list(request.read_regions),
            "planId": plan_id,
            "type": ADD_ON_TYPE,
        }
        if request.eviction:  # flyctl sets option keys only when true
            add_on_input["options"] = {"eviction": True}
        data = await self._graphql(
            CREATE_MUTATION, {"input": add_on_input}, operation=f"create add-on {request.name!r}", idempotent=False
        )
        return self._observed(_dig(data, "createAddOn", "addOn"), operation="create add-on")

    async def get(self, database_id: str) -> Database:
        data = await self._graphql(GET_QUERY, {"id": database_id}, operation=f"get add-on {database_id}")
        add_on = data.get("addOn")
        if add_on is None:
            self._seen.pop(database_id, None)
            self._names.pop(database_id, None)
            raise NotFoundError(f"fly get add-on {database_id}: not found")
        return self._observed(add_on, operation="get add-on")

    async def find_by_name(self, name: str) -> Database | None:
        try:
            data = await self._graphql(
                GET_BY_NAME_QUERY, {"name": name, "provider": ADD_ON_TYPE}, operation=f"find add-on {name!r}"
            )
        except NotFoundError:
            return None
        add_on = data.get("addOn")
        if not isinstance(add_on, Mapping):
            return None
        slug = _str(_dig(add_on, "organization", "slug"))
        if slug and slug != self.organization:
            # Same name in another organization: not ours to adopt; a create will report the name as taken.
            log.info("fly add-on %r exists in organization %r, not %r", name, slug, self.organization)
            return None
        return self._observed(add_on, operation="find add-on")

    async def list(self) -> Sequence[Database]:
        """Every add-on of the organization, page by page (a connection: `first`/`after`, `pageInfo`)."""
        databases: list[Database] = []
        seen: dict[str, tuple[Database, Mapping[str, Any]]] = {}
        cursor: str | None = None
        for _ in range(10_000):  # a cursor that never ends is the server's bug, not a reason to loop forever
            variables: dict[str, Any] = {"slug": self.organization, "first": LIST_PAGE_SIZE, "after": cursor}
            try:
                data = await self._graphql(LIST_QUERY, variables, operation="list add-ons")
            except NotFoundError:
                raise self._unknown_organization() from None
            organization = data.get("organization")
            if organization is None:
                raise self._unknown_organization()
            nodes = _dig(organization, "addOns", "nodes")
            for node in nodes if isinstance(nodes, list) else []:
                if isinstance(node, Mapping):
                    database = parse_add_on(node, operation="list add-ons")
                    databases.append(database)
                    seen[database.id] = (database, _mutable_part(node))
            page = _dig(organization, "addOns", "pageInfo")
            cursor = _str(page.get("endCursor")) if isinstance(page, Mapping) else ""
            if not (isinstance(page, Mapping) and page.get("hasNextPage") is True and cursor):
                break
        self._seen = seen
        self._names = {database.id: database.name for database in databases}
        return databases

    async def update(self, database: Database, update: DatabaseUpdate) -> Database:
        if update.is_empty():
            return database
        database_id = database.id
        remembered = self._seen.pop(database_id, None)
        if remembered is not None and (remembered[0] is database or remembered[0] == database):
            current = remembered[1]  # what the observation passed in showed: no read of its own
        else:
            current = await self._get_raw(database_id)
        raw_plan = current.get("addOnPlan")
        current_plan: Mapping[str, Any] = raw_plan if isinstance(raw_plan, Mapping) else {}
        plan_id = (
            await self._plan_id(update.plan) if update.plan is not None else _str(_dig(current, "addOnPlan", "id"))
        )
        if not plan_id:
            plan_id = await self._plan_id(parse_add_on(current, operation="update add-on").plan)
        read_regions = (
            list(update.read_regions) if update.read_regions is not None else _str_list(current.get("readRegions"))
        )
        options = dict(current.get("options") or {}) if isinstance(current.get("options"), Mapping) else {}
        # flyctl's update (reference section 6): prod_pack is never echoed (a stale copy once turned an active
        # ProdPack off; it has its own typed input), and auto_upgrade exists for fixed plans only.
        options.pop("prod_pack", None)
        if not _is_fixed_plan_id(plan_id, await self._plan_nodes() if update.plan is not None else (current_plan,)):
            options.pop("auto_upgrade", None)
        if update.eviction is not None:
            # An explicit false: a missing key means "keep the current state" to Fly, so it never turns eviction off.
            options["eviction"] = update.eviction
        metadata = current.get("metadata") if isinstance(current.get("metadata"), Mapping) else {}
        await self._graphql(
            UPDATE_MUTATION,
            {
                "addOnId": _str(current.get("id")) or database_id,
                "planId": plan_id,
                "readRegions": read_regions,
                "options": options,
                "metadata": metadata,
            },
            operation=f"update add-on {database_id}",
            idempotent=True,  # the whole desired state is sent, so a repeat lands in the same place
        )
        updated = update.applied_to(database)
        # What we sent is what the add-on now holds (prod_pack, never echoed, stays at the server): the next update
        # of this database needs no read either.
        plan_part: Mapping[str, Any] = current_plan
        if plan_id != _str(current_plan.get("id")):
            nodes = await self._plan_nodes()
            plan_part = next((node for node in nodes if _str(node.get("id")) == plan_id), {"id": plan_id})
        self._seen[database_id] = (
            updated,
            {
                **current,
                "addOnPlan": plan_part,
                "readRegions": read_regions,
                "options": options,
                "metadata": metadata,
            },
        )
        return updated

    async def reset_password(self, database_id: str) -> Database:
        name = await self._name_of(database_id)
        data = await self._graphql(
            RESET_MUTATION, {"name": name}, operation=f"reset password of add-on {database_id}", idempotent=False
        )
        add_on = _dig(data, "resetAddOnPassword", "addOn")
        database = parse_add_on(add_on, operation="reset password") if isinstance(add_on, Mapping) else None
        if database is None or not database.password:
            return await self.get(database_id)
        return database

    async def delete(self, database_id: str) -> None:
        try:
            name = await self._name_of(database_id)
            self._seen.pop(database_id, None)
            self._names.pop(database_id, None)
            await self._graphql(
                DELETE_MUTATION, {"name": name}, operation=f"delete add-on {database_id}", idempotent=True
            )
        except NotFoundError:
            log.debug("fly add-on %s was already gone", database_id)

    async def usage(self, database_id: str) -> DatabaseUsage | None:
        data = await self._graphql(
            STATS_QUERY,
            {"id": database_id},
            operation=f"read stats of add-on {database_id}",
            idempotent=False,  # one attempt: a missed read waits for the next interval, not spend the quota
        )
        add_on = data.get("addOn")
        if not isinstance(add_on, Mapping):
            raise NotFoundError(f"fly read stats of add-on {database_id}: not found")
        return parse_stats(add_on.get("stats"))

    async def catalog(self, observed_at: str) -> dict[str, Any]:
        """Regions and plans as Fly offers them now, in RedisProvider.status.catalog's shape (source "live")."""
        data = await self._graphql(CATALOG_QUERY, {}, operation="read regions and plans")
        excluded = {
            _str(region.get("code"))
            for region in (_dig(data, "addOnProvider", "excludedRegions") or [])
            if isinstance(region, Mapping)
        }
        regions = []
        for region in _dig(data, "platform", "regions") or []:
            if not isinstance(region, Mapping) or not _str(region.get("code")):
                continue
            code, deprecated = _str(region.get("code")), region.get("deprecated") is True
            regions.append(
                {
                    "code": code,
                    "name": _str(region.get("name")) or code,
                    "deprecated": deprecated,
                    "excluded": code in excluded,
                    "readRegionAllowed": not deprecated and code not in excluded,
                }
            )
        plans = []
        for node in _dig(data, "addOnPlans", "nodes") or []:
            if not isinstance(node, Mapping):
                continue
            name = plan_name_of(node)
            known = catalog.plan(ProviderType.FLY, name)
            price = node.get("pricePerMonth")
            display = _str(node.get("displayName")) or name
            plans.append(
                {
                    "name": name,
                    "displayName": display,
                    "pricePerMonth": price / 100 if isinstance(price, int) and not isinstance(price, bool) else None,
                    "maxDataSizeBytes": _size_bytes(node.get("maxDataSize")),
                    "maxReadRegions": known.max_read_regions if known else None,
                    "legacy": known.legacy if known else display.lower() in _LEGACY_DISPLAY_NAMES,
                }
            )
        self._plans = None  # the plan table may have changed too: read it again on the next create or update
        return {"source": "live", "observedAt": observed_at, "regions": regions, "plans": plans}

    # --- helpers -----------------------------------------------------------------------------------------

    async def _name_of(self, database_id: str) -> str:
        """The add-on's name (Fly's mutations take the name, the operator records the id): from the last
        observation when there was one (names never change), else read."""
        name = self._names.get(database_id)
        if name:
            return name
        return _str((await self._get_raw(database_id)).get("name"))

    async def _get_raw(self, database_id: str) -> Mapping[str, Any]:
        data = await self._graphql(GET_QUERY, {"id": database_id}, operation=f"get add-on {database_id}")
        add_on = data.get("addOn")
        if not isinstance(add_on, Mapping):
            raise NotFoundError(f"fly get add-on {database_id}: not found")
        return add_on

    async def _org_id(self) -> str:
        if self._organization_id is not None:
            return self._organization_id
        async with self._org_lock:
            return await self._fill_org_id()

    async def _fill_org_id(self) -> str:
        if self._organization_id is None:
            try:
                data = await self._graphql(
                    ORG_QUERY, {"slug": self.organization}, operation=f"resolve organization {self.organization!r}"
                )
            except NotFoundError:
                raise self._unknown_organization() from None
            organization = data.get("organization")
            organization_id = _str(organization.get("id")) if isinstance(organization, Mapping) else ""
            if not organization_id:
                raise self._unknown_organization()
            self._organization_id = organization_id
        return self._organization_id

    def _unknown_organization(self) -> InvalidRequestError:
        # Not NotFoundError: that would read as "the database is gone" to the reconciler.
        return InvalidRequestError(
            f"fly organization {self.organization!r} not found; set the provider's organization to a slug "
            "the token can access"
        )

    async def _plan_nodes(self) -> tuple[Mapping[str, Any], ...]:
        if self._plans is not None:
            return self._plans
        async with self._plans_lock:
            return await self._fill_plan_nodes()

    async def _fill_plan_nodes(self) -> tuple[Mapping[str, Any], ...]:
        if self._plans is None:
            data = await self._graphql(PLANS_QUERY, {}, operation="list add-on plans")
            nodes = _dig(data, "addOnPlans", "nodes")
            self._plans = tuple(n for n in nodes if isinstance(n, Mapping)) if isinstance(nodes, list) else ()
        return self._plans

    async def _plan_id(self, plan: str) -> str:
        """A canonical plan name (or a Fly plan id / display name) → the Fly plan id."""
        wanted = catalog.canonical_plan_name(ProviderType.FLY, plan)
        nodes = await self._plan_nodes()
        for node in nodes:
            node_id = _str(node.get("id"))
            if plan == node_id or (wanted is not None and plan_name_of(node) == wanted):
                return node_id
        for plan_id, name in _KNOWN_PLAN_IDS.items():
            if plan in (plan_id, name) or wanted == name:
                return plan_id
        available = sorted({plan_name_of(node) for node in nodes} | set(_KNOWN_PLAN_IDS.values()))
        raise InvalidRequestError(f"fly: unknown plan {plan!r}; available: {', '.join(available)}")

    async def _graphql(
        self, document: str, variables: Mapping[str, Any], *, operation: str, idempotent: bool = True
    ) -> Mapping[str, Any]:
        """POST one document; return ``data`` or raise the typed error for ``errors[]``."""
        response = await self._http.request(
            "POST",
            "/graphql",
            operation=operation,
            idempotent=idempotent,
            json_body={"query": document, "variables": dict(variables)},
            metric_operation=_METRIC_OPERATIONS.get(document, "graphql"),
            outcome_of=_graphql_outcome,
        )
        try:
            body = response.json()
        except ValueError:
            raise ProviderError(f"fly {operation}: response is not JSON (HTTP {response.status_code})") from None
        if not isinstance(body, Mapping):
            raise ProviderError(f"fly {operation}: unexpected response shape")
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            raise classify_graphql_errors(errors, operation=f"fly {operation}", redact_text=self._http.redact)
        data = body.get("data")
        if not isinstance(data, Mapping):
            raise ProviderError(f"fly {operation}: response has no data")
        return data


def _graphql_outcome(response: httpx.Response) -> str:
    """The metrics outcome of an HTTP 200 answer: `ok`, or the typed error its `errors[]` stands for."""
    try:
        body = response.json()
    except ValueError:
        return "ProviderError"
    errors = body.get("errors") if isinstance(body, Mapping) else None
    if isinstance(errors, list) and errors:
        return type(classify_graphql_errors(errors, operation="metrics")).__name__
    return "ok"


def classify_graphql_errors(errors: Sequence[Any], *, operation: str, redact_text: Any = redact) -> ProviderError:
    """``errors[]`` → one typed error: ``extensions.code`` when given, else the message text (as fly-go reads it)."""
    messages: list[str] = []
    codes: list[str] = []
    for error in errors:
        if not isinstance(error, Mapping):
            continue
        message = error.get("message")
        if isinstance(message, str) and message:
            messages.append(message)
        extensions = error.get("extensions")
        code = extensions.get("code") if isinstance(extensions, Mapping) else None
        if isinstance(code, str) and code:
            codes.append(code.upper())
    joined = ", ".join(messages) or "unknown GraphQL error"
    text = f"{operation} failed: {redact_text(joined)}"
    for code in codes:
        if code in ("NOT_FOUND",):
            return NotFoundError(text)
        if code in ("ALREADY_EXISTS", "CONFLICT"):
            return AlreadyExistsError(text)
        if code in ("UNAUTHORIZED", "UNAUTHENTICATED", "FORBIDDEN"):
            return UnauthorizedError(text)
        if code in ("RATE_LIMITED", "TOO_MANY_REQUESTS"):
            return RateLimitedError(text, retry_after=None)
        if code in ("VALIDATION_ERROR", "BAD_USER_INPUT", "INVALID_INPUT"):
            return InvalidRequestError(text)
    lowered = joined.lower()
    if "not found" in lowered or "could not find" in lowered:
        return NotFoundError(text)
    if "already" in lowered or "taken" in lowered:
        return AlreadyExistsError(text)
    if "authenticated" in lowered or "unauthorized" in lowered or "not authorized" in lowered:
        return UnauthorizedError(text)
    if any(pattern in lowered for pattern in _NAMED_REFUSALS):
        return InvalidRequestError(text)
    # No source documents Fly's error codes (reference section 6, "Errors"): an error we cannot name is not proof
    # that the request is wrong, so it is retried with the operator's backoff and shown, never a silent stop.
    error = ProviderError(text)
    error.temporary = True
    return error


# Refusals we can name, so retrying the same request cannot help: GraphQL validation of our own document or
# variables (graphql-js wording, which Fly's server uses), and Fly's refusals of a value.
_NAMED_REFUSALS = (
    "cannot query field",
    "unknown argument",
    "unknown type",
    "got invalid value",
    "expected type",
    "was not provided",
    "is not defined by type",
    "syntax error",
    "is not available",
    "is invalid",
    "is not valid",
    "not a valid",
    "can only be changed",
    "is deprecated",
    "is excluded",
    "legacy plan",
)


_LEGACY_DISPLAY_NAMES = {"starter", "standard", "pro 2k", "pro 10k"}  # flyctl create.go refuses these for new DBs
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)\s*$", re.IGNORECASE)
_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def _size_bytes(value: Any) -> int | None:
    """Fly's ``maxDataSize`` ("100 MB", "10 GB") in bytes; None when absent or in a form we do not know."""
    match = _SIZE.match(value) if isinstance(value, str) else None
    return int(float(match[1]) * _UNITS[match[2][0].upper()]) if match else None


def _is_fixed_plan_id(plan_id: str, nodes: Sequence[Mapping[str, Any]]) -> bool:
    """Whether this Fly plan id is a fixed plan (flyctl: displayName starts with ``flyio_fixed_`` or ``fixed ``)."""
    for node in nodes:
        if _str(node.get("id")) == plan_id:
            names = (_str(node.get("displayName")).lower(), _str(node.get("name")).lower())
            return any(name.startswith(("flyio_fixed_", "fixed ", "fixed_")) for name in names)
    return False


def plan_name_of(plan: Mapping[str, Any]) -> str:
    """Canonical name of a Fly plan node or ``addOnPlan``: known id, then displayName, then name."""
    plan_id = _str(plan.get("id"))
    if plan_id in _KNOWN_PLAN_IDS:
        return _KNOWN_PLAN_IDS[plan_id]
    for key in ("displayName", "name"):
        raw = _str(plan.get(key))
        canonical = catalog.canonical_plan_name(ProviderType.FLY, raw) if raw else None
        if canonical:
            return canonical
    return _str(plan.get("displayName")) or _str(plan.get("name")) or plan_id


def _mutable_part(add_on: Mapping[str, Any]) -> Mapping[str, Any]:
    """What updateAddOn must echo of an add-on (its id, plan, regions, options, metadata), and its name."""
    return {key: add_on.get(key) for key in ("id", "name", "addOnPlan", "readRegions", "options", "metadata")}


def parse_add_on(add_on: Any, *, operation: str) -> Database:
    """Normalize an ``AddOn``: host, port and password come from ``publicUrl`` (``password`` wins if set)."""
    if not isinstance(add_on, Mapping) or not add_on.get("id"):
        raise ProviderError(f"fly {operation}: unexpected response (no add-on id)")
    public_url = _str(add_on.get("publicUrl"))
    scheme, host, port, url_password = _split_redis_url(public_url)
    host = host or _str(add_on.get("hostname"))
    password = _str(add_on.get("password")) or url_password
    tls = scheme == "rediss"
    url = public_url
    if password and host:
        # One shape for every client library: "redis://PASSWORD@host" (Fly's documented form) authenticates
        # as user PASSWORD with no password in redis-py; the default user with the password always works.
        url = f"{scheme or 'redis'}://default:{quote(password, safe='')}@{_url_host(host)}:{port}"
    options = add_on.get("options")
    plan = add_on.get("addOnPlan")
    return Database(
        id=_str(add_on.get("id")),
        name=_str(add_on.get("name")),
        primary_region=_str(add_on.get("primaryRegion")),
        read_regions=tuple(_str_list(add_on.get("readRegions"))),
        plan=plan_name_of(plan) if isinstance(plan, Mapping) else "",
        eviction=bool(options.get("eviction")) if isinstance(options, Mapping) else False,
        tls=tls,
        state=_str(add_on.get("status")) or "ready",
        state_message=redact(_str(add_on.get("errorMessage"))),
        host=host,
        port=port if host else 0,
        password=password,
        url=url if password else "",
        created_at=_iso_time(add_on.get("createdAt")),
    )


def _iso_time(value: Any) -> datetime.datetime | None:
    """GraphQL's ISO 8601 ``createdAt`` as an aware datetime; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def _split_redis_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, password) of a redis URL; a lone userinfo part is the password (Fly docs form)."""
    if not url:
        return "", "", 0, ""
    try:
        parts = urlsplit(url)  # raises on a malformed IPv6 host such as "redis://[::1"
    except ValueError:
        return "", "", 0, ""
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    if parts.password is not None:
        password = unquote(parts.password)
    elif parts.username and parts.username != "default":
        password = unquote(parts.username)
    else:
        password = ""
    return parts.scheme.lower(), parts.hostname or "", port, password


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _str_list(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def build_client(
    url: str, credentials: Mapping[str, str], organization: str | None, timeouts: Timeouts, retry: RetryPolicy
) -> FlyClient:
    """The client for `providers/kinds.py`: credentials by logical name (`token`)."""
    return FlyClient(
        url, token=credentials["token"], organization=organization or "personal", timeouts=timeouts, retry=retry
    )
