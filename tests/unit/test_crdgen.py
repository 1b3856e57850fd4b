"""crds/ is generated from the pydantic models; this fails when someone edits one without the other."""

from __future__ import annotations

from pathlib import Path

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
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns[:5] == ["Ready", "Provider", "Primary", "Read Regions", "Plan"] and columns[-1] == "Age"
