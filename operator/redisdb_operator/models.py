"""The RedisDatabase and RedisProvider resources as pydantic models: the single source of the CRD schema.

`crdgen.py` turns these models into `crds/*.yaml` (a test proves the files match), and the handlers parse
every object through them, so the schema users see, the docs `kubectl explain` prints and the fields the
operator reads cannot drift apart. CEL rules live next to the fields they guard (``x-kubernetes-validations``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from .providers import catalog
from .providers.base import ProviderType
from .providers.kinds import KINDS

GROUP = "redisdb.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

ANNOTATION_ROTATE_PASSWORD = f"{GROUP}/rotate-password"
ANNOTATION_FORCE_ORPHAN = f"{GROUP}/force-orphan"
ANNOTATION_ADOPT = f"{GROUP}/adopt"
ANNOTATION_PAUSED = f"{GROUP}/paused"
LABEL_DATABASE = f"{GROUP}/database"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER_NAME = "redisdb-operator"

# Formats. Lengths are separate (maxLength) so a too-long value gets the apiserver's own "Too long" answer and
# the CEL cost estimate stays small; the patterns say only which characters go where. All are RE2-compatible.
NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?$"
NAME_MAX_LENGTH = 63
REGION_PATTERN = r"^[a-z][a-z0-9-]*[a-z0-9]$"
REGION_MAX_LENGTH = 32
PLAN_PATTERN = r"^[a-z0-9_]+$"
PLAN_MAX_LENGTH = 32
KNOWN_PLANS = ", ".join(
    dict.fromkeys(name for plans in catalog.PLANS.values() for name, plan in plans.items() if not plan.legacy)
)

# `reason` turns the apiserver's "Invalid value: \"string\"" prefix into "Forbidden" for transition rules.
FORBIDDEN = "FieldValueForbidden"


def _cel(
    rule: str,
    message: str,
    *,
    message_expression: str | None = None,
    field_path: str | None = None,
    reason: str | None = None,
) -> JsonDict:
    """One x-kubernetes-validations entry; `message` is the fallback when `message_expression` cannot run."""
    validation: JsonDict = {"rule": rule, "message": message}
    if message_expression:
        validation["messageExpression"] = message_expression
    if field_path:
        validation["fieldPath"] = field_path
    if reason:
        validation["reason"] = reason
    return validation


def _cel_string(text: str) -> str:
    """A CEL single-quoted string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _format_rule(pattern: str, field: str, what: str) -> JsonDict:
    """A CEL `matches` rule whose message shows the bad value, what it should be and an example."""
    return _cel(
        f"self.matches({_cel_string(pattern)})",
        f"{field} must be {what}",
        message_expression=f"{_cel_string(field + ' ')} + self + {_cel_string(' is not ' + what)}",
    )


def _matching(pattern: str, field: str, what: str) -> Callable[[str], str]:
    """The same format check for pydantic, so parsing in the operator agrees with the CRD."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{field} {value} is not {what}")
        return value

    return check


NAME_FORMAT = (
    "a valid provider-side name: use letters, digits, - and _, starting and ending with a letter or digit, "
    "e.g. shop-cache"
)
REGION_FORMAT = "a region code: use a lower-case code such as ams, cdg, us-east-1 or eu-west-1"
PLAN_FORMAT = f"a plan name: use one of {KNOWN_PLANS}"

ProviderSideName = Annotated[str, AfterValidator(_matching(NAME_PATTERN, "spec.name", NAME_FORMAT))]
PrimaryRegionCode = Annotated[str, AfterValidator(_matching(REGION_PATTERN, "spec.primaryRegion", REGION_FORMAT))]
ReadRegionCode = Annotated[
    str,
    Field(max_length=REGION_MAX_LENGTH),
    AfterValidator(_matching(REGION_PATTERN, "spec.readRegions", REGION_FORMAT)),
]
PlanName = Annotated[str, AfterValidator(_matching(PLAN_PATTERN, "spec.plan", PLAN_FORMAT))]


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


# The connection fields a Secret key's template may name, as {field}; {{ and }} are literal braces.
SECRET_TEMPLATE_FIELDS = ("url", "host", "port", "password", "restUrl", "restToken", "readOnlyRestToken")
SECRET_TEMPLATE_PATTERN = r"^([^{}]|\{\{|\}\}|\{(" + "|".join(SECRET_TEMPLATE_FIELDS) + r")\})*$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
SECRET_KEY_MAX_LENGTH = 253
SECRET_TEMPLATE_MAX_LENGTH = 1024
SECRET_TEMPLATE_HELP = (
    "a template of literal text and the fields "
    + ", ".join("{" + f + "}" for f in SECRET_TEMPLATE_FIELDS)
    + " (write {{ and }} for literal braces), e.g. redis://{host}:{port}"
)
SECRET_KEY_HELP = "a Secret key: letters, digits, -, _ and ., e.g. SPRING_DATA_REDIS_URL"


def secret_template_problem(key: str, template: str) -> str | None:
    """Why one spec.connectionSecret.keys entry is refused (None: fine); the CRD's CEL rule says the same."""
    field = f"spec.connectionSecret.keys.{key}"
    if not re.fullmatch(SECRET_KEY_PATTERN, key) or len(key) > SECRET_KEY_MAX_LENGTH:
        return f"{field}: {key!r} is not {SECRET_KEY_HELP}; rename the key"
    if not re.fullmatch(SECRET_TEMPLATE_PATTERN, template):
        return f"{field}: {template!r} is not {SECRET_TEMPLATE_HELP}; fix the template"
    return None


