"""Build the adapter for a provider from its type, optional base URL and credentials (by logical name).

A missing credential is reported by name here instead of surfacing later as a confusing 401; which credentials a
type needs, and how its client is built, is its entry in `kinds.py`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from urllib.parse import urlsplit

from .base import InvalidRequestError, ProviderClient, ProviderType, UnauthorizedError
from .http import DEFAULT_RETRY, DEFAULT_TIMEOUTS, RetryPolicy, Timeouts
from .kinds import DEFAULT_FLY_ORGANIZATION, kind_of

__all__ = ["DEFAULT_FLY_ORGANIZATION", "make_client"]


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
    kind = kind_of(provider_type)
    needed = list(kind.credentials)
    missing = [key for key in needed if not (credentials.get(key) or "").strip()]
    if missing:
        raise UnauthorizedError(
            f"{kind.type.value} credentials are missing key(s) {', '.join(repr(k) for k in missing)}; "
            f"the credentials Secret must hold {', '.join(repr(k) for k in needed)}"
        )
    if url is not None and urlsplit(url).scheme not in ("http", "https"):
        raise InvalidRequestError(f"{kind.type.value} API URL must start with http:// or https://")
    stripped = {key: credentials[key].strip() for key in needed}
    adapter = importlib.import_module(kind.adapter)
    client: ProviderClient = adapter.build_client(
        url or kind.default_url, stripped, organization or kind.default_organization, timeouts, retry
    )
    return client
