"""Render the connection Secret: the keys apps mount with `envFrom`, and `Redis.fromEnv()` reads as is."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from .models import API_VERSION, LABEL_DATABASE, LABEL_MANAGED_BY, MANAGER_NAME
from .providers.base import Database

SECRET_TYPE = "Opaque"
ANNOTATION_CONTENT_HASH = "redisdb.dev/content-hash"


def connection_data(database: Database) -> dict[str, str]:
    """Plain-text key -> value; REST keys only where the provider gives them."""
    data = {
        "REDIS_URL": database.url,
        "REDIS_HOST": database.host,
        "REDIS_PORT": str(database.port),
        "REDIS_PASSWORD": database.password,
    }
    if database.rest_url and database.rest_token:
        data["UPSTASH_REDIS_REST_URL"] = database.rest_url
        data["UPSTASH_REDIS_REST_TOKEN"] = database.rest_token
    return data


def content_hash(data: dict[str, str]) -> str:
    """A digest of the Secret's content, so a changed credential is noticed without comparing secrets in logs."""
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(key.encode() + b"\0" + data[key].encode() + b"\0")
    return digest.hexdigest()[:32]


def render_connection_secret(
    *,
    secret_name: str,
    namespace: str,
    owner_name: str,
    owner_uid: str,
    database: Database,
) -> dict[str, Any]:
    """The whole Secret object, owned (and so garbage-collected) by its RedisDatabase."""
    data = connection_data(database)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": SECRET_TYPE,
        "metadata": {
            "name": secret_name,
            "namespace": namespace,
            "labels": {LABEL_MANAGED_BY: MANAGER_NAME, LABEL_DATABASE: owner_name},
            "annotations": {ANNOTATION_CONTENT_HASH: content_hash(data)},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "RedisDatabase",
                    "name": owner_name,
                    "uid": owner_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


def is_owned_by(secret: dict[str, Any], owner_uid: str) -> bool:
    refs = secret.get("metadata", {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner_uid and ref.get("controller") for ref in refs)


def decode_data(secret: dict[str, Any]) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}
