"""Generate the CustomResourceDefinitions from the pydantic models (`redisdb-operator gen-crds`).

Pydantic's JSON Schema is close to, but not, a Kubernetes structural schema: `$ref`s are inlined, optional
fields' `anyOf [T, null]` collapse to `T`, titles and pydantic-only keys are dropped, and descriptions are kept
so `kubectl explain` documents every field.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from .models import GROUP, VERSION, RedisDatabaseSpec, RedisDatabaseStatus, RedisProviderSpec, RedisProviderStatus

_DROP_KEYS = {"title", "default", "$defs"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            merged = {**_structural(options[0], defs), **_structural(rest, defs)}
            if "items" in rest and "items" in merged:
                merged["items"] = {**_structural(options[0], defs).get("items", {}), **_structural(rest["items"], defs)}
            return merged
    if "const" in node:
        node = {**{k: v for k, v in node.items() if k != "const"}, "enum": [node["const"]]}
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key == "properties":
            result[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        else:
            result[key] = _structural(value, defs)
    if "enum" in result and "type" not in result:
        result["type"] = "string"
    if result.get("type") == "object" and "properties" not in result and "additionalProperties" not in result:
        result["x-kubernetes-preserve-unknown-fields"] = True
    return result


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a model, by its Kubernetes (camelCase) field names."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema: dict[str, Any] = _structural(raw, defs)
    return schema


def _conditions_hoist(status: dict[str, Any]) -> dict[str, Any]:
    conditions = status["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return status


def _crd(
    *,
    kind: str,
    plural: str,
    scope: str,
    description: str,
    spec: dict[str, Any],
    status: dict[str, Any],
    columns: list[dict[str, Any]],
    short_names: list[str] | None = None,
) -> dict[str, Any]:
    """One served-and-stored version with the status subresource: the shape both CRDs share."""
    names: dict[str, Any] = {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()}
    if short_names:
        names["shortNames"] = short_names
    names["categories"] = ["redisdb"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": names,
            "scope": scope,
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "description": description,
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def _column(name: str, json_path: str, *, type_: str = "string", priority: int | None = None) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": type_}
    if priority is not None:
        column["priority"] = priority
    column["jsonPath"] = json_path
    return column


_AGE = _column("Age", ".metadata.creationTimestamp", type_="date")


def redis_database_crd() -> dict[str, Any]:
    return _crd(
        kind="RedisDatabase",
        plural="redisdatabases",
        scope="Namespaced",
        short_names=["rdb"],
        description="RedisDatabase is a managed Upstash Redis database (via Fly.io or Upstash), as `flyctl redis "
        "create` makes one; its connection lands in a Secret.",
        spec=openapi_schema(RedisDatabaseSpec),
        status=_conditions_hoist(openapi_schema(RedisDatabaseStatus)),
        columns=[
            _column("Ready", '.status.conditions[?(@.type=="Ready")].status'),
            _column("Provider", ".status.provider"),
            _column("Primary", ".spec.primaryRegion"),
            _column("Read Regions", ".spec.readRegions"),
            _column("Plan", ".status.plan"),
            _column("Reason", '.status.conditions[?(@.type=="Synced")].reason', priority=1),
            _column("Database ID", ".status.databaseId", priority=1),
            _AGE,
        ],
    )


def redis_provider_crd() -> dict[str, Any]:
    return _crd(
        kind="RedisProvider",
        plural="redisproviders",
        scope="Cluster",
        description="RedisProvider is one provider account (a Fly.io organization or a native Upstash account) "
        "that RedisDatabases are created in.",
        spec=openapi_schema(RedisProviderSpec),
        status=_conditions_hoist(openapi_schema(RedisProviderStatus)),
        columns=[
            _column("Type", ".spec.type"),
            _column("Organization", ".spec.organization"),
            _column("Ready", '.status.conditions[?(@.type=="Ready")].status'),
            _column("Databases", ".status.databases", type_="integer"),
            _column("Reason", '.status.conditions[?(@.type=="Ready")].reason', priority=1),
            _column("URL", ".spec.url", priority=1),
            _AGE,
        ],
    )


HEADER = (
    "# Generated by `make crds` (redisdb-operator gen-crds) from operator/redisdb_operator/models.py. Do not edit.\n"
)


def rendered_crds() -> dict[str, str]:
    """File name -> YAML text of every CRD."""
    documents = {
        "redisdb.dev_redisdatabases.yaml": redis_database_crd(),
        "redisdb.dev_redisproviders.yaml": redis_provider_crd(),
    }
    return {name: HEADER + yaml.safe_dump(doc, sort_keys=False, width=120) for name, doc in documents.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="redisdb-operator gen-crds")
    parser.add_argument("--out", default="crds", help="directory to write the CRD YAML files to")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in rendered_crds().items():
        (out / name).write_text(text)
        print(f"wrote {out / name}")
    return 0
