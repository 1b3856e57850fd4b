"""The connection Secret: the keys apps mount with `envFrom` (and `Redis.fromEnv()` reads as is), the pure decision
how to bring the Secret in the cluster to it (`secret_action`), and the small publisher doing the Kubernetes calls.

The Secret is always written whole (created, or replaced at the resourceVersion read), never patched in part.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import kopf

from .errors import ConfigurationError
from .kube import KubeClient, KubeConflict, secret_path
from .models import API_VERSION, LABEL_DATABASE, LABEL_MANAGED_BY, MANAGER_NAME, ConnectionSecretSpec
from .providers.base import Database

SECRET_TYPE = "Opaque"
ANNOTATION_CONTENT_HASH = "redisdb.dev/content-hash"


def template_fields(database: Database) -> dict[str, str]:
    """The values a `spec.connectionSecret.keys` template may name (models.SECRET_TEMPLATE_FIELDS)."""
    return {
        "url": database.url,
        "host": database.host,
        "port": str(database.port) if database.port else "",
        "password": database.password,
        "restUrl": database.rest_url,
        "restToken": database.rest_token,
        "readOnlyRestToken": database.read_only_rest_token,
    }


_TEMPLATE_TOKEN = re.compile(r"\{\{|\}\}|\{(\w+)\}|[^{}]+")


def render_template(template: str, fields: Mapping[str, str]) -> str | None:
    """`{field}` replaced by its value, `{{`/`}}` by a brace; None when a named field is empty (a REST field the
    provider does not give), so the key is left out rather than written half-empty. The CRD's CEL rule and the
    model refuse anything else at admission; a token that still does not parse is kept literally."""
    out: list[str] = []
    position = 0
    for match in _TEMPLATE_TOKEN.finditer(template):
        if match.start() != position:
            out.append(template[position : match.start()])
        position = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            out.append(token[0])
        elif match.group(1) is not None:
            value = fields.get(match.group(1))
            if value is None:
                out.append(token)
            elif not value:
                return None
            else:
                out.append(value)
        else:
            out.append(token)
    out.append(template[position:])
    return "".join(out)


def connection_data(database: Database, shape: ConnectionSecretSpec | None = None) -> dict[str, str]:
    """Plain-text key -> value: the default keys (REST keys only where the provider gives them, none with
    defaultKeys: false), then the spec's templated `keys` (which win over a default key of the same name)."""
    data: dict[str, str] = {}
    if shape is None or shape.default_keys is not False:
        data = {
            "REDIS_URL": database.url,
            "REDIS_HOST": database.host,
            "REDIS_PORT": str(database.port),
            "REDIS_PASSWORD": database.password,
        }
        if database.rest_url and database.rest_token:
            data["UPSTASH_REDIS_REST_URL"] = database.rest_url
            data["UPSTASH_REDIS_REST_TOKEN"] = database.rest_token
    if shape is not None and shape.keys:
        fields = template_fields(database)
        for key, template in shape.keys.items():
            value = render_template(template, fields)
            if value is not None:
                data[key] = value
    return data


def content_hash(data: dict[str, str], shape: ConnectionSecretSpec | None = None) -> str:
    """A digest of the Secret's content and of the labels and annotations the spec asks for, so a changed
    credential (or a changed spec label) is noticed without comparing secrets in logs. Without spec labels and
    annotations it is the digest of the data alone, as before they existed (no rewrite on upgrade)."""
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(key.encode() + b"\0" + data[key].encode() + b"\0")
    for section, entries in (("labels", shape and shape.labels), ("annotations", shape and shape.annotations)):
        for key in sorted(entries or {}):
            digest.update(f"{section}\0{key}\0{(entries or {})[key]}\0".encode())
    return digest.hexdigest()[:32]


def render_connection_secret(
    *,
    secret_name: str,
    namespace: str,
    owner_name: str,
    owner_uid: str,
    database: Database,
    shape: ConnectionSecretSpec | None = None,
) -> dict[str, Any]:
    """The whole Secret object, owned (and so garbage-collected) by its RedisDatabase; the spec's labels and
    annotations under the operator's own (which win)."""
    data = connection_data(database, shape)
    labels = {
        **((shape and shape.labels) or {}),
        LABEL_MANAGED_BY: MANAGER_NAME,
        LABEL_DATABASE: label_value(owner_name),
    }
    annotations = {**((shape and shape.annotations) or {}), ANNOTATION_CONTENT_HASH: content_hash(data, shape)}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": SECRET_TYPE,
        "metadata": {
            "name": secret_name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
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


def secret_intact(secret: dict[str, Any] | None, owner_uid: str, shape: ConnectionSecretSpec | None) -> bool:
    """The Secret is there, ours, and its data still matches the content hash we wrote (no hand edit)."""
    if secret is None or not is_owned_by(secret, owner_uid):
        return False
    written = (secret.get("metadata", {}).get("annotations") or {}).get(ANNOTATION_CONTENT_HASH)
    try:
        return written == content_hash(decode_data(secret), shape)
    except (ValueError, UnicodeDecodeError):
        return False


def decode_data(secret: dict[str, Any]) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}


def has_credentials(database: Database) -> bool:
    """A database from a list (the shared snapshot) may come without its password."""
    return bool(database.url and database.password)


