"""Crash safety at exact points: the operator SIGKILLed while the provider holds its create at a named crash point
(before the database exists, or after it exists and before the answer is sent), a create whose answer never comes
(the client's 30 s budget runs out), and the clock-skew allowance at its edge.

Every point is reached by waiting on the local provider's hold (a long poll), never by sleeping; which path the
restarted operator took (adopt or create) is read from its own metrics (`redisdb_provider_actions_total`, a fresh
process each time) and its Events; the provider's inventory says how many databases of the name exist.

Its own module, because it runs its own operators (two operators on one cluster would both act) and needs
stretches with no operator at all (the clock-skew tests set a database's creation time before one starts).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.cluster import Cluster, apply, get_json, wait_for
from tests.harness.local_provider import LocalProvider, redis_from_url
from tests.harness.operator import (
    FLY_PROVIDER,
    UPSTASH_PROVIDER,
    OperatorProcess,
    condition,
    events_for,
    secret_data,
    start_operator,
    wait_ready,
)
from tests.harness.prometheus import parse

REGIONS = {FLY_PROVIDER: "cdg", UPSTASH_PROVIDER: "us-east-1"}
BOTH_APIS = [pytest.param(FLY_PROVIDER, id="fly"), pytest.param(UPSTASH_PROVIDER, id="upstash")]


def database(name: str, provider: str) -> dict[str, Any]:
    return {
        "apiVersion": "redisdb.dev/v1alpha1",
        "kind": "RedisDatabase",
        "metadata": {"name": name},
        "spec": {"providerRef": {"name": provider}, "primaryRegion": REGIONS[provider]},
    }


@pytest.fixture(autouse=True)
def _no_holds_left(local_provider: LocalProvider) -> Iterator[None]:
    """A held call left behind would stop another test's create: every hold goes, whatever failed."""
    yield
    local_provider.admin.clear_holds()


def operator_with_metrics(cluster: Cluster, workdir: Path) -> OperatorProcess:
    return start_operator(cluster, workdir, webhook=False, extra_args=["--metrics-listen", "127.0.0.1:0"])


def actions(operator: OperatorProcess) -> dict[str, float]:
    """redisdb_provider_actions_total by action, of this operator process (a restart starts from zero)."""
    _, samples = parse(httpx.get(operator.metrics_url, timeout=10).text)
    found: dict[str, float] = {}
    for name, labels, value in samples:
        if name == "redisdb_provider_actions_total":
            found[dict(labels)["action"]] = value
    return found


def named(local_provider: LocalProvider, name: str) -> list[dict[str, Any]]:
    return [d for d in local_provider.admin.databases() if d["name"] == name]


def reasons(name: str, namespace: str) -> list[str]:
    return [event["reason"] for event in events_for(name, namespace)]


def assert_took_it_over(operator: OperatorProcess, namespace: str) -> None:
    """The (restarted) operator made no database: it took over the one that exists.

    Today only a take-over met through a refused create (Fly) counts as `adopt` and posts `Adopted`; one found by
    name while observing (Upstash, and after a timed-out create) is recorded silently, so the proof is the
    absence of any create by this process, not the presence of an adopt.
    """
    taken = actions(operator)
    assert not taken.get("create") and not taken.get("recreate"), taken
    assert "Created" not in reasons("cache", namespace)


def assert_one_database_in_use(local_provider: LocalProvider, namespace: str) -> dict[str, Any]:
    """Exactly one provider database of the name, the one the status records, reachable with the Secret."""
    matching = named(local_provider, f"{namespace}-cache")
    assert len(matching) == 1, matching
    obj = get_json("redisdatabase", "cache", namespace)
    assert obj is not None and obj["status"]["databaseId"] == matching[0]["id"]
    assert redis_from_url(secret_data("cache-redis", namespace)["REDIS_URL"]).ping()
    return matching[0]


def apply_held(local_provider: LocalProvider, namespace: str, provider: str, point: str) -> int:
    """Applies `cache` with its create armed to hold at `point`; returns the hold once a create is held there."""
    hold = local_provider.admin.hold(point, name=f"{namespace}-cache")
    apply(database("cache", provider), namespace)
    local_provider.admin.wait_held(hold)
    return hold


def killed_before_it_exists_and_restarted(
    running: OperatorProcess, local_provider: LocalProvider, namespace: str, provider: str
) -> tuple[int, dict[str, Any]]:
    """The create held before the database exists, the operator SIGKILLed at the hold and restarted: (the hold, the
    object once Ready), the restarted operator having made its own database with one create of its own."""
    hold = apply_held(local_provider, namespace, provider, "before_create")
    assert named(local_provider, f"{namespace}-cache") == [], "held before the database exists"
    running.kill()
    running.restart()
    ready = wait_ready("cache", namespace, timeout=120)
    taken = actions(running)
    assert taken.get("create") == 1 and not taken.get("adopt"), taken
    return hold, ready


