"""Table tests of the desired database: defaults, what differs from the observed one, the one catalog check."""

from __future__ import annotations

import pytest

from redisdb_operator.desired import (
    ConflictAction,
    CreateAction,
    DesiredDatabase,
    NoAction,
    UpdateAction,
    catalog_problem,
    plan_action,
)
from redisdb_operator.models import RedisDatabaseSpec
from redisdb_operator.providers.base import Database, ProviderType


def desired(**overrides: object) -> DesiredDatabase:
    values: dict[str, object] = {
        "name": "shop-cache",
        "primary_region": "mad",
        "read_regions": frozenset({"ams"}),
        "plan": "payg",
        "eviction": False,
        "tls": None,
    }
    values.update(overrides)
    return DesiredDatabase(**values)  # type: ignore[arg-type]


def observed(**overrides: object) -> Database:
    values: dict[str, object] = {
        "id": "db-1",
        "name": "shop-cache",
        "primary_region": "mad",
        "read_regions": ("ams",),
        "plan": "payg",
        "eviction": False,
    }
    values.update(overrides)
    return Database(**values)  # type: ignore[arg-type]


def test_defaults_come_from_the_spec_and_metadata() -> None:
    spec = RedisDatabaseSpec.model_validate({"primaryRegion": "mad"})
    result = DesiredDatabase.from_spec(spec, namespace="shop", metadata_name="cache")
    assert result == DesiredDatabase("shop-cache", "mad", frozenset(), "payg", False, None)
    assert spec.effective_secret_name("cache") == "cache-redis"
    assert spec.effective_provider_name() == "default"


def test_missing_database_is_created() -> None:
    action = plan_action(desired(), None, None)
    assert isinstance(action, CreateAction)
    assert action.recreate is False
    assert action.request.read_regions == ("ams",)
    assert action.request.plan == "payg"


def test_recorded_database_gone_is_recreated_as_drift() -> None:
    action = plan_action(desired(), None, "db-1")
    assert isinstance(action, CreateAction) and action.recreate is True


def test_in_sync_database_needs_nothing() -> None:
    assert isinstance(plan_action(desired(), observed(), "db-1"), NoAction)


@pytest.mark.parametrize(
    ("want", "have", "fields"),
    [
        ({"read_regions": frozenset({"ams", "fra"})}, {}, ["readRegions"]),
        ({"read_regions": frozenset()}, {}, ["readRegions"]),
        ({"plan": "fixed_1gb"}, {}, ["plan"]),
        ({"eviction": True}, {}, ["eviction"]),
        ({"eviction": True, "plan": "fixed_1gb"}, {"read_regions": ()}, ["readRegions", "plan", "eviction"]),
    ],
)
def test_differences_become_one_update(want: dict[str, object], have: dict[str, object], fields: list[str]) -> None:
    action = plan_action(desired(**want), observed(**have), "db-1")
    assert isinstance(action, UpdateAction)
    assert [change.field for change in action.changes] == fields
    update = action.update
    assert (update.read_regions is not None) == ("readRegions" in fields)
    assert (update.plan is not None) == ("plan" in fields)
    assert (update.eviction is not None) == ("eviction" in fields)


def test_update_sends_the_full_read_region_set_sorted() -> None:
    action = plan_action(desired(read_regions=frozenset({"fra", "ams", "cdg"})), observed(), "db-1")
    assert isinstance(action, UpdateAction)
    assert action.update.read_regions == ("ams", "cdg", "fra")
    assert action.changes[0].describe() == "readRegions: [ams] -> [ams,cdg,fra]"


def test_primary_region_mismatch_is_a_conflict_not_an_update() -> None:
    action = plan_action(desired(primary_region="ams", read_regions=frozenset()), observed(read_regions=()), "db-1")
    assert isinstance(action, ConflictAction)
    assert action.reason == "PrimaryRegionMismatch"
    assert "'mad'" in action.message and "'ams'" in action.message


def test_other_database_with_the_name_is_a_conflict() -> None:
    action = plan_action(desired(), observed(id="db-2"), "db-1")
    assert isinstance(action, ConflictAction) and action.reason == "DatabaseIdMismatch"


@pytest.mark.parametrize(
    ("provider_type", "overrides", "fragment"),
    [
        (ProviderType.FLY, {}, None),
        (ProviderType.FLY, {"primary_region": "xyz"}, "spec.primaryRegion xyz is not a Fly.io region: use one of"),
        (ProviderType.FLY, {"read_regions": frozenset({"us-east-1"})}, "spec.readRegions: us-east-1 is not a Fly.io"),
        (ProviderType.FLY, {"plan": "fixed_500gb"}, "spec.plan fixed_500gb is not a Fly.io plan"),
        (ProviderType.FLY, {"plan": "free"}, "spec.readRegions: plan free is single-region"),
        (ProviderType.UPSTASH, {}, "spec.primaryRegion mad is not an Upstash region"),
        (ProviderType.UPSTASH, {"primary_region": "eu-west-1", "read_regions": frozenset({"us-east-1"})}, None),
        (
            ProviderType.UPSTASH,
            {"primary_region": "us-east-1", "read_regions": frozenset({"us-central1"})},
            "spec.readRegions: us-central1 (GCP US Central (Iowa)) can be an Upstash primary region but not a read",
        ),
    ],
)
def test_the_catalog_check_names_the_field(
    provider_type: ProviderType, overrides: dict[str, object], fragment: str | None
) -> None:
    problem = catalog_problem(provider_type, desired(**overrides))
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None and fragment in problem


def test_an_unobservable_plan_is_never_a_change() -> None:
    unreadable = observed(plan="paid", plan_observable=False)
    assert isinstance(plan_action(desired(plan="fixed_1gb"), unreadable, "db-1"), NoAction)
    action = plan_action(desired(plan="fixed_1gb", eviction=True), unreadable, "db-1")
    assert isinstance(action, UpdateAction) and action.update.plan is None and action.update.eviction is True
