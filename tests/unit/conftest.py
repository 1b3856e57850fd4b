"""Fixtures shared by the unit tests; the fakes themselves live in tests/unit/fakes.py."""

from __future__ import annotations

from typing import Any

import kopf
import pytest


@pytest.fixture
def posted_events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """The Events the code under test posts, as (type, reason, message), instead of sending them to an apiserver."""
    posted: list[tuple[str, str, str]] = []

    def record(body: Any, *, type: str, reason: str, message: str = "") -> None:
        posted.append((type, reason, message))

    monkeypatch.setattr(kopf, "event", record)
    return posted
