"""What this operator process remembers about each RedisDatabase between events: nothing else lives in memory.

A lock per object (one event at a time), creates that timed out and may still land (until kopf's status patch
carrying the marker is visible), and deletions that finished (a resync timer that waited on the lock must not act
on its stale body).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import time

FINISHED_DELETES_REMEMBERED = 4096


class ObjectLedger:
    def __init__(self, uncertain_create_window: float) -> None:
        self._window = uncertain_create_window
        self._locks: dict[str, asyncio.Lock] = {}
        # uid -> monotonic deadline of a create that timed out here; the status marker may not be written yet
        self._uncertain_creates: dict[str, float] = {}
        self._finished_deletes: collections.OrderedDict[str, None] = collections.OrderedDict()
        # uid -> content hash of the connection Secret this process last published or found current (the resync
        # sweep compares the snapshot with it instead of reading every Secret)
        self._published: dict[str, str] = {}

    def lock(self, uid: str) -> asyncio.Lock:
        return self._locks.setdefault(uid, asyncio.Lock())

    def note_uncertain_create(self, uid: str, sent_at: datetime.datetime) -> None:
        elapsed = (datetime.datetime.now(datetime.UTC) - sent_at).total_seconds()
        self._uncertain_creates[uid] = time.monotonic() - max(0.0, elapsed) + self._window

    def forget_uncertain_create(self, uid: str) -> None:
        self._uncertain_creates.pop(uid, None)

    def create_pending(self, uid: str) -> float:
        """Seconds a create that timed out in this process may still land for (0 when none)."""
        return max(0.0, self._uncertain_creates.get(uid, 0.0) - time.monotonic())

    def note_published(self, uid: str, content_hash: str) -> None:
        self._published[uid] = content_hash

    def published(self, uid: str) -> str | None:
        return self._published.get(uid)

    def forget(self, uid: str) -> None:
        self._locks.pop(uid, None)
        self._published.pop(uid, None)
        self._uncertain_creates.pop(uid, None)

    def finish_deletion(self, uid: str) -> None:
        self.forget(uid)
        self._finished_deletes[uid] = None
        while len(self._finished_deletes) > FINISHED_DELETES_REMEMBERED:
            self._finished_deletes.popitem(last=False)

    def deletion_finished(self, uid: str) -> bool:
        return uid in self._finished_deletes
