"""Upstash Developer API v2 adapter (docs/wire-contract.md, "Upstash Developer API v2").

Upstash changes one setting per call, so ``update`` issues one request per changed field; every one of those
calls is idempotent (the full read-region set, enable/disable, the target plan) and may be retried.
"""

from __future__ import annotations

import base64
import datetime
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

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
)
from .http import DEFAULT_RETRY, DEFAULT_TIMEOUTS, HttpTransport, RetryPolicy, Timeouts, json_or_none
from .stats import parse_stats

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.upstash.com/v2"


class UpstashClient:
    """One Upstash account (email + API key) behind the Developer API."""

    provider_type = ProviderType.UPSTASH
    names_are_unique = False  # the Developer API documents no uniqueness of database names: look up first

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        email: str,
        api_key: str,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy = DEFAULT_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        basic = base64.b64encode(f"{email}:{api_key}".encode()).decode("ascii")
        self._http = HttpTransport(
            base_url,
            provider="upstash",
            headers={"Authorization": f"Basic {basic}"},
            secrets=(api_key, basic),  # the base64 form is as secret as the key
            timeouts=timeouts,
            retry=retry,
            transport=transport,
        )
        # Which change-plan endpoint this server speaks; learned on first use (wire-contract: "change plan").
        self._legacy_change_plan = False
        # Which create form this server speaks (reference section 6): region "global" until refused for platform.
        self._platform_form = False

    async def aclose(self) -> None:
        await self._http.aclose()

    async def create(self, request: CreateDatabaseRequest) -> Database:
        """The form the live API is known to accept (the CLI's 2026 integration test: ``region: "global"``); if a
        server refuses it for want of the current OpenAPI's ``platform``, the platform form once, then remembered.
        A 400 means nothing was created, so the second form cannot make a twin."""
        body: dict[str, Any] = {
            "database_name": request.name,
            "primary_region": request.primary_region,
            "read_regions": list(request.read_regions),
            "eviction": request.eviction,
        }
        if request.plan is not None:
            body["plan"] = catalog.canonical_plan_name(ProviderType.UPSTASH, request.plan) or request.plan
        if request.tls is not None:
            body["tls"] = request.tls
        if not self._platform_form:
            try:
                return await self._create(request.name, {**body, "region": "global"})
            except AlreadyExistsError:
                raise
            except InvalidRequestError as error:
                if "platform" not in error.message.lower():
                    raise
            log.info("upstash: the server asks for platform at create; using the current OpenAPI form")
            self._platform_form = True
        return await self._create(request.name, {**body, "platform": catalog.upstash_platform(request.primary_region)})

    async def _create(self, name: str, body: Mapping[str, Any]) -> Database:
        response = await self._http.request(
            "POST",
            "/redis/database",
            operation=f"create database {name!r}",
            idempotent=False,
            json_body=dict(body),
            metric_operation="create",
        )
        return self._database(json_or_none(response), operation="create database")

    async def get(self, database_id: str) -> Database:
        response = await self._http.request(
            "GET",
            f"/redis/database/{_segment(database_id)}",
            operation=f"get database {database_id}",
            idempotent=True,
            metric_operation="get",
        )
        return self._database(json_or_none(response), operation="get database")

    async def find_by_name(self, name: str) -> Database | None:
        """The newest database of this name: Upstash does not refuse a second one (no source says names are
        unique), and the newest is the one a create whose answer was lost would have made; an older one is judged
        a stranger's by the caller (reconcile.stranger_database)."""
        named = [database for database in await self.list() if database.name == name]
        if not named:
            return None
        oldest = datetime.datetime.min.replace(tzinfo=datetime.UTC)
        database = max(named, key=lambda candidate: candidate.created_at or oldest)
        # list may omit credentials (the OpenAPI schema has none); get always carries them.
        return database if database.password else await self.get(database.id)

    async def list(self) -> Sequence[Database]:
        response = await self._http.request(
            "GET", "/redis/databases", operation="list databases", idempotent=True, metric_operation="list"
        )
        body = json_or_none(response)
        if body is None:
            return []
        if not isinstance(body, list):
            raise ProviderError("upstash list databases: unexpected response (not a list)")
        return [parse_database(item) for item in body if isinstance(item, Mapping) and item.get("database_id")]

    async def update(self, database: Database, update: DatabaseUpdate) -> Database:
        if update.is_empty():
            return database
        database_id = database.id
        # A downgrade to a single-region plan must drop replicas first; any other plan change goes first so
        # that new read regions land on a plan that allows them.
        target_plan = catalog.plan(ProviderType.UPSTASH, update.plan) if update.plan is not None else None
        regions_first = target_plan is not None and target_plan.max_read_regions == 0
        if update.read_regions is not None and regions_first:
            await self._update_regions(database_id, update.read_regions)
        if update.plan is not None:
            await self._change_plan(database_id, update.plan)
        if update.read_regions is not None and not regions_first:
            await self._update_regions(database_id, update.read_regions)
        if update.eviction is not None:
            action = "enable-eviction" if update.eviction else "disable-eviction"
            await self._http.request(
                "POST",
                f"/redis/{action}/{_segment(database_id)}",
                operation=f"{action} {database_id}",
                idempotent=True,
                metric_operation=action,
            )
        return update.applied_to(database)

    async def reset_password(self, database_id: str) -> Database:
        response = await self._http.request(
            "POST",
            f"/redis/reset-password/{_segment(database_id)}",
            operation=f"reset password of {database_id}",
            idempotent=False,
            metric_operation="reset-password",
        )
        body = json_or_none(response)
        if isinstance(body, Mapping) and body.get("database_id"):
            return parse_database(body)
        # Some API versions answer "OK"; the new credentials are then only on the database itself.
        return await self.get(database_id)

    async def delete(self, database_id: str) -> None:
        try:
            await self._http.request(
                "DELETE",
                f"/redis/database/{_segment(database_id)}",
                operation=f"delete database {database_id}",
                idempotent=True,
                metric_operation="delete",
            )
        except NotFoundError:
            log.debug("upstash database %s was already gone", database_id)

    async def usage(self, database_id: str) -> DatabaseUsage | None:
        response = await self._http.request(
            "GET",
            f"/redis/stats/{_segment(database_id)}",
            operation=f"read stats of {database_id}",
            idempotent=False,  # one attempt: a missed read waits for the next interval, not spend the quota
            metric_operation="stats",
        )
        return parse_stats(json_or_none(response))

    async def _update_regions(self, database_id: str, read_regions: Sequence[str]) -> None:
        await self._http.request(
            "POST",
            f"/redis/update-regions/{_segment(database_id)}",
            operation=f"update read regions of {database_id}",
            idempotent=True,
            metric_operation="update-regions",
            json_body={"read_regions": list(read_regions)},
        )

    async def _change_plan(self, database_id: str, plan: str) -> None:
        """Current docs path first; the older ``/redis/change-plan/{id}`` form when the server lacks it."""
        plan_name = catalog.canonical_plan_name(ProviderType.UPSTASH, plan) or plan
        segment = _segment(database_id)
        operation = f"change plan of {database_id} to {plan_name}"
        if not self._legacy_change_plan:
            try:
                await self._http.request(
                    "POST",
                    f"/redis/{segment}/change-plan",
                    operation=operation,
                    idempotent=True,
                    metric_operation="change-plan",
                    json_body={"plan_name": plan_name},
                )
                return
            except (NotFoundError, InvalidRequestError) as exc:
                if isinstance(exc, InvalidRequestError) and exc.status != 405:
                    raise
            log.debug("upstash: %s/change-plan unavailable, using the older change-plan path", database_id)
        await self._http.request(
            "POST",
            f"/redis/change-plan/{segment}",
            operation=operation,
            idempotent=True,
            json_body={"plan_name": plan_name},  # the older path also takes plan_name, not plan (section 6)
            metric_operation="change-plan",
        )
        self._legacy_change_plan = True

    def _database(self, body: Any, *, operation: str) -> Database:
        if not isinstance(body, Mapping) or not body.get("database_id"):
            raise ProviderError(f"upstash {operation}: unexpected response (no database_id)")
        return parse_database(body)


