"""crds/ is generated from the pydantic models; this fails when someone edits one without the other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from redisdb_operator.crdgen import rendered_crds

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"


def test_crd_files_match_the_models() -> None:
    rendered = rendered_crds()
    on_disk = {path.name: path.read_text() for path in CRD_DIR.glob("*.yaml")}
    assert set(on_disk) == set(rendered), "run `make crds`"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"{name} is stale: run `make crds`"


def _walk(schema: dict[str, object], path: str = "") -> list[str]:
    problems = []
    for key in ("$ref", "anyOf", "allOf", "oneOf", "title", "$defs"):
        if key in schema:
            problems.append(f"{path}: {key}")
    for name, child in (schema.get("properties") or {}).items():  # type: ignore[union-attr]
        problems += _walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        problems += _walk(schema["items"], f"{path}[]")  # type: ignore[arg-type]
    if ("properties" in schema or "items" in schema) and "type" not in schema:
        problems.append(f"{path}: no type")
    return problems


def test_schemas_are_structural_and_documented() -> None:
    for text in rendered_crds().values():
        crd = yaml.safe_load(text)
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        assert _walk(schema) == []
        for name, field in schema["properties"]["spec"]["properties"].items():
            assert field.get("description"), f"spec.{name} has no description for kubectl explain"


def test_immutability_rules_are_in_the_schema() -> None:
    crd = yaml.safe_load(rendered_crds()["redisdb.dev_redisdatabases.yaml"])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for field in ("primaryRegion", "name", "providerRef"):
        rules = [v["rule"] for v in spec["properties"][field]["x-kubernetes-validations"]]
        assert "self == oldSelf" in rules
    assert spec["properties"]["readRegions"]["x-kubernetes-list-type"] == "set"
    assert spec["required"] == ["primaryRegion"]


def _columns(crd: dict[str, Any], *, wide: bool = False) -> list[str]:
    return [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"] if wide or not c.get("priority")]


def test_printer_columns() -> None:
    """`kubectl get rdb` shows SYNCED next to READY (a refused change is visible) and EVICTION; `kubectl get
    rdbp` shows TYPE, READY, DATABASES, AGE."""
    database = yaml.safe_load(rendered_crds()["redisdb.dev_redisdatabases.yaml"])
    assert _columns(database) == ["Ready", "Synced", "Provider", "Primary", "Read Regions", "Plan", "Eviction", "Age"]
    by_name = {c["name"]: c for c in database["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert by_name["Synced"]["jsonPath"] == '.status.conditions[?(@.type=="Synced")].status'
    assert by_name["Eviction"] == {"name": "Eviction", "type": "boolean", "jsonPath": ".status.eviction"}
    provider = yaml.safe_load(rendered_crds()["redisdb.dev_redisproviders.yaml"])
    assert _columns(provider) == ["Type", "Ready", "Databases", "Age"]
    assert provider["spec"]["names"]["shortNames"] == ["rdbp"]
    assert "rdbp" not in database["spec"]["names"].get("shortNames", [])


def _undocumented(schema: dict[str, Any], path: str) -> list[str]:
    missing = [] if schema.get("description") else [path]
    for name, child in (schema.get("properties") or {}).items():
        missing += _undocumented(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict) and schema["items"].get("properties"):
        for name, child in schema["items"]["properties"].items():
            missing += _undocumented(child, f"{path}[].{name}")
    return missing


def _status(crd_file: str) -> dict[str, Any]:
    crd = yaml.safe_load(rendered_crds()[crd_file])
    status: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    return status


@pytest.mark.parametrize("crd_file", ["redisdb.dev_redisdatabases.yaml", "redisdb.dev_redisproviders.yaml"])
def test_every_status_and_condition_field_is_documented(crd_file: str) -> None:
    """`kubectl explain rdb.status.conditions.reason` (and every other status field) prints a description."""
    assert _undocumented(_status(crd_file), "status") == []


def test_provider_conditions_are_described_for_providers() -> None:
    """RedisProvider's condition text is its own, not the RedisDatabase one (no `Synced`, no database)."""
    database = _status("redisdb.dev_redisdatabases.yaml")["properties"]["conditions"]["items"]["properties"]
    provider = _status("redisdb.dev_redisproviders.yaml")["properties"]["conditions"]["items"]["properties"]
    for field in ("type", "reason", "message"):
        assert provider[field]["description"] != database[field]["description"], field
    assert "Synced" not in provider["type"]["description"]
    assert "CredentialsAccepted" in provider["reason"]["description"]