def _valid_secret_keys(keys: dict[str, str] | None) -> dict[str, str] | None:
    for key, template in (keys or {}).items():
        problem = secret_template_problem(key, template)
        if problem:
            raise ValueError(problem)
    return keys


_KEY_OK = f"k.size() <= {SECRET_KEY_MAX_LENGTH} && k.matches({_cel_string(SECRET_KEY_PATTERN)})"
_TEMPLATE_OK = f"self[k].matches({_cel_string(SECRET_TEMPLATE_PATTERN)})"


class ConnectionSecretSpec(CamelModel):
    """Where the connection details are written, under which keys, with which labels and annotations."""

    name: str | None = Field(
        default=None,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Name of the Secret (in the database's namespace) that receives REDIS_URL, REDIS_HOST, "
        "REDIS_PORT, REDIS_PASSWORD and, where the provider gives them, UPSTASH_REDIS_REST_URL and "
        "UPSTASH_REDIS_REST_TOKEN (plus any `keys`). Defaults to `<metadata.name>-redis`.",
    )
    labels: dict[str, str] | None = Field(
        default=None,
        max_length=64,
        description="Labels put on the Secret, on top of the operator's own (app.kubernetes.io/managed-by, "
        "redisdb.dev/database, which win). Labels others add to the Secret are kept when it is rewritten.",
    )
    annotations: dict[str, str] | None = Field(
        default=None,
        max_length=64,
        description="Annotations put on the Secret (e.g. for a reloader), on top of the operator's own "
        "(redisdb.dev/content-hash). Annotations others add to the Secret are kept when it is rewritten.",
    )
    keys: Annotated[dict[str, str] | None, AfterValidator(_valid_secret_keys)] = Field(
        default=None,
        max_length=64,
        description="Extra Secret keys, each a template of literal text and the connection fields {url}, {host}, "
        "{port}, {password}, {restUrl}, {restToken}, {readOnlyRestToken} (`{{` and `}}` are literal braces), e.g. "
        '`SPRING_DATA_REDIS_URL: "{url}"` or `CELERY_BROKER_URL: "rediss://:{password}@{host}:{port}/0"`. A key '
        "naming a REST field the provider does not give is left out. With defaultKeys: false these are the only "
        "keys (to rename the defaults).",
        json_schema_extra={
            "additionalProperties": {"type": "string", "maxLength": SECRET_TEMPLATE_MAX_LENGTH},
            "x-kubernetes-validations": [
                _cel(
                    f"self.all(k, {_KEY_OK} && {_TEMPLATE_OK})",
                    f"spec.connectionSecret.keys: every key must be {SECRET_KEY_HELP}, and every value "
                    f"{SECRET_TEMPLATE_HELP}",
                    message_expression=(
                        f"self.exists(k, !({_KEY_OK})) ? 'spec.connectionSecret.keys.' + "
                        f"self.filter(k, !({_KEY_OK}))[0] + "
                        f"{_cel_string(' is not ' + SECRET_KEY_HELP + '; rename the key')}"
                        f" : 'spec.connectionSecret.keys.' + self.filter(k, !({_TEMPLATE_OK}))[0] + ': ' + "
                        f"self[self.filter(k, !({_TEMPLATE_OK}))[0]] + "
                        f"{_cel_string(' is not ' + SECRET_TEMPLATE_HELP + '; fix the template')}"
                    ),
                )
            ],
        },
    )
    default_keys: bool | None = Field(
        default=None,
        description="Write the default keys (REDIS_URL, REDIS_HOST, ...). Default true; false writes only `keys`, "
        "which is how a default key is renamed.",
    )


class ManagementPolicy(enum.StrEnum):
    MANAGE = "Manage"
    OBSERVE = "Observe"


class DeletionPolicy(enum.StrEnum):
    DELETE = "Delete"
    ORPHAN = "Orphan"


class RedisDatabaseSpec(CamelModel):
    """Desired state of one Upstash Redis database, as `flyctl redis create/update` would set it."""

    # The CEL rules here and on the fields are the admission layer that is always on (no webhook needed): formats,
    # the read-region set, and the transition rules that keep primaryRegion, name, providerRef and tls as created.
    # What needs the RedisProvider or the other RedisDatabases is checked by the webhook (admission.py).
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "has(self.name) == has(oldSelf.name)",
                    "spec.name is immutable: it cannot be added or removed after creation (the provider-side name "
                    "never changes); create a new RedisDatabase with the new name and migrate",
                    message_expression=(
                        "has(self.name) ? 'spec.name is immutable (unset, i.e. <namespace>-<metadata.name> -> ' + "
                        "self.name + '): the provider cannot rename a database; remove spec.name, or create a new "
                        "RedisDatabase named ' + self.name + ' and migrate' : 'spec.name is immutable (' + "
                        "oldSelf.name + ' -> unset): the provider cannot rename a database; keep spec.name: ' + "
                        "oldSelf.name"
                    ),
                    field_path=".name",
                    reason=FORBIDDEN,
                ),
                _cel(
                    "has(self.providerRef) == has(oldSelf.providerRef)",
                    "spec.providerRef is immutable: it cannot be added or removed after creation; create a new "
                    "RedisDatabase on the other provider and migrate",
                    message_expression=(
                        "has(self.providerRef) ? 'spec.providerRef is immutable (unset, i.e. default -> ' + "
                        "(has(self.providerRef.name) ? self.providerRef.name : 'default') + '): remove "
                        "spec.providerRef, or create a new RedisDatabase on ' + "
                        "(has(self.providerRef.name) ? self.providerRef.name : 'default') + ' and migrate' : "
                        "'spec.providerRef is immutable (' + "
                        "(has(oldSelf.providerRef.name) ? oldSelf.providerRef.name : 'default') + ' -> unset): "
                        "keep spec.providerRef.name: ' + "
                        "(has(oldSelf.providerRef.name) ? oldSelf.providerRef.name : 'default')"
                    ),
                    field_path=".providerRef",
                    reason=FORBIDDEN,
                ),
                _cel(
                    "!has(self.readRegions) || !(self.primaryRegion in self.readRegions)",
                    "spec.readRegions must not contain spec.primaryRegion: the primary already serves reads; "
                    "remove it from readRegions",
                    message_expression=(
                        "'spec.readRegions must not contain the primary region ' + self.primaryRegion + "
                        "': the primary already serves reads; remove ' + self.primaryRegion + ' from readRegions'"
                    ),
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
                    message_expression=(
                        "'spec.providerRef.name is immutable (' + (has(oldSelf.name) ? oldSelf.name : 'default') + "
                        "' -> ' + (has(self.name) ? self.name : 'default') + '): create a new RedisDatabase on ' + "
                        "(has(self.name) ? self.name : 'default') + ' and migrate'"
                    ),
                    reason=FORBIDDEN,
                )
            ]
        },
    )
    name: ProviderSideName | None = Field(
        default=None,
        min_length=1,
        max_length=NAME_MAX_LENGTH,
        description="Provider-side database name (letters, digits, `-` and `_`; up to 63 characters). "
        "Defaults to `<namespace>-<metadata.name>`. Immutable: the provider cannot rename it.",
        json_schema_extra={
            "x-kubernetes-validations": [
                _format_rule(NAME_PATTERN, "spec.name", NAME_FORMAT),
                _cel(
                    "self == oldSelf",
                    "spec.name is immutable (the provider-side name never changes): create a new RedisDatabase "
                    "with the new name and migrate",
                    message_expression=(
                        "'spec.name is immutable (' + oldSelf + ' -> ' + self + '): the provider cannot rename a "
                        "database; create a new RedisDatabase named ' + self + ' and migrate'"
                    ),
                    reason=FORBIDDEN,
                ),
            ]
        },
    )
    primary_region: PrimaryRegionCode = Field(
        min_length=3,
        max_length=REGION_MAX_LENGTH,
        description="Region of the primary, e.g. `cdg` or `ams` for Fly.io, `us-east-1` or `eu-west-1` for "
        "Upstash. Required. Immutable: it can't be changed later (as `flyctl redis create` warns).",
        json_schema_extra={
            "x-kubernetes-validations": [
                _format_rule(REGION_PATTERN, "spec.primaryRegion", REGION_FORMAT),
                _cel(
                    "self == oldSelf",
                    "spec.primaryRegion is immutable: create a new RedisDatabase in the new region and migrate",
                    message_expression=(
                        "'spec.primaryRegion is immutable (' + oldSelf + ' -> ' + self + '): create a new "
                        "RedisDatabase in ' + self + ' and migrate'"
                    ),
                    reason=FORBIDDEN,
                ),
            ]
        },
    )
    read_regions: list[ReadRegionCode] | None = Field(
        default=None,
        max_length=32,
        description="Regions that hold a read replica (a set, without the primary). Can be changed at any "
        "time without downtime; reads are served by the nearest replica, writes go to the primary.",
        json_schema_extra={
            "x-kubernetes-list-type": "set",
            "items": {
                "maxLength": REGION_MAX_LENGTH,
                "x-kubernetes-validations": [_format_rule(REGION_PATTERN, "spec.readRegions", REGION_FORMAT)],
            },
        },
    )
    plan: PlanName | None = Field(
        default=None,
        max_length=PLAN_MAX_LENGTH,
        description="Pricing plan: `payg` (default), `free`, or a fixed plan such as `fixed_250mb`, `fixed_1gb`, "
        "`fixed_5gb`, `fixed_10gb`, `fixed_50gb` (Upstash also `fixed_100gb`, `fixed_500gb`). Changeable.",
        json_schema_extra={"x-kubernetes-validations": [_format_rule(PLAN_PATTERN, "spec.plan", PLAN_FORMAT)]},
    )
    eviction: bool | None = Field(
        default=None,
        description="Evict keys when the plan's data size is reached (keys with a TTL first, then any key). "
        "When false (default) writes are refused once the limit is reached. Changeable.",
    )
    tls: bool | None = Field(
        default=None,
        description="Require TLS (rediss://). Unset means the provider's default. Set at creation only.",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self == oldSelf",
                    "spec.tls is set at creation only: create a new RedisDatabase with the new setting and migrate",
                    message_expression=(
                        "'spec.tls is set at creation only (' + (oldSelf ? 'true' : 'false') + ' -> ' + "
                        "(self ? 'true' : 'false') + '): keep tls: ' + (oldSelf ? 'true' : 'false') + ', or create a "
                        "new RedisDatabase with tls: ' + (self ? 'true' : 'false') + ' and migrate'"
                    ),
                    reason=FORBIDDEN,
                )
            ]
        },
    )
    connection_secret: ConnectionSecretSpec | None = Field(
        default=None, description="The Secret that receives the connection details."
    )
    deletion_policy: DeletionPolicy | None = Field(
        default=None,
        description="`Delete` destroys the provider database when this resource is deleted; `Orphan` keeps it. "
        "Unset: the operator's default (`redisdb-operator run --default-deletion-policy`, chart value "
        "`operator.defaultDeletionPolicy`; `Delete` unless set).",
    )
    management_policy: ManagementPolicy | None = Field(
        default=None,
        description="`Manage` (default): create, repair and (by deletionPolicy) delete the provider database. "
        "`Observe`: adopt the existing database of this name read-only: publish its Secret and status, never "
        "create, change, rotate or delete it (even one that predates this resource).",
    )
    deletion_protection: bool | None = Field(
        default=None,
        description="When true, deleting this resource is refused (by the webhook) and, should a delete get "
        "through (webhook down, namespace deletion), the finalizer holds it and the provider database is "
        "untouched until this is set to false.",
    )

    def effective_provider_name(self) -> str:
        return self.provider_ref.name if self.provider_ref else "default"

    def effective_name(self, namespace: str, metadata_name: str) -> str:
        return self.name or f"{namespace}-{metadata_name}"

    def effective_secret_name(self, metadata_name: str) -> str:
        if self.connection_secret and self.connection_secret.name:
            return self.connection_secret.name
        return f"{metadata_name}-redis"

    def effective_deletion_policy(self, default: DeletionPolicy = DeletionPolicy.DELETE) -> DeletionPolicy:
        return self.deletion_policy or default

    @property
    def observe_only(self) -> bool:
        return self.management_policy is ManagementPolicy.OBSERVE


