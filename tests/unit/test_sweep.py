"""The resync sweep's one question per database: would the decision from the snapshot change anything?"""

from __future__ import annotations

import base64
import json
from typing import Any

import kopf
import pytest

from redisdb_operator import sweep
from redisdb_operator.controller import ControllerConfig, DatabaseController
from redisdb_operator.decision import Observation, Publish, Step
from redisdb_operator.models import ANNOTATION_PAUSED, ANNOTATION_ROTATE_PASSWORD
from redisdb_operator.providers.base import Database
from redisdb_operator.reconcile import decide
from redisdb_operator.secrets import connection_data, content_hash, render_connection_secret, secret_intact
from redisdb_operator.status import failed_conditions
from redisdb_operator.sweep import DIFF_BASE, LAST_HANDLED, Sweeper, needs_wake, resume_can_wait, settled_by_kopf

from .fakes import FakeKube, InMemoryProvider, OneProvider, body
from .test_reconcile import facts, made, ours


def _settled_status(database: Database) -> dict[str, object]:
    """The status a successful reconcile of `database` leaves behind."""
    first = decide(facts(status={"databaseId": database.id}), Observation(step=Step.SNAPSHOT, database=database))
    assert isinstance(first.action, Publish)
    return {"databaseId": database.id, **first.action.status}


def _hash(database: Database) -> str:
    return content_hash(connection_data(database))


def test_an_unchanged_database_with_its_secret_published_is_not_woken() -> None:
    database = ours()
    settled = facts(fresh=False, status=_settled_status(database))
    assert not needs_wake(settled, lambda _id, _name: database, lambda _uid: _hash(database))


def test_drift_at_the_provider_wakes_it() -> None:
    database = ours()
    settled = facts(fresh=False, status=_settled_status(database))
    drifted = ours(eviction=True)
    assert needs_wake(settled, lambda _id, _name: drifted, lambda _uid: _hash(database))


def test_a_database_missing_from_the_snapshot_wakes_it() -> None:
    database = ours()
    settled = facts(fresh=False, status=_settled_status(database))
    assert needs_wake(settled, lambda _id, _name: None, lambda _uid: _hash(database))


def test_a_new_password_or_an_unpublished_secret_wakes_it() -> None:
    database = ours()
    settled = facts(fresh=False, status=_settled_status(database))
    rotated = ours(password="new", url="redis://default:new@db.internal:6379")
    assert needs_wake(settled, lambda _id, _name: rotated, lambda _uid: _hash(database))
    assert needs_wake(settled, lambda _id, _name: database, lambda _uid: None)


def test_a_late_duplicate_of_ours_in_the_snapshot_wakes_it_a_strangers_namesake_does_not() -> None:
    """Names are not unique on Upstash: the wake is what deletes a create that landed after a crash."""
    kept = made("db-b", 3)
    settled = facts(fresh=False, names_are_unique=False, status=_settled_status(kept))
    late, strangers = made("db-a", 40), made("db-s", -3600)
    assert needs_wake(settled, lambda _id, _name: kept, lambda _uid: _hash(kept), None, lambda _name: (late, kept))
    assert not needs_wake(
        settled, lambda _id, _name: kept, lambda _uid: _hash(kept), None, lambda _name: (strangers, kept)
    )


def test_a_list_without_credentials_leaves_the_published_secret() -> None:
    database = ours()
    settled = facts(fresh=False, status=_settled_status(database))
    listed = ours(password="", url="")
    assert not needs_wake(settled, lambda _id, _name: listed, lambda _uid: None)


def test_a_refusal_already_reported_is_not_woken_a_new_one_is() -> None:
    database = ours()
    status = _settled_status(database)
    paused = facts(fresh=False, status=status, annotations={ANNOTATION_PAUSED: "true"})
    assert needs_wake(paused, lambda _id, _name: database, lambda _uid: _hash(database))  # Paused not reported yet
    plan = decide(paused, Observation.first(paused.resource))
    reported = facts(fresh=False, status={**status, **plan.status}, annotations={ANNOTATION_PAUSED: "true"})
    assert not needs_wake(reported, lambda _id, _name: database, lambda _uid: _hash(database))


def test_a_refusal_that_no_longer_holds_wakes_it() -> None:
    """Synced=False (a namespace relabelled since, a paused database resumed): publishing would change the status."""
    database = ours()
    status = _settled_status(database)
    conditions, _ = failed_conditions(
        status["conditions"],  # type: ignore[arg-type]
        reason="NamespaceNotAllowed",
        message="namespace not allowed",
        generation=1,
        now="2026-11-26T10:00:00Z",
    )
    refused = facts(fresh=False, status={**status, "conditions": conditions})
    assert needs_wake(refused, lambda _id, _name: database, lambda _uid: _hash(database))


def test_only_objects_kopf_is_done_with_are_swept() -> None:
    handled = {"metadata": {"annotations": {LAST_HANDLED: "{}"}}}
    assert settled_by_kopf(handled)
    assert not settled_by_kopf({"metadata": {}})  # the create handler has not finished
    retrying = {"metadata": {"annotations": {LAST_HANDLED: "{}", "kopf.redisdb.dev/reconcile": "{}"}}}
    assert not settled_by_kopf(retrying)
    deleting = {"metadata": {"deletionTimestamp": "2026-11-30T00:00:00Z", "annotations": {LAST_HANDLED: "{}"}}}
    assert not settled_by_kopf(deleting)


