"""RedisProvider status: does the account's API answer and accept the credentials?

A failing provider is otherwise only visible on each RedisDatabase that uses it; checking the account itself
gives one place to look (`kubectl get redisproviders`) and an Argo CD health for it. The check is the same
`list` call the databases' resync needs, through the shared snapshot, so it costs the provider nothing extra.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from .errors import backoff_delay, classify_error
from .provider_registry import ProviderHandle, ProviderRegistry
from .providers import catalog
from .status import condition, set_condition
from .tenancy import provider_in_use_message

# Reasons a RedisProvider (and every RedisDatabase on it) is not Ready that the operator keeps retrying but only a
# person can end: the credentials Secret is missing, lacks a key, or the provider refuses it. Argo CD shows them as
# Degraded (deploy/argocd/.../health.lua, kept equal by tests/unit/test_argocd_health.py), not Progressing forever.
CREDENTIAL_REASONS = frozenset({"Unauthorized", "CredentialsNotFound", "CredentialsInvalid"})

log = logging.getLogger(__name__)


def _without_nulls(value: Any) -> Any:
    """A merge patch reads null as "delete": an unknown price or limit is left out instead (absent means null)."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ProviderChecker:
    def __init__(self, registry: ProviderRegistry) -> None:
        self._registry = registry

    @staticmethod
    async def _catalog(handle: ProviderHandle, now: str) -> dict[str, Any]:
        """Fly's live regions and plans; the static catalog when that call fails or the API has none (Upstash)."""
        read_live = getattr(handle.client, "catalog", None)
        if read_live is not None:
            try:
                live: dict[str, Any] = await read_live(now)
                handle.live_catalog = live  # the reconciler's create refusals name what the provider offers now
                return live
            except Exception as error:  # any failure: the static catalog still tells clients something true
                log.warning(
                    "RedisProvider %s: live catalog unavailable (%s); publishing the static one", handle.name, error
                )
        return catalog.static_catalog(handle.provider_type, now)

    async def check(self, body: kopf.Body, *, patch: kopf.Patch, retry: int, fresh: bool, max_age: float) -> None:
        """`fresh` re-reads the RedisProvider and its Secret and asks the provider now (a changed spec); otherwise
        the check shares the databases' snapshot up to `max_age` old (and, while the provider is down, their
        failed probe), so it adds no provider calls of its own."""
        name = str(body.meta.name)
        generation = body.meta.get("generation")
        status: Mapping[str, Any] = body.get("status") or {}
        now = _now()
        if fresh:
            self._registry.invalidate(name)
        try:
            handle = await self._registry.get(name)
            await handle.observer.refresh(max_age=0 if fresh else max_age)
        except Exception as error:
            verdict = classify_error(error)
            previous = condition(status.get("conditions"), "Ready")
            if previous is None or previous.get("reason") != verdict.reason:
                kopf.event(body, type="Warning", reason=verdict.reason, message=verdict.message)
            patch.status["conditions"] = set_condition(
                status.get("conditions"),
                type_="Ready",
                status="False",
                reason=verdict.reason,
                message=verdict.message,
                generation=generation,
                now=now,
            )
            patch.status["observedGeneration"] = generation
            patch.status["lastCheckTime"] = now
            if verdict.temporary:
                raise kopf.TemporaryError(
                    verdict.message, delay=backoff_delay(retry, verdict.retry_after, cap=120)
                ) from None
            return
        count = handle.observer.database_count
        patch.status["catalog"] = _without_nulls(await self._catalog(handle, now))
        patch.status["conditions"] = set_condition(
            status.get("conditions"),
            type_="Ready",
            status="True",
            reason="CredentialsAccepted",
            message=f"the {handle.provider_type.value} API accepted the credentials",
            generation=generation,
            now=now,
        )
        patch.status["observedGeneration"] = generation
        patch.status["databases"] = count
        patch.status["lastCheckTime"] = now


class ProviderDeletion:
    """A RedisProvider in use is not deleted: its finalizer holds while RedisDatabases reference it (they need it
    to delete their own provider databases), with an Event and `status.usedBy` naming them."""

    async def check(self, body: kopf.Body, *, patch: kopf.Patch, users: list[str], delay: float = 10.0) -> None:
        if not users:
            return  # kopf removes the finalizer
        name = str(body.meta.name)
        users = sorted(set(users))
        message = provider_in_use_message(name, users)
        status: Mapping[str, Any] = body.get("status") or {}
        if status.get("usedBy") != users:
            kopf.event(body, type="Warning", reason="InUse", message=message)
            patch.status["usedBy"] = users
        raise kopf.TemporaryError(message, delay=delay)