def _segment(database_id: str) -> str:
    """A database id as one path segment: ids come from the API, but an id must never change the path."""
    if not database_id or "/" in database_id or database_id in (".", ".."):
        raise NotFoundError(f"upstash: no database with id {database_id!r}")
    return database_id


def parse_database(body: Mapping[str, Any]) -> Database:
    """Normalize an Upstash ``Database`` object. Unknown fields are ignored; credentials may be absent."""
    region = _str(body.get("region"))
    primary_region = _str(body.get("primary_region")) or (region if region and region != "global" else "")
    read_regions = body.get("read_regions")
    endpoint = _str(body.get("endpoint"))
    if endpoint and "." not in endpoint and ":" not in endpoint and endpoint != "localhost":
        endpoint = f"{endpoint}.upstash.io"  # the OpenAPI allows a bare slug ("beloved-stallion-58500"); section 6
    plan, plan_observable = upstash_plan(body)
    port = _int(body.get("port"))
    password = _str(body.get("password"))
    tls = bool(body.get("tls", False))
    rest_token = _str(body.get("rest_token"))
    # The real API has no rest_url (clients use https://ENDPOINT); the local provider names where it serves REST.
    rest_url = _str(body.get("rest_url")) or (f"https://{endpoint}" if rest_token and endpoint else "")
    url = ""
    if password and endpoint and port:
        url = f"{'rediss' if tls else 'redis'}://default:{quote(password, safe='')}@{endpoint}:{port}"
    return Database(
        id=_str(body.get("database_id")),
        name=_str(body.get("database_name")) or _str(body.get("name")),
        primary_region=primary_region,
        read_regions=tuple(r for r in read_regions if isinstance(r, str)) if isinstance(read_regions, list) else (),
        plan=plan,
        plan_observable=plan_observable,
        eviction=bool(body.get("eviction", False)),
        tls=tls,
        state=_str(body.get("state")) or "active",
        host=endpoint,
        port=port,
        password=password,
        url=url,
        rest_url=rest_url,
        rest_token=rest_token,
        read_only_rest_token=_str(body.get("read_only_rest_token")),
        created_at=_unix_time(body.get("creation_time")),
    )


