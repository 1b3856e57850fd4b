"""kopf's bookkeeping must not hide the user's redisdb.dev/* annotations from its change detection."""

from __future__ import annotations

import kopf
import pytest

from redisdb_operator.controller import ControllerConfig, DatabaseController
from redisdb_operator.reconcile import LEGACY_KOPF_ANNOTATIONS
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
