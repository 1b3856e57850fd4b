"""The resync as one sweep per provider: list the provider once, compare, wake only what differs.

A kopf timer per RedisDatabase cost 3-7 ms of operator CPU per database per interval (the timer's task, kopf's
handler machinery, a Secret read), 10-23 % of a core at 10,000 databases. The sweep runs once per RedisProvider
per interval on the leader: one `list` (the shared `ProviderObserver` snapshot), then for each RedisDatabase of
that provider (a kopf index: the bodies kopf's watch already delivers) the pure `reconcile.decide` on the
snapshot. Only a database whose decision is not "publish, nothing to change" is woken, through the same
`DatabaseController.reconcile` the timer called (so a repair still reads `DriftRepaired`), with its status
written here since no kopf handler carries the patch.

The connection Secrets: the operator has no list/watch on Secrets (the chart grants get/create/update only, on
purpose), so the sweep reads settled databases' Secrets with one GET each (a few concurrent) and wakes a database
when its Secret is gone, no longer owned, or its data no longer matches the content-hash annotation this operator
wrote (edited by hand). Those GETs were most of the idle CPU at 10,000 databases (about 1 ms each), so one sweep
reads at most `secret_checks_per_sweep` of the Secrets whose content this process already knows (default 1,000
per provider): up to that many databases every Secret is read at every sweep, as the per-object timer did; past
it each is read every ceil(databases / budget)-th sweep (at 10,000: every 10th, so a deleted or edited Secret is
restored within 10 resync intervals). A Secret whose content this process does not know yet (after a restart or a
takeover) is read at the next sweep regardless. The sweep also compares the content the snapshot implies with
what this process last published (a provider-side password change), at every sweep.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import kopf

from . import metrics, reconcile
from .controller import DatabaseController, now, provider_facts, resource_of
from .decision import Facts, LookUp, Observation, Publish, Refuse, Step
from .kube import KubeError, secret_path
from .models import GROUP
from .provider_registry import ProviderHandle
from .secrets import ANNOTATION_CONTENT_HASH, connection_data, content_hash, has_credentials, secret_intact
from .status import waiting_for_spec_change

log = logging.getLogger(__name__)

KOPF_PREFIX = f"kopf.{GROUP}"
LAST_HANDLED = reconcile.LEGACY_DIFF_BASE_ANNOTATION  # kopf's diff base as an annotation, before the status
# A wake that keeps failing is retried like kopf retries a handler, at most this often.
MAX_WAKE_RETRIES = 20
# Concurrent Secret reads of one sweep: enough to hide the round trip, few enough to leave the apiserver alone.
SECRET_READS = 8
# Secrets of one provider whose content this process knows, read per sweep at most (see the module docstring).
SECRET_CHECKS_PER_SWEEP = 1000


def secret_due(uid: str, known: bool, sweep_number: int, known_count: int, budget: int) -> bool:
    """Whether this sweep reads the Secret of `uid`: always when its content is not known here; else, with more
    known ones than `budget`, at one sweep in every ceil(known_count / budget) (each uid at a fixed phase, so
    every Secret is read once in that many sweeps)."""
    if not known or known_count <= budget:
        return True
    every = math.ceil(known_count / max(1, budget))
    return zlib.crc32(uid.encode()) % every == sweep_number % every


class OwnPrefixBlindDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base, blind to every annotation of our kopf prefix (progress included), as to its own.

    kopf recognises only `kopf.zalando.org` and prefixes marked `<prefix>/kopf-managed` (a marker it does not
    write for prefixes starting with `kopf.`); the marker would also hide the user's redisdb.dev/* annotations.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        annotations = essence.get("metadata", {}).get("annotations", {})
        for key in [key for key in annotations if key.startswith(f"{self.prefix}/")]:
            del annotations[key]
        self.remove_empty_stanzas(essence)
        return essence


# Where kopf kept its diff base before it moved to the status: still read for objects last handled then.
LEGACY_DIFF_BASE = OwnPrefixBlindDiffBaseStorage(prefix=KOPF_PREFIX, key=LAST_HANDLED.rpartition("/")[2])
DIFF_BASE_FIELD = "status.kopf.lastHandledConfiguration"  # models.KopfRecord


class StatusDiffBaseStorage(kopf.StatusDiffBaseStorage):
    """kopf's diff base in `status.kopf.lastHandledConfiguration`, blind to our kopf prefix's annotations.

    In the status, kopf writes it with the handler's outcome in one PATCH of the status subresource; as an
    annotation it was a PATCH of the object of its own for every handled change (and one more watch event for
    every replica). Objects last handled before keep it in the annotation, which is read until the next change.
    """

    def __init__(self) -> None:
        super().__init__(field=DIFF_BASE_FIELD)

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return LEGACY_DIFF_BASE.build(body=body, extra_fields=extra_fields)  # status is never part of it

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return super().fetch(body=body) or LEGACY_DIFF_BASE.fetch(body=body)


# The diff base kopf keeps (build_settings installs the same storage): what kopf last handled.
DIFF_BASE = StatusDiffBaseStorage()


def settled_by_kopf(body: Mapping[str, Any]) -> bool:
    """kopf has handled the object's current configuration and holds no handler in progress or in retry.

    Anything else belongs to kopf's own create/update/resume handler (which retries by itself); waking it too
    would only race that handler with a staler body.
    """
    meta = body.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False
    annotations = meta.get("annotations") or {}
    if any(key.startswith(f"{KOPF_PREFIX}/") and key != LAST_HANDLED for key in annotations):
        return False
    # A spec edit or a user annotation (rotate-password) that kopf has not finished handling: its handler runs
    # at once, and a wake beside it, from a body whose status predates it, would rotate a second time.
    current = body if isinstance(body, kopf.Body) else kopf.Body(cast(kopf.RawBody, dict(body)))
    handled = DIFF_BASE.fetch(body=current)
    return handled is not None and handled == DIFF_BASE.build(body=current)


# uid -> (resourceVersion, settled_by_kopf): the essence comparison deep-copies the body, and it was a fifth of the
# idle CPU (twice per database per sweep) for bodies that had not changed since the last sweep.
_SETTLED: dict[str, tuple[str, bool]] = {}
_SETTLED_LIMIT = 100_000


def settled_by_kopf_cached(body: Mapping[str, Any]) -> bool:
    """`settled_by_kopf`, remembered per object version (a resourceVersion names one state of the object)."""
    meta = body.get("metadata") or {}
    uid, version = str(meta.get("uid") or ""), str(meta.get("resourceVersion") or "")
    if not uid or not version:
        return settled_by_kopf(body)
    held = _SETTLED.get(uid)
    if held is not None and held[0] == version:
        return held[1]
    settled = settled_by_kopf(body)
    if len(_SETTLED) >= _SETTLED_LIMIT:
        _SETTLED.clear()  # deleted objects' entries: dropped all at once, rebuilt by the next sweep
    _SETTLED[uid] = (version, settled)
    return settled


def status_landed(body: Mapping[str, Any]) -> bool:
    """Whether the body shows a status written by a reconcile: kopf patches the object (its last-handled
    annotation) and then its status subresource, so a sweep between the two would see a settled object with no
    status, wake it, and its reconcile would look the database up at the provider and write the status again.
    Every reconcile's outcome writes conditions; until they show, the next sweep looks again."""
    return bool((body.get("status") or {}).get("conditions"))


