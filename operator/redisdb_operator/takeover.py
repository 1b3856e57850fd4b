"""On takeover, the pending changes first: spec edits and deletions the old leader left unhandled.

A new leader's kopf lists every RedisDatabase and walks them in the list's order; at 10,000 the walk took about
9 s before it reached an edited one (failover 20 s after a SIGKILL, 7.5 s after a SIGTERM). Every replica's
`DatabaseBook` already holds every body, so at takeover the leader knows which ones are pending: an existing
database whose spec generation the last reconcile has not seen (status.observedGeneration), or one being deleted.
Those are handled at once, from the book, before and beside kopf's walk: an edit as kopf's update handler would
(fresh from the provider: one read, then the update), a deletion through the same controller delete, all inside
kopf's startup (kopf's watch starts after it; the startup waits for them up to FIRST_PASS_WAIT).

Only the changes pending at the takeover take the lane: an edit that arrives later is kopf's alone, because the
lane's reconcile and kopf's handler of the same event would each work from a body whose status predates the
other's write (seen in e2e: an Upstash plan change, unobservable once made, sent twice).

kopf's own handler still runs for each of them afterwards; it returns at once when the lane handled exactly
the configuration kopf now sees (`handled`), so a change is not sent to the provider twice. Anything the lane
could not finish (a temporary error, a held deletion) is left to kopf, which retries as usual. The per-object
lock of the controller keeps the lane and kopf's handler from running at once on one object.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kopf._core.engines import posting

from .controller import DatabaseController
from .database_book import DatabaseBook
from .kube import KubeError
from .models import GROUP
from .sweep import DIFF_BASE, settled_by_kopf_cached

log = logging.getLogger(__name__)

FINALIZER = f"{GROUP}/finalizer"  # the leader's (runner.build_settings): a deletion it has not released yet
# How long kopf's startup waits for the changes pending at takeover before it starts its own walk.
FIRST_PASS_WAIT = 5.0


def essence(body: Mapping[str, Any]) -> Any:
    current = body if isinstance(body, kopf.Body) else kopf.Body(dict(body))  # type: ignore[arg-type]
    return DIFF_BASE.build(body=current)


def pending(body: Mapping[str, Any]) -> bool:
    """An existing database with a change kopf has not handled: a spec edit or a deletion."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    if not status.get("databaseId"):
        return False  # creates stay kopf's: its handler (and the ledger) own the only-once create
    if meta.get("deletionTimestamp"):
        return FINALIZER in (meta.get("finalizers") or ())
    if status.get("observedGeneration") == meta.get("generation"):
        return False  # the cheap test first: a takeover asks it of every database in the book
    return not settled_by_kopf_cached(body)