ConditionType = Literal["Ready", "Synced"]

_CONDITION_STATUS = "`True`, `False` or `Unknown`."
_CONDITION_OBSERVED = (
    "The metadata.generation this condition was computed for; older than metadata.generation means the latest "
    "spec is not reconciled yet."
)
_CONDITION_TRANSITION = "When status last changed (RFC 3339, UTC); rewrites with the same status keep it."


class Condition(CamelModel):
    """One condition of a RedisDatabase, in the Kubernetes convention (type, status, reason, message)."""

    type: str = Field(description="`Ready` (the database is usable) or `Synced` (the last reconcile succeeded).")
    status: Literal["True", "False", "Unknown"] = Field(description=_CONDITION_STATUS)
    reason: str = Field(
        default="",
        description="Why, in one CamelCase word: e.g. `Available`, `NotActive` (Ready); `ReconcileSuccess`, "
        "`Unauthorized`, `CredentialsNotFound`, `ProviderUnavailable`, `RateLimited`, `InvalidSpec`, `NameTaken` "
        "(Synced).",
    )
    message: str = Field(default="", description="What happened and, for a failure, what to change to fix it.")
    observed_generation: int | None = Field(default=None, description=_CONDITION_OBSERVED)
    last_transition_time: str | None = Field(default=None, description=_CONDITION_TRANSITION)