def wait_creates_answered(local_provider: LocalProvider, name: str, operation: str, count: int) -> list[dict[str, Any]]:
    """The provider's call log for `name` once it holds `count` creates, all answered (a released hold included)."""

    def answered() -> list[dict[str, Any]] | None:
        creates = [c for c in local_provider.admin.calls(name=name) if c["operation"] == operation]
        return creates if len(creates) == count and all(c["outcome"] == "answered" for c in creates) else None

    return wait_for(answered, 30, message=f"{count} creates of {name}, the released one answered")


@pytest.mark.parametrize("provider", BOTH_APIS)
@pytest.mark.parametrize("then", ["answer", "drop"])
def test_killed_after_the_database_exists_the_restarted_operator_adopts_it(
    cluster: Cluster,
    providers: None,
    local_provider: LocalProvider,
    namespace: str,
    tmp_path: Path,
    provider: str,
    then: str,
) -> None:
    admin, name = local_provider.admin, f"{namespace}-cache"
    running = operator_with_metrics(cluster, tmp_path)
    try:
        hold = apply_held(local_provider, namespace, provider, "after_create")
        assert len(named(local_provider, name)) == 1, "held after the database exists"
        running.kill()  # the operator never sees the answer: the id it would record is lost
        admin.release(hold, then)  # the answer goes to a dead connection, or the connection is cut
        running.restart()
        wait_ready("cache", namespace, timeout=120)
        assert_one_database_in_use(local_provider, namespace)
        assert_took_it_over(running, namespace)
        if provider == FLY_PROVIDER:  # its create is refused by name, and that refusal is counted as an adoption
            assert actions(running).get("adopt") == 1 and "Adopted" in reasons("cache", namespace)
    finally:
        running.runner.stop_all()


def test_killed_before_the_database_exists_the_late_create_is_refused_by_name_on_fly(
    cluster: Cluster, providers: None, local_provider: LocalProvider, namespace: str, tmp_path: Path
) -> None:
    """The killed operator's create is still held when the restarted one creates; released afterwards, it reaches
    Fly, which refuses a second add-on of the name: one database, the restarted operator's."""
    running = operator_with_metrics(cluster, tmp_path)
    try:
        hold, _ = killed_before_it_exists_and_restarted(running, local_provider, namespace, FLY_PROVIDER)
        local_provider.admin.release(hold, "answer")
        # the held one and the restarted operator's, both answered (the late one with Fly's refusal by name)
        wait_creates_answered(local_provider, f"{namespace}-cache", "createAddOn", 2)
        assert_one_database_in_use(local_provider, namespace)
    finally:
        running.runner.stop_all()


def test_killed_before_the_database_exists_the_late_duplicate_is_deleted_on_upstash(
    cluster: Cluster, providers: None, local_provider: LocalProvider, namespace: str, tmp_path: Path
) -> None:
    """The same crash on Upstash, whose names are not unique: the killed operator's create, released after the
    restarted operator made and published its own, lands as a second database of the name. The operator keeps the
    one recorded in status (the one the Secret was written from) and deletes the extra, naming it in an Event."""
    admin, name = local_provider.admin, f"{namespace}-cache"
    running = operator_with_metrics(cluster, tmp_path)
    try:
        hold, ready = killed_before_it_exists_and_restarted(running, local_provider, namespace, UPSTASH_PROVIDER)
        kept_id = ready["status"]["databaseId"]
        admin.release(hold, "answer")  # lands now; its answer goes to the killed operator's closed connection
        wait_creates_answered(local_provider, name, "create", 2)

        def duplicate_deleted() -> dict[str, Any] | None:
            found = [e for e in events_for("cache", namespace) if e["reason"] == "DuplicateDeleted"]
            return found[0] if found else None

        event = wait_for(duplicate_deleted, 90, message="a DuplicateDeleted Event after the late create landed")
        remaining = wait_for(
            lambda: named(local_provider, name) if len(named(local_provider, name)) == 1 else None,
            30,
            message="exactly one database of the name at the provider",
        )
        assert remaining[0]["id"] == kept_id
        deletes = [c for c in admin.calls(name=name) if c["operation"] == "delete"]
        assert len(deletes) == 1 and deletes[0]["id"] != kept_id, deletes  # the late one, and only it
        assert f"{deletes[0]['id']}; kept {kept_id}" in event["message"], event["message"]
        assert actions(running).get("delete_duplicate") == 1, actions(running)
        url = secret_data("cache-redis", namespace)["REDIS_URL"]
        assert url.startswith("rediss://") and f":{remaining[0]['port']}" in url, "the Secret points at the one kept"
        assert redis_from_url(url).ping()  # the Secret's password works against the one kept, over verified TLS
        assert_one_database_in_use(local_provider, namespace)
    finally:
        running.runner.stop_all()


