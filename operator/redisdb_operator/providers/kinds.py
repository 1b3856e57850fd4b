"""One table of provider kinds: everything the operator knows per provider type, in one entry each.

Adding a provider is one adapter module plus one entry here (and its facts in `catalog.py`); the CRD enum, the
credential keys the registry reads, admission's wording and the client factory all follow from this table. A unit
test walks it and checks the CRD, admission, the chart's values schema and the docs know every entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from . import catalog
from .base import ProviderType


@dataclass(frozen=True)
class CredentialKey:
    """A credential the adapter needs: its default key in the Secret and the spec field that renames it."""

    default_key: str
    override_field: str  # the CredentialsSecretReference attribute (snake_case) that names another key


@dataclass(frozen=True)
class ProviderKind:
    type: ProviderType
    display_name: str  # "Fly.io": in messages and docs
    article: str  # "a" / "an", so admission can say "not an Upstash region"
    credentials: Mapping[str, CredentialKey]  # logical name (what the builder reads) -> where it is in the Secret
    default_url: str
    requires_organization: bool
    default_organization: str | None  # when the RedisProvider names none (Fly: `personal`, as flyctl)
    # The adapter module: it defines `build_client(url, credentials, organization, timeouts, retry)` and is imported
    # only when a client is made, so this table (and the pure core reading labels and catalogs from it) stays free
    # of HTTP code.
    adapter: str
    # The provider's web console page of one database, with no credential in it ({database_id} filled in); None
    # where no such link exists (Fly's `ssoLink` signs its holder in: a credential, never published).
    console_url: str | None = None

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


_KINDS = (
    ProviderKind(
        type=ProviderType.FLY,
        display_name="Fly.io",
        article="a",
        credentials={"token": CredentialKey("token", "token_key")},
        default_url="https://api.fly.io",
        requires_organization=True,
        default_organization="personal",
        adapter=f"{__package__}.fly",
    ),
    ProviderKind(
        type=ProviderType.UPSTASH,
        display_name="Upstash",
        article="an",
        credentials={
            "email": CredentialKey("email", "email_key"),
            "apiKey": CredentialKey("apiKey", "api_key_key"),
        },
        default_url="https://api.upstash.com/v2",
        requires_organization=False,
        default_organization=None,
        adapter=f"{__package__}.upstash",
        console_url="https://console.upstash.com/redis/{database_id}",
    ),
)

KINDS: Mapping[ProviderType, ProviderKind] = MappingProxyType({kind.type: kind for kind in _KINDS})


def kind_of(provider_type: ProviderType | str) -> ProviderKind:
    return KINDS[ProviderType(provider_type)]


DEFAULT_FLY_ORGANIZATION = KINDS[ProviderType.FLY].default_organization
