"""Table tests of the pure reconcile core: (desired, observed) -> action, errors -> verdicts, conditions."""

from __future__ import annotations

import datetime

import pytest

from redisdb_operator.models import RedisDatabaseSpec
from redisdb_operator.providers.base import (
    AlreadyExistsError,
    Database,
    InvalidRequestError,
    ProviderType,
    RateLimitedError,
    UnauthorizedError,
    UnavailableError,
)
from redisdb_operator.reconcile import (
    PERMANENT_REASONS,
    ConfigurationError,
    ConflictAction,
    CreateAction,
    DesiredDatabase,
    NoAction,
    UpdateAction,
    backoff_delay,
    classify_error,
    condition,
    parse_timestamp,
    plan_action,
    set_condition,
    stranger_database,
    validate_against_catalog,
    waiting_for_spec_change,
)


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
    ("error", "reason", "temporary", "retry_after"),
    [
        (RateLimitedError("slow down", retry_after=7), "RateLimited", True, 7),
        (UnavailableError("503"), "ProviderUnavailable", True, None),
        (UnauthorizedError("bad key"), "Unauthorized", True, None),
        (InvalidRequestError("unknown region"), "InvalidRequest", False, None),
        (AlreadyExistsError("taken"), "AlreadyExists", True, 10.0),
        (ConfigurationError("CredentialsNotFound", "no secret"), "CredentialsNotFound", True, None),
        (RuntimeError("boom"), "InternalError", True, None),
    ],
)
def test_errors_map_to_reasons_and_retry_decisions(
    error: Exception, reason: str, temporary: bool, retry_after: float | None
) -> None:
    verdict = classify_error(error)
    assert (verdict.reason, verdict.temporary, verdict.retry_after) == (reason, temporary, retry_after)


def test_backoff_honours_retry_after_and_caps() -> None:
    assert backoff_delay(0, 12) == 12
    assert backoff_delay(3, 10_000) == 300
    for retry in range(20):
        delay = backoff_delay(retry, None)
        assert 0 < delay <= 300
    assert backoff_delay(10, None) >= 150  # exponential, half of it fixed


def test_condition_transition_time_moves_only_on_status_change() -> None:
    first = set_condition(
        None, type_="Ready", status="False", reason="Creating", message="", generation=1, now="2026-01-01T00:00:00Z"
    )
    same = set_condition(
        first, type_="Ready", status="False", reason="Other", message="x", generation=2, now="2026-01-02T00:00:00Z"
    )
    flipped = set_condition(
        same, type_="Ready", status="True", reason="Available", message="", generation=2, now="2026-01-03T00:00:00Z"
    )
    assert condition(same, "Ready")["lastTransitionTime"] == "2026-01-01T00:00:00Z"  # type: ignore[index]
    assert condition(same, "Ready")["observedGeneration"] == 2  # type: ignore[index]
    assert condition(flipped, "Ready")["lastTransitionTime"] == "2026-01-03T00:00:00Z"  # type: ignore[index]
    both = set_condition(
        flipped, type_="Synced", status="True", reason="Ok", message="", generation=2, now="2026-01-03T00:00:00Z"
    )
    assert [c["type"] for c in both] == ["Ready", "Synced"]


def test_permanent_failure_waits_for_the_next_generation() -> None:
    conditions = set_condition(
        None, type_="Synced", status="False", reason="InvalidRequest", message="", generation=3, now="t"
    )
    assert waiting_for_spec_change({"conditions": conditions}, 3)
    assert not waiting_for_spec_change({"conditions": conditions}, 4)
    temporary = set_condition(
        None, type_="Synced", status="False", reason="RateLimited", message="", generation=3, now="t"
    )
    assert not waiting_for_spec_change({"conditions": temporary}, 3)


