"""What every wire call passes through before its handler: the call counter and the injected faults.

Tests use the counters to prove an adapter made exactly the calls it should (and no more), and the faults to
prove it survives latency, 503s and 429s with Retry-After.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Faults:
    latency_ms: int = 0
    fail_next: int = 0
    fail_status: int = 503
    retry_after: int | None = None
    fail_rate: float = 0.0  # each call fails with this probability (chaos tests: "30% of calls answer 503")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class InjectedFailure:
    status: int
    retry_after: int | None

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}

    @property
    def message(self) -> str:
        return "too many requests" if self.status == 429 else "service unavailable"


class WireGate:
    def __init__(self) -> None:
        self.counters: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()  # failures sent instead of an answer, by status
        self.faults = Faults()
        self._random = random.Random()

    def set_faults(self, body: dict[str, Any]) -> Faults:
        """Merge the given fields into the current faults; unknown fields or bad values raise ValueError."""
        allowed = {"latency_ms", "fail_next", "fail_status", "retry_after", "fail_rate"}
        unknown = set(body) - allowed
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}; allowed: {sorted(allowed)}")
        for key in ("latency_ms", "fail_next"):
            if key in body and (not isinstance(body[key], int) or body[key] < 0):
                raise ValueError(f"{key} must be a non-negative integer")
        if "fail_status" in body and body["fail_status"] not in (429, 500, 502, 503, 504):
            raise ValueError("fail_status must be 429, 500, 502, 503 or 504")
        if "retry_after" in body and body["retry_after"] is not None and not isinstance(body["retry_after"], int):
            raise ValueError("retry_after must be an integer number of seconds or null")
        if "fail_rate" in body and (
            isinstance(body["fail_rate"], bool)
            or not isinstance(body["fail_rate"], int | float)
            or not 0 <= body["fail_rate"] <= 1
        ):
            raise ValueError("fail_rate must be a number between 0 and 1")
        for key, value in body.items():
            setattr(self.faults, key, value)
        if self.faults.fail_status == 429 and self.faults.retry_after is None and "retry_after" not in body:
            self.faults.retry_after = 1
        return self.faults

    def clear_faults(self) -> None:
        self.faults = Faults()

    def count(self, operations: list[str]) -> None:
        """Count calls that faults never touch (the REST data plane is not a management API)."""
        for operation in operations:
            self.counters[operation] += 1

    async def enter(self, operations: list[str]) -> InjectedFailure | None:
        """Count the call, apply the latency, and return a failure to send instead if one is due."""
        for operation in operations:
            self.counters[operation] += 1
        faults = self.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.fail_next > 0:
            faults.fail_next -= 1
        elif not (faults.fail_rate and self._random.random() < faults.fail_rate):
            return None
        self.injected[str(faults.fail_status)] += 1
        return InjectedFailure(faults.fail_status, faults.retry_after)