def resume_can_wait(body: Mapping[str, Any]) -> bool:
    """A resume (a restart or a takeover) of a database the last reconcile left Synced and Ready at its current
    generation: nothing changed since (kopf would call it an update otherwise), so it waits for the first sweep
    (a few seconds after the start) instead of a reconcile each. At 10,000 databases the resumes were what a
    takeover spent its first minutes on, and a spec edit waited behind them for CPU."""
    if not settled_by_kopf(body):
        return False
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    conditions = status.get("conditions") or []
    by_type = {c.get("type"): c for c in conditions if isinstance(c, Mapping)}
    synced, ready = by_type.get("Synced") or {}, by_type.get("Ready") or {}
    return (
        synced.get("status") == "True"
        and ready.get("status") == "True"
        and synced.get("observedGeneration") == generation
        and bool(status.get("databaseId"))
    )


def needs_wake(
    facts: Facts,
    snapshot: Callable[[str | None, str], Any],
    published: Callable[[str], str | None],
    secrets_to_check: list[tuple[str, str | None]] | None = None,
    namesakes: Callable[[str], tuple[Any, ...]] = lambda _name: (),
) -> bool:
    """Whether the decision from the snapshot would do anything: a provider call, a status change, a new Secret.

    `snapshot(database_id, name)` is the shared snapshot's answer, `published(uid)` the content hash this process
    last published for the resource (None: not since it started), `namesakes(name)` every database of that name
    when the snapshot holds more than one (a late duplicate of ours wakes the resource, which deletes it). When
    nothing needs doing from the snapshot and the decision is to publish, (the Secret's name, the content hash it
    should carry if the list says) is appended to `secrets_to_check`: the caller reads the Secret (without that
    list, an unknown published hash wakes).
    """
    resource = facts.resource
    seen = Observation.first(resource)
    plan = reconcile.decide(facts, seen)
    if isinstance(plan.action, LookUp) and plan.action.snapshot:
        found = snapshot(plan.action.database_id, plan.action.name)
        seen_namesakes = namesakes(plan.action.name)
        plan = reconcile.decide(facts, plan.observe(Step.SNAPSHOT, found, namesakes=seen_namesakes))
    action = plan.action
    if isinstance(action, Refuse):
        if action.retry_delay is not None:
            return True
        # the same refusal as already reported (a pause, a namespace not allowed): nothing to write
        return dict(plan.status) != {"conditions": resource.status.get("conditions")}
    if not isinstance(action, Publish) or plan.status or plan.events or plan.counted or plan.remember is not None:
        return True
    if action.status:
        return True  # the status the publish would write differs (a refusal that no longer holds, a new state)
    if plan.uncertain_create_since is not None:
        return True
    expected: str | None = None
    if has_credentials(action.database):
        shape = resource.spec.connection_secret if resource.spec is not None else None
        expected = content_hash(connection_data(action.database, shape), shape)
        last = published(resource.uid)
        if last is not None and last != expected:
            return True
        # not published since this process started (a restart, a takeover): the Secret check compares its hash
    # else a list without passwords: the Secret this process (or its predecessor) wrote stands until they change
    if secrets_to_check is not None:
        secrets_to_check.append((action.secret_name, expected))
    elif expected is not None and published(resource.uid) is None:
        return True
    return False