class TakeoverLane:
    """The leader's first work after a takeover: every change pending in the book, each handled once."""

    def __init__(self, controller: DatabaseController, book: DatabaseBook) -> None:
        self._controller = controller
        self._book = book
        self._running: dict[str, asyncio.Task[None]] = {}
        # uid -> (a deletion?, the essence) the lane finished: kopf's handler of the same skips it
        self._handled: dict[str, tuple[bool, Any]] = {}
        self._labels: dict[str, Mapping[str, str] | None] = {}
        # the leading side's context (its write gate). kopf's Event queue exists only inside its per-object
        # processing, so the lane's kopf.event calls go to a queue of its own, posted through the controller's
        # (gated) client.
        self._events: asyncio.Queue[posting.K8sEvent] = asyncio.Queue()
        self._poster: asyncio.Task[None] | None = None
        self._context = contextvars.copy_context()
        self._context.run(posting.event_queue_var.set, self._events)
        self._context.run(posting.event_queue_loop_var.set, asyncio.get_running_loop())

    def handled(self, body: Mapping[str, Any], *, deletion: bool) -> bool:
        """Whether the lane already finished this deletion, or exactly this configuration (kopf's handler then has
        nothing to do)."""
        uid = str((body.get("metadata") or {}).get("uid") or "")
        done = self._handled.get(uid)
        if done is None:
            return False
        if done == (deletion, essence(body)):
            return True
        self._handled.pop(uid, None)  # a newer change: kopf's handler does it
        return False

    async def settled(self, body: Mapping[str, Any], *, deletion: bool) -> bool:
        """`handled`, after the lane's work on this object (if any) is over: kopf's handler, woken by the same
        watch event, waits for the lane rather than repeat its provider read."""
        task = self._running.get(str((body.get("metadata") or {}).get("uid") or ""))
        if task is not None:
            await asyncio.wait([task])
        return self.handled(body, deletion=deletion)

    async def first_pass(self) -> None:
        """Start every change pending in the book now; wait for them (bounded by FIRST_PASS_WAIT)."""
        try:
            await asyncio.wait_for(self._book.listed.wait(), FIRST_PASS_WAIT)
        except TimeoutError:
            return  # not read yet: kopf's walk has them
        for uid in list(self._book.uids()):
            body = self._book.get(uid)
            if body is not None and pending(body):
                self.offer(body)
        if self._running:
            log.info("takeover: %d pending change(s) handled first", len(self._running))
            await asyncio.wait(list(self._running.values()), timeout=FIRST_PASS_WAIT)

    def offer(self, body: Mapping[str, Any]) -> None:
        """A body the book holds at the takeover: handle it if it is pending."""
        if not pending(body):
            return
        uid = str((body.get("metadata") or {}).get("uid") or "")
        if uid in self._running:
            return
        if self._poster is None:
            self._poster = asyncio.create_task(self._post_events(), name="takeover events")
        self._running[uid] = asyncio.create_task(
            self._handle(uid), name=f"takeover {uid}", context=self._context.copy()
        )

    async def _namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        if namespace not in self._labels:
            try:
                found = await self._controller.kube.get(f"/api/v1/namespaces/{namespace}")
            except KubeError:
                return None  # not cached: asked again next time; kopf's handler judges it meanwhile
            self._labels[namespace] = dict(((found or {}).get("metadata") or {}).get("labels") or {})
        return self._labels[namespace]

    async def _handle(self, uid: str) -> None:
        try:
            body = self._book.get(uid)
            if body is not None and pending(body):
                await self._once(body)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("takeover: the pending change of %s failed; kopf's handler retries it", uid)
        finally:
            self._running.pop(uid, None)

    async def _once(self, body: kopf.Body) -> bool:
        """One pending change; True when it finished (and kopf's handler may skip it)."""
        uid = str(body.meta.uid)
        seen = essence(body)
        if body.meta.get("deletionTimestamp"):
            logger = logging.LoggerAdapter(
                logging.getLogger("kopf.objects"),
                {"k8s_ref": {"kind": "RedisDatabase", "namespace": body.meta.namespace, "name": body.meta.name}},
            )
            try:
                await self._controller.delete(body, patch=kopf.Patch(), logger=logger)
            except kopf.TemporaryError:
                return False  # held or failed: kopf's delete handler keeps it, with the status it writes
            self._handled[uid] = (True, seen)
            return True
        labels = await self._namespace_labels(str(body.meta.namespace))
        if labels is None:
            return False
        delay = await self._controller.wake(body, fresh=True, namespace_labels=labels)
        if delay is not None:
            return False
        self._handled[uid] = (False, seen)
        return True

    async def _post_events(self) -> None:
        """What kopf's poster does for its handlers: each Event of the lane's reconciles, as a core/v1 Event."""
        while True:
            event = await self._events.get()
            ref = dict(event.ref)
            namespace = str(ref.get("namespace") or "default")
            stamp = datetime.datetime.now(datetime.UTC).isoformat()
            body = {
                "metadata": {"namespace": namespace, "generateName": "kopf-event-"},
                "action": "Action?",
                "type": event.type,
                "reason": event.reason,
                "message": event.message[:1024],
                "reportingComponent": "kopf",
                "reportingInstance": "dev",
                "source": {"component": "kopf"},
                "involvedObject": ref,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "eventTime": stamp,
            }
            try:
                await self._controller.kube.create(f"/api/v1/namespaces/{namespace}/events", body)
            except Exception as error:  # auxiliary, as kopf treats them
                log.warning("takeover: could not post an Event (%s)", error)

    async def stop(self) -> None:
        if self._poster is not None:
            self._poster.cancel()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