def _unix_time(value: Any) -> datetime.datetime | None:
    """``creation_time`` (unix seconds) as an aware datetime; None when absent or not a sane number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 2**40:
        return None
    return datetime.datetime.fromtimestamp(value, datetime.UTC)


# ``Database.type`` in the OpenAPI: free | payg | pro | paid. Only the first two name a plan.
_OBSERVABLE_TYPES = {"free": "free", "payg": "payg"}


def upstash_plan(body: Mapping[str, Any]) -> tuple[str, bool]:
    """(plan, observable). ``database_type`` ("Fixed 1GB"; older answers and Terraform) when it names a plan, else
    ``type`` when it is ``free`` or ``payg``; ``paid``/``pro`` say nothing about the size (an old docs example shows
    ``paid`` for pay-as-you-go), so that raw word is reported and marked unobservable (reference section 6)."""
    database_type = _str(body.get("database_type"))
    canonical = catalog.canonical_plan_name(ProviderType.UPSTASH, database_type) if database_type else None
    if canonical:
        return canonical, True
    type_ = _str(body.get("type")).lower()
    if type_ in _OBSERVABLE_TYPES:
        return _OBSERVABLE_TYPES[type_], True
    return type_ or database_type, False


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():  # "²".isdigit() is True, int("²") fails
        return int(value)
    return 0


def build_client(
    url: str, credentials: Mapping[str, str], organization: str | None, timeouts: Timeouts, retry: RetryPolicy
) -> UpstashClient:
    """The client for `providers/kinds.py`: credentials by logical name (`email`, `apiKey`); a bare host means the
    v2 API on it. Upstash accounts have no organization."""
    if urlsplit(url).path in ("", "/"):
        url = url.rstrip("/") + "/v2"
    return UpstashClient(url, email=credentials["email"], api_key=credentials["apiKey"], timeouts=timeouts, retry=retry)
