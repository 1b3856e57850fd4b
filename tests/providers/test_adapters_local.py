"""Both adapters against the local provider: real HTTP, real GraphQL, real redis-servers.

The lifecycle test walks one database through everything the operator does to it and checks each step on
the redis-server itself, not just in the API's answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest
import redis

from redisdb_operator import metrics
from redisdb_operator.providers.base import (
    AlreadyExistsError,
    CreateDatabaseRequest,
    Database,
    DatabaseUpdate,
    InvalidRequestError,
    NotFoundError,
    ProviderClient,
    ProviderType,
    RateLimitedError,
    UnauthorizedError,
    UnavailableError,
)
from redisdb_operator.providers.factory import make_client
from redisdb_operator.providers.fly import FlyClient
from redisdb_operator.providers.upstash import UpstashClient
from tests.harness.local_provider import (
    OTHER_FLY_ORG,
    OTHER_UPSTASH_API_KEY,
    OTHER_UPSTASH_EMAIL,
    TLS_CA_FILE,
    LocalProvider,
    redis_from_url,
)

from .conftest import FAST_RETRY, Placement, make_adapter

T = TypeVar("T")


def eventually(check: Callable[[], T], *, timeout: float = 10.0, what: str = "condition") -> T:
    """Poll until ``check`` returns a truthy value (replication and process start are asynchronous)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = result
        except (redis.RedisError, OSError) as error:
            last = error
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def connect(url: str) -> redis.Redis:
    """Verified TLS for an Upstash-type database (rediss://), plain for a Fly one."""
    return redis_from_url(url, decode_responses=True)


def replica_client(database: Database, port: int) -> redis.Redis:
    tls = {"ssl": True, "ssl_ca_certs": str(TLS_CA_FILE)} if database.tls else {}
    return redis.Redis(host=database.host, port=port, password=database.password, decode_responses=True, **tls)


def admin_entry(provider: LocalProvider, database_id: str) -> dict[str, Any] | None:
    return next((d for d in provider.admin.databases() if d["id"] == database_id), None)


def replica_ports(provider: LocalProvider, database_id: str) -> dict[str, int]:
    entry = admin_entry(provider, database_id)
    assert entry is not None
    return {replica["region"]: replica["port"] for replica in entry["replicas"]}