def test_an_edit_or_a_rotation_kopf_has_not_finished_is_not_swept() -> None:
    """kopf's handler has it: a wake beside it, from a status that predates it, rotated the password twice."""
    last = '{"spec": {"plan": "payg"}}'
    handled = {"metadata": {"annotations": {LAST_HANDLED: last}}, "spec": {"plan": "payg"}, "status": {"x": 1}}
    assert settled_by_kopf(handled)
    rotating = {**handled, "metadata": {"annotations": {LAST_HANDLED: last, ANNOTATION_ROTATE_PASSWORD: "1"}}}
    assert not settled_by_kopf(rotating)
    assert not settled_by_kopf({**handled, "spec": {"plan": "fixed_1gb"}})


def test_a_settled_database_hands_its_secret_name_to_the_secret_check() -> None:
    database = ours()
    settled = facts(fresh=False, status=_settled_status(database))
    secrets: list[str] = []
    assert not needs_wake(settled, lambda _id, _name: database, lambda _uid: _hash(database), secrets)
    assert len(secrets) == 1 and secrets[0]


def test_a_secret_is_intact_only_while_ours_and_unedited() -> None:
    database = ours()
    secret = render_connection_secret(
        secret_name="cache-redis", namespace="ns", owner_name="cache", owner_uid="uid-1", database=database
    )
    assert secret_intact(secret, "uid-1", None)
    assert not secret_intact(None, "uid-1", None)  # deleted
    assert not secret_intact(secret, "uid-2", None)  # someone else's
    edited = {**secret, "data": {**secret["data"], "REDIS_URL": base64.b64encode(b"redis://wrong").decode()}}
    assert not secret_intact(edited, "uid-1", None)


def test_only_a_settled_ready_database_at_its_generation_waits_for_the_first_sweep() -> None:
    database = ours()
    status = _settled_status(database)
    body = {
        "metadata": {"generation": 1, "annotations": {LAST_HANDLED: "{}"}},
        "status": {**status, "conditions": [{**c, "observedGeneration": 1} for c in status["conditions"]]},  # type: ignore[attr-defined]
    }
    assert resume_can_wait(body)
    assert not resume_can_wait({**body, "metadata": {**body["metadata"], "generation": 2}})  # a spec change
    assert not resume_can_wait({**body, "metadata": {"generation": 1}})  # kopf never handled it
    conditions, _ = failed_conditions(
        body["status"]["conditions"], reason="ProviderError", message="down", generation=1, now="t"
    )
    assert not resume_can_wait({**body, "status": {**body["status"], "conditions": conditions}})


def test_secret_reads_past_the_budget_visit_each_known_secret_once_per_cycle() -> None:
    """At 10,000 databases a Secret GET per database per sweep was most of the idle CPU: past the budget each
    known Secret is read once every ceil(known / budget) sweeps; unknown ones (after a takeover) every sweep."""
    uids = [f"uid-{index}" for index in range(1000)]
    every = 4  # 1000 known, budget 250
    reads: dict[str, int] = dict.fromkeys(uids, 0)
    for sweep_number in range(every):
        due = [uid for uid in uids if sweep.secret_due(uid, True, sweep_number, len(uids), 250)]
        assert 150 < len(due) < 350  # about a quarter each sweep
        for uid in due:
            reads[uid] += 1
    assert set(reads.values()) == {1}
    assert all(sweep.secret_due(uid, False, 3, len(uids), 250) for uid in uids)
    # within the budget every Secret is read at every sweep, as before
    assert all(sweep.secret_due(uid, True, 1, 250, 250) for uid in uids)


def test_a_settled_object_whose_status_patch_has_not_landed_is_left_for_the_next_sweep() -> None:
    handled = {"metadata": {"annotations": {LAST_HANDLED: "{}"}}}
    assert settled_by_kopf(handled) and not sweep.status_landed(handled)
    assert sweep.status_landed({**handled, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})


async def test_the_sweep_skips_a_settled_object_whose_status_has_not_landed() -> None:
    """Between kopf's object patch and its status patch: waking it cost a lookup by name at the provider."""
    provider = InMemoryProvider(names_are_unique=True)
    registry = OneProvider(provider)
    controller = DatabaseController(FakeKube(), registry, ControllerConfig())  # type: ignore[arg-type]
    raw = dict(body())
    raw["status"] = {"kopf": {"lastHandledConfiguration": json.dumps(DIFF_BASE.build(body=body()))}}
    just_created = kopf.Body(raw)
    assert settled_by_kopf(just_created)
    result = await Sweeper(controller, 300).sweep(
        registry.handle, [just_created], namespace_labels=lambda _ns: {}, latest=lambda _ns, _uid: None
    )
    assert (result.woken, result.skipped) == (0, 1)
    assert provider.calls == ["list"]


def test_settled_is_computed_once_per_object_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """The essence comparison deep-copies the body: a fifth of the idle CPU, twice per database per sweep."""
    computed: list[str] = []
    real = sweep.settled_by_kopf

    def counting(body: Any) -> bool:
        computed.append(body["metadata"]["resourceVersion"])
        return real(body)

    monkeypatch.setattr(sweep, "settled_by_kopf", counting)
    handled = {"metadata": {"uid": "u-cache", "resourceVersion": "7", "annotations": {LAST_HANDLED: "{}"}}}
    assert all(sweep.settled_by_kopf_cached(handled) for _ in range(3))
    edited = {
        "metadata": {"uid": "u-cache", "resourceVersion": "8", "annotations": {LAST_HANDLED: "{}"}},
        "spec": {"x": 1},
    }
    assert not sweep.settled_by_kopf_cached(edited)
    assert computed == ["7", "8"]
