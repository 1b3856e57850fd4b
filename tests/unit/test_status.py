"""The status conditions and their bookkeeping: transition times, permanent reasons, timestamps."""

from __future__ import annotations

import datetime

from redisdb_operator.status import (
    PERMANENT_REASONS,
    condition,
    parse_timestamp,
    set_condition,
    waiting_for_spec_change,
)

NOW = datetime.datetime(2026, 11, 26, 10, 0, 0, tzinfo=datetime.UTC)


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


def test_name_taken_is_permanent_for_argo_but_rechecked_by_the_resync() -> None:
    status = {"conditions": [{"type": "Synced", "status": "False", "reason": "NameTaken", "observedGeneration": 1}]}
    assert "NameTaken" in PERMANENT_REASONS
    assert not waiting_for_spec_change(status, 1)
    status["conditions"][0]["reason"] = "InvalidRequest"
    assert waiting_for_spec_change(status, 1)


def test_parse_timestamp() -> None:
    assert parse_timestamp("2026-11-26T10:00:00Z") == NOW
    assert parse_timestamp(None) is None and parse_timestamp("yesterday") is None