@pytest.mark.parametrize("provider", BOTH_APIS)
def test_a_create_that_times_out_and_lands_late_is_adopted(
    cluster: Cluster, providers: None, local_provider: LocalProvider, namespace: str, tmp_path: Path, provider: str
) -> None:
    """The answer never comes within the client's budget (held before the database exists): the operator marks
    the create uncertain, does not create again, and adopts the database when the held create finally lands."""
    admin, name = local_provider.admin, f"{namespace}-cache"
    running = operator_with_metrics(cluster, tmp_path)
    try:
        hold = apply_held(local_provider, namespace, provider, "before_create")

        def marked_uncertain() -> str | None:
            status = (get_json("redisdatabase", "cache", namespace) or {}).get("status") or {}
            return status.get("createUncertainSince")

        wait_for(marked_uncertain, 120, message="status.createUncertainSince after the client's 30 s budget")
        wait_for(
            lambda: (
                (condition(get_json("redisdatabase", "cache", namespace), "Synced") or {}).get("reason")
                == "CreateOutcomeUnknown"
            ),
            60,
            message="Synced=False CreateOutcomeUnknown while the create may still land",
        )
        assert named(local_provider, name) == [], "nothing landed and nothing was created again"
        admin.release(hold, "answer")  # the create lands now; its answer goes to a connection long closed
        wait_ready("cache", namespace, timeout=120)
        assert_one_database_in_use(local_provider, namespace)
        assert_took_it_over(running, namespace)
        creates = [c for c in admin.calls(name=name) if c["operation"] in ("create", "createAddOn")]
        assert len(creates) == 1, creates
    finally:
        running.runner.stop_all()


def test_an_answer_that_never_comes_after_the_create_is_adopted(
    cluster: Cluster, providers: None, local_provider: LocalProvider, namespace: str, tmp_path: Path
) -> None:
    """The database exists but the answer never comes (held after the create until the client gives up): the
    next reconcile finds it by name and adopts it; no second database."""
    admin, name = local_provider.admin, f"{namespace}-cache"
    running = operator_with_metrics(cluster, tmp_path)
    try:
        hold = apply_held(local_provider, namespace, UPSTASH_PROVIDER, "after_create")
        wait_ready("cache", namespace, timeout=150)  # after the 30 s budget, while the call is still held
        assert_one_database_in_use(local_provider, namespace)
        assert_took_it_over(running, namespace)
        assert admin.calls(name=name)[0]["outcome"] == "held-after-create", "adopted while the answer was held"
        assert len([c for c in admin.calls(name=name) if c["operation"] == "create"]) == 1
        admin.release(hold, "drop")
    finally:
        running.runner.stop_all()


def _upstash_create(local_provider: LocalProvider, name: str) -> str:
    body = {"database_name": name, "region": "global", "primary_region": REGIONS[UPSTASH_PROVIDER]}
    response = httpx.post(
        f"{local_provider.upstash_url}/redis/database", json=body, auth=local_provider.upstash_auth, timeout=60
    )
    response.raise_for_status()
    return str(response.json()["database_id"])


@pytest.mark.parametrize(("seconds_before", "adopted"), [(9, True), (11, False)], ids=["9s-adopted", "11s-name-taken"])
def test_clock_skew_allowance_at_its_edge(
    cluster: Cluster,
    providers: None,
    local_provider: LocalProvider,
    namespace: str,
    tmp_path: Path,
    seconds_before: int,
    adopted: bool,
) -> None:
    """A database of the name created 9 s before the RedisDatabase is within the 10 s clock-skew allowance (ours,
    adopted); 11 s before, it is someone else's (NameTaken, untouched). No operator runs while it is set up."""
    apply(database("cache", UPSTASH_PROVIDER), namespace)
    obj = get_json("redisdatabase", "cache", namespace)
    assert obj is not None
    created = int(
        time.mktime(time.strptime(obj["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    )
    database_id = _upstash_create(local_provider, f"{namespace}-cache")
    local_provider.admin.set_creation_time(database_id, created - seconds_before)
    running = operator_with_metrics(cluster, tmp_path)
    try:
        if adopted:
            assert wait_ready("cache", namespace, timeout=90)["status"]["databaseId"] == database_id
            assert_took_it_over(running, namespace)
        else:

            def name_taken() -> dict[str, Any] | None:
                synced = condition(get_json("redisdatabase", "cache", namespace), "Synced")
                return synced if synced and synced["reason"] == "NameTaken" else None

            synced = wait_for(name_taken, 90, message="Synced=False NameTaken")
            assert synced["status"] == "False" and database_id in synced["message"]
            assert not actions(running).get("adopt") and not actions(running).get("create")
            status = (get_json("redisdatabase", "cache", namespace) or {}).get("status") or {}
            assert "databaseId" not in status
        assert [d["id"] for d in named(local_provider, f"{namespace}-cache")] == [database_id], "untouched, no twin"
    finally:
        running.runner.stop_all()
        if not adopted:  # someone else's: the operator never deletes it, so the test does
            httpx.delete(
                f"{local_provider.upstash_url}/redis/database/{database_id}", auth=local_provider.upstash_auth
            ).raise_for_status()
