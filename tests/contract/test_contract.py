"""The contract tables, run both ways: the adapter against documented answers (mock transport), and the local
provider's real answers against the documented shapes (over HTTP). See table.py."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from redisdb_operator.providers.base import Database, ProviderClient, ProviderType
from redisdb_operator.providers.fly import FlyClient
from redisdb_operator.providers.http import RetryPolicy
from redisdb_operator.providers.upstash import UpstashClient
from tests.harness.local_provider import LocalProvider

from .shapes import shape_problems
from .table import FLY_SUPPORT, ROWS, UPSTASH_DATABASE, Row, body_of, matches

NO_RETRY = RetryPolicy(max_attempts=1)
MOCK_FLY_TOKEN = "FlyV1 fm2_lJPECAAAAAAAAcontractTableMacaroon"


def make_client(
    api: ProviderType, base_url: str, transport: httpx.AsyncBaseTransport, *, email: str = "", secret: str = ""
) -> ProviderClient:
    if api is ProviderType.UPSTASH:
        return UpstashClient(base_url, email=email, api_key=secret, transport=transport, retry=NO_RETRY)
    return FlyClient(base_url, token=secret, organization="personal", transport=transport, retry=NO_RETRY)


async def run(row: Row, client: ProviderClient, database_id: str) -> Any:
    """Call the row's operation; check the error it must raise, if any. Returns the adapter's result."""
    if row.raises is None:
        return await row.call(client, database_id)
    with pytest.raises(row.raises) as raised:
        await row.call(client, database_id)
    assert type(raised.value) is row.raises, raised.value  # e.g. ProviderError itself, not a subclass
    if row.temporary is not None:
        assert raised.value.temporary is row.temporary
    return None


@pytest.mark.parametrize("row", ROWS, ids=lambda row: f"{row.api.value}:{row.id}")
async def test_the_adapter_against_the_documented_answer(row: Row) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if matches(row.api, row.route, request):
            return httpx.Response(row.status, json=row.documented)
        support = FLY_SUPPORT.get((body_of(request) or {}).get("query", "")) if row.api is ProviderType.FLY else None
        if support is None:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        return httpx.Response(200, json=support)

    base = "https://api.upstash.test/v2" if row.api is ProviderType.UPSTASH else "https://api.fly.test"
    client = make_client(row.api, base, httpx.MockTransport(answer), email="e@x", secret=MOCK_FLY_TOKEN)
    try:
        result = await run(row, client, str(UPSTASH_DATABASE["database_id"]))
    finally:
        await client.aclose()
    mine = [request for request in seen if matches(row.api, row.route, request)]
    assert mine, f"the adapter never sent the row's request; sent: {[str(r.url) for r in seen]}"
    if row.sent is not None:
        row.sent(mine[-1])
    if row.result is not None:
        row.result(result)


class Recording(httpx.AsyncBaseTransport):
    """A real HTTP transport that keeps every exchange (request, status, body) for the shape comparison."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.exchanges: list[tuple[httpx.Request, int, bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        body = await response.aread()
        self.exchanges.append((request, response.status_code, body))
        return httpx.Response(response.status_code, headers=response.headers, content=body, request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()


LOCAL_ROWS = [row for row in ROWS if row.mock_only is None]


def test_every_mock_only_row_says_why() -> None:
    for row in ROWS:
        assert row.mock_only is None or len(row.mock_only) > 20, row.id
    assert len(LOCAL_ROWS) >= len(ROWS) - 4


@pytest.mark.parametrize("row", LOCAL_ROWS, ids=lambda row: f"{row.api.value}:{row.id}")
async def test_the_local_provider_answers_the_documented_shape(row: Row, local_provider: LocalProvider) -> None:
    upstash = row.api is ProviderType.UPSTASH
    base = local_provider.upstash_url if upstash else local_provider.url
    secret = local_provider.upstash_api_key if upstash else local_provider.fly_token
    setup = make_client(row.api, base, httpx.AsyncHTTPTransport(), email=local_provider.upstash_email, secret=secret)
    recording = Recording()
    wrong = "wrong-key" if upstash else "FlyV1 fm2_notAKnownMacaroon"
    client = make_client(
        row.api, base, recording, email=local_provider.upstash_email, secret=wrong if row.wrong_credentials else secret
    )
    existing: Database | None = None
    result: Any = None
    try:
        if row.needs_database:
            from redisdb_operator.providers.base import CreateDatabaseRequest

            primary, read = ("us-east-1", ("us-west-1",)) if upstash else ("cdg", ("ams",))
            existing = await setup.create(
                CreateDatabaseRequest(
                    name=f"contract-{uuid.uuid4().hex[:8]}", primary_region=primary, read_regions=read
                )
            )
        result = await run(row, client, existing.id if existing else "no-such-database")
        mine = [exchange for exchange in recording.exchanges if matches(row.api, row.route, exchange[0])]
        assert mine, "the adapter never sent the row's request"
        request, status, body = mine[-1]
        if row.sent is not None:
            row.sent(request)
        assert status == row.status, (status, body)
        problems = shape_problems(
            row.documented, json.loads(body), nullable=row.nullable, allowed_extra=row.allowed_extra
        )
        assert not problems, problems
    finally:
        for database in (existing, result if isinstance(result, Database) else None):
            if database is not None:
                await setup.delete(database.id)
        await client.aclose()
        await setup.aclose()
