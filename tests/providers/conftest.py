"""Adapters pointed at the local provider: one parametrized client fixture per wire API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from redisdb_operator.providers.base import ProviderClient, ProviderType
from redisdb_operator.providers.fly import FlyClient
from redisdb_operator.providers.http import RetryPolicy
from redisdb_operator.providers.upstash import UpstashClient
from tests.harness.local_provider import LocalProvider

# Small pauses so the bounded-retry tests take milliseconds, same attempt budget as production.
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_wait=5.0)


@dataclass(frozen=True)
class Placement:
    """Regions and plans that are valid for one provider type."""

    primary: str
    read_regions: tuple[str, ...]
    more_read_regions: tuple[str, ...]
    plan: str
    bigger_plan: str


PLACEMENTS = {
    ProviderType.UPSTASH: Placement("us-east-1", ("us-west-1",), ("us-west-1", "eu-west-1"), "payg", "fixed_1gb"),
    ProviderType.FLY: Placement("cdg", ("ams",), ("ams", "fra"), "payg", "fixed_1gb"),
}


def make_adapter(
    provider_type: ProviderType,
    local_provider: LocalProvider,
    *,
    secret: str | None = None,
    retry: RetryPolicy = FAST_RETRY,
) -> ProviderClient:
    if provider_type is ProviderType.UPSTASH:
        return UpstashClient(
            local_provider.upstash_url,
            email=local_provider.upstash_email,
            api_key=secret or local_provider.upstash_api_key,
            retry=retry,
        )
    return FlyClient(
        local_provider.url, token=secret or local_provider.fly_token, organization=local_provider.fly_org, retry=retry
    )


@pytest.fixture(params=[ProviderType.UPSTASH, ProviderType.FLY], ids=lambda p: str(p.value))
def provider_type(request: pytest.FixtureRequest) -> ProviderType:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def placement(provider_type: ProviderType) -> Placement:
    return PLACEMENTS[provider_type]


@pytest.fixture
def provider(local_provider: LocalProvider) -> Iterator[LocalProvider]:
    """The session's local provider with faults cleared before and after each test."""
    local_provider.admin.clear_faults()
    yield local_provider
    local_provider.admin.clear_faults()


@pytest.fixture
async def adapter(provider_type: ProviderType, provider: LocalProvider) -> AsyncIterator[ProviderClient]:
    client = make_adapter(provider_type, provider)
    yield client
    await client.aclose()


@pytest.fixture
def unique_name(provider_type: ProviderType) -> str:
    return f"t-{provider_type.value}-{uuid.uuid4().hex[:8]}"