async def test_lifecycle(
    adapter: ProviderClient, provider: LocalProvider, placement: Placement, unique_name: str
) -> None:
    created = await adapter.create(
        CreateDatabaseRequest(
            name=unique_name, primary_region=placement.primary, read_regions=placement.read_regions, plan=placement.plan
        )
    )
    try:
        assert created.name == unique_name and created.primary_region == placement.primary
        assert created.read_regions == placement.read_regions
        assert created.plan == placement.plan and created.eviction is False
        # Upstash databases are TLS-only; Fly's live on a private network without TLS.
        scheme = "rediss" if adapter.provider_type is ProviderType.UPSTASH else "redis"
        assert created.url.startswith(f"{scheme}://default:") and created.password
        assert created.tls is (adapter.provider_type is ProviderType.UPSTASH)
        # the creation time tells the operator's own database from a stranger's of the same name
        assert created.created_at is not None
        assert abs(created.created_at.timestamp() - time.time()) < 60
        found = await adapter.find_by_name(unique_name)
        assert found is not None and found.created_at == created.created_at

        # Connect with the URL the operator will publish.
        primary = connect(created.url)
        assert primary.set("greeting", "hello")
        assert primary.get("greeting") == "hello"

        # The read region is a real replica of the primary.
        ports = replica_ports(provider, created.id)
        assert set(ports) == set(placement.read_regions)
        replica = replica_client(created, ports[placement.read_regions[0]])
        eventually(lambda: replica.get("greeting") == "hello", what="replica to catch up")

        # Read back through get, find_by_name and list.
        fetched = await adapter.get(created.id)
        assert fetched.url == created.url and fetched.plan == placement.plan
        found = await adapter.find_by_name(unique_name)
        assert found is not None and found.id == created.id and found.password == created.password
        assert created.id in {d.id for d in await adapter.list()}
        assert await adapter.find_by_name(unique_name + "-missing") is None

        # Read regions: the full new set; replicas appear and disappear.
        # Each update answers the database as changed, which is what the provider then reports.
        updated = await adapter.update(created, DatabaseUpdate(read_regions=placement.more_read_regions))
        assert updated.read_regions == placement.more_read_regions
        assert (await adapter.get(created.id)).read_regions == placement.more_read_regions
        eventually(
            lambda: set(replica_ports(provider, created.id)) == set(placement.more_read_regions),
            what="replicas for the added region",
        )
        added = replica_client(created, replica_ports(provider, created.id)[placement.more_read_regions[-1]])
        eventually(lambda: added.get("greeting") == "hello", what="new replica to sync")
        updated = await adapter.update(updated, DatabaseUpdate(read_regions=()))
        assert updated.read_regions == () and (await adapter.get(created.id)).read_regions == ()
        eventually(lambda: replica_ports(provider, created.id) == {}, what="replicas to go away")

        # Eviction, checked on the server itself.
        updated = await adapter.update(updated, DatabaseUpdate(eviction=True))
        assert updated.eviction is True and (await adapter.get(created.id)).eviction is True
        assert primary.config_get("maxmemory-policy")["maxmemory-policy"] != "noeviction"
        updated = await adapter.update(updated, DatabaseUpdate(eviction=False))
        assert updated.eviction is False and (await adapter.get(created.id)).eviction is False
        assert primary.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"

        # Plan change, together with a region change, as the reconciler would send it.
        maxmemory_before = primary.config_get("maxmemory")["maxmemory"]
        updated = await adapter.update(
            updated, DatabaseUpdate(plan=placement.bigger_plan, read_regions=placement.read_regions)
        )
        changed = await adapter.get(created.id)
        if adapter.provider_type is ProviderType.UPSTASH:  # type "paid": which fixed plan is not observable
            assert (changed.plan, changed.plan_observable) == ("paid", False)
        else:
            assert changed.plan == placement.bigger_plan
        assert changed.read_regions == placement.read_regions
        assert updated.read_regions == changed.read_regions
        if changed.plan_observable:
            assert updated.plan == changed.plan
        assert primary.config_get("maxmemory")["maxmemory"] != maxmemory_before
        entry = admin_entry(provider, created.id)
        assert entry is not None and entry["plan"] == placement.bigger_plan

        # Reset password: the old one is refused, the new one works, data survives.
        reset = await adapter.reset_password(created.id)
        assert reset.password and reset.password != created.password
        with pytest.raises(redis.AuthenticationError):
            connect(created.url).ping()
        assert connect(reset.url).get("greeting") == "hello"
        assert (await adapter.get(created.id)).password == reset.password
    finally:
        await adapter.delete(created.id)

    assert admin_entry(provider, created.id) is None
    with pytest.raises(NotFoundError):
        await adapter.get(created.id)
    await adapter.delete(created.id)  # already gone is fine
    assert await adapter.find_by_name(unique_name) is None


async def test_duplicate_name(adapter: ProviderClient, placement: Placement, unique_name: str) -> None:
    """Fly refuses a second add-on of one name; Upstash documents no such rule, so the adapter says it looks first."""
    request = CreateDatabaseRequest(name=unique_name, primary_region=placement.primary)
    created = await adapter.create(request)
    second = None
    try:
        if adapter.names_are_unique:
            with pytest.raises(AlreadyExistsError):
                await adapter.create(request)
        else:
            second = await adapter.create(request)
            assert second.id != created.id
    finally:
        await adapter.delete(created.id)
        if second is not None:
            await adapter.delete(second.id)


async def test_unknown_region_is_invalid(adapter: ProviderClient, unique_name: str) -> None:
    operation = "graphql:createAddOn" if adapter.provider_type is ProviderType.FLY else "create"
    refused_before = metrics.PROVIDER_REQUESTS.value(
        provider_type=adapter.provider_type.value, operation=operation, outcome="InvalidRequestError"
    )
    with pytest.raises(InvalidRequestError):
        await adapter.create(CreateDatabaseRequest(name=unique_name, primary_region="atlantis-1"))
    # the metrics see the refusal too, also when it came as GraphQL errors[] in an HTTP 200 answer (Fly)
    refused_after = metrics.PROVIDER_REQUESTS.value(
        provider_type=adapter.provider_type.value, operation=operation, outcome="InvalidRequestError"
    )
    assert refused_after == refused_before + 1


