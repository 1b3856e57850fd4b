"""The imperative shell around the pure core: observe, act, publish the Secret, report status.

One path serves every trigger (create, update, resume, resync): handlers only say whether the observation
must be fresh (a spec change) or may come from the shared per-provider snapshot (the periodic resync).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from . import metrics, secrets
from .kube import KubeClient, KubeConflict, secret_path
from .models import (
    ANNOTATION_ADOPT,
    ANNOTATION_FORCE_ORPHAN,
    ANNOTATION_ROTATE_PASSWORD,
    DeletionPolicy,
    RedisDatabaseSpec,
)
from .provider_registry import ProviderHandle, ProviderRegistry
from .providers import catalog
from .providers.base import (
    AlreadyExistsError,
    Database,
    NotFoundError,
    ProviderClient,
    UnauthorizedError,
    UnavailableError,
)
from .reconcile import (
    UNCERTAIN_CREATE_FIELD,
    ConfigurationError,
    ConflictAction,
    CreateAction,
    DesiredDatabase,
    ErrorVerdict,
    NoAction,
    UpdateAction,
    backoff_delay,
    classify_error,
    condition,
    observed_status,
    parse_timestamp,
    plan_action,
    plan_unobservable_note,
    set_condition,
    stranger_database,
    uncertain_create_remaining,
    validate_against_catalog,
    waiting_for_spec_change,
)

FINISHED_DELETES_REMEMBERED = 4096
# kopf's bookkeeping before it moved to kopf.redisdb.dev/: while the marker stays, kopf's change detection
# ignores every redisdb.dev/* annotation (rotate-password included), so the first reconcile after an upgrade
# removes them, with the progress records an interrupted handler may have left.
LEGACY_KOPF_ANNOTATIONS = (
    "redisdb.dev/kopf-managed",
    "redisdb.dev/last-handled-configuration",
    "redisdb.dev/reconcile",
    "redisdb.dev/delete",
    "redisdb.dev/touch-dummy",
)


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
    resync_interval: float = 300.0
    max_concurrent_reconciles: int = 32
    # How long a create that timed out may still land at the provider: the client's 30 s budget plus a margin.
    uncertain_create_window: float = 90.0


def _normal_event(body: kopf.Body, *, reason: str, message: str) -> None:
    # kopf.event, not kopf.info: handler log lines stay out of the API (posting level WARNING), Events do not.
    kopf.event(body, type="Normal", reason=reason, message=message)


def _warning_event(body: kopf.Body, *, reason: str, message: str) -> None:
    kopf.event(body, type="Warning", reason=reason, message=message)


def utcnow() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class DatabaseController:
    def __init__(self, kube: KubeClient, registry: ProviderRegistry, config: ControllerConfig) -> None:
        self._kube = kube
        self._registry = registry
        self._config = config
        self._object_locks: dict[str, asyncio.Lock] = {}
        self._provider_slots = asyncio.Semaphore(config.max_concurrent_reconciles)
        # uid -> monotonic deadline of a create that timed out here; the status marker may not be written yet
        self._uncertain_creates: dict[str, float] = {}
        # uids whose deletion finished: a resync timer that waited on the lock must not act on its stale body
        self._finished_deletes: collections.OrderedDict[str, None] = collections.OrderedDict()

    @property
    def registry(self) -> ProviderRegistry:
        return self._registry

    def _lock_for(self, uid: str) -> asyncio.Lock:
        return self._object_locks.setdefault(uid, asyncio.Lock())

    def forget(self, uid: str) -> None:
        self._object_locks.pop(uid, None)
        self._uncertain_creates.pop(uid, None)

    def _uncertain_create_remaining(self, uid: str, status: Mapping[str, Any]) -> float:
        """Seconds a timed-out create of this resource may still land for, by memory or by the status marker."""
        in_memory = max(0.0, self._uncertain_creates.get(uid, 0.0) - time.monotonic())
        by_status = uncertain_create_remaining(
            status, now=datetime.datetime.now(datetime.UTC), window=self._config.uncertain_create_window
        )
        return max(in_memory, by_status)

    # --- reconcile ------------------------------------------------------------------------------------------

    async def reconcile(
        self,
        body: kopf.Body,
        *,
        fresh: bool,
        patch: kopf.Patch,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        retry: int = 0,
    ) -> None:
        meta = body.meta
        status: Mapping[str, Any] = body.get("status") or {}
        generation = meta.get("generation")
        if not fresh and waiting_for_spec_change(status, generation):
            return  # a permanent error at this generation: retrying cannot help, a spec change will
        async with self._lock_for(meta.uid), self._provider_slots:
            if meta.uid in self._finished_deletes or meta.get("deletionTimestamp"):
                return  # a timer that waited for the deletion to finish: its body is stale, nothing is left to do
            started, result = time.monotonic(), "success"
            try:
                await self._reconcile(body, fresh=fresh, patch=patch, logger=logger)
            except kopf.TemporaryError:
                result = "temporary_error"
                raise
            except Exception as error:
                verdict = classify_error(error)
                result = "temporary_error" if verdict.temporary else "permanent_error"
                if isinstance(error, UnauthorizedError):
                    self._registry.invalidate(
                        RedisDatabaseSpec.model_validate(dict(body.spec)).effective_provider_name()
                    )
                self._report_failure(body, patch, verdict, generation)
                if verdict.reason == "InternalError":
                    logger.exception("reconcile failed")
                if verdict.temporary:
                    raise kopf.TemporaryError(
                        verdict.message, delay=backoff_delay(retry, verdict.retry_after)
                    ) from None
            finally:
                self._record_reconcile(body, patch, "change" if fresh else "resync", result, started)

    @staticmethod
    def _record_reconcile(body: kopf.Body, patch: kopf.Patch, trigger: str, result: str, started: float) -> None:
        """Count the reconcile, and place the database in `redisdb_databases` by the Ready condition it now has."""
        written = patch.status.get("conditions")
        synced = condition(written, "Synced")
        if result == "success" and synced is not None and synced.get("status") == "False":
            result = "permanent_error"  # reported without raising: an invalid spec or a conflict
        metrics.RECONCILES.inc(trigger=trigger, result=result)
        metrics.RECONCILE_DURATION.observe(time.monotonic() - started, trigger=trigger)
        try:
            provider = RedisDatabaseSpec.model_validate(dict(body.spec)).effective_provider_name()
        except ValidationError:
            return
        ready = condition(written or (body.get("status") or {}).get("conditions"), "Ready")
        ready_now = ready is not None and ready.get("status") == "True"
        metrics.DATABASE_READINESS.set(str(body.meta.uid), provider=provider, ready=ready_now)

    def _report_failure(
        self, body: kopf.Body, patch: kopf.Patch, verdict: ErrorVerdict, generation: int | None
    ) -> None:
        status: Mapping[str, Any] = body.get("status") or {}
        now = utcnow()
        conditions = set_condition(
            status.get("conditions"),
            type_="Synced",
            status="False",
            reason=verdict.reason,
            message=verdict.message,
            generation=generation,
            now=now,
        )
        if condition(conditions, "Ready") is None:
            conditions = set_condition(
                conditions,
                type_="Ready",
                status="False",
                reason=verdict.reason,
                message=verdict.message,
                generation=generation,
                now=now,
            )
        previous = condition(status.get("conditions"), "Synced")
        if previous is None or previous.get("reason") != verdict.reason or previous.get("status") != "False":
            _warning_event(body, reason=verdict.reason, message=verdict.message)
        patch.status["conditions"] = conditions

    async def _reconcile(
        self,
        body: kopf.Body,
        *,
        fresh: bool,
        patch: kopf.Patch,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        meta = body.meta
        namespace = str(meta.namespace)
        name = str(meta.name)
        generation = meta.get("generation")
        status: Mapping[str, Any] = body.get("status") or {}
        for legacy in LEGACY_KOPF_ANNOTATIONS:
            if legacy in (meta.annotations or {}):
                patch.metadata.annotations[legacy] = None
        try:
            spec = RedisDatabaseSpec.model_validate(dict(body.spec))
        except ValidationError as error:
            self._report_failure(body, patch, ErrorVerdict("InvalidSpec", str(error), False), generation)
            return
        desired = DesiredDatabase.from_spec(spec, namespace=namespace, metadata_name=name)
        handle = await self._registry.get(spec.effective_provider_name())
        problem = validate_against_catalog(handle.provider_type, desired)
        if problem:
            self._report_failure(body, patch, ErrorVerdict("InvalidSpec", problem, False), generation)
            return
        client = handle.client
        recorded_id: str | None = status.get("databaseId")
        # A retired region or a legacy plan: an existing database is managed, a new one is refused (issue 13).
        create_refusal = catalog.creation_refusal(
            handle.provider_type, desired.primary_region, desired.read_regions, desired.plan, handle.live_catalog
        )

        if recorded_id is None and (pending := self._uncertain_create_remaining(str(meta.uid), status)) > 0:
            # An earlier create timed out and may still land: look for it, never create a second one meanwhile.
            observed: Database | None = await client.find_by_name(desired.name)
            if observed is None:
                message = (
                    f"an earlier create of {desired.name} timed out and may still land at the provider; "
                    f"looking it up again, creating anew only after {pending:.0f}s"
                )
                self._report_failure(body, patch, ErrorVerdict("CreateOutcomeUnknown", message, True), generation)
                raise kopf.TemporaryError(message, delay=min(pending, 10.0) + 1.0)
        elif fresh and recorded_id is None and client.names_are_unique and create_refusal is None:
            # Nothing recorded yet and the provider refuses duplicate names: the create below is keyed by the
            # name, so its answer is the observation (a taken name is looked up then), saving a call per create.
            observed = None
        else:
            observed = await self._observe(handle, desired, recorded_id, fresh=fresh)
        if observed is not None and self._refuse_stranger(body, patch, observed, recorded_id):
            return
        action = plan_action(desired, observed, recorded_id)
        if isinstance(action, CreateAction) and create_refusal is not None:
            self._report_failure(body, patch, ErrorVerdict("InvalidSpec", create_refusal, False), generation)
            return
        just_created = False
        if isinstance(action, CreateAction):
            observed, just_created = await self._create(
                body, handle, desired, recorded_id, action, patch, logger, fresh=fresh
            )
            if not just_created and self._refuse_stranger(body, patch, observed, recorded_id):
                return
            action = plan_action(desired, observed, observed.id)  # an adopted database may still differ
        if isinstance(action, ConflictAction):
            self._report_failure(body, patch, ErrorVerdict(action.reason, action.message, False), generation)
            return
        assert observed is not None
        if isinstance(action, UpdateAction):
            await client.update(observed.id, action.update)
            metrics.PROVIDER_ACTIONS.inc(action="update")
            observed = observed.model_copy(
                update={
                    key: value
                    for key, value in (
                        ("read_regions", action.update.read_regions),
                        ("plan", action.update.plan),
                        ("eviction", action.update.eviction),
                        ("plan_observable", True if action.update.plan is not None else None),  # we just set it
                    )
                    if value is not None
                }
            )
            handle.observer.remember(observed)
            summary = "; ".join(change.describe() for change in action.changes)
            is_drift = generation == status.get("observedGeneration") and not fresh
            if is_drift:
                metrics.DRIFT_REPAIRS.inc()
                _warning_event(body, reason="DriftRepaired", message=f"changed at the provider, repaired: {summary}")
            else:
                _normal_event(body, reason="Updated", message=f"updated at the provider: {summary}")
        else:
            assert isinstance(action, NoAction)

        rotation = (meta.annotations or {}).get(ANNOTATION_ROTATE_PASSWORD)
        handled_rotation = status.get("lastHandledRotation")
        rotated_at = status.get("passwordRotatedAt")
        if rotation and rotation != handled_rotation:
            if just_created and handled_rotation is None:
                pass  # a fresh password already; only later changes of the annotation ask for a new one
            else:
                observed = await client.reset_password(observed.id)
                metrics.PROVIDER_ACTIONS.inc(action="reset_password")
                handle.observer.remember(observed)
                rotated_at = utcnow()
                _normal_event(body, reason="PasswordRotated", message="the provider issued a new password")
            handled_rotation = rotation

        secret_name = spec.effective_secret_name(name)
        await self._publish_secret(body, client, observed, secret_name, likely_absent=just_created)

        now = utcnow()
        plan_note = plan_unobservable_note(desired, observed)
        previous_synced = condition(status.get("conditions"), "Synced")
        if plan_note and (previous_synced is None or previous_synced.get("message") != plan_note):
            _warning_event(body, reason="PlanNotObservable", message=plan_note)  # once: the message is kept below
        conditions = set_condition(
            status.get("conditions"),
            type_="Synced",
            status="True",
            reason="ReconcileSuccess",
            message=plan_note,
            generation=generation,
            now=now,
        )
        ready = observed.state in ("active", "ready", "created", "")
        not_ready = f"state is {observed.state}" + (f": {observed.state_message}" if observed.state_message else "")
        conditions = set_condition(
            conditions,
            type_="Ready",
            status="True" if ready else "False",
            reason="Available" if ready else "NotActive",
            message=f"secret {secret_name} holds the connection details" if ready else not_ready,
            generation=generation,
            now=now,
        )
        new_status: dict[str, Any] = {
            **observed_status(observed),
            "provider": handle.name,
            "secretName": secret_name,
            "observedGeneration": generation,
            "conditions": conditions,
            "lastHandledRotation": handled_rotation,
            "passwordRotatedAt": rotated_at,
        }
        comparable = {key: value for key, value in new_status.items() if value is not None}
        current = {key: status.get(key) for key in comparable}
        if comparable != current:
            comparable["lastSyncTime"] = now
            for key, value in comparable.items():
                patch.status[key] = value
        self._uncertain_creates.pop(str(meta.uid), None)
        if status.get(UNCERTAIN_CREATE_FIELD):
            patch.status[UNCERTAIN_CREATE_FIELD] = None  # the database is recorded: nothing is left in flight

    async def _observe(
        self, handle: ProviderHandle, desired: DesiredDatabase, recorded_id: str | None, *, fresh: bool
    ) -> Database | None:
        if not fresh:
            return await handle.observer.lookup(
                database_id=recorded_id, name=desired.name, max_age=self._config.resync_interval * 0.9
            )
        if recorded_id is not None:
            try:
                return await handle.client.get(recorded_id)
            except NotFoundError:
                return None
        return await handle.client.find_by_name(desired.name)

    async def _create(
        self,
        body: kopf.Body,
        handle: ProviderHandle,
        desired: DesiredDatabase,
        recorded_id: str | None,
        action: CreateAction,
        patch: kopf.Patch,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        *,
        fresh: bool,
    ) -> tuple[Database, bool]:
        """Create unless the database already exists: creates are never duplicated, even across a crash.

        The provider refuses a second database of one name (AlreadyExistsError) and the name follows from the
        resource, so a create interrupted by a crash is found by name and adopted on the next reconcile. After
        a fresh observation the create goes first and the name is looked up only when it is taken; after a
        snapshot observation, which may be stale, the recorded id and the name are checked first.
        """
        client = handle.client
        if not fresh:  # a snapshot may be stale: check the recorded id and the name authoritatively first
            if recorded_id is not None:
                try:
                    existing: Database | None = await client.get(recorded_id)
                except NotFoundError:
                    existing = None
                if existing is not None:
                    return existing, False
            existing = await client.find_by_name(desired.name)
            if existing is not None:
                return self._adopt(body, handle, desired, existing, recorded_id, patch), False
        sent_at, sent_monotonic = utcnow(), time.monotonic()
        try:
            created = await client.create(action.request)
        except UnavailableError as error:
            if error.outcome_unknown:  # the provider may still create it: remember, in memory and in the status
                self._uncertain_creates[str(body.meta.uid)] = sent_monotonic + self._config.uncertain_create_window
                patch.status[UNCERTAIN_CREATE_FIELD] = sent_at
                logger.warning("the create of %s timed out; it may still land at the provider", desired.name)
            raise
        except AlreadyExistsError:
            existing = await client.find_by_name(desired.name)
            if existing is None:
                raise  # taken outside this organization or account: nothing of ours to adopt
            return self._adopt(body, handle, desired, existing, recorded_id, patch), False
        self._record_id(body, patch, created.id)
        handle.observer.remember(created)
        metrics.PROVIDER_ACTIONS.inc(action="recreate" if action.recreate else "create")
        if action.recreate:
            metrics.DRIFT_REPAIRS.inc()
            _warning_event(
                body,
                reason="DriftRecreated",
                message=f"the provider database {recorded_id} was deleted outside Kubernetes; created {created.id}",
            )
        else:
            _normal_event(
                body,
                reason="Created",
                message=f"created {created.name} ({created.id}) in {created.primary_region}",
            )
        logger.info("created provider database %s (%s)", created.name, created.id)
        return created, True

    @staticmethod
    def _stranger(body: kopf.Body, found: Database) -> ConflictAction | None:
        """Why `found` (met by name) is not ours to take over, or None: see reconcile.stranger_database."""
        meta = body.meta
        return stranger_database(
            found,
            resource_created=parse_timestamp(meta.get("creationTimestamp")),
            adopt=(meta.annotations or {}).get(ANNOTATION_ADOPT) == "true",
        )

    def _refuse_stranger(self, body: kopf.Body, patch: kopf.Patch, found: Database, recorded_id: str | None) -> bool:
        """Report NameTaken and say True when a database met by name, not by our record, is someone else's."""
        if found.id == recorded_id:
            return False
        stranger = self._stranger(body, found)
        if stranger is None:
            return False
        verdict = ErrorVerdict(stranger.reason, stranger.message, False)
        self._report_failure(body, patch, verdict, body.meta.get("generation"))
        return True

    def _adopt(
        self,
        body: kopf.Body,
        handle: ProviderHandle,
        desired: DesiredDatabase,
        existing: Database,
        recorded_id: str | None,
        patch: kopf.Patch,
    ) -> Database:
        """Take over a database of our name; one in another primary region is left to plan_action's conflict, and
        one that predates the resource (someone else's) to the caller's NameTaken."""
        if self._stranger(body, existing) is not None:
            return existing
        if existing.primary_region == desired.primary_region:
            if recorded_id is None:
                metrics.PROVIDER_ACTIONS.inc(action="adopt")
                _normal_event(body, reason="Adopted", message=f"adopted the existing provider database {existing.name}")
            self._record_id(body, patch, existing.id)
            handle.observer.remember(existing)
        return existing

    @staticmethod
    def _record_id(body: kopf.Body, patch: kopf.Patch, database_id: str) -> None:
        """Put the provider id into this reconcile's status patch, written whether the rest succeeds or fails.

        Not a PATCH of its own: a crash before kopf writes the patch loses nothing, since the next reconcile
        meets the taken name and adopts the database (see _create).
        """
        if (body.get("status") or {}).get("databaseId") != database_id:
            patch.status["databaseId"] = database_id

    async def _publish_secret(
        self,
        body: kopf.Body,
        client: ProviderClient,
        database: Database,
        secret_name: str,
        *,
        likely_absent: bool = False,
    ) -> None:
        """Write the whole Secret when it is missing or its content changed; never a partial update.

        ``likely_absent`` (the database was just created): POST first and read only if the name is taken,
        saving a round trip on every create.
        """
        namespace = str(body.meta.namespace)
        owner_uid = str(body.meta.uid)
        if likely_absent and database.url and database.password:
            try:
                await self._kube.create(secret_path(namespace), self._render_secret(body, database, secret_name))
            except KubeConflict:
                pass  # someone's Secret, or ours from an earlier attempt: the checks below decide
            else:
                metrics.SECRET_WRITES.inc()
                _normal_event(body, reason="SecretWritten", message=f"wrote connection Secret {secret_name}")
                return
        existing = await self._kube.get(secret_path(namespace, secret_name))
        if existing is not None and not secrets.is_owned_by(existing, owner_uid):
            raise ConfigurationError(
                "SecretConflict",
                f"Secret {namespace}/{secret_name} exists and is not owned by this RedisDatabase; delete it or set "
                "spec.connectionSecret.name to another name",
            )
        if not (database.url and database.password):
            if existing is not None and secrets.ANNOTATION_CONTENT_HASH in (
                existing["metadata"].get("annotations") or {}
            ):
                return  # no credentials in the snapshot; the Secret we wrote stands until they change
            database = await client.get(database.id)
        rendered = self._render_secret(body, database, secret_name)
        if existing is None:
            try:
                await self._kube.create(secret_path(namespace), rendered)
            except KubeConflict:
                raise kopf.TemporaryError("the Secret appeared concurrently; retrying", delay=1) from None
            metrics.SECRET_WRITES.inc()
            _normal_event(body, reason="SecretWritten", message=f"wrote connection Secret {secret_name}")
            return
        old_hash = (existing["metadata"].get("annotations") or {}).get(secrets.ANNOTATION_CONTENT_HASH)
        new_hash = rendered["metadata"]["annotations"][secrets.ANNOTATION_CONTENT_HASH]
        if old_hash == new_hash and existing.get("data") == rendered["data"]:
            return
        rendered["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        await self._kube.replace(secret_path(namespace, secret_name), rendered)
        metrics.SECRET_WRITES.inc()
        _normal_event(body, reason="SecretWritten", message=f"updated connection Secret {secret_name}")

    @staticmethod
    def _render_secret(body: kopf.Body, database: Database, secret_name: str) -> dict[str, Any]:
        return secrets.render_connection_secret(
            secret_name=secret_name,
            namespace=str(body.meta.namespace),
            owner_name=str(body.meta.name),
            owner_uid=str(body.meta.uid),
            database=database,
        )

    # --- delete ---------------------------------------------------------------------------------------------

    async def delete(
        self,
        body: kopf.Body,
        *,
        patch: kopf.Patch,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        retry: int = 0,
    ) -> None:
        started, result = time.monotonic(), "temporary_error"  # every failure of a deletion is retried
        try:
            await self._delete(body, patch=patch, logger=logger, retry=retry)
            result = "success"
        finally:
            metrics.RECONCILES.inc(trigger="delete", result=result)
            metrics.RECONCILE_DURATION.observe(time.monotonic() - started, trigger="delete")
        metrics.DATABASE_READINESS.forget(str(body.meta.uid))
        self.forget(str(body.meta.uid))  # on every path that finished, Orphan included
        self._finished_deletes[str(body.meta.uid)] = None
        while len(self._finished_deletes) > FINISHED_DELETES_REMEMBERED:
            self._finished_deletes.popitem(last=False)

    async def _delete(
        self,
        body: kopf.Body,
        *,
        patch: kopf.Patch,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        retry: int = 0,
    ) -> None:
        meta = body.meta
        status: Mapping[str, Any] = body.get("status") or {}
        try:
            spec = RedisDatabaseSpec.model_validate(dict(body.spec))
        except ValidationError:
            _warning_event(body, reason="Orphaned", message="the spec is invalid; nothing was deleted at the provider")
            return
        if spec.effective_deletion_policy() is DeletionPolicy.ORPHAN:
            _normal_event(body, reason="Orphaned", message="deletionPolicy is Orphan: the provider database is kept")
            return
        if (meta.annotations or {}).get(ANNOTATION_FORCE_ORPHAN) == "true":
            _warning_event(body, reason="Orphaned", message=f"{ANNOTATION_FORCE_ORPHAN} is set: the database is kept")
            return
        create_may_land = 0.0
        async with self._lock_for(meta.uid):
            try:
                provider_name = spec.effective_provider_name()
                self._registry.invalidate(provider_name)  # destroy only with the provider as it is now
                handle = await self._registry.get(provider_name)
                database_id: str | None = status.get("databaseId")
                if database_id is None:
                    name = spec.effective_name(str(meta.namespace), str(meta.name))
                    found = await handle.client.find_by_name(name)
                    if found is not None and self._stranger(body, found) is not None:
                        _warning_event(
                            body,
                            reason="Kept",
                            message=f"the provider database {found.name} ({found.id}) predates this RedisDatabase "
                            f"and was never adopted: not deleted",
                        )
                        found = None
                    database_id = found.id if found else None
                    if database_id is None:
                        create_may_land = self._uncertain_create_remaining(str(meta.uid), status)
                if database_id is not None:
                    await handle.client.delete(database_id)
                    metrics.PROVIDER_ACTIONS.inc(action="delete")
                    handle.observer.forget(database_id)
                    _normal_event(body, reason="Deleted", message=f"deleted provider database {database_id}")
            except Exception as error:
                verdict = classify_error(error)
                message = (
                    f"cannot delete the provider database: {verdict.message}. To remove the RedisDatabase without "
                    f"deleting it at the provider, annotate it {ANNOTATION_FORCE_ORPHAN}=true"
                )
                self._report_failure(body, patch, dataclasses.replace(verdict, message=message), meta.get("generation"))
                # capped low: a fixed Secret or the force-orphan annotation should take effect soon
                raise kopf.TemporaryError(message, delay=backoff_delay(retry, verdict.retry_after, cap=30)) from None
        if create_may_land > 0:
            # Releasing now would leave a late-landing database with no owner: wait for it, then delete it.
            raise kopf.TemporaryError(
                f"an earlier create timed out and may still land at the provider; checking again for up to "
                f"{create_may_land:.0f}s before releasing the resource",
                delay=min(create_may_land, 10.0) + 1.0,
            )
