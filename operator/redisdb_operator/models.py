"""The RedisDatabase and RedisProvider resources as pydantic models: the single source of the CRD schema.

`crdgen.py` turns these models into `crds/*.yaml` (a test proves the files match), and the handlers parse
every object through them, so the schema users see, the docs `kubectl explain` prints and the fields the
operator reads cannot drift apart. CEL rules live next to the fields they guard (``x-kubernetes-validations``).
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from .providers.base import ProviderType

GROUP = "redisdb.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

ANNOTATION_ROTATE_PASSWORD = f"{GROUP}/rotate-password"
ANNOTATION_FORCE_ORPHAN = f"{GROUP}/force-orphan"
LABEL_DATABASE = f"{GROUP}/database"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER_NAME = "redisdb-operator"

NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$"
REGION_PATTERN = r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$"
PLAN_PATTERN = r"^[a-z0-9_]{1,32}$"


def _cel(rule: str, message: str, *, field_path: str | None = None, reason: str | None = None) -> JsonDict:
    validation: JsonDict = {"rule": rule, "message": message}
    if field_path:
        validation["fieldPath"] = field_path
    if reason:
        validation["reason"] = reason
    return validation


class CamelModel(BaseModel):
    """Kubernetes field names are camelCase; Python attributes stay snake_case."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ProviderReference(CamelModel):
    """Which RedisProvider (cluster-scoped) serves this database."""

    name: str = Field(
        default="default",
        min_length=1,
        max_length=253,
        description="Name of the cluster-scoped RedisProvider. Defaults to `default`. Immutable.",
    )


