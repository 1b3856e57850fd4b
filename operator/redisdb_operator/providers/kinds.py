"""One table of provider kinds: everything the operator knows per provider type, in one entry each.

Adding a provider is one adapter module plus one entry here (and its facts in `catalog.py`); the CRD enum, the
credential keys the registry reads, admission's wording and the client factory all follow from this table. A unit
test walks it and checks the CRD, admission, the chart's values schema and the docs know every entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import urlsplit

from . import catalog, fly, upstash
from .base import ProviderClient, ProviderType
from .http import RetryPolicy, Timeouts


@dataclass(frozen=True)
class CredentialKey:
    """A credential the adapter needs: its default key in the Secret and the spec field that renames it."""

    default_key: str
    override_field: str  # the CredentialsSecretReference attribute (snake_case) that names another key


ClientBuilder = Callable[[str, Mapping[str, str], str | None, Timeouts, RetryPolicy], ProviderClient]


@dataclass(frozen=True)
class ProviderKind:
    type: ProviderType
    display_name: str  # "Fly.io": in messages and docs
    article: str  # "a" / "an", so admission can say "not an Upstash region"
    credentials: Mapping[str, CredentialKey]  # logical name (what the builder reads) -> where it is in the Secret
    default_url: str
    requires_organization: bool
    build_client: ClientBuilder  # (base_url, credentials by logical name, organization, timeouts, retry)

    @property
    def label(self) -> str:
        """`a Fly.io` / `an Upstash`, as in "ams is not an Upstash region"."""
        return f"{self.article} {self.display_name}"

    @property
    def regions(self) -> Mapping[str, catalog.Region]:
        return catalog.REGIONS[self.type]

    @property
    def plans(self) -> Mapping[str, catalog.Plan]:
        return catalog.PLANS[self.type]


DEFAULT_FLY_ORGANIZATION = "personal"


def _build_fly(
    url: str, credentials: Mapping[str, str], organization: str | None, timeouts: Timeouts, retry: RetryPolicy
) -> ProviderClient:
    return fly.FlyClient(
        url,
        token=credentials["token"],
        organization=organization or DEFAULT_FLY_ORGANIZATION,
        timeouts=timeouts,
        retry=retry,
    )


def _build_upstash(
    url: str, credentials: Mapping[str, str], organization: str | None, timeouts: Timeouts, retry: RetryPolicy
) -> ProviderClient:
    if urlsplit(url).path in ("", "/"):
        url = url.rstrip("/") + "/v2"  # a bare host means the v2 API on it
    return upstash.UpstashClient(
        url, email=credentials["email"], api_key=credentials["apiKey"], timeouts=timeouts, retry=retry
    )


_KINDS = (
    ProviderKind(
        type=ProviderType.FLY,
        display_name="Fly.io",
        article="a",
        credentials={"token": CredentialKey("token", "token_key")},
        default_url=fly.DEFAULT_BASE_URL,
        requires_organization=True,
        build_client=_build_fly,
    ),
    ProviderKind(
        type=ProviderType.UPSTASH,
        display_name="Upstash",
        article="an",
        credentials={
            "email": CredentialKey("email", "email_key"),
            "apiKey": CredentialKey("apiKey", "api_key_key"),
        },
        default_url=upstash.DEFAULT_BASE_URL,
        requires_organization=False,
        build_client=_build_upstash,
    ),
)

KINDS: Mapping[ProviderType, ProviderKind] = MappingProxyType({kind.type: kind for kind in _KINDS})


def kind_of(provider_type: ProviderType | str) -> ProviderKind:
    return KINDS[ProviderType(provider_type)]