class SecretAction(enum.StrEnum):
    CREATE = "create"
    REPLACE = "replace"
    LEAVE = "leave"
    CONFLICT = "conflict"  # a Secret of that name we do not own: never overwritten
    NEED_CREDENTIALS = "need_credentials"  # nothing to compare with: read the database with its credentials first


def secret_action(existing: dict[str, Any] | None, rendered: dict[str, Any] | None, owner_uid: str) -> SecretAction:
    """How to bring the Secret in the cluster (`existing`) to `rendered` (None: the credentials are not at hand)."""
    if existing is not None and not is_owned_by(existing, owner_uid):
        return SecretAction.CONFLICT
    existing_hash = ((existing or {}).get("metadata", {}).get("annotations") or {}).get(ANNOTATION_CONTENT_HASH)
    if rendered is None:
        # No credentials in the snapshot: the Secret we wrote stands until they change.
        return SecretAction.LEAVE if existing is not None and existing_hash else SecretAction.NEED_CREDENTIALS
    if existing is None:
        return SecretAction.CREATE
    rendered_hash = rendered["metadata"]["annotations"][ANNOTATION_CONTENT_HASH]
    if existing_hash == rendered_hash and existing.get("data") == rendered["data"]:
        return SecretAction.LEAVE
    return SecretAction.REPLACE


def keep_foreign_metadata(existing: Mapping[str, Any], rendered: dict[str, Any]) -> dict[str, Any]:
    """The rendered Secret for a replace, with the labels and annotations others put on the Secret in the cluster
    (a reloader, a backup tool, a person) kept under the rendered ones: a rewrite replaces the data, not them."""
    metadata = existing.get("metadata") or {}
    merged = dict(rendered)
    merged["metadata"] = {
        **rendered["metadata"],
        "labels": {**(metadata.get("labels") or {}), **rendered["metadata"]["labels"]},
        "annotations": {**(metadata.get("annotations") or {}), **rendered["metadata"]["annotations"]},
    }
    return merged


@dataclasses.dataclass(frozen=True)
class SecretTarget:
    """Where the connection Secret of one RedisDatabase goes, and who owns it."""

    name: str
    namespace: str
    owner_name: str
    owner_uid: str
    shape: ConnectionSecretSpec | None = None  # spec.connectionSecret: keys, labels, annotations

    def render(self, database: Database) -> dict[str, Any]:
        return render_connection_secret(
            secret_name=self.name,
            namespace=self.namespace,
            owner_name=self.owner_name,
            owner_uid=self.owner_uid,
            database=database,
            shape=self.shape,
        )


class SecretOutcome(enum.StrEnum):
    CREATED = "created"
    REPLACED = "replaced"
    UNCHANGED = "unchanged"

    def event_message(self, secret_name: str) -> str | None:
        """The SecretWritten Event's message, None when nothing was written."""
        if self is SecretOutcome.CREATED:
            return f"wrote connection Secret {secret_name}"
        if self is SecretOutcome.REPLACED:
            return f"updated connection Secret {secret_name}"
        return None


class SecretPublisher:
    """The Kubernetes calls that carry out `secret_action`."""

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube

    async def publish(
        self,
        target: SecretTarget,
        database: Database,
        *,
        likely_absent: bool,
        read_credentials: Callable[[], Awaitable[Database]],
    ) -> SecretOutcome:
        """Write the whole Secret when it is missing or its content changed.

        ``likely_absent`` (the database was just created): POST first and read only if the name is taken, saving
        a round trip on every create. ``read_credentials`` is called only when the Secret cannot be judged without.
        """
        rendered = target.render(database) if has_credentials(database) else None
        if likely_absent and rendered is not None:
            try:
                await self._kube.create(secret_path(target.namespace), rendered)
            except KubeConflict:
                pass  # someone's Secret, or ours from an earlier attempt: secret_action decides
            else:
                return SecretOutcome.CREATED
        existing = await self._kube.get(secret_path(target.namespace, target.name))
        action = secret_action(existing, rendered, target.owner_uid)
        if action is SecretAction.NEED_CREDENTIALS:
            rendered = target.render(await read_credentials())
            action = secret_action(existing, rendered, target.owner_uid)
        if action is SecretAction.CONFLICT:
            raise ConfigurationError(
                "SecretConflict",
                f"Secret {target.namespace}/{target.name} exists and is not owned by this RedisDatabase; delete it or "
                "set spec.connectionSecret.name to another name",
            )
        if action is SecretAction.LEAVE:
            return SecretOutcome.UNCHANGED
        assert rendered is not None
        if action is SecretAction.CREATE:
            try:
                await self._kube.create(secret_path(target.namespace), rendered)
            except KubeConflict:
                raise kopf.TemporaryError("the Secret appeared concurrently; retrying", delay=1) from None
            return SecretOutcome.CREATED
        assert existing is not None
        rendered = keep_foreign_metadata(existing, rendered)
        rendered["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        await self._kube.replace(secret_path(target.namespace, target.name), rendered)
        return SecretOutcome.REPLACED


LABEL_VALUE_MAX_LENGTH = 63


def label_value(name: str) -> str:
    """A RedisDatabase name as a label value: names may have 253 characters, label values 63. A longer name keeps
    its first 52 characters and gets a digest of the whole, so distinct names stay distinct."""
    if len(name) <= LABEL_VALUE_MAX_LENGTH:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[:52].rstrip('-.')}-{digest}"