@pytest.mark.parametrize(
    ("provider_type", "overrides", "fragment"),
    [
        (ProviderType.FLY, {}, None),
        (ProviderType.FLY, {"primary_region": "xyz"}, "spec.primaryRegion 'xyz' is not a fly region"),
        (ProviderType.FLY, {"read_regions": frozenset({"us-east-1"})}, "spec.readRegions: 'us-east-1'"),
        (ProviderType.FLY, {"plan": "fixed_500gb"}, "spec.plan 'fixed_500gb' is not a fly plan"),
        (ProviderType.FLY, {"plan": "free"}, "allows at most 0 read regions"),
        (ProviderType.UPSTASH, {}, "spec.primaryRegion 'mad' is not a upstash region"),
        (ProviderType.UPSTASH, {"primary_region": "eu-west-1", "read_regions": frozenset({"us-east-1"})}, None),
        (
            ProviderType.UPSTASH,
            {"primary_region": "us-east-1", "read_regions": frozenset({"us-central1"})},
            "'us-central1' is not a upstash read region",
        ),
    ],
)
def test_catalog_validation_names_the_field(
    provider_type: ProviderType, overrides: dict[str, object], fragment: str | None
) -> None:
    problem = validate_against_catalog(provider_type, desired(**overrides))
    if fragment is None:
        assert problem is None
    else:
        assert problem is not None and fragment in problem


NOW = datetime.datetime(2026, 11, 26, 10, 0, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("created_at", "resource_created", "adopt", "reason"),
    [
        (NOW - datetime.timedelta(hours=1), NOW, False, "NameTaken"),  # older than the resource: a stranger's
        (NOW - datetime.timedelta(hours=1), NOW, True, None),  # the user asked for the takeover
        (NOW + datetime.timedelta(seconds=2), NOW, False, None),  # made after the resource: ours
        (NOW - datetime.timedelta(seconds=9), NOW, False, None),  # within the clock skew allowance
        (NOW - datetime.timedelta(seconds=11), NOW, False, "NameTaken"),
        (None, NOW, False, None),  # the provider does not say: nothing to tell by
        (NOW - datetime.timedelta(hours=1), None, False, None),
    ],
)
def test_stranger_database(
    created_at: datetime.datetime | None, resource_created: datetime.datetime | None, adopt: bool, reason: str | None
) -> None:
    found = Database(id="db-9", name="shop-cache", primary_region="mad", plan="free", created_at=created_at)
    verdict = stranger_database(found, resource_created=resource_created, adopt=adopt)
    assert (verdict.reason if verdict else None) == reason


def test_name_taken_is_permanent_for_argo_but_rechecked_by_the_resync() -> None:
    status = {"conditions": [{"type": "Synced", "status": "False", "reason": "NameTaken", "observedGeneration": 1}]}
    assert "NameTaken" in PERMANENT_REASONS
    assert not waiting_for_spec_change(status, 1)
    status["conditions"][0]["reason"] = "InvalidRequest"
    assert waiting_for_spec_change(status, 1)


def test_parse_timestamp() -> None:
    assert parse_timestamp("2026-11-26T10:00:00Z") == NOW
    assert parse_timestamp(None) is None and parse_timestamp("yesterday") is None


def test_an_unclassifiable_provider_error_is_retried_and_shown() -> None:
    """Issue 13: an errors[] message we cannot name is temporary (bounded backoff), with the provider's words."""
    from redisdb_operator.providers.fly import classify_graphql_errors

    error = classify_graphql_errors([{"message": "upstream connect error"}], operation="fly get add-on x")
    verdict = classify_error(error)
    assert verdict.temporary and verdict.reason == "ProviderError"
    assert "upstream connect error" in verdict.message
    assert verdict.reason not in PERMANENT_REASONS
    assert backoff_delay(50, verdict.retry_after) <= 300


def test_an_unobservable_plan_is_never_a_change() -> None:
    unreadable = observed(plan="paid", plan_observable=False)
    assert isinstance(plan_action(desired(plan="fixed_1gb"), unreadable, "db-1"), NoAction)
    action = plan_action(desired(plan="fixed_1gb", eviction=True), unreadable, "db-1")
    assert isinstance(action, UpdateAction) and action.update.plan is None and action.update.eviction is True
