"""Build the adapter for a provider from its type, optional base URL and credentials Secret data.

The one place that knows which Secret keys each provider needs, so a missing key is reported by name
instead of surfacing later as a confusing 401.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from . import fly, upstash
from .base import InvalidRequestError, ProviderClient, ProviderType, UnauthorizedError
from .http import DEFAULT_RETRY, DEFAULT_TIMEOUTS, RetryPolicy, Timeouts

CREDENTIAL_KEYS: dict[ProviderType, tuple[str, ...]] = {
    ProviderType.FLY: ("token",),
    ProviderType.UPSTASH: ("email", "apiKey"),
}
DEFAULT_FLY_ORGANIZATION = "personal"


def make_client(
    provider_type: ProviderType,
    url: str | None,
    credentials: Mapping[str, str],
    organization: str | None,
    *,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> ProviderClient:
    """``url`` is the API base (Upstash: ``…/v2``, a bare host gets ``/v2``; Fly: the host, ``/graphql`` optional)."""
    provider_type = ProviderType(provider_type)
    missing = [key for key in CREDENTIAL_KEYS[provider_type] if not (credentials.get(key) or "").strip()]
    if missing:
        raise UnauthorizedError(
            f"{provider_type.value} credentials are missing key(s) {', '.join(repr(k) for k in missing)}; "
            f"the credentials Secret must hold {', '.join(repr(k) for k in CREDENTIAL_KEYS[provider_type])}"
        )
    if url is not None and urlsplit(url).scheme not in ("http", "https"):
        raise InvalidRequestError(f"{provider_type.value} API URL must start with http:// or https://")
    if provider_type is ProviderType.FLY:
        return fly.FlyClient(
            url or fly.DEFAULT_BASE_URL,
            token=credentials["token"].strip(),
            organization=organization or DEFAULT_FLY_ORGANIZATION,
            timeouts=timeouts,
            retry=retry,
        )
    base_url = url or upstash.DEFAULT_BASE_URL
    if urlsplit(base_url).path in ("", "/"):
        base_url = base_url.rstrip("/") + "/v2"
    return upstash.UpstashClient(
        base_url,
        email=credentials["email"].strip(),
        api_key=credentials["apiKey"].strip(),
        timeouts=timeouts,
        retry=retry,
    )