class PlanLimits(CamelModel):
    """The plan's limits, only those a source gives (the provider's plan list or the catalog)."""

    max_data_size_bytes: int | None = Field(default=None, description="Most data the plan holds, in bytes.")
    max_daily_commands: int | None = Field(default=None, description="Most commands a day the plan allows.")
    max_request_size_bytes: int | None = Field(default=None, description="Largest single request, in bytes.")


class Cost(CamelModel):
    """An amount of money and where it comes from."""

    amount: float = Field(description="The amount, in `currency`.")
    currency: Literal["USD"] = Field(default="USD", description="Always `USD`: every source prices in dollars.")
    basis: str = Field(description="How the amount was reached and from which source, e.g. the plan's price.")


class DatabaseUsage(CamelModel):
    """What the provider reports the database used this month so far (its own counters, refreshed hourly)."""

    requests: int | None = Field(default=None, description="Commands served this month so far.")
    data_size_bytes: int | None = Field(default=None, description="Data stored now, in bytes.")
    bandwidth_bytes: int | None = Field(default=None, description="Network bytes this month so far.")
    cost: Cost | None = Field(default=None, description="The provider's own bill this month so far, where it says.")
    observed_at: str | None = Field(default=None, description="When the provider was asked (RFC 3339).")


class KopfRecord(CamelModel):
    """The operator framework's bookkeeping (kopf), kept in the status so that it is written with the status."""

    last_handled_configuration: str | None = Field(
        default=None,
        description="The spec, labels and annotations the operator last handled (JSON): what a change is compared "
        "with. Written in the same status write as the outcome, not as an annotation of its own (a second write "
        "per change).",
    )