@dataclasses.dataclass
class SweepResult:
    databases: int = 0
    woken: int = 0
    skipped: int = 0  # kopf's own handler has them, or a permanent error waits for a spec change


class Sweeper:
    """The leader's resync: `sweep` once per provider per interval; woken reconciles run in the background."""

    def __init__(
        self,
        controller: DatabaseController,
        resync_interval: float,
        secret_checks_per_sweep: int = SECRET_CHECKS_PER_SWEEP,
    ) -> None:
        self._controller = controller
        self._interval = resync_interval
        self._secret_budget = secret_checks_per_sweep
        self._sweeps: dict[str, int] = {}  # provider -> sweeps done (the phase of the Secret reads)
        self._waking: dict[str, asyncio.Task[None]] = {}

    async def sweep(
        self,
        handle: ProviderHandle,
        bodies: Iterable[kopf.Body],
        *,
        namespace_labels: Callable[[str], Mapping[str, str] | None],
        latest: Callable[[str, str], kopf.Body | None],
    ) -> SweepResult:
        """List `handle`'s provider once and wake each of `bodies` whose decision would change something."""
        result = SweepResult()
        try:
            # Half an interval: the list of this sweep serves the reconciles it wakes (and a create's
            # write-through keeps it current), while the next sweep always lists again.
            await handle.observer.refresh(max_age=self._interval * 0.5)
        except Exception as error:  # reported by the RedisProvider check; retried next sweep
            log.warning("resync of provider %s: the list failed (%s); nothing woken", handle.name, error)
            return result
        metrics.SWEEPS.inc(provider=handle.name)
        facts_provider = provider_facts(handle)
        taken_at = now()
        unwoken: list[tuple[str, kopf.Body, tuple[str, str | None], Any]] = []  # (uid, body, (Secret, hash), shape)
        for body in bodies:
            result.databases += 1
            uid = str(body.meta.uid)
            if uid in self._waking or not settled_by_kopf_cached(body) or not status_landed(body):
                result.skipped += 1
                continue
            resource = resource_of(body)
            if waiting_for_spec_change(resource.status, resource.generation):
                result.skipped += 1
                continue
            facts = Facts(
                namespace_labels=namespace_labels(resource.namespace),
                resource=resource,
                provider=facts_provider,
                fresh=False,
                now=taken_at,
                create_pending_in_memory=self._controller.create_pending(uid),
                uncertain_create_window=self._controller.uncertain_create_window,
            )
            secret: list[tuple[str, str | None]] = []
            try:
                wake = resource.spec is None or needs_wake(
                    facts, handle.observer.cached, self._controller.published_hash, secret, handle.observer.namesakes
                )
            except Exception:  # the reconcile reports it properly
                wake = True
            if wake:
                self._start_wake(result, uid, body, namespace_labels, latest)
            elif secret:
                unwoken.append((uid, body, secret[0], resource.spec.connection_secret if resource.spec else None))
        sweep_number = self._sweeps[handle.name] = self._sweeps.get(handle.name, -1) + 1
        known = [self._controller.published_hash(uid) is not None for uid, *_ in unwoken]
        known_count = sum(known)
        due = [
            item
            for item, is_known in zip(unwoken, known, strict=True)
            if secret_due(item[0], is_known, sweep_number, known_count, self._secret_budget)
        ]
        await self._check_secrets(result, due, namespace_labels, latest)
        metrics.SWEEP_WOKEN.inc(result.woken, provider=handle.name)
        return result

    def _start_wake(
        self,
        result: SweepResult,
        uid: str,
        body: kopf.Body,
        namespace_labels: Callable[[str], Mapping[str, str] | None],
        latest: Callable[[str, str], kopf.Body | None],
    ) -> None:
        if uid in self._waking:
            return
        result.woken += 1
        self._waking[uid] = asyncio.create_task(
            self._wake(uid, body, namespace_labels, latest), name=f"resync {body.meta.namespace}/{body.meta.name}"
        )

    async def _check_secrets(
        self,
        result: SweepResult,
        unwoken: list[tuple[str, kopf.Body, tuple[str, str | None], Any]],
        namespace_labels: Callable[[str], Mapping[str, str] | None],
        latest: Callable[[str, str], kopf.Body | None],
    ) -> None:
        """Read the Secret of each database the snapshot did not wake; wake those whose Secret is gone or edited."""
        limit = asyncio.Semaphore(SECRET_READS)

        async def check(uid: str, body: kopf.Body, wanted: tuple[str, str | None], shape: Any) -> None:
            secret_name, expected = wanted
            async with limit:
                namespace = str(body.meta.namespace)
                try:
                    secret = await self._controller.kube.get(secret_path(namespace, secret_name))
                except KubeError as error:
                    log.debug("resync: Secret %s/%s unreadable (%s)", namespace, secret_name, error)
                    return  # the apiserver is unwell: the next sweep reads it again
            if not secret_intact(secret, uid, shape):
                self._start_wake(result, uid, body, namespace_labels, latest)
            elif expected is not None:
                written = ((secret or {}).get("metadata", {}).get("annotations") or {}).get(ANNOTATION_CONTENT_HASH)
                if written == expected:
                    self._controller.note_published(uid, expected)  # what a restart forgot, known again
                else:
                    self._start_wake(result, uid, body, namespace_labels, latest)

        await asyncio.gather(*(check(*item) for item in unwoken))

    async def _wake(
        self,
        uid: str,
        body: kopf.Body,
        namespace_labels: Callable[[str], Mapping[str, str] | None],
        latest: Callable[[str, str], kopf.Body | None],
    ) -> None:
        """Reconcile from the snapshot as the timer did; a temporary failure is retried after kopf's backoff."""
        try:
            for retry in range(MAX_WAKE_RETRIES):
                namespace = str(body.meta.namespace)
                delay = await self._controller.wake(body, retry=retry, namespace_labels=namespace_labels(namespace))
                if delay is None:
                    return
                await asyncio.sleep(delay)
                fresher = latest(namespace, uid)
                if fresher is None or not settled_by_kopf(fresher):
                    return  # gone, or kopf's own handler has it now
                body = fresher
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("resync of %s/%s failed", body.meta.namespace, body.meta.name)
        finally:
            self._waking.pop(uid, None)

    async def stop(self) -> None:
        tasks = list(self._waking.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