class ConnectionSecretSpec(CamelModel):
    """Where the connection details are written."""

    name: str | None = Field(
        default=None,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Name of the Secret (in the database's namespace) that receives REDIS_URL, REDIS_HOST, "
        "REDIS_PORT, REDIS_PASSWORD and, where the provider gives them, UPSTASH_REDIS_REST_URL and "
        "UPSTASH_REDIS_REST_TOKEN. Defaults to `<metadata.name>-redis`.",
    )


class DeletionPolicy(enum.StrEnum):
    DELETE = "Delete"
    ORPHAN = "Orphan"


class RedisDatabaseSpec(CamelModel):
    """Desired state of one Upstash Redis database, as `flyctl redis create/update` would set it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "has(self.name) == has(oldSelf.name)",
                    "spec.name cannot be added or removed after creation (the provider-side name never "
                    "changes): create a new RedisDatabase instead",
                    field_path=".name",
                ),
                _cel(
                    "has(self.providerRef) == has(oldSelf.providerRef)",
                    "spec.providerRef cannot be added or removed after creation: create a new RedisDatabase "
                    "on the other provider and migrate",
                    field_path=".providerRef",
                ),
                _cel(
                    "!has(self.readRegions) || !(self.primaryRegion in self.readRegions)",
                    "spec.readRegions must not contain spec.primaryRegion: the primary already serves reads; "
                    "remove it from readRegions",
                    field_path=".readRegions",
                ),
            ]
        }
    )

    provider_ref: ProviderReference | None = Field(
        default=None,
        description="The RedisProvider that creates this database (Fly.io organization or Upstash account). "
        "Defaults to the RedisProvider named `default`. Immutable.",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self == oldSelf",
                    "spec.providerRef is immutable: create a new RedisDatabase on the other provider and migrate",
                )
            ]
        },
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=NAME_PATTERN,
        description="Provider-side database name (letters, digits, `-` and `_`; up to 63 characters). "
        "Defaults to `<namespace>-<metadata.name>`. Immutable: the provider cannot rename it.",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self == oldSelf",
                    "spec.name is immutable (the provider-side name never changes): create a new RedisDatabase "
                    "with the new name and migrate",
                )
            ]
        },
    )
    primary_region: str = Field(
        min_length=3,
        max_length=32,
        pattern=REGION_PATTERN,
        description="Region of the primary, e.g. `mad` or `ams` for Fly.io, `us-east-1` or `eu-west-1` for "
        "Upstash. Required. Immutable: it can't be changed later (as `flyctl redis create` warns).",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self == oldSelf",
                    "spec.primaryRegion is immutable: create a new RedisDatabase in the new region and migrate",
                )
            ]
        },
    )
    read_regions: list[str] | None = Field(
        default=None,
        max_length=32,
        description="Regions that hold a read replica (a set, without the primary). Can be changed at any "
        "time without downtime; reads are served by the nearest replica, writes go to the primary.",
        json_schema_extra={"x-kubernetes-list-type": "set", "items": {"pattern": REGION_PATTERN, "maxLength": 32}},
    )
    plan: str | None = Field(
        default=None,
        pattern=PLAN_PATTERN,
        description="Pricing plan: `payg` (default), `free`, or a fixed plan such as `fixed_250mb`, `fixed_1gb`, "
        "`fixed_5gb`, `fixed_10gb`, `fixed_50gb` (Upstash also `fixed_100gb`, `fixed_500gb`). Changeable.",
    )
    eviction: bool | None = Field(
        default=None,
        description="Evict keys when the plan's data size is reached (keys with a TTL first, then any key). "
        "When false (default) writes are refused once the limit is reached. Changeable.",
    )
    tls: bool | None = Field(
        default=None,
        description="Require TLS (rediss://). Unset means the provider's default. Set at creation only.",
    )
    connection_secret: ConnectionSecretSpec | None = Field(
        default=None, description="The Secret that receives the connection details."
    )
    deletion_policy: DeletionPolicy | None = Field(
        default=None,
        description="`Delete` (default) destroys the provider database when this resource is deleted; "
        "`Orphan` keeps it.",
    )

    def effective_provider_name(self) -> str:
        return self.provider_ref.name if self.provider_ref else "default"

    def effective_name(self, namespace: str, metadata_name: str) -> str:
        return self.name or f"{namespace}-{metadata_name}"

    def effective_secret_name(self, metadata_name: str) -> str:
        if self.connection_secret and self.connection_secret.name:
            return self.connection_secret.name
        return f"{metadata_name}-redis"

    def effective_deletion_policy(self) -> DeletionPolicy:
        return self.deletion_policy or DeletionPolicy.DELETE


ConditionType = Literal["Ready", "Synced"]


class Condition(CamelModel):
    type: str = Field(description="`Ready` (the database is usable) or `Synced` (the last reconcile succeeded).")
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    observed_generation: int | None = None
    last_transition_time: str | None = None


class RedisDatabaseStatus(CamelModel):
    """Observed state, written only by the operator."""

    database_id: str | None = Field(default=None, description="Provider-side database id.")
    provider_name: str | None = Field(default=None, description="Provider-side database name.")
    endpoint: str | None = Field(default=None, description="Host name clients connect to.")
    port: int | None = None
    primary_region: str | None = None
    read_regions: list[str] | None = None
    plan: str | None = None
    eviction: bool | None = None
    tls: bool | None = None
    state: str | None = Field(default=None, description="Provider-reported state, e.g. `active`.")
    secret_name: str | None = None
    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    last_sync_time: str | None = None
    password_rotated_at: str | None = None
    last_handled_rotation: str | None = Field(
        default=None, description=f"The last `{ANNOTATION_ROTATE_PASSWORD}` annotation value acted on."
    )


class RedisDatabase(CamelModel):
    """A managed Upstash Redis database."""

    spec: RedisDatabaseSpec
    status: RedisDatabaseStatus | None = None


class CredentialsSecretReference(CamelModel):
    """The Secret holding the provider credentials."""

    namespace: str = Field(min_length=1, max_length=63, description="Namespace of the Secret.")
    name: str = Field(min_length=1, max_length=253, description="Name of the Secret.")
    token_key: str | None = Field(default=None, description="Key of the Fly.io API token (type fly). Default `token`.")
    email_key: str | None = Field(
        default=None, description="Key of the Upstash account email (type upstash). Default `email`."
    )
    api_key_key: str | None = Field(
        default=None, description="Key of the Upstash Developer API key (type upstash). Default `apiKey`."
    )


class RedisProviderSpec(CamelModel):
    """One provider account: a Fly.io organization or a native Upstash account."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.type != 'fly' || has(self.organization)",
                    "spec.organization (the Fly.io organization slug, as in `flyctl redis create --org`) is "
                    "required when spec.type is fly",
                    field_path=".organization",
                ),
            ]
        }
    )

    type: ProviderType = Field(description="Wire API: `fly` (Fly.io GraphQL API) or `upstash` (Developer API v2).")
    url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="API base URL. Defaults to https://api.fly.io (fly) or https://api.upstash.com/v2 (upstash). "
        "Point it at the local provider to run without a cloud account.",
    )
    organization: str | None = Field(
        default=None, max_length=63, description="Fly.io organization slug (type fly only)."
    )
    credentials_secret_ref: CredentialsSecretReference = Field(description="Where the credentials are.")


class RedisProvider(CamelModel):
    spec: RedisProviderSpec
    status: dict[str, Any] | None = None