class RedisDatabaseStatus(CamelModel):
    """Observed state, written only by the operator."""

    database_id: str | None = Field(default=None, description="Provider-side database id.")
    provider: str | None = Field(default=None, description="The RedisProvider serving this database.")
    provider_name: str | None = Field(default=None, description="Provider-side database name.")
    endpoint: str | None = Field(default=None, description="Host name clients connect to.")
    port: int | None = Field(default=None, description="Port clients connect to (the Redis protocol).")
    primary_region: str | None = Field(default=None, description="Region of the primary, as the provider reports it.")
    read_regions: list[str] | None = Field(
        default=None, description="Regions holding a read replica, as the provider reports them (sorted)."
    )
    plan: str | None = Field(
        default=None, description="Plan the provider reports; differs from spec.plan while a change is refused."
    )
    eviction: bool | None = Field(default=None, description="Whether the provider evicts keys at the size limit.")
    tls: bool | None = Field(default=None, description="Whether the provider requires TLS (rediss://).")
    state: str | None = Field(default=None, description="Provider-reported state, e.g. `active`.")
    secret_name: str | None = Field(
        default=None, description="The Secret (in this namespace) holding the connection details."
    )
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation the operator last reconciled."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="`Ready`: the database is usable and its Secret written. `Synced`: the last reconcile "
        "succeeded; False with the reason and the fix when it did not (READY can stay True meanwhile).",
    )
    last_sync_time: str | None = Field(
        default=None, description="When the operator last compared this database with the provider (RFC 3339)."
    )
    password_rotated_at: str | None = Field(
        default=None, description="When the provider last issued a new password (RFC 3339)."
    )
    last_handled_rotation: str | None = Field(
        default=None, description=f"The last `{ANNOTATION_ROTATE_PASSWORD}` annotation value acted on."
    )
    create_uncertain_since: str | None = Field(
        default=None,
        description="When a create whose outcome is unknown (a timeout) was sent. Until it has had time to land, "
        "the name is looked up instead of created again, and deletion waits for it.",
    )
    dashboard_url: str | None = Field(
        default=None,
        alias="dashboardURL",
        description="The provider's web console page of this database (Upstash). Never a sign-on link: Fly's "
        "`ssoLink` is a credential, so Fly databases have none.",
    )
    plan_limits: PlanLimits | None = Field(default=None, description="Limits of the plan in status.plan.")
    estimated_monthly_cost: Cost | None = Field(
        default=None,
        description="This month's cost, only from prices a source gives: a fixed plan's monthly price (and its "
        "read regions'), or pay-as-you-go's $0.20 per 100k requests times the requests counted so far. Unset "
        "where no source prices the plan.",
    )
    usage: DatabaseUsage | None = Field(
        default=None,
        description="Usage the provider reports, refreshed on the operator's usage interval (default hourly). "
        "Unset where the provider has no stats call.",
    )
    kopf: KopfRecord | None = Field(default=None, description="Operator bookkeeping; not for users.")


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