async def test_unknown_id_is_not_found(adapter: ProviderClient) -> None:
    with pytest.raises(NotFoundError):
        await adapter.get("00000000-0000-0000-0000-000000000000")
    with pytest.raises(NotFoundError):
        gone = Database(id="00000000-0000-0000-0000-000000000000", name="gone", primary_region="mad", plan="payg")
        await adapter.update(gone, DatabaseUpdate(eviction=True))
    with pytest.raises(NotFoundError):
        await adapter.reset_password("00000000-0000-0000-0000-000000000000")
    await adapter.delete("00000000-0000-0000-0000-000000000000")


async def test_bad_credentials(provider_type: ProviderType, provider: LocalProvider) -> None:
    client = make_adapter(provider_type, provider, secret="wrong-secret-value")
    try:
        with pytest.raises(UnauthorizedError) as raised:
            await client.list()
        assert "wrong-secret-value" not in str(raised.value)
    finally:
        await client.aclose()


async def test_injected_503_is_retried_a_bounded_number_of_times(
    adapter: ProviderClient, provider: LocalProvider, provider_type: ProviderType
) -> None:
    # Warm caches (Fly resolves its organization once) so the counters below see only the calls under test.
    await adapter.list()
    counter = "upstash:list" if provider_type is ProviderType.UPSTASH else "fly:organization"
    provider.admin.reset_counters()
    provider.admin.faults(fail_next=10, fail_status=503)
    with pytest.raises(UnavailableError):
        await adapter.list()
    assert provider.admin.counters().get(counter) == FAST_RETRY.max_attempts

    # Recovers when the outage is shorter than the budget.
    provider.admin.faults(fail_next=FAST_RETRY.max_attempts - 1, fail_status=503)
    await adapter.list()


async def test_create_is_never_resent(
    adapter: ProviderClient,
    provider: LocalProvider,
    provider_type: ProviderType,
    placement: Placement,
    unique_name: str,
) -> None:
    await adapter.list()
    if provider_type is ProviderType.FLY:  # warm the organization and plan caches
        await adapter.create(CreateDatabaseRequest(name=unique_name + "-warm", primary_region=placement.primary))
        warm = await adapter.find_by_name(unique_name + "-warm")
        assert warm is not None
        await adapter.delete(warm.id)
    counter = "upstash:create" if provider_type is ProviderType.UPSTASH else "fly:createAddOn"
    provider.admin.reset_counters()
    provider.admin.faults(fail_next=1, fail_status=503)
    with pytest.raises(UnavailableError):
        await adapter.create(CreateDatabaseRequest(name=unique_name, primary_region=placement.primary))
    assert provider.admin.counters().get(counter) == 1
    assert await adapter.find_by_name(unique_name) is None


async def test_rate_limit_reports_retry_after(
    adapter: ProviderClient, provider: LocalProvider, provider_type: ProviderType
) -> None:
    await adapter.list()
    provider.admin.faults(fail_next=1, fail_status=429, retry_after=120)
    with pytest.raises(RateLimitedError) as raised:
        await adapter.list()
    assert raised.value.retry_after == 120.0
    # the account is held back: the next call is refused here, not sent to spend the quota
    sent = sum(provider.admin.counters().values())
    with pytest.raises(RateLimitedError, match="not sent") as held:
        await adapter.find_by_name("anything")
    assert held.value.retry_after is not None and 100 < held.value.retry_after <= 120
    assert sum(provider.admin.counters().values()) == sent

    # A short Retry-After is waited out in-process and the call succeeds (a fresh client: no hold yet).
    fresh = make_adapter(provider_type, provider)
    provider.admin.faults(fail_next=1, fail_status=429, retry_after=1)
    started = time.monotonic()
    await fresh.list()
    assert time.monotonic() - started >= 0.9
    await fresh.aclose()


async def test_factory_clients_reach_the_local_provider(provider_type: ProviderType, provider: LocalProvider) -> None:
    credentials = (
        {"email": provider.upstash_email, "apiKey": provider.upstash_api_key}
        if provider_type is ProviderType.UPSTASH
        else {"token": provider.fly_token}
    )
    client = make_client(provider_type, provider.url, credentials, provider.fly_org)
    try:
        assert isinstance(await client.list(), list)
    finally:
        await client.aclose()


