"""Upstash's ``DatabaseStats`` object (provider-apis.md §1.6) read defensively into ``DatabaseUsage``.

Upstash serves it at ``GET /v2/redis/stats/{id}``. Fly's ``AddOn.stats`` is JSON whose shape no source documents;
Fly's add-ons are Upstash databases, so the same reader is tried there, and anything it does not recognise gives
``None`` (no usage) rather than a guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .base import DatabaseUsage


def parse_stats(body: Any) -> DatabaseUsage | None:
    """The month's counters: ``total_monthly_requests``, ``current_storage`` (else the last ``diskusage`` point),
    ``total_monthly_bandwidth``, ``total_monthly_billing``. None when the body carries none of them."""
    if not isinstance(body, Mapping):
        return None
    usage = DatabaseUsage(
        requests=_count(body.get("total_monthly_requests")),
        data_size_bytes=_count(body.get("current_storage")) or _last_point(body.get("diskusage")),
        bandwidth_bytes=_count(body.get("total_monthly_bandwidth")),
        cost_usd=_amount(body.get("total_monthly_billing")),
    )
    return None if usage.is_empty() else usage


def _count(value: Any) -> int | None:
    """A non-negative whole number, from an int or an integral float; anything else is no value."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
        return None
    return int(value) if value >= 0 else None


def _amount(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


def _last_point(series: Any) -> int | None:
    """The newest ``y`` of an ``[{x, y}]`` series (they come oldest first)."""
    if not isinstance(series, list) or not series or not isinstance(series[-1], Mapping):
        return None
    return _count(series[-1].get("y"))
