"""The operator's own map of RedisDatabases: claims, provider users and sweep bodies, newest version wins."""

from __future__ import annotations

from typing import Any

from redisdb_operator.admission import claim_of
from redisdb_operator.database_book import DatabaseBook, slim


def _db(uid: str, name: str, version: int, provider: str = "fly", namespace: str = "team") -> dict[str, Any]:
    return {
        "metadata": {"uid": uid, "name": name, "namespace": namespace, "resourceVersion": str(version)},
        "spec": {"providerRef": {"name": provider}, "primaryRegion": "iad"},
    }


def _claim(item: dict[str, Any]) -> str | None:
    return claim_of(item["spec"], item["metadata"]["namespace"], item["metadata"]["name"])


def test_events_fill_the_maps_and_a_deletion_empties_them() -> None:
    book = DatabaseBook()
    first = _db("u1", "cache", 5)
    book.on_event("ADDED", first)
    assert book.users_of("fly") == ["team/cache"]
    assert [str(body.meta.uid) for body in book.databases_of("fly")] == ["u1"]
    claim = _claim(first)
    assert claim is not None and set(book.claims[claim]) == {"team/cache"}
    book.on_event("MODIFIED", _db("u1", "cache", 6, provider="upstash"))
    assert book.users_of("fly") == [] and book.users_of("upstash") == ["team/cache"]
    book.on_event("DELETED", _db("u1", "cache", 7, provider="upstash"))
    assert book.users_of("upstash") == [] and len(book) == 0 and len(book.claims) == 0


def test_an_older_version_never_replaces_a_newer_one_and_a_deleted_object_stays_gone() -> None:
    book = DatabaseBook()
    book.put(_db("u1", "cache", 9, provider="upstash"))
    book.put(_db("u1", "cache", 8, provider="fly"))  # a list taken before the last event
    assert book.users_of("upstash") == ["team/cache"]
    book.remove("u1")
    book.put(_db("u1", "cache", 9, provider="upstash"))  # an older list that still had it
    assert len(book) == 0


def test_a_list_drops_what_it_lacks_unless_newer_than_the_list() -> None:
    book = DatabaseBook()
    book.put(_db("gone", "old", 3))
    book.put(_db("new", "fresh", 12))  # created after the list was taken
    book.replace_all([_db("kept", "kept", 4)], list_version=10)
    assert book.users_of("fly") == ["team/fresh", "team/kept"]


def test_bodies_are_kept_without_managed_fields_and_the_watched_object_is_left_as_it_was() -> None:
    """managedFields are most of a parsed body's memory and nothing reads them: the book keeps everything else
    (the sweep reads kopf's annotations, finalizers, generation and status), and never edits the event's dict."""
    book = DatabaseBook()
    event = _db("u1", "cache", 5)
    event["metadata"] |= {
        "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}],
        "annotations": {"kopf.redisdb.dev/last-handled-configuration": "{}"},
        "finalizers": ["redisdb.dev/finalizer"],
        "generation": 2,
    }
    event["status"] = {"observedGeneration": 2}
    book.on_event("ADDED", event)
    kept = book.get("u1")
    assert kept is not None and "managedFields" not in kept["metadata"]
    assert {key: value for key, value in event["metadata"].items() if key != "managedFields"} == dict(kept["metadata"])
    assert kept["spec"] == event["spec"] and kept["status"] == event["status"]
    assert "managedFields" in event["metadata"]  # kopf's own copy untouched


def test_bodies_share_their_keys_and_short_strings_and_hold_half_the_memory() -> None:
    """A JSON decoder shares keys within one document only: 10,000 bodies held 10,000 copies of every key."""
    import json
    import tracemalloc

    def ready_body(index: int) -> dict[str, Any]:
        body = _db(f"uid-{index:05d}-0f1c2d3e-4b5a-6978-8a9b", f"scale-{index}", index)
        body["status"] = {
            "databaseId": f"db-{index}",
            "primaryRegion": "iad",
            "readRegions": [],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Available",
                    "lastTransitionTime": "2026-11-30T20:21:50Z",
                },
                {"type": "Synced", "status": "True", "reason": "ReconcileSuccess", "message": ""},
            ],
            "planLimits": {"maxDataSizeBytes": 107374182400, "maxRequestSizeBytes": 104857600},
        }
        return json.loads(json.dumps(body))  # as a watch event parses it: keys not shared with other objects

    events = [ready_body(index) for index in range(2000)]
    texts = [json.dumps(event) for event in events]
    tracemalloc.start()
    parsed = [json.loads(text) for text in texts]
    as_parsed = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    tracemalloc.start()
    kept = [slim(body) for body in parsed]
    as_kept = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del parsed, kept
    book = DatabaseBook()
    for event in events:
        book.put(event)
    first, second = book.get(events[0]["metadata"]["uid"]), book.get(events[1]["metadata"]["uid"])
    assert first is not None and second is not None
    first_keys = {id(key) for key in first["status"]}
    assert {id(key) for key in second["status"]} == first_keys  # the same key objects
    assert first["status"]["conditions"][0]["reason"] is second["status"]["conditions"][0]["reason"]
    assert first == events[0] | {"metadata": first["metadata"]}  # the same content
    assert as_kept < 0.8 * as_parsed, (as_kept, as_parsed)  # real bodies (longer keys, more of them): 0.52


class _PagedLister:
    """The two list pages the apiserver would answer, and what was asked."""

    def __init__(self, pages: list[list[dict[str, Any]]], list_version: int) -> None:
        self.pages = pages
        self.list_version = list_version
        self.asked: list[str] = []

    async def get(self, path: str) -> dict[str, Any]:
        self.asked.append(path)
        index = len(self.asked) - 1
        last = index == len(self.pages) - 1
        metadata = {"resourceVersion": str(self.list_version)} if last else {"continue": f"page-{index + 1}"}
        return {"metadata": metadata, "items": self.pages[index]}


async def test_a_relist_rebuilds_only_what_changed() -> None:
    """The book is listed again every interval (10 minutes or more): at 10,000 mostly unchanged objects, slimming,
    interning and deriving each again was most of that list's CPU. Same resourceVersion: the held body stays."""
    book = DatabaseBook()
    first = _PagedLister([[_db("a", "a", 5), _db("b", "b", 6)], [_db("c", "c", 7)]], list_version=8)
    await book.list_from(first, [])  # type: ignore[arg-type]
    held = {uid: book.get(uid) for uid in ("a", "b", "c")}
    assert len(first.asked) == 2 and book.listed.is_set()

    changed = _db("b", "b", 9, provider="upstash")
    again = _PagedLister([[_db("a", "a", 5), changed], []], list_version=10)  # "c" deleted unseen
    await book.list_from(again, [])  # type: ignore[arg-type]
    assert book.get("a") is held["a"]  # same version: not rebuilt
    body = book.get("b")
    assert body is not held["b"] and body is not None and body["metadata"]["resourceVersion"] == "9"
    assert book.users_of("upstash") == ["team/b"] and book.users_of("fly") == ["team/a"]
    assert book.get("c") is None and len(book) == 2
    book.on_event("MODIFIED", _db("a", "a", 5))  # a watch that starts over sends what is held again
    assert book.get("a") is held["a"]