async def test_fly_unknown_organization_is_a_configuration_error(provider: LocalProvider) -> None:
    client = make_client(ProviderType.FLY, provider.url, {"token": provider.fly_token}, "no-such-org")
    try:
        with pytest.raises(InvalidRequestError, match="no-such-org"):
            await client.list()
        with pytest.raises(InvalidRequestError, match="no-such-org"):
            await client.create(CreateDatabaseRequest(name="never", primary_region="mad"))
    finally:
        await client.aclose()


async def test_other_accounts_databases_are_invisible(
    adapter: ProviderClient,
    provider: LocalProvider,
    provider_type: ProviderType,
    placement: Placement,
    unique_name: str,
) -> None:
    other: ProviderClient
    if provider_type is ProviderType.UPSTASH:
        other = UpstashClient(provider.upstash_url, email=OTHER_UPSTASH_EMAIL, api_key=OTHER_UPSTASH_API_KEY)
    else:
        other = FlyClient(provider.url, token=provider.fly_token, organization=OTHER_FLY_ORG)
    created = await adapter.create(CreateDatabaseRequest(name=unique_name, primary_region=placement.primary))
    try:
        assert await other.find_by_name(unique_name) is None
        assert created.id not in {d.id for d in await other.list()}
        if provider_type is ProviderType.UPSTASH:
            with pytest.raises(NotFoundError):
                await other.get(created.id)
    finally:
        await adapter.delete(created.id)
        await other.aclose()


async def test_rest_credentials(
    adapter: ProviderClient,
    provider: LocalProvider,
    provider_type: ProviderType,
    placement: Placement,
    unique_name: str,
) -> None:
    """Upstash databases carry a working REST URL and tokens (rotated with the password); Fly's API gives none."""
    created = await adapter.create(CreateDatabaseRequest(name=unique_name, primary_region=placement.primary))
    try:
        if provider_type is ProviderType.FLY:
            assert created.rest_url == "" and created.rest_token == "" and created.read_only_rest_token == ""
            return
        assert created.rest_url == f"{provider.url}/rest/{created.id}"
        assert created.rest_token and created.read_only_rest_token
        assert created.rest_token not in repr(created)
        found = await adapter.find_by_name(unique_name)
        assert found is not None and (found.rest_url, found.rest_token) == (created.rest_url, created.rest_token)

        async with httpx.AsyncClient(timeout=30) as http:
            headers = {"Authorization": f"Bearer {created.rest_token}"}
            assert (await http.post(created.rest_url, json=["SET", "k", "v"], headers=headers)).json() == {
                "result": "OK"
            }
            assert connect(created.url).get("k") == "v"

            reset = await adapter.reset_password(created.id)
            assert reset.rest_url == created.rest_url
            assert reset.rest_token and reset.rest_token != created.rest_token
            assert (await http.post(created.rest_url, json=["GET", "k"], headers=headers)).status_code == 401
            fresh = {"Authorization": f"Bearer {reset.rest_token}"}
            assert (await http.post(reset.rest_url, json=["GET", "k"], headers=fresh)).json() == {"result": "v"}
    finally:
        await adapter.delete(created.id)


async def test_usage_counts_the_commands_sent(adapter: ProviderClient, placement: Placement, unique_name: str) -> None:
    """Both adapters read usage from the stats call (Upstash `GET /v2/redis/stats/{id}`, Fly `AddOn.stats`):
    the commands a client sends show up in the request count."""
    created = await adapter.create(CreateDatabaseRequest(name=unique_name, primary_region=placement.primary))
    try:
        before = await adapter.usage(created.id)
        assert before is not None and before.requests is not None
        client = connect(created.url)
        for index in range(25):
            client.set(f"k{index}", "v" * 50)
        after = await adapter.usage(created.id)
        assert after is not None and after.requests is not None
        assert after.requests - before.requests >= 25
        assert after.data_size_bytes and after.bandwidth_bytes and after.cost_usd is not None
    finally:
        await adapter.delete(created.id)
