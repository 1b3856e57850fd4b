"""The provider-kinds table: every entry is known to the CRD, admission, the client factory, the chart and the docs.

Adding a provider type is one adapter module plus one entry in `providers/kinds.py`; this test says what else is
still missing when an entry is added (a chart enum, a docs section), instead of a user finding it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from redisdb_operator.admission import validate_redisdatabase
from redisdb_operator.models import RedisProviderSpec
from redisdb_operator.providers import fly, upstash
from redisdb_operator.providers.base import ProviderClient, ProviderType
from redisdb_operator.providers.factory import make_client
from redisdb_operator.providers.kinds import KINDS, ProviderKind

REPO = Path(__file__).resolve().parents[3]
ENTRIES = list(KINDS.values())


def test_every_provider_type_has_exactly_one_entry() -> None:
    assert set(KINDS) == set(ProviderType)


def test_default_urls_are_the_adapters_own() -> None:
    assert KINDS[ProviderType.FLY].default_url == fly.DEFAULT_BASE_URL
    assert KINDS[ProviderType.UPSTASH].default_url == upstash.DEFAULT_BASE_URL


def _crd_provider_types() -> list[str]:
    crd = yaml.safe_load((REPO / "crds" / "redisdb.dev_redisproviders.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return list(schema["properties"]["spec"]["properties"]["type"]["enum"])


def _chart_provider_types() -> list[str]:
    schema = json.loads((REPO / "charts" / "redisdb-operator" / "values.schema.json").read_text())
    return list(schema["definitions"]["provider"]["properties"]["type"]["enum"])


def test_crd_and_chart_list_exactly_the_table() -> None:
    table = sorted(kind.type.value for kind in ENTRIES)
    assert sorted(_crd_provider_types()) == table
    assert sorted(_chart_provider_types()) == table


@pytest.mark.parametrize("kind", ENTRIES, ids=lambda kind: kind.type.value)
async def test_factory_builds_the_kinds_client(kind: ProviderKind) -> None:
    credentials = {logical: f"value-of-{logical}" for logical in kind.credentials}
    client = make_client(kind.type, None, credentials, "an-org")
    try:
        assert isinstance(client, ProviderClient)
        assert client.provider_type is kind.type
    finally:
        await client.aclose()


@pytest.mark.parametrize("kind", ENTRIES, ids=lambda kind: kind.type.value)
def test_credential_overrides_are_spec_fields(kind: ProviderKind) -> None:
    """The registry reads `spec.credentialsSecretRef.<override>`: each override must exist in the model."""
    fields = RedisProviderSpec.model_fields["credentials_secret_ref"].annotation.model_fields  # type: ignore[union-attr]
    for key in kind.credentials.values():
        assert key.override_field in fields


@pytest.mark.parametrize("kind", ENTRIES, ids=lambda kind: kind.type.value)
def test_admission_knows_the_kind(kind: ProviderKind) -> None:
    provider = {
        "type": kind.type.value,
        "organization": "an-org",
        "credentialsSecretRef": {"namespace": "ns", "name": "creds"},
    }
    region = next(code for code, known in kind.regions.items() if not known.deprecated)

    def check(primary_region: str) -> str | None:
        return validate_redisdatabase(
            operation="CREATE",
            namespace="ns",
            name="db",
            spec={"primaryRegion": primary_region},
            old_spec=None,
            providers={"default": provider},
            claims={},
        )

    assert check(region) is None
    refusal = check("zz-nowhere-1")
    assert refusal is not None and f"not {kind.label} region" in refusal


@pytest.mark.parametrize("kind", ENTRIES, ids=lambda kind: kind.type.value)
def test_docs_show_how_to_declare_the_kind(kind: ProviderKind) -> None:
    install = (REPO / "docs" / "install.md").read_text()
    assert f"type: {kind.type.value}" in install
    assert kind.display_name in (REPO / "README.md").read_text()
