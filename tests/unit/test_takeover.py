"""The takeover lane: the changes a new leader finds pending in the book go to the provider before kopf's walk."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kopf
import pytest
from kopf._core.engines import posting

from redisdb_operator.controller import ControllerConfig, DatabaseController
from redisdb_operator.database_book import DatabaseBook
from redisdb_operator.sweep import DIFF_BASE
from redisdb_operator.takeover import FINALIZER, TakeoverLane, pending
from tests.unit.fakes import LOGGER, FakeKube, InMemoryProvider, OneProvider, applied, body


async def created(controller: DatabaseController, uid: str) -> dict[str, Any]:
    """The status after a create (its Events dropped: kopf's own queue exists only inside its handlers)."""
    patch = kopf.Patch()
    with pytest.MonkeyPatch.context() as patching:
        patching.setattr(kopf, "event", lambda *_args, **_kwargs: None)
        await controller.reconcile(body(uid=uid, name=uid), fresh=True, patch=patch, logger=LOGGER)
    return applied({}, patch)


class PatchingKube(FakeKube):
    """The Secret verbs, the namespace read and the status patches a wake writes."""

    def __init__(self) -> None:
        super().__init__()
        self.patches: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.objects["/api/v1/namespaces/shop"] = {"metadata": {"name": "shop", "labels": {}}}

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path.endswith("/events"):
            self.events.append(body)
            return body
        return await super().create(path, body)

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.patches.append(path)
        return body


def handled_by_kopf(raw: kopf.Body, uid: str, *, generation: int = 1, spec: dict[str, Any] | None = None) -> kopf.Body:
    """`raw` as kopf left it: its essence recorded as the last-handled configuration."""
    data = dict(raw)
    data["metadata"] = {**raw["metadata"], "uid": uid, "name": uid, "generation": generation}
    recorded = kopf.Body(data)
    data["status"] = {
        **(raw.get("status") or {}),
        "kopf": {"lastHandledConfiguration": json.dumps(DIFF_BASE.build(body=recorded))},
    }
    if spec is not None:
        data["spec"] = spec
    return kopf.Body(data)


@pytest.fixture(autouse=True)
def kopf_settings() -> None:
    posting.settings_var.set(kopf.OperatorSettings())  # what kopf sets for its operator's tasks


async def test_an_edit_and_a_deletion_left_pending_are_handled_at_takeover_and_kopf_skips_them() -> None:
    provider = InMemoryProvider(names_are_unique=True)
    kube = PatchingKube()
    controller = DatabaseController(kube, OneProvider(provider), ControllerConfig())  # type: ignore[arg-type]
    book = DatabaseBook()
    statuses = {uid: await created(controller, uid) for uid in ("settled", "edited", "deleted")}
    settled = handled_by_kopf(body(statuses["settled"]), "settled")
    edited = handled_by_kopf(
        body(statuses["edited"]), "edited", generation=2, spec={"primaryRegion": "us-east-1", "eviction": True}
    )
    deleting = dict(handled_by_kopf(body(statuses["deleted"]), "deleted"))
    deleting["metadata"] = {
        **deleting["metadata"],
        "deletionTimestamp": "2026-11-30T00:00:00Z",
        "finalizers": [FINALIZER],
    }
    for raw in (settled, edited, deleting):
        book.put(raw)
    book.listed.set()
    assert [pending(b) for b in (settled, edited, kopf.Body(deleting))] == [False, True, True]
    provider.calls.clear()

    lane = TakeoverLane(controller, book)
    await lane.first_pass()

    assert sorted(provider.calls) == ["delete", "get", "update"]  # the edit read fresh and sent, the delete sent
    # its Events are posted though kopf's queue for them exists only inside kopf's own handlers
    await asyncio.sleep(0.01)
    assert ("edited", "Updated") in [(e["involvedObject"]["name"], e["reason"]) for e in kube.events]
    assert provider.databases[statuses["edited"]["databaseId"]].eviction is True
    assert statuses["deleted"]["databaseId"] not in provider.databases
    # kopf's handlers, reaching them later, have nothing left to do
    assert await lane.settled(edited, deletion=False)
    assert await lane.settled(kopf.Body(deleting), deletion=True)
    assert not await lane.settled(kopf.Body(deleting), deletion=False)
    assert not await lane.settled(settled, deletion=False)
    # a newer edit than the one the lane sent is kopf's again
    newer = dict(edited)
    newer["spec"] = {"primaryRegion": "us-east-1", "eviction": False}
    assert not lane.handled(kopf.Body(newer), deletion=False)
