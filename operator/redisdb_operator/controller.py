"""The imperative shell around the pure core: observe -> decide -> act -> publish -> write status once.

Every decision is `reconcile.decide` (or `deletion.decide_deletion`); this module only carries them out. When an
action's outcome changes what is known (a create answered, a name looked up), the outcome goes back to the
decision as the next observation. One path serves every trigger (create, update, resume, resync): handlers only
say whether the observation must be fresh (a spec change) or may come from the shared per-provider snapshot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import kopf
from pydantic import ValidationError

from . import decision, deletion, metrics, reconcile
from .decision import (
    Delete,
    DeleteDuplicates,
    Facts,
    GiveUp,
    Hold,
    KubeEvent,
    LookUp,
    Observation,
    Plan,
    ProviderFacts,
    Publish,
    Refuse,
    Release,
    ResetPassword,
    Resource,
    Step,
    Wait,
)
from .desired import CreateAction, UpdateAction
from .errors import backoff_delay, classify_error
from .kube import KubeClient, custom_path
from .ledger import ObjectLedger
from .models import GROUP, VERSION, DeletionPolicy, RedisDatabaseSpec
from .provider_registry import ProviderHandle, ProviderRegistry
from .providers.base import AlreadyExistsError, Database, NotFoundError, UnauthorizedError, UnavailableError
from .secrets import SecretPublisher, SecretTarget, connection_data, content_hash, has_credentials
from .status import SUSPENDED_REASONS, condition, parse_timestamp, waiting_for_spec_change

Logger = logging.Logger | logging.LoggerAdapter[Any]
# Every event settles in a few steps (look up, confirm, create or adopt, update, reset, publish); a decision that
# never settles is a bug, reported as InternalError rather than calling the provider forever.
MAX_STEPS = 12


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
    resync_interval: float = 300.0
    max_concurrent_reconciles: int = 32
    # How long a create that timed out may still land at the provider: the client's 30 s budget plus a margin.
    uncertain_create_window: float = 90.0
    # deletionPolicy for RedisDatabases that set none (`redisdb-operator run --default-deletion-policy`)
    default_deletion_policy: DeletionPolicy = DeletionPolicy.DELETE
    # A spec change reads the database at the provider before updating it (`--read-before-update`), instead of
    # taking the resync's snapshot: one call more per change, never a stale echo of fields the spec does not own.
    read_before_update: bool = False


def resource_of(body: kopf.Body) -> Resource:
    """The RedisDatabase of this event, its spec parsed once."""
    meta = body.meta
    try:
        spec: RedisDatabaseSpec | None = RedisDatabaseSpec.model_validate(dict(body.spec))
        problem = ""
    except ValidationError as error:
        spec, problem = None, str(error)
    return Resource(
        uid=str(meta.uid),
        namespace=str(meta.namespace),
        name=str(meta.name),
        generation=meta.get("generation"),
        status=body.get("status") or {},
        annotations=dict(meta.annotations or {}),
        created=parse_timestamp(meta.get("creationTimestamp")),
        spec=spec,
        spec_problem=problem,
    )


def provider_facts(handle: ProviderHandle | None) -> ProviderFacts | None:
    """What the decision needs to know about the resolved provider (None: the spec named none that parses)."""
    if handle is None:
        return None
    return ProviderFacts(
        handle.name,
        handle.provider_type,
        handle.client.names_are_unique,
        handle.live_catalog,
        allowed_namespaces=handle.allowed_namespaces,
    )


class HeldDeletion(kopf.TemporaryError):
    """A deletion kept until a person releases it (deletionProtection, a pause): kopf looks again after the delay."""


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


class DatabaseController:
    def __init__(self, kube: KubeClient, registry: ProviderRegistry, config: ControllerConfig) -> None:
        self._registry = registry
        self._config = config
        self._ledger = ObjectLedger(config.uncertain_create_window)
        self._provider_slots = asyncio.Semaphore(config.max_concurrent_reconciles)
        # Resumes and resyncs wait in a queue of their own: after a takeover 10,000 resumes must not make a spec
        # change wait behind them.
        self._background_slots = asyncio.Semaphore(config.max_concurrent_reconciles)
        self._secrets = SecretPublisher(kube)
        self._kube = kube

    @property
    def registry(self) -> ProviderRegistry:
        return self._registry

    @property
    def uncertain_create_window(self) -> float:
        return self._config.uncertain_create_window

    @property
    def kube(self) -> KubeClient:
        return self._kube

    def create_pending(self, uid: str) -> float:
        return self._ledger.create_pending(uid)

    def published_hash(self, uid: str) -> str | None:
        return self._ledger.published(uid)

    def note_published(self, uid: str, content_hash: str) -> None:
        self._ledger.note_published(uid, content_hash)

    # --- a reconcile the resync sweep asked for (no kopf handler carries its patch) ---------------------------

    async def wake(
        self,
        body: kopf.Body,
        *,
        retry: int = 0,
        namespace_labels: Mapping[str, str] | None = None,
        fresh: bool = False,
    ) -> float | None:
        """Reconcile from the snapshot, as the per-object timer did (or `fresh`, as kopf's update handler does: the
        takeover lane), and write the patch kopf would have written.

        Returns None when done, or the delay before a retry (a temporary failure, as kopf would retry it).
        """
        patch = kopf.Patch()
        logger = logging.LoggerAdapter(
            logging.getLogger("kopf.objects"),
            {"k8s_ref": {"kind": "RedisDatabase", "namespace": body.meta.namespace, "name": body.meta.name}},
        )
        delay: float | None = None
        try:
            await self.reconcile(
                body, fresh=fresh, patch=patch, logger=logger, retry=retry, namespace_labels=namespace_labels
            )
        except kopf.TemporaryError as error:
            delay = float(error.delay) if error.delay is not None else 60.0
        path = custom_path(GROUP, VERSION, "redisdatabases", str(body.meta.name), str(body.meta.namespace))
        if patch.get("metadata"):
            await self._kube.merge_patch(path, {"metadata": dict(patch["metadata"])})
        if patch.get("status"):
            await self._kube.merge_patch(f"{path}/status", {"status": dict(patch["status"])})
        return delay

    def forget(self, uid: str) -> None:
        self._ledger.forget(uid)

    # --- reconcile ------------------------------------------------------------------------------------------

    async def reconcile(
        self,
        body: kopf.Body,
        *,
        fresh: bool,
        patch: kopf.Patch,
        logger: Logger,
        retry: int = 0,
        namespace_labels: Mapping[str, str] | None = None,
    ) -> None:
        resource = resource_of(body)
        if not fresh and waiting_for_spec_change(resource.status, resource.generation):
            return  # a permanent error at this generation: retrying cannot help, a spec change will
        async with self._ledger.lock(resource.uid), self._provider_slots if fresh else self._background_slots:
            if self._ledger.deletion_finished(resource.uid) or body.meta.get("deletionTimestamp"):
                return  # a timer that waited for the deletion to finish: its body is stale, nothing is left to do
            for key in reconcile.legacy_annotations(resource.annotations, resource.status):
                patch.metadata.annotations[key] = None
            started, result = time.monotonic(), "success"
            status: dict[str, Any] = {}  # written to the patch once, whatever happens
            try:
                await self._reconcile(
                    body, resource, fresh=fresh, status=status, logger=logger, namespace_labels=namespace_labels
                )
            except kopf.TemporaryError:
                result = "temporary_error"
                raise
            except Exception as error:
                verdict = classify_error(error)
                result = "temporary_error" if verdict.temporary else "permanent_error"
                if isinstance(error, UnauthorizedError) and resource.provider_name:
                    self._registry.invalidate(resource.provider_name)
                self._apply(body, decision.failure_status(resource, verdict.reason, verdict.message, now()), status)
                if verdict.reason == "InternalError":
                    logger.exception("reconcile failed")
                if verdict.temporary:
                    raise kopf.TemporaryError(
                        verdict.message, delay=backoff_delay(retry, verdict.retry_after)
                    ) from None
            finally:
                for key, value in status.items():
                    patch.status[key] = value
                self._record_reconcile(
                    resource, patch.status.get("conditions"), "change" if fresh else "resync", result, started
                )

    async def _reconcile(
        self,
        body: kopf.Body,
        resource: Resource,
        *,
        fresh: bool,
        status: dict[str, Any],
        logger: Logger,
        namespace_labels: Mapping[str, str] | None,
    ) -> None:
        """Ask `decide`, do what it says, feed the outcome back, until it says publish or refuse."""
        handle = None
        if resource.provider_name and resource.needs_provider():
            handle = await self._registry.get(resource.provider_name)
        facts = Facts(
            namespace_labels=namespace_labels,
            resource=resource,
            provider=provider_facts(handle),
            fresh=fresh,
            now=now(),
            create_pending_in_memory=self._ledger.create_pending(resource.uid),
            uncertain_create_window=self._config.uncertain_create_window,
            read_before_update=self._config.read_before_update,
        )
        seen = Observation.first(resource)
        events: list[KubeEvent] = []  # posted when the reconcile ends, a create's and its Secret's as one
        try:
            await self._steps(body, resource, facts, seen, handle, status, events, logger)
        finally:
            _post(body, decision.one_event_per_create(events))

    async def _steps(
        self,
        body: kopf.Body,
        resource: Resource,
        facts: Facts,
        seen: Observation,
        handle: ProviderHandle | None,
        status: dict[str, Any],
        events: list[KubeEvent],
        logger: Logger,
    ) -> None:
        failure: Exception | None = None  # the error whose outcome the last observation describes
        for _ in range(MAX_STEPS):
            plan = reconcile.decide(facts, seen)
            self._apply(body, plan, status, handle, events)
            action = plan.action
            if isinstance(action, Refuse):
                if action.retry_delay is not None:
                    raise kopf.TemporaryError(action.message, delay=action.retry_delay)
                return
            if isinstance(action, GiveUp):
                assert failure is not None
                raise failure
            assert handle is not None
            client = handle.client
            if isinstance(action, LookUp):
                found = await self._look_up(handle, action)
                namesakes = handle.observer.namesakes(action.name) if action.snapshot else ()
                seen = plan.observe(action.then, found, namesakes=namesakes)
            elif isinstance(action, DeleteDuplicates):
                for database_id in action.database_ids:
                    await client.delete(database_id)
                    handle.observer.forget(database_id)
                    metrics.PROVIDER_ACTIONS.inc(action="delete_duplicate")
                logger.warning(
                    "deleted duplicate provider database(s) %s, kept %s", action.database_ids, action.keep_id
                )
                events.append(action.done)
                seen = plan.progress
            elif isinstance(action, CreateAction):
                sent_at = now()
                try:
                    created = await client.create(action.request)
                except AlreadyExistsError as error:
                    failure = error
                    seen = plan.observe(Step.NAME_TAKEN, await client.find_by_name(action.request.name))
                except UnavailableError as error:
                    if not error.outcome_unknown:
                        raise
                    failure = error
                    logger.warning("the create of %s timed out; it may still land at the provider", action.request.name)
                    seen = plan.observe(Step.CREATE_TIMED_OUT, sent_at=sent_at)
                else:
                    logger.info("created provider database %s (%s)", created.name, created.id)
                    seen = plan.observe(Step.CREATED, created)
            elif isinstance(action, UpdateAction):
                assert seen.database is not None
                try:
                    updated = await client.update(seen.database, action.update)
                except NotFoundError:
                    # Deleted at the provider since the snapshot saw it: the retry confirms that by id and recreates.
                    handle.observer.forget(seen.database.id)
                    raise
                seen = plan.observe(Step.UPDATED, updated, changes=action.changes)
            elif isinstance(action, ResetPassword):
                seen = plan.observe(Step.PASSWORD_RESET, await client.reset_password(action.database_id))
            else:
                assert isinstance(action, Publish)
                events.extend(await self._publish(resource, action, handle))
                status.update(action.status)
                return
        raise RuntimeError(f"the reconcile of {resource.namespace}/{resource.name} did not settle in {MAX_STEPS} steps")

    async def _look_up(self, handle: ProviderHandle, action: LookUp) -> Database | None:
        if action.snapshot and action.list_if_stale:
            max_age = self._config.resync_interval * 0.9
            return await handle.observer.lookup(database_id=action.database_id, name=action.name, max_age=max_age)
        if action.snapshot and handle.observer.age <= self._config.resync_interval * 2:
            # Current enough for a spec change while the resync keeps listing (once an interval); older, it stalled.
            return handle.observer.cached(action.database_id, action.name)
        if action.database_id is not None:
            try:
                return await handle.client.get(action.database_id)
            except NotFoundError:
                return None
        return await handle.client.find_by_name(action.name)

    async def _publish(self, resource: Resource, action: Publish, handle: ProviderHandle) -> tuple[KubeEvent, ...]:
        shape = resource.spec.connection_secret if resource.spec is not None else None
        target = SecretTarget(action.secret_name, resource.namespace, resource.name, resource.uid, shape)
        outcome = await self._secrets.publish(
            target,
            action.database,
            likely_absent=action.likely_absent,
            read_credentials=lambda: handle.client.get(action.database.id),
        )
        if has_credentials(action.database):
            self._ledger.note_published(resource.uid, content_hash(connection_data(action.database, shape), shape))
        message = outcome.event_message(action.secret_name)
        if message is None:
            return ()
        metrics.SECRET_WRITES.inc()
        return (KubeEvent("Normal", decision.SECRET_WRITTEN, message),)

    def _apply(
        self,
        body: kopf.Body,
        plan: Plan,
        status: dict[str, Any],
        handle: ProviderHandle | None = None,
        events: list[KubeEvent] | None = None,
    ) -> None:
        """Carry out what a plan says about the step just done: Events (posted now, or collected in `events`),
        metrics, the snapshot, status, the ledger."""
        uid = str(body.meta.uid)
        if events is None:
            _post(body, plan.events)
        else:
            events.extend(plan.events)
        for action in plan.counted:
            metrics.PROVIDER_ACTIONS.inc(action=action)
        if plan.drift_repaired:
            metrics.DRIFT_REPAIRS.inc()
        if plan.remember is not None and handle is not None:
            handle.observer.remember(plan.remember)
        status.update(plan.status)
        if plan.uncertain_create_since is not None:
            self._ledger.note_uncertain_create(uid, plan.uncertain_create_since)
        if plan.forget_uncertain_create:
            self._ledger.forget_uncertain_create(uid)

    @staticmethod
    def _record_reconcile(
        resource: Resource, written: Sequence[Mapping[str, Any]] | None, trigger: str, result: str, started: float
    ) -> None:
        """Count the reconcile, and place the database in `redisdb_databases` by the Ready condition it now has."""
        synced = condition(written, "Synced")
        if result == "success" and synced is not None and synced.get("status") == "False":
            # reported without raising: an invalid spec or a conflict; or a person said hands off (not an error:
            # the alert on permanent errors must not fire for every paused database at every resync)
            result = "held" if synced.get("reason") in SUSPENDED_REASONS else "permanent_error"
        metrics.RECONCILES.inc(trigger=trigger, result=result)
        metrics.RECONCILE_DURATION.observe(time.monotonic() - started, trigger=trigger)
        if resource.provider_name is None:
            return
        ready = condition(written or resource.status.get("conditions"), "Ready")
        ready_now = ready is not None and ready.get("status") == "True"
        metrics.DATABASE_READINESS.set(resource.uid, provider=resource.provider_name, ready=ready_now)

    # --- delete ---------------------------------------------------------------------------------------------

    async def delete(self, body: kopf.Body, *, patch: kopf.Patch, logger: Logger, retry: int = 0) -> None:
        resource = resource_of(body)
        started, result = time.monotonic(), "temporary_error"  # every failure of a deletion is retried
        try:
            await self._delete(body, resource, patch=patch, retry=retry)
            result = "success"
        except HeldDeletion:
            result = "held"  # not an error for the metrics and alerts: a person decides
            raise
        finally:
            metrics.RECONCILES.inc(trigger="delete", result=result)
            metrics.RECONCILE_DURATION.observe(time.monotonic() - started, trigger="delete")
        metrics.DATABASE_READINESS.forget(resource.uid)
        self._ledger.finish_deletion(resource.uid)  # on every path that finished, Orphan included

    async def _delete(self, body: kopf.Body, resource: Resource, *, patch: kopf.Patch, retry: int) -> None:
        facts = Facts(
            resource=resource,
            provider=None,
            fresh=True,
            now=now(),
            create_pending_in_memory=self._ledger.create_pending(resource.uid),
            uncertain_create_window=self._config.uncertain_create_window,
            default_deletion_policy=self._config.default_deletion_policy,
        )
        plan = deletion.decide_deletion(facts, Observation.first(resource))
        if isinstance(plan.action, Release):
            _post(body, plan.events)  # kept by policy: no provider, no lock
            return
        if isinstance(plan.action, Hold):
            # deletion protection or a pause: the finalizer stays, nothing at the provider is touched
            _post(body, plan.events)
            for key, value in plan.status.items():
                patch.status[key] = value
            raise HeldDeletion(plan.action.message, delay=plan.action.delay)
        wait: Wait | None = None
        async with self._ledger.lock(resource.uid):
            try:
                assert resource.provider_name is not None
                self._registry.invalidate(resource.provider_name)  # destroy only with the provider as it is now
                handle = await self._registry.get(resource.provider_name)
                while True:
                    _post(body, plan.events)
                    for action_name in plan.counted:
                        metrics.PROVIDER_ACTIONS.inc(action=action_name)
                    action = plan.action
                    if isinstance(action, Release):
                        break
                    if isinstance(action, Wait):
                        wait = action
                        break
                    if isinstance(action, LookUp):
                        seen = plan.observe(Step.FOUND_BY_NAME, await handle.client.find_by_name(action.name))
                    else:
                        assert isinstance(action, Delete)
                        await handle.client.delete(action.database_id)
                        handle.observer.forget(action.database_id)
                        seen = plan.observe(Step.DELETED)
                    plan = deletion.decide_deletion(facts, seen)
            except Exception as error:
                verdict = classify_error(error)
                message = deletion.deletion_failure_message(verdict.message)
                failure = decision.failure_status(resource, verdict.reason, message, now())
                _post(body, failure.events)
                for key, value in failure.status.items():
                    patch.status[key] = value
                # capped low: a fixed Secret or the force-orphan annotation should take effect soon
                raise kopf.TemporaryError(message, delay=backoff_delay(retry, verdict.retry_after, cap=30)) from None
        if wait is not None:
            # Releasing now would leave a late-landing database with no owner: wait for it, then delete it.
            raise kopf.TemporaryError(wait.message, delay=wait.delay)


def _post(body: kopf.Body, events: tuple[KubeEvent, ...]) -> None:
    # kopf.event, not kopf.info: handler log lines stay out of the API (posting level WARNING), Events do not.
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