class LabelSelectorRequirement(CamelModel):
    """One requirement of a label selector, as in a Deployment's selector."""

    key: str = Field(min_length=1, max_length=317, description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="`In`, `NotIn` (with values), `Exists` or `DoesNotExist` (without)."
    )
    values: list[str] | None = Field(default=None, max_length=64, description="Values for In and NotIn.")


class LabelSelector(CamelModel):
    """A Kubernetes label selector: every matchLabels pair and every matchExpressions requirement must hold."""

    match_labels: dict[str, str] | None = Field(default=None, max_length=64, description="Labels that must be equal.")
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, max_length=32, description="Requirements that must all hold."
    )


class RedisProviderSpec(CamelModel):
    """One provider account: a Fly.io organization or a native Upstash account."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    f"self.type != {_cel_string(kind.type.value)} || has(self.organization)",
                    f"spec.organization (the {kind.display_name} organization slug, as in `flyctl redis create "
                    f"--org`) is required when spec.type is {kind.type.value}",
                    field_path=".organization",
                )
                for kind in KINDS.values()
                if kind.requires_organization
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
    allowed_namespaces: LabelSelector | None = Field(
        default=None,
        description="Namespaces whose RedisDatabases may use this provider (and its account and bill), as a "
        "label selector on the Namespace, e.g. `matchLabels: {team: shop}`. Unset: every namespace. Enforced by "
        "the webhook and at every reconcile (Synced=False NamespaceNotAllowed).",
    )


class ProviderCondition(CamelModel):
    """The one condition of a RedisProvider: can the operator use this account?"""

    type: str = Field(description="`Ready`: the provider API answered and accepted the credentials.")
    status: Literal["True", "False", "Unknown"] = Field(description=_CONDITION_STATUS)
    reason: str = Field(
        default="",
        description="`CredentialsAccepted` when Ready; else why not: `CredentialsNotFound` (no such Secret), "
        "`CredentialsInvalid` (a key is missing), `Unauthorized` (the provider refused them), "
        "`ProviderUnavailable` or `RateLimited` (retried).",
    )
    message: str = Field(default="", description="What the check found and, for a failure, what to fix.")
    observed_generation: int | None = Field(default=None, description="The metadata.generation (spec) this check used.")
    last_transition_time: str | None = Field(default=None, description=_CONDITION_TRANSITION)


class CatalogRegion(CamelModel):
    """A region of the provider's catalog."""

    code: str = Field(description="The region code spec.primaryRegion and spec.readRegions take.")
    name: str = Field(description="Where it is, e.g. `Paris, France`.")
    deprecated: bool = Field(description="Retired: no new databases; existing ones keep running.")
    excluded: bool = Field(description="Not offered for this provider's databases (Fly addOnProvider.excludedRegions).")
    read_region_allowed: bool = Field(description="May hold a read replica (some regions are primary-only).")


