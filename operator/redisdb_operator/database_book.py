"""Every RedisDatabase this process watches, kept in its own memory rather than in kopf indexes.

kopf blocks every handler of an operator until each indexed object has been indexed once, with one "indexed"
toggle per object in a set whose every change wakes every waiting worker: with thousands of RedisDatabases
arriving before the first full indexing (a burst, a restart, a takeover) that is quadratic, and at 10,000 it
held the leader at 92 % CPU with 1,271 databases created after five minutes. So the maps derived from
RedisDatabases (the claims the webhook checks, the users that hold a RedisProvider's deletion, the databases a
resync sweep compares) live here, fed by a kopf event handler (no index, so no toggles).

Completeness: kopf does not say when its initial listing has been handled, so at startup this process lists the
RedisDatabases itself (paged) before anything reads the book; `listed` is set then, and the webhook neither
answers nor reports ready before it (it never admits from a partial view). Events newer than what the book holds
replace it; a periodic list drops what was deleted while no event could say so (between the list and kopf's
watch). Tombstones keep a deleted object from coming back with an older list.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import urllib.parse
from collections.abc import Collection, Iterator, Mapping
from typing import Any, cast

import kopf

from .admission import claim_of
from .kube import KubeClient
from .models import GROUP, VERSION

log = logging.getLogger(__name__)

PAGE_SIZE = 500
TOMBSTONE_SECONDS = 3600.0


def _version(body: Mapping[str, Any]) -> int | None:
    """The resourceVersion as a number when it is one (etcd's are); None compares as "not older"."""
    value = str((body.get("metadata") or {}).get("resourceVersion") or "")
    return int(value) if value.isdigit() else None


INTERNED_STRING_LENGTH = 32  # keys and short values (reasons, regions, plans, timestamps) repeat across objects


def slim(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The object without `metadata.managedFields`, its keys and short strings interned: nothing in this process
    reads managedFields, and they were most of a parsed body's memory (10,000 real RedisDatabases: 180 MiB as
    parsed, 73 MiB without them, by tracemalloc); each parsed body also holds its own copy of every key (a JSON
    decoder shares keys within one document only), which interning halves again (69 -> 35 MiB for 10,000 Ready
    bodies, tests/unit/test_database_book.py)."""
    meta = raw.get("metadata") or {}
    slimmed = {**raw, "metadata": {key: value for key, value in meta.items() if key != "managedFields"}}
    return cast(dict[str, Any], _interned(slimmed))


def _interned(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {sys.intern(key) if isinstance(key, str) else key: _interned(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_interned(item) for item in value]
    if isinstance(value, str) and len(value) <= INTERNED_STRING_LENGTH:
        return sys.intern(value)
    return value


def provider_of(spec: Mapping[str, Any]) -> str:
    return str((spec.get("providerRef") or {}).get("name") or "default")


class _Claims(Mapping[str, Collection[str]]):
    """claim -> the `namespace/name` of the RedisDatabases holding it (what admission.validate_* reads)."""

    def __init__(self, by_claim: dict[str, set[str]]) -> None:
        self._by_claim = by_claim

    def __getitem__(self, key: str) -> Collection[str]:
        return self._by_claim[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_claim)

    def __len__(self) -> int:
        return len(self._by_claim)


class DatabaseBook:
    """The latest body of each RedisDatabase by uid, and the maps derived from it."""

    def __init__(self) -> None:
        self._bodies: dict[str, kopf.Body] = {}
        self._keys: dict[str, str] = {}  # uid -> namespace/name
        self._claim: dict[str, str] = {}  # uid -> its claim
        self._provider: dict[str, str] = {}  # uid -> its provider
        self._by_claim: dict[str, set[str]] = {}
        self._by_provider: dict[str, dict[str, kopf.Body]] = {}
        self._deleted: dict[str, float] = {}  # uid -> when (monotonic)
        # Bumped when a uid comes or goes (not when a body changes): readers that walk every uid (the usage
        # schedule, once a second) walk only after it moved.
        self.membership = 0
        self.listed = asyncio.Event()
        self.claims: Mapping[str, Collection[str]] = _Claims(self._by_claim)

    # --- reading ---

    def __len__(self) -> int:
        return len(self._bodies)

    def databases_of(self, provider: str) -> list[kopf.Body]:
        return list(self._by_provider.get(provider, {}).values())

    def users_of(self, provider: str) -> list[str]:
        return sorted(self._keys[uid] for uid in self._by_provider.get(provider, {}))

    def uids(self) -> Collection[str]:
        return self._bodies.keys()

    def get(self, uid: str) -> kopf.Body | None:
        return self._bodies.get(uid)

    # --- writing ---

    def put(self, raw: Mapping[str, Any]) -> None:
        """An object as a watch event or a list showed it; an older version than the one held is ignored."""
        meta = raw.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        if not uid or uid in self._deleted:
            return
        if self.holds(raw):
            return  # older, or the very version held (a relist, a watch that starts over): nothing to rebuild
        if uid not in self._bodies:
            self.membership += 1
        self._drop_derived(uid)
        body = kopf.Body(cast(kopf.RawBody, slim(raw)))
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        spec = raw.get("spec") or {}
        self._bodies[uid] = body
        self._keys[uid] = f"{namespace}/{name}"
        provider = provider_of(spec)
        self._provider[uid] = provider
        self._by_provider.setdefault(provider, {})[uid] = body
        claim = claim_of(spec, namespace, name)
        if claim:
            self._claim[uid] = claim
            self._by_claim.setdefault(claim, set()).add(f"{namespace}/{name}")

    def remove(self, uid: str) -> None:
        self._drop_derived(uid)
        if self._bodies.pop(uid, None) is not None:
            self.membership += 1
        self._keys.pop(uid, None)
        self._deleted[uid] = time.monotonic()

    def _drop_derived(self, uid: str) -> None:
        key = self._keys.get(uid)
        claim = self._claim.pop(uid, None)
        if claim is not None and key is not None:
            holders = self._by_claim.get(claim)
            if holders is not None:
                holders.discard(key)
                if not holders:
                    del self._by_claim[claim]
        provider = self._provider.pop(uid, None)
        if provider is not None:
            members = self._by_provider.get(provider)
            if members is not None:
                members.pop(uid, None)
                if not members:
                    del self._by_provider[provider]

    def holds(self, raw: Mapping[str, Any]) -> bool:
        """Whether the book holds this object at this resourceVersion or a newer one: nothing to put."""
        meta = raw.get("metadata") or {}
        held = self._bodies.get(str(meta.get("uid") or ""))
        if held is None:
            return False
        new, old = _version(raw), _version(held)
        return new is not None and old is not None and new <= old

    def replace_all(
        self, items: list[Mapping[str, Any]], list_version: int | None, also_listed: Collection[str] = ()
    ) -> None:
        """A complete list: put each item, and drop what the book holds from before the list but the list lacks.
        `also_listed`: uids the list had at a version the book `holds` (not passed as items: nothing to put)."""
        seen = set(also_listed)
        for item in items:
            self.put(item)
            seen.add(str((item.get("metadata") or {}).get("uid") or ""))
        for uid in [uid for uid in self._bodies if uid not in seen]:
            held = _version(self._bodies[uid])
            if list_version is None or held is None or held <= list_version:
                self.remove(uid)
        horizon = time.monotonic() - TOMBSTONE_SECONDS
        for uid in [uid for uid, when in self._deleted.items() if when < horizon]:
            del self._deleted[uid]

    # --- feeding ---

    def on_event(self, event_type: str | None, raw: Mapping[str, Any]) -> None:
        """kopf's raw watch event (type None while it lists)."""
        if event_type == "DELETED":
            self.remove(str((raw.get("metadata") or {}).get("uid") or ""))
        else:
            self.put(raw)

    async def list_from(self, kube: KubeClient, namespaces: list[str]) -> None:
        """List every watched RedisDatabase (paged) into the book; `listed` is set after the first success."""
        items: list[Mapping[str, Any]] = []
        current: list[str] = []  # uids the book holds at the listed version: a relist is mostly unchanged objects
        versions: list[int | None] = []
        for namespace in namespaces or [""]:
            base = (
                f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/redisdatabases"
                if namespace
                else f"/apis/{GROUP}/{VERSION}/redisdatabases"
            )
            token = ""
            while True:
                query = {"limit": str(PAGE_SIZE), **({"continue": token} if token else {})}
                page = await kube.get(f"{base}?{urllib.parse.urlencode(query)}") or {}
                for item in page.get("items") or []:
                    if self.holds(item):  # nothing to slim, intern or derive again
                        current.append(str(item["metadata"]["uid"]))
                    else:
                        items.append(slim(item))  # a page's managedFields go at once
                metadata = page.get("metadata") or {}
                token = str(metadata.get("continue") or "")
                if not token:
                    versions.append(_version(page))
                    break
        list_version = None if any(v is None for v in versions) or not versions else min(v for v in versions if v)
        self.replace_all(items, list_version, current)
        if not self.listed.is_set():
            log.info("read %d RedisDatabases; admission and the reconcile read them from memory", len(self))
        self.listed.set()

    async def keep_listed(self, kube: KubeClient, namespaces: list[str], interval: float) -> None:
        """List again every `interval`: what was deleted between a list and kopf's watch leaves the book."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.list_from(kube, namespaces)
            except Exception as error:  # the next round lists again; the events keep the book current meanwhile
                log.warning("listing RedisDatabases failed: %s", error)
