"""Leader election rules with a controllable clock: expiry by observation, the write deadline, the gates.

The Lease store below keeps resourceVersion semantics (a stale write conflicts) like the apiserver; the real
apiserver path is proven end to end in tests/e2e/test_ha.py.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import time
from typing import Any, NoReturn

import aiohttp
import pytest

from redisdb_operator.kube import KubeConflict
from redisdb_operator.leader import (
    LEADER_WORK,
    ElectionConfig,
    GatedProviderClient,
    LeaderElector,
    NotLeader,
    install_kopf_write_gate,
)
from redisdb_operator.providers.base import CreateDatabaseRequest, Database, DatabaseUpdate
from redisdb_operator.webhook_bootstrap import issue, still_good


class Exited(Exception):
    pass


def exit_process(code: int) -> NoReturn:
    raise Exited(code)


class LeaseStore:
    """Just enough of the apiserver for one Lease: create, get, replace guarded by resourceVersion."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    async def get(self, path: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.lease)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.lease is not None:
            raise KubeConflict(409, "exists")
        return self._store(body)

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise KubeConflict(409, "stale")
        return self._store(body)

    async def aclose(self) -> None:
        pass

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


CONFIG = ElectionConfig(namespace="ns", name="lease", lease_duration=15, renew_deadline=10, retry_period=1)


def elector(store: LeaseStore, clock: Clock, identity: str) -> LeaderElector:
    config = ElectionConfig(**{**CONFIG.__dict__, "identity": identity})
    return LeaderElector(store, config, clock=clock, exit_process=exit_process)  # type: ignore[arg-type]


def test_a_candidate_waits_a_whole_lease_duration_of_silence_by_its_own_clock() -> None:
    store, clock = LeaseStore(), Clock()
    first, second = elector(store, clock, "a"), elector(store, clock, "b")
    assert asyncio.run(first.try_acquire_or_renew())
    assert not asyncio.run(second.try_acquire_or_renew())  # observed now: 15 s from here
    clock.now += 14
    assert not asyncio.run(second.try_acquire_or_renew())
    clock.now += 2
    assert asyncio.run(second.try_acquire_or_renew())
    assert store.lease is not None and store.lease["spec"]["holderIdentity"] == "b"
    assert store.lease["spec"]["leaseTransitions"] == 1


def test_a_renewal_seen_by_the_candidate_restarts_its_wait() -> None:
    store, clock = LeaseStore(), Clock()
    first, second = elector(store, clock, "a"), elector(store, clock, "b")
    asyncio.run(first.try_acquire_or_renew())
    asyncio.run(second.try_acquire_or_renew())
    clock.now += 9
    asyncio.run(first.try_acquire_or_renew())  # renewed: a new record
    clock.now += 1
    assert not asyncio.run(second.try_acquire_or_renew())
    clock.now += 14
    assert not asyncio.run(second.try_acquire_or_renew())


def test_a_released_lease_is_taken_at_once() -> None:
    store, clock = LeaseStore(), Clock()
    first, second = elector(store, clock, "a"), elector(store, clock, "b")
    asyncio.run(first.try_acquire_or_renew())
    assert not asyncio.run(second.try_acquire_or_renew())
    asyncio.run(first.release())
    assert store.lease is not None and store.lease["spec"]["holderIdentity"] == ""
    with pytest.raises(NotLeader):
        first.check_write("a create")
    assert asyncio.run(second.try_acquire_or_renew())


def test_the_leader_exits_before_writing_past_its_deadline() -> None:
    store, clock = LeaseStore(), Clock()
    leader = elector(store, clock, "a")
    with pytest.raises(NotLeader):
        leader.check_write("before election")
    asyncio.run(leader.try_acquire_or_renew())
    clock.now += 9.9
    leader.check_write("in time")
    clock.now += 0.1
    with pytest.raises(Exited):
        leader.check_write("too late")


def test_a_late_renewal_exits_instead_of_writing_the_lease() -> None:
    store, clock = LeaseStore(), Clock()
    leader = elector(store, clock, "a")
    asyncio.run(leader.try_acquire_or_renew())
    version = store.version
    clock.now += 30  # a stopped process, resumed
    with pytest.raises(Exited):
        asyncio.run(leader.try_acquire_or_renew())
    assert store.version == version


def test_a_leader_that_sees_another_holder_exits() -> None:
    store, clock = LeaseStore(), Clock()
    leader, other = elector(store, clock, "a"), elector(store, clock, "b")
    asyncio.run(leader.try_acquire_or_renew())
    asyncio.run(other.try_acquire_or_renew())
    clock.now += 16
    asyncio.run(other.try_acquire_or_renew())  # took over an expired lease
    clock.now -= 10  # the old leader's deadline has not passed by its own reckoning
    with pytest.raises(Exited):
        asyncio.run(leader.try_acquire_or_renew())


class RecordingProvider:
    provider_type = "fly"
    names_are_unique = True

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def create(self, request: CreateDatabaseRequest) -> Any:
        self.calls.append("create")

    async def list(self) -> list[Any]:
        self.calls.append("list")
        return []

    async def update(self, database: Database, update: DatabaseUpdate) -> Database:
        self.calls.append("update")
        return update.applied_to(database)

    async def catalog(self, now: str) -> dict[str, Any]:
        self.calls.append("catalog")
        return {"source": "live"}