class CatalogPlan(CamelModel):
    """A plan of the provider's catalog; ``name`` is what spec.plan takes."""

    name: str = Field(description="What spec.plan takes, e.g. `payg` or `fixed_1gb`.")
    display_name: str = Field(description="The provider's own name for it, e.g. `Pay as You Go`.")
    # Absent means null (unknown / unlimited): a merge patch cannot carry a null, so unknown values are left out.
    price_per_month: float | None = Field(default=None, description="US dollars per month; absent when unknown.")
    max_data_size_bytes: int | None = Field(default=None, description="Absent when unknown.")
    max_read_regions: int | None = Field(default=None, description="Absent: unlimited or unknown; 0: single region.")
    legacy: bool = Field(description="No longer offered for new databases; existing ones stay on it.")


class ProviderCatalog(CamelModel):
    """Regions and plans: read from the provider at each check (Fly), else the operator's static catalog."""

    source: Literal["live", "static"] = Field(
        description="`live`: read from the provider's API at the last check; `static`: the operator's own catalog "
        "(the provider offers no such call, or the call failed)."
    )
    observed_at: str = Field(description="When it was read (RFC 3339, UTC).")
    regions: list[CatalogRegion] = Field(description="Regions, with retired and excluded ones marked.")
    plans: list[CatalogPlan] = Field(description="Plans, with legacy ones marked; prices in US dollars.")


class RedisProviderStatus(CamelModel):
    """What the operator last learned about the account, written only by the operator."""

    conditions: list[ProviderCondition] | None = Field(
        default=None, description="`Ready`: the API answered and accepted the credentials."
    )
    observed_generation: int | None = Field(
        default=None, description="The metadata.generation (spec) the last check used."
    )
    databases: int | None = Field(
        default=None,
        description="Databases the account holds at the provider (all of them, not only those made from "
        "this cluster), from the list call the resync already makes.",
    )
    last_check_time: str | None = Field(default=None, description="When the account was last checked (RFC 3339).")
    catalog: ProviderCatalog | None = Field(
        default=None, description="The regions and plans this account offers (kubectl plugin and clients read it)."
    )
    used_by: list[str] | None = Field(
        default=None,
        description="The RedisDatabases (`namespace/name`) still using this provider, written while a deletion of "
        "the RedisProvider waits for them to go.",
    )
    # kopf keeps one diff base storage for every resource it handles (runner.build_settings): without the field a
    # structural schema prunes it, and kopf would take every RedisProvider event for a creation.
    kopf: KopfRecord | None = Field(default=None, description="Operator bookkeeping; not for users.")


class RedisProvider(CamelModel):
    spec: RedisProviderSpec
    status: RedisProviderStatus | None = None
