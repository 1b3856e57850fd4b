"""kopf's bookkeeping must not hide the user's redisdb.dev/* annotations from its change detection."""

from __future__ import annotations

import json
from pathlib import Path

import kopf
import pytest

from redisdb_operator.controller import ControllerConfig, DatabaseController
from redisdb_operator.models import RedisDatabase
from redisdb_operator.reconcile import LEGACY_DIFF_BASE_ANNOTATION, LEGACY_KOPF_ANNOTATIONS
from redisdb_operator.runner import admission_settings, build_settings, parse_args
from tests.unit.fakes import LOGGER, FakeKube, InMemoryProvider, OneProvider, body


def essence_annotations(annotations: dict[str, str]) -> dict[str, str]:
    settings = kopf.OperatorSettings()
    build_settings(settings, parse_args([]))
    essence = settings.persistence.diffbase_storage.build(
        body=kopf.Body({"metadata": {"name": "cache", "annotations": annotations}, "spec": {"primaryRegion": "mad"}})
    )
    return dict(essence.get("metadata", {}).get("annotations", {}))


def test_the_admission_side_never_holds_the_leaders_finalizer_even_without_a_webhook() -> None:
    leader = kopf.OperatorSettings()
    build_settings(leader, parse_args([]))
    admission = admission_settings(parse_args([]), None)
    assert admission.persistence.finalizer != leader.persistence.finalizer


def test_a_rotation_annotation_is_a_change_kopf_reacts_to() -> None:
    seen = essence_annotations(
        {
            "kopf.redisdb.dev/last-handled-configuration": "{}",
            "kopf.redisdb.dev/reconcile": "{}",
            "redisdb.dev/rotate-password": "2026-11-26",
        }
    )
    assert seen == {"redisdb.dev/rotate-password": "2026-11-26"}


def test_the_old_marker_would_hide_it_so_a_reconcile_removes_the_old_bookkeeping() -> None:
    legacy = dict.fromkeys(LEGACY_KOPF_ANNOTATIONS, "yes")
    assert essence_annotations({**legacy, "redisdb.dev/rotate-password": "x"}) == {}  # why the cleanup exists


@pytest.mark.usefixtures("posted_events")
async def test_reconcile_removes_the_legacy_annotations() -> None:
    provider = InMemoryProvider(names_are_unique=True)
    controller = DatabaseController(FakeKube(), OneProvider(provider), ControllerConfig())  # type: ignore[arg-type]
    patch = kopf.Patch()
    annotations = {**dict.fromkeys(LEGACY_KOPF_ANNOTATIONS, "yes"), "redisdb.dev/rotate-password": "x"}
    await controller.reconcile(body(annotations=annotations), fresh=True, patch=patch, logger=LOGGER)
    assert dict(patch.metadata.annotations) == dict.fromkeys(LEGACY_KOPF_ANNOTATIONS)


def leader_diff_base() -> kopf.DiffBaseStorage:
    settings = kopf.OperatorSettings()
    build_settings(settings, parse_args([]))
    return settings.persistence.diffbase_storage


def test_kopf_keeps_its_diff_base_in_the_status_so_a_handled_change_is_one_status_write() -> None:
    storage = leader_diff_base()
    raw = {"metadata": {"name": "cache", "annotations": {"a": "b"}}, "spec": {"primaryRegion": "mad"}}
    essence = storage.build(body=kopf.Body(raw))
    patch = kopf.Patch()
    storage.store(body=kopf.Body(raw), patch=patch, essence=essence)
    # kopf sends a patch with only `status` as one PATCH of the status subresource (no PATCH of the object)
    assert dict(patch) == {"status": {"kopf": {"lastHandledConfiguration": json.dumps(essence, separators=(",", ":"))}}}
    stored = {**raw, "status": dict(patch)["status"]}
    assert storage.fetch(body=kopf.Body(stored)) == essence
    # the CRD keeps the field (a structural schema would prune an unknown one, and kopf would see no diff base)
    status_schema = RedisDatabase.model_json_schema(by_alias=True)["$defs"]["KopfRecord"]
    assert "lastHandledConfiguration" in status_schema["properties"]


def test_an_object_last_handled_before_the_move_is_compared_with_its_annotation() -> None:
    storage = leader_diff_base()
    raw = {"metadata": {"name": "cache"}, "spec": {"primaryRegion": "mad"}}
    essence = storage.build(body=kopf.Body(raw))
    annotated = {
        **raw,
        "metadata": {"name": "cache", "annotations": {LEGACY_DIFF_BASE_ANNOTATION: json.dumps(essence)}},
    }
    assert storage.fetch(body=kopf.Body(annotated)) == essence
    assert storage.build(body=kopf.Body(annotated)) == essence  # our prefix's annotation is no change


@pytest.mark.usefixtures("posted_events")
async def test_the_old_diff_base_annotation_goes_once_the_status_holds_its_successor() -> None:
    provider = InMemoryProvider(names_are_unique=True)
    controller = DatabaseController(FakeKube(), OneProvider(provider), ControllerConfig())  # type: ignore[arg-type]
    annotations = {LEGACY_DIFF_BASE_ANNOTATION: "{}"}
    first = kopf.Patch()
    await controller.reconcile(body(annotations=annotations), fresh=True, patch=first, logger=LOGGER)
    assert LEGACY_DIFF_BASE_ANNOTATION not in dict(first.metadata.annotations)  # still what kopf compares with
    status = {**dict(first.status), "kopf": {"lastHandledConfiguration": "{}"}}
    second = kopf.Patch()
    await controller.reconcile(body(status, annotations=annotations), fresh=True, patch=second, logger=LOGGER)
    assert dict(second.metadata.annotations) == {LEGACY_DIFF_BASE_ANNOTATION: None}


@pytest.mark.parametrize("kind", ["redisdatabases", "redisproviders"])
def test_every_resource_with_change_handlers_keeps_kopfs_record_in_its_schema(kind: str) -> None:
    """A structural schema prunes an unknown status field: kopf would then see no diff base and take every event of
    the resource for a creation (the RedisProvider check ran again at each of its own status writes)."""
    import yaml

    crd = yaml.safe_load((Path(__file__).parents[2] / "crds" / f"redisdb.dev_{kind}.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    record = schema["properties"]["status"]["properties"]["kopf"]
    assert record["properties"]["lastHandledConfiguration"]["type"] == "string"
