"""Fly.io GraphQL adapter for Upstash Redis add-ons, speaking the documents in docs/wire-contract.md.

Fly addresses most mutations by add-on *name* while the operator stores the *id*, and changes plan, regions
and options in one ``updateAddOn``; so update, reset and delete first read the add-on, then act.
GraphQL reports failures as HTTP 200 with ``errors[]``; those are classified here into the typed errors.
"""

from __future__ import annotations

import datetime
import logging
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
fragment AddOn on AddOn { id name primaryRegion readRegions status options metadata publicUrl privateIp password
  hostname createdAt addOnPlan { id name displayName } organization { id slug } }"""

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
LIST_QUERY = (
    "query List($slug: String!) { organization(slug: $slug) { addOns(type: upstash_redis) { nodes { ...AddOn } } } }"
    + _FRAGMENT
)
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
}


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
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            secrets=(token,),
            timeouts=timeouts,
            retry=retry,
            transport=transport,
        )
        self._organization_id: str | None = None
        self._plans: tuple[Mapping[str, Any], ...] | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- protocol ----------------------------------------------------------------------------------------

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
        return parse_add_on(_dig(data, "createAddOn", "addOn"), operation="create add-on")

    async def get(self, database_id: str) -> Database:
        data = await self._graphql(GET_QUERY, {"id": database_id}, operation=f"get add-on {database_id}")
        add_on = data.get("addOn")
        if add_on is None:
            raise NotFoundError(f"fly get add-on {database_id}: not found")
        return parse_add_on(add_on, operation="get add-on")

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
        return parse_add_on(add_on, operation="find add-on")

    async def list(self) -> Sequence[Database]:
        try:
            data = await self._graphql(LIST_QUERY, {"slug": self.organization}, operation="list add-ons")
        except NotFoundError:
            raise self._unknown_organization() from None
        organization = data.get("organization")
        if organization is None:
            raise self._unknown_organization()
        nodes = _dig(organization, "addOns", "nodes")
        if not isinstance(nodes, list):
            return []
        return [parse_add_on(node, operation="list add-ons") for node in nodes if isinstance(node, Mapping)]

    async def update(self, database: Database, update: DatabaseUpdate) -> Database:
        if update.is_empty():
            return database
        database_id = database.id
        current = await self._get_raw(database_id)
        plan_id = (
            await self._plan_id(update.plan) if update.plan is not None else _str(_dig(current, "addOnPlan", "id"))
        )
        if not plan_id:
            plan_id = await self._plan_id(parse_add_on(current, operation="update add-on").plan)
        read_regions = (
            list(update.read_regions) if update.read_regions is not None else _str_list(current.get("readRegions"))
        )
        options = dict(current.get("options") or {}) if isinstance(current.get("options"), Mapping) else {}
        if update.eviction is True:
            options["eviction"] = True
        elif update.eviction is False:
            options.pop("eviction", None)  # flyctl removes a declined option rather than sending false
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
        return update.applied_to(database)

    async def reset_password(self, database_id: str) -> Database:
        name = _str((await self._get_raw(database_id)).get("name"))
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
            name = _str((await self._get_raw(database_id)).get("name"))
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

    # --- helpers -----------------------------------------------------------------------------------------

    async def _get_raw(self, database_id: str) -> Mapping[str, Any]:
        data = await self._graphql(GET_QUERY, {"id": database_id}, operation=f"get add-on {database_id}")
        add_on = data.get("addOn")
        if not isinstance(add_on, Mapping):
            raise NotFoundError(f"fly get add-on {database_id}: not found")
        return add_on

    async def _org_id(self) -> str:
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
    return InvalidRequestError(text)


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