def test_gated_provider_client_checks_before_the_call() -> None:
    store, clock = LeaseStore(), Clock()
    leader = elector(store, clock, "a")
    inner = RecordingProvider()
    client = GatedProviderClient(inner, leader)  # type: ignore[arg-type]
    request = CreateDatabaseRequest(name="x", primary_region="mad")
    with pytest.raises(NotLeader):
        asyncio.run(client.create(request))
    asyncio.run(leader.try_acquire_or_renew())
    asyncio.run(client.create(request))
    clock.now += 11
    asyncio.run(client.list())  # reads are never gated
    with pytest.raises(Exited):
        asyncio.run(client.create(request))
    assert inner.calls == ["create", "list"]


def test_gated_update_returns_what_the_adapter_did_and_other_reads_pass_through() -> None:
    store, clock = LeaseStore(), Clock()
    leader = elector(store, clock, "a")
    inner = RecordingProvider()
    client = GatedProviderClient(inner, leader)  # type: ignore[arg-type]
    observed = Database(id="db-1", name="x", primary_region="cdg", plan="payg")
    with pytest.raises(NotLeader):
        asyncio.run(client.update(observed, DatabaseUpdate(eviction=True)))
    asyncio.run(leader.try_acquire_or_renew())
    updated = asyncio.run(client.update(observed, DatabaseUpdate(eviction=True)))
    assert updated.eviction is True and updated.id == "db-1"
    assert asyncio.run(client.catalog("now")) == {"source": "live"}  # an adapter's own read, not hidden
    assert inner.calls == ["update", "catalog"]


def test_kopf_requests_in_leader_work_are_gated_before_sending() -> None:
    install_kopf_write_gate()
    store, clock = LeaseStore(), Clock()
    standby = elector(store, clock, "a")

    async def post() -> None:
        LEADER_WORK.set(standby)
        async with aiohttp.ClientSession() as session:
            await session.request("PATCH", "http://127.0.0.1:9/never-sent")

    with pytest.raises(NotLeader):
        asyncio.run(post())


def test_renewal_keeps_the_ca_and_rolls_it_over_with_an_overlap() -> None:
    validity = datetime.timedelta(minutes=10)
    now = datetime.datetime.now(datetime.UTC)
    first = issue(["127.0.0.1"], validity)
    assert still_good(first, ["127.0.0.1"], now, renew_before=validity / 3)
    assert not still_good(first, ["127.0.0.1"], now + validity * 0.7, renew_before=validity / 3)
    renewed = issue(["127.0.0.1"], validity, previous=first, now=now + validity * 0.7)
    assert renewed["ca.crt"] == first["ca.crt"] and renewed["tls.crt"] != first["tls.crt"]
    # The CA (five lifetimes) has two lifetimes left: a new CA signs, the old one stays in the bundle.
    late = now + validity * 3.5
    rolled = issue(["127.0.0.1"], validity, previous=first, now=late)
    assert rolled["ca.crt"] != first["ca.crt"] and rolled["ca.crt"].endswith(first["ca.crt"])
    # Once the old CA has expired it leaves the bundle.
    gone = issue(["127.0.0.1"], validity, previous=rolled, now=now + validity * 6)
    assert first["ca.crt"] not in gone["ca.crt"]


def test_a_stopping_candidate_stops_waiting() -> None:
    store, clock = LeaseStore(), Clock()
    holder, candidate = elector(store, clock, "a"), elector(store, clock, "b")
    asyncio.run(holder.try_acquire_or_renew())

    async def wait_then_stop() -> bool:
        waiting = asyncio.create_task(candidate.acquire())
        await asyncio.sleep(0)
        await candidate.release()
        return await asyncio.wait_for(waiting, timeout=5)

    assert asyncio.run(wait_then_stop()) is False


def test_the_renewal_thread_renews_while_no_event_loop_runs_on_the_main_thread() -> None:
    """A main loop seconds late (a burst of thousands of objects) must not starve the renewal past its deadline."""
    store = LeaseStore()
    config = ElectionConfig(
        namespace="ns", name="lease", identity="a", lease_duration=3, renew_deadline=2, retry_period=0.05
    )
    leader = LeaderElector(store, config, exit_process=exit_process)  # type: ignore[arg-type]
    assert asyncio.run(leader.try_acquire_or_renew())
    first = store.version
    thread = leader.keep_in_thread(lambda: store)  # type: ignore[arg-type,return-value]
    waited = 0.0
    while store.version < first + 3 and waited < 30:  # the main thread holds no loop at all meanwhile
        time.sleep(0.05)
        waited += 0.05
    assert store.version >= first + 3
    leader.check_write("PATCH something")  # still within the deadline the thread keeps moving
    leader.stepping_down = True
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_renewal_is_one_write_without_a_read_and_still_exits_when_taken() -> None:
    """The GET before each renewal was half its cost (one a second); a conflict reads the Lease as before."""
    store, clock = LeaseStore(), Clock()
    leader, other = elector(store, clock, "a"), elector(store, clock, "b")
    reads = 0
    real_get = store.get

    async def counted_get(path: str) -> dict[str, Any] | None:
        nonlocal reads
        reads += 1
        return await real_get(path)

    store.get = counted_get  # type: ignore[method-assign]
    assert asyncio.run(leader.try_acquire_or_renew())
    reads = 0
    for _ in range(3):
        clock.now += 1
        assert asyncio.run(leader.try_acquire_or_renew())
    assert reads == 0 and store.version == 4
    asyncio.run(other.try_acquire_or_renew())
    clock.now += 16
    asyncio.run(other.try_acquire_or_renew())  # took over an expired lease
    clock.now -= 10
    with pytest.raises(Exited):
        asyncio.run(leader.try_acquire_or_renew())
