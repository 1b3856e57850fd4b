"""Factory: the right adapter, defaults, and missing credential keys named."""

from __future__ import annotations

import pytest

from redisdb_operator.providers.base import InvalidRequestError, ProviderType, UnauthorizedError
from redisdb_operator.providers.factory import make_client
from redisdb_operator.providers.fly import FlyClient
from redisdb_operator.providers.upstash import UpstashClient


async def test_fly_client_with_default_organization() -> None:
    client = make_client(ProviderType.FLY, None, {"token": "t0ken-value"}, None)
    assert isinstance(client, FlyClient) and client.organization == "personal"
    await client.aclose()


async def test_upstash_bare_host_gets_v2() -> None:
    client = make_client(ProviderType.UPSTASH, "http://127.0.0.1:9", {"email": "a@b", "apiKey": "k"}, None)
    assert isinstance(client, UpstashClient)
    assert str(client._http._client.base_url) == "http://127.0.0.1:9/v2/"
    await client.aclose()


@pytest.mark.parametrize(
    ("provider", "credentials", "missing"),
    [
        (ProviderType.FLY, {}, "'token'"),
        (ProviderType.UPSTASH, {"email": "a@b"}, "'apiKey'"),
        (ProviderType.UPSTASH, {"apiKey": "secret-key-value", "email": " "}, "'email'"),
    ],
)
def test_missing_credential_key_is_named(provider: ProviderType, credentials: dict[str, str], missing: str) -> None:
    with pytest.raises(UnauthorizedError) as raised:
        make_client(provider, None, credentials, None)
    assert missing in str(raised.value)
    assert "secret-key-value" not in str(raised.value)


def test_bad_url_scheme() -> None:
    with pytest.raises(InvalidRequestError):
        make_client(ProviderType.FLY, "ftp://x", {"token": "t"}, "org")
