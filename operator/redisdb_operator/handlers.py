"""kopf wiring only: each handler hands the event to the controller and says how fresh its view must be."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeAlias
from urllib.parse import quote

import kopf

from .admission import admission_warnings, validate_redisdatabase
from .controller import DatabaseController
from .database_book import DatabaseBook, provider_of
from .errors import ConfigurationError
from .models import GROUP, VERSION
from .provider_checks import ProviderChecker, ProviderDeletion
from .sweep import Sweeper, resume_can_wait, settled_by_kopf_cached
from .takeover import TakeoverLane

# How long an admission review waits for the first list of RedisDatabases before refusing (apiserver timeout 10 s).
BOOK_WAIT = 8.0
# Seconds from the start (or a takeover) to the first resync sweep: what the skipped resumes wait for.
FIRST_SWEEP_DELAY = 10.0
DATABASES = (GROUP, VERSION, "redisdatabases")
PROVIDERS = (GROUP, VERSION, "redisproviders")
NAMESPACES = ("", "v1", "namespaces")
Logger: TypeAlias = logging.Logger | logging.LoggerAdapter[Any]


class _FirstOf(Mapping[str, Mapping[str, Any]]):
    """A kopf index (key -> store of values) seen as key -> its one value."""

    def __init__(self, index: kopf.Index[str, Mapping[str, Any]]) -> None:
        self._index = index

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        for value in self._index[key]:
            return value
        raise KeyError(key)

    def get_value(self, key: str) -> Mapping[str, Any] | None:
        try:
            return self[key]
        except KeyError:
            return None

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


async def providers_for_admission(
    indexed: Mapping[str, Mapping[str, Any]],
    spec: Mapping[str, Any],
    read: Callable[[str], Awaitable[Mapping[str, Any] | None]] | None,
) -> Mapping[str, Mapping[str, Any]]:
    """The RedisProviders an admission review judges by: the index, plus the referenced one read from the apiserver
    when the index lacks it. kopf fills an index as it lists, and a just-started replica (a rollout, a restart)
    serves admission meanwhile: the index then holds only the providers listed so far, and a valid object was once
    refused with "RedisProvider local-upstash does not exist (known: chart-fly, chart-upstash, local-fly)". One
    GET, only on the path that would refuse."""
    wanted = provider_of(spec)
    if wanted in indexed or read is None:
        return indexed
    live = await read(wanted)
    if live is None:
        return indexed
    return {**indexed, wanted: dict(live.get("spec") or {})}


# The namespace labels (spec.allowedNamespaces, at admission and at reconcile) and the users of each provider (its
# deletion waits for them) are indexes, so neither costs an API call per event. Coroutines, not plain functions:
# kopf runs a plain function in its thread pool, a hop that costs more than these microsecond checks.
async def index_namespaces(name: str, labels: Mapping[str, str], **_: Any) -> dict[str, Mapping[str, str]]:
    return {name: dict(labels)}


def register_book(registry: kopf.OperatorRegistry) -> None:
    """Every replica: each RedisDatabase event into the process's DatabaseBook (memo["book"]), not a kopf index
    (kopf's per-object "indexed" toggles are quadratic in a burst; see database_book.py)."""

    async def on_redisdatabase_event(event: Mapping[str, Any], memo: Any, **_: Any) -> None:
        book: DatabaseBook = memo["book"]
        book.on_event(event.get("type"), event.get("object") or {})

    kopf.on.event(*DATABASES, id="book", registry=registry)(on_redisdatabase_event)


def labels_of_namespace(namespace: str, kwargs: Mapping[str, Any]) -> dict[str, str] | None:
    namespaces: kopf.Index[str, Mapping[str, Any]] = kwargs["namespaces"]
    return _labels(_FirstOf(namespaces).get_value(namespace))


def register_reconcilers(registry: kopf.OperatorRegistry, *, resync_interval: float) -> None:
    """The leader's handlers: reconcile, delete and the timers. Intervals come from configuration."""

    async def done_at_takeover(memo: Any, body: kopf.Body, *, deletion: bool = False) -> bool:
        lane: TakeoverLane | None = memo.get("takeover")
        return lane is not None and await lane.settled(body, deletion=deletion)

    async def on_redisdatabase_change(
        body: kopf.Body, patch: kopf.Patch, logger: Logger, memo: Any, **kwargs: Any
    ) -> None:
        if await done_at_takeover(memo, body):
            return  # the takeover lane sent exactly this configuration to the provider already
        controller: DatabaseController = memo["controller"]
        await controller.reconcile(
            body,
            fresh=True,
            patch=patch,
            logger=logger,
            retry=kwargs.get("retry", 0),
            namespace_labels=labels_of_namespace(str(body.meta.namespace), kwargs),
        )

    async def on_redisdatabase_resume(
        body: kopf.Body, patch: kopf.Patch, logger: Logger, memo: Any, **kwargs: Any
    ) -> None:
        if resume_can_wait(body) or await done_at_takeover(memo, body):
            return  # the first sweep after the start compares it with the snapshot (and reads its Secret)
        controller: DatabaseController = memo["controller"]
        await controller.reconcile(
            body,
            fresh=False,
            patch=patch,
            logger=logger,
            retry=kwargs.get("retry", 0),
            namespace_labels=labels_of_namespace(str(body.meta.namespace), kwargs),
        )

    async def on_redisdatabase_delete(
        body: kopf.Body, patch: kopf.Patch, logger: Logger, memo: Any, **kwargs: Any
    ) -> None:
        if await done_at_takeover(memo, body, deletion=True):
            return  # the takeover lane finished this deletion; kopf releases the finalizer
        controller: DatabaseController = memo["controller"]
        await controller.delete(body, patch=patch, logger=logger, retry=kwargs.get("retry", 0))

    async def on_provider_resync(body: kopf.Body, memo: Any, logger: Logger, **kwargs: Any) -> None:
        controller: DatabaseController = memo["controller"]
        sweeper: Sweeper = memo["sweeper"]
        name = str(body.meta.name)
        book: DatabaseBook = memo["book"]
        if not book.listed.is_set():
            return  # not read yet: the next sweep has them
        # Only what the sweep may wake: a resolve of the provider keeps its cached client warm (registry TTL), which
        # must not happen for databases that are only being deleted.
        bodies = [body for body in book.databases_of(name) if settled_by_kopf_cached(body)]
        if not bodies:
            return
        try:
            handle = await controller.registry.get(name)
        except ConfigurationError:
            return  # the RedisProvider's own check reports it; each database says so at its next event
        namespaces = _FirstOf(kwargs["namespaces"])

        def latest(namespace: str, uid: str) -> kopf.Body | None:
            return book.get(uid)

        result = await sweeper.sweep(
            handle,
            bodies,
            namespace_labels=lambda namespace: _labels(namespaces.get_value(namespace)),
            latest=latest,
        )
        if result.woken:
            logger.info("resync: %d of %d databases woken", result.woken, result.databases)

    provider_check_interval = max(resync_interval, 30.0)  # accounts change rarely; databases resync often

    async def on_redisprovider_change(body: kopf.Body, patch: kopf.Patch, memo: Any, **kwargs: Any) -> None:
        retry = kwargs.get("retry", 0)
        checker = ProviderChecker(memo["controller"].registry)
        # A changed RedisProvider is read and asked at once; retries share the snapshot and its failed probe.
        await checker.check(body, patch=patch, retry=retry, fresh=retry == 0, max_age=resync_interval * 0.9)

    async def on_redisprovider_recheck(body: kopf.Body, patch: kopf.Patch, memo: Any, **kwargs: Any) -> None:
        checker = ProviderChecker(memo["controller"].registry)
        await checker.check(body, patch=patch, retry=kwargs.get("retry", 0), fresh=False, max_age=resync_interval)

    async def on_redisprovider_delete(body: kopf.Body, patch: kopf.Patch, memo: Any, **kwargs: Any) -> None:
        book: DatabaseBook = memo["book"]
        await book.listed.wait()  # never "no users" from a book not read yet
        await ProviderDeletion().check(body, patch=patch, users=book.users_of(str(body.meta.name)))

    kopf.on.create(*DATABASES, id="reconcile", registry=registry)(on_redisdatabase_change)
    kopf.on.update(*DATABASES, id="reconcile", registry=registry)(on_redisdatabase_change)
    # Resume: nothing changed since the last handled configuration (a restart, or a standby taking over), so
    # the shared provider snapshot (one list per provider) is fresh enough; a spec change comes as an update.
    kopf.on.resume(*DATABASES, id="reconcile", registry=registry)(on_redisdatabase_resume)
    # The resync: one sweep per RedisProvider per interval (one list), not a timer per RedisDatabase (sweep.py).
    # The first sweep soon after the start: the resumes of settled databases wait for it (sweep.resume_can_wait).
    kopf.timer(
        *PROVIDERS,
        id="resync",
        interval=resync_interval,
        initial_delay=min(resync_interval, FIRST_SWEEP_DELAY),
        registry=registry,
    )(on_provider_resync)
    kopf.on.delete(*DATABASES, id="delete", registry=registry)(on_redisdatabase_delete)

    for on_change in (kopf.on.create, kopf.on.update, kopf.on.resume):
        on_change(*PROVIDERS, id="check", registry=registry)(on_redisprovider_change)
    kopf.timer(
        *PROVIDERS,
        id="recheck",
        interval=provider_check_interval,
        initial_delay=provider_check_interval,
        registry=registry,
    )(on_redisprovider_recheck)
    kopf.index(*NAMESPACES, id="namespaces", registry=registry)(index_namespaces)
    kopf.on.delete(*PROVIDERS, id="in-use", registry=registry)(on_redisprovider_delete)


def register_admission(registry: kopf.OperatorRegistry, *, webhook_ignore_failures: bool = True) -> None:
    """Every replica's handlers: the validating webhook and the indexes it reads (no writes at all).

    Only with a webhook server: kopf refuses admission handlers without one, and the indexes serve only it.
    """

    # Coroutines, not plain functions: kopf runs a plain function in its thread pool, a hop that costs more than
    # these microsecond checks and, under 50 concurrent admission reviews, queues them behind a few threads.
    async def index_providers(name: str, spec: Mapping[str, Any], **_: Any) -> dict[str, Mapping[str, Any]]:
        return {name: dict(spec)}

    async def validate_redisdatabase_admission(
        body: kopf.Body,
        **kwargs: Any,
    ) -> None:
        old: Mapping[str, Any] | None = kwargs.get("old")
        providers: kopf.Index[str, Mapping[str, Any]] = kwargs["providers"]
        book: DatabaseBook = kwargs["memo"]["book"]
        if not book.listed.is_set():
            try:  # never answer from a partial view of the claims
                await asyncio.wait_for(book.listed.wait(), BOOK_WAIT)
            except TimeoutError:
                raise kopf.AdmissionError(
                    "the operator has not finished reading the RedisDatabases yet; retry in a moment", code=503
                ) from None
        claims = book.claims
        meta = body.get("metadata") or {}
        namespace = str(meta.get("namespace") or "")
        kube = kwargs["memo"].get("kube")
        known = await providers_for_admission(
            _FirstOf(providers),
            body.get("spec") or {},
            (lambda name: kube.get(f"/apis/{GROUP}/{VERSION}/redisproviders/{quote(name, safe='')}"))
            if kube is not None
            else None,
        )
        problem = validate_redisdatabase(
            operation=str(kwargs.get("operation")),
            namespace=namespace,
            name=str(meta.get("name") or meta.get("generateName") or ""),
            spec=body.get("spec") or {},
            old_spec=(old or {}).get("spec") if old else None,
            providers=known,
            claims=claims,
            namespace_labels=labels_of_namespace(namespace, kwargs),
        )
        if problem:
            raise kopf.AdmissionError(problem, code=422)
        warnings: list[str] | None = kwargs.get("warnings")
        if warnings is not None:  # kopf returns these in the AdmissionReview; kubectl prints them
            warnings.extend(
                admission_warnings(operation=str(kwargs.get("operation")), spec=body.get("spec") or {}, providers=known)
            )

    kopf.index(*PROVIDERS, id="providers", registry=registry)(index_providers)
    kopf.index(*NAMESPACES, id="namespaces", registry=registry)(index_namespaces)
    kopf.on.validate(
        *DATABASES,
        id="validate-redisdatabase",
        operations=["CREATE", "UPDATE", "DELETE"],
        ignore_failures=webhook_ignore_failures,
        registry=registry,
    )(validate_redisdatabase_admission)


def _labels(value: Mapping[str, Any] | None) -> dict[str, str] | None:
    return {str(key): str(label) for key, label in value.items()} if value is not None else None
