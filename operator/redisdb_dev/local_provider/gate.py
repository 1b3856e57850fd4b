"""What every wire call passes through before its handler: the call counter and the injected faults.

Tests use the counters to prove an adapter made exactly the calls it should (and no more), and the faults to
prove it survives latency, 503s and 429s with Retry-After.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from . import graphql


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
        self.delayed = 0  # calls slowed down by latency_ms
        self.crash_points = CrashPoints()
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
            self.delayed += 1
            await asyncio.sleep(faults.latency_ms / 1000)
        if faults.fail_next > 0:
            faults.fail_next -= 1
        elif not (faults.fail_rate and self._random.random() < faults.fail_rate):
            return None
        self.injected[str(faults.fail_status)] += 1
        return InjectedFailure(faults.fail_status, faults.retry_after)


# --- named crash points and the per-database call log -----------------------------------------------------
#
# A test that kills a client mid-create must know exactly where the provider was: a hold stops one create at a
# named point (before the database exists, or after it exists but before the answer is sent) until the test
# releases it, and the test waits on "the hold is reached" instead of sleeping. The call log says which calls
# reached the provider for one database name (the counters above are per operation only).

HOLD_POINTS = ("before_create", "after_create")
RELEASE_ACTIONS = ("answer", "drop")
_CREATE_OPERATIONS = {"fly": "createAddOn", "upstash": "create"}


@dataclass
class WireCall:
    """One management call as the provider understood it: which API, which operations, which database."""

    api: str  # "fly" or "upstash"
    operations: list[str]
    name: str | None = None
    database_id: str | None = None
    account: str | None = None  # the Upstash account's email, or the Fly organization slug when the call names one

    @property
    def is_create(self) -> bool:
        return _CREATE_OPERATIONS[self.api] in self.operations


@dataclass
class Hold:
    """A create stopped at `point` until released; `then` says how the held call ends."""

    id: int
    point: str
    api: str | None = None
    name: str | None = None
    state: str = "armed"  # armed -> held -> released
    then: str = "answer"
    held_name: str | None = None
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def matches(self, point: str, call: WireCall) -> bool:
        return (
            self.state == "armed"
            and self.point == point
            and call.is_create
            and self.api in (None, call.api)
            and self.name in (None, call.name)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "point": self.point,
            "api": self.api,
            "name": self.name,
            "state": self.state,
            "then": self.then,
            "held_name": self.held_name,
        }


async def describe_call(request: web.Request) -> WireCall | None:
    """The wire call a request makes (Upstash v2 or Fly GraphQL); None for the admin API and the REST data plane."""
    call = await _describe_call(request)
    if call is not None and call.api == "upstash":
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                call.account = base64.b64decode(encoded.strip()).decode().partition(":")[0] or None
    return call


async def _describe_call(request: web.Request) -> WireCall | None:
    path = request.path
    if path.startswith("/v2/redis/"):
        parts = path.removeprefix("/v2/redis/").split("/")
        if parts == ["database"] and request.method == "POST":
            name = None
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                body = json.loads(await request.read() or b"{}")
                if isinstance(body, dict) and isinstance(body.get("database_name"), str):
                    name = body["database_name"]
            return WireCall("upstash", ["create"], name=name)
        if parts == ["databases"]:
            return WireCall("upstash", ["list"])
        if parts[0] == "database" and len(parts) == 2:
            return WireCall("upstash", ["get" if request.method == "GET" else "delete"], database_id=parts[1])
        if len(parts) == 2:
            operation, database_id = (parts[0], parts[1]) if parts[1] != "change-plan" else (parts[1], parts[0])
            return WireCall("upstash", [operation], database_id=database_id)
        if len(parts) == 3:
            return WireCall("upstash", [parts[1]], database_id=parts[2])
        return WireCall("upstash", ["unknown"])
    if path == "/graphql" and request.method == "POST":
        try:
            body = json.loads(await request.read())
            document = graphql.parse(body["query"])
            chosen = document.operation(body.get("operationName"))
            fields = graphql.root_fields(chosen, document.fragments)
            variables = body.get("variables") or {}
            arguments = [graphql.resolve_value(selected.arguments, variables) for selected in fields]
        except Exception:  # what the Fly handler refuses is still a call; it just names no database
            return WireCall("fly", ["invalid"])
        call = WireCall("fly", [selected.name for selected in fields])
        for given in arguments:
            for source in (given, given.get("input") if isinstance(given.get("input"), dict) else {}):
                if isinstance(source.get("name"), str):
                    call.name = source["name"]
                if isinstance(source.get("slug"), str):
                    call.account = source["slug"]
                for key in ("id", "addOnId"):
                    if isinstance(source.get(key), str):
                        call.database_id = source[key]
        return call
    return None


class CrashPoints:
    """Holds on creates and the per-database call log, served as an aiohttp middleware."""

    def __init__(self) -> None:
        self.holds: dict[int, Hold] = {}
        self.calls: list[dict[str, Any]] = []
        self._next_hold = 1
        # set by the admin API: id -> name, and "a database of this name exists" (for holds after a create)
        self.name_of: Callable[[str], str | None] = lambda _id: None
        self.exists: Callable[[str, str], bool] = lambda _api, _name: False

    def add_hold(self, body: dict[str, Any]) -> Hold:
        allowed = {"point", "api", "name"}
        unknown = set(body) - allowed
        if unknown:
            raise ValueError(f"unknown hold fields: {sorted(unknown)}; allowed: {sorted(allowed)}")
        if body.get("point") not in HOLD_POINTS:
            raise ValueError(f"point must be one of {list(HOLD_POINTS)}")
        if body.get("api") not in (None, *_CREATE_OPERATIONS):
            raise ValueError("api must be fly, upstash or absent (either)")
        if body.get("name") is not None and not isinstance(body["name"], str):
            raise ValueError("name must be a database name or absent (any)")
        hold = Hold(self._next_hold, body["point"], body.get("api"), body.get("name"))
        self._next_hold += 1
        self.holds[hold.id] = hold
        return hold

    def release(self, hold_id: int, then: str) -> Hold:
        if then not in RELEASE_ACTIONS:
            raise ValueError(f"then must be one of {list(RELEASE_ACTIONS)}")
        hold = self.holds[hold_id]
        hold.then = then
        if hold.state != "released":
            hold.state = "released" if hold.state == "held" else "cancelled"
        hold.released.set()
        return hold

    def release_all(self) -> None:
        for hold_id in list(self.holds):
            self.release(hold_id, "answer")
        self.holds.clear()

    def _hold_for(self, point: str, call: WireCall) -> Hold | None:
        for hold in self.holds.values():
            if hold.matches(point, call):
                hold.state = "held"
                hold.held_name = call.name
                hold.reached.set()
                return hold
        return None

    def _log(self, call: WireCall) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "seq": len(self.calls) + 1,
            "at": time.time(),
            "api": call.api,
            "operation": ",".join(call.operations),
            "name": call.name or (self.name_of(call.database_id) if call.database_id else None),
            "id": call.database_id,
            "account": call.account,
            "status": None,
            "outcome": "in-flight",
        }
        self.calls.append(entry)
        return entry

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        call = await describe_call(request)
        if call is None:
            return await handler(request)
        entry = self._log(call)
        hold = self._hold_for("before_create", call)
        if hold is not None:
            entry["outcome"] = "held-before-create"
            await hold.released.wait()
            if hold.then == "drop":
                return self._drop(request, entry)
        response = await handler(request)
        entry["status"] = response.status
        entry["outcome"] = "answered"
        # only while a hold is set: the name check walks every database, and most runs set none
        if call.is_create and call.name and self.holds:
            hold = self._hold_for("after_create", call) if self.exists(call.api, call.name) else None
            if hold is not None:
                entry["outcome"] = "held-after-create"
                await hold.released.wait()
                if hold.then == "drop":
                    return self._drop(request, entry)
                entry["outcome"] = "answered"
        return response

    @staticmethod
    def _drop(request: web.Request, entry: dict[str, Any]) -> web.StreamResponse:
        """Close the connection without an answer, as a crashed server or a cut network would."""
        entry["outcome"] = "dropped"
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=499)  # never sent: the connection is gone


def counted_operation(selected: graphql.Field) -> str:
    """The root field's name; an `addOn` read asking for `stats` (the operator's usage read) is counted apart as
    `addOn.stats`, so that benchmarks can tell usage reads from the reconcile's reads."""
    subfields = {sub.name for sub in selected.selections or () if isinstance(sub, graphql.Field)}
    if selected.name == "addOn" and "stats" in subfields:
        return "addOn.stats"
    return selected.name
