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

from .models import GROUP, VERSION, RedisDatabaseSpec, RedisDatabaseStatus, RedisProviderSpec

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


def redis_database_crd() -> dict[str, Any]:
    spec = openapi_schema(RedisDatabaseSpec)
    status = _conditions_hoist(openapi_schema(RedisDatabaseStatus))
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"redisdatabases.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": "RedisDatabase",
                "listKind": "RedisDatabaseList",
                "plural": "redisdatabases",
                "singular": "redisdatabase",
                "shortNames": ["rdb"],
                "categories": ["redisdb"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {"name": "Provider", "type": "string", "jsonPath": ".status.provider"},
                        {"name": "Primary", "type": "string", "jsonPath": ".spec.primaryRegion"},
                        {"name": "Read Regions", "type": "string", "jsonPath": ".spec.readRegions"},
                        {"name": "Plan", "type": "string", "jsonPath": ".status.plan"},
                        {
                            "name": "Reason",
                            "type": "string",
                            "priority": 1,
                            "jsonPath": '.status.conditions[?(@.type=="Synced")].reason',
                        },
                        {"name": "Database ID", "type": "string", "priority": 1, "jsonPath": ".status.databaseId"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "description": "RedisDatabase is a managed Upstash Redis database (via Fly.io or "
                            "Upstash), as `flyctl redis create` makes one; its connection lands in a Secret.",
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


def redis_provider_crd() -> dict[str, Any]:
    spec = openapi_schema(RedisProviderSpec)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"redisproviders.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": "RedisProvider",
                "listKind": "RedisProviderList",
                "plural": "redisproviders",
                "singular": "redisprovider",
                "categories": ["redisdb"],
            },
            "scope": "Cluster",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
                        {"name": "Organization", "type": "string", "jsonPath": ".spec.organization"},
                        {"name": "URL", "type": "string", "jsonPath": ".spec.url"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "description": "RedisProvider is one provider account (a Fly.io organization or a "
                            "native Upstash account) that RedisDatabases are created in.",
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }


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
