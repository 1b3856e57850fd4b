"""Admission checks that CEL cannot do: they need the referenced RedisProvider and the other RedisDatabases.

The checks are pure functions over kopf in-memory indexes (no API call, no provider call), so the webhook
answers in microseconds and honours dryRun trivially: it has no side effects. Immutability is checked here too,
with messages that show old and new values, but the CRD's CEL rules hold that line even when the webhook is
down — which is why the webhook can use `failurePolicy: Ignore` without risking a region change.

Every message names the field, the bad value (or old -> new), the allowed values and what to do instead.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import ValidationError

from .desired import DesiredDatabase, catalog_problems
from .models import NAME_FORMAT, NAME_MAX_LENGTH, NAME_PATTERN, RedisDatabaseSpec, RedisProviderSpec
from .providers import catalog
from .providers.base import ProviderType
from .tenancy import namespace_problem

_NAME = re.compile(NAME_PATTERN)


def _pydantic_message(error: ValidationError) -> str:
    """One line per problem: our own value errors already name the field; pydantic's get the field and value."""
    problems = []
    for item in error.errors():
        if item["type"] == "value_error":
            problems.append(str(item.get("ctx", {}).get("error", item["msg"])))
            continue
        location = ".".join(str(part) for part in item["loc"])
        field = f"spec.{location}" if location else "spec"
        if item["type"] == "missing":
            problems.append(f"{field} is required: set it (e.g. primaryRegion: ams)")
        else:
            problems.append(f"{field}: {item['msg']} (got {item.get('input')!r}); fix the value")
    return "; ".join(problems)


def provider_key(provider_name: str, provider_side_name: str) -> str:
    """The claim a RedisDatabase makes: one provider-side name per provider."""
    return f"{provider_name}/{provider_side_name}"


def claim_of(spec: Mapping[str, Any], namespace: str, name: str) -> str | None:
    """The provider/name claim of a RedisDatabase body, for the duplicate-name index (None if unparsable)."""
    try:
        parsed = RedisDatabaseSpec.model_validate(dict(spec))
    except ValidationError:
        return None
    return provider_key(parsed.effective_provider_name(), parsed.effective_name(namespace, name))


def validate_redisdatabase(
    *,
    operation: str,
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    old_spec: Mapping[str, Any] | None,
    providers: Mapping[str, Mapping[str, Any]],
    claims: Mapping[str, Collection[str]],
    namespace_labels: Mapping[str, str] | None = None,
) -> str | None:
    """Return why the object must be refused, or None to admit it.

    `providers` maps RedisProvider names to their spec; `claims` maps provider/name claims to the
    `namespace/name` of the RedisDatabases holding them; `namespace_labels` are the labels of the object's
    namespace (None: not in the index yet; the reconcile checks allowedNamespaces again). For a DELETE, `spec` is
    the object being deleted.
    """
    if operation == "DELETE":
        return deletion_problem(spec, namespace, name)
    if operation == "UPDATE" and old_spec is not None:
        return update_problem(
            namespace=namespace,
            name=name,
            spec=spec,
            old_spec=old_spec,
            providers=providers,
            claims=claims,
            namespace_labels=namespace_labels,
        )
    problems = content_problems(
        operation=operation,
        namespace=namespace,
        name=name,
        spec=spec,
        providers=providers,
        claims=claims,
        namespace_labels=namespace_labels,
    )
    return problems[0] if problems else None


def update_problem(
    *,
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    old_spec: Mapping[str, Any],
    providers: Mapping[str, Mapping[str, Any]],
    claims: Mapping[str, Collection[str]],
    namespace_labels: Mapping[str, str] | None = None,
) -> str | None:
    """An UPDATE ratchets, as Kubernetes' own CRD validation does: the immutability rules always hold, but the
    object is refused only for a problem its change brings, never for one it already had.

    So the operator's own metadata writes (finalizer, bookkeeping) on an object that slipped past admission while
    the webhook was down are never refused, and the reconcile reports the problem as Synced=False at once.
    """
    try:
        parsed = RedisDatabaseSpec.model_validate(dict(spec))
    except ValidationError:
        parsed = None
    if parsed is not None:
        problem = immutability_problem(parsed, old_spec, namespace, name)
        if problem:
            return problem
    if dict(spec) == dict(old_spec):
        return None  # metadata, finalizers, annotations, status: the spec is as it was

    def problems_of(candidate: Mapping[str, Any]) -> list[str]:
        return content_problems(
            operation="UPDATE",
            namespace=namespace,
            name=name,
            spec=candidate,
            providers=providers,
            claims=claims,
            namespace_labels=namespace_labels,
        )

    already = set(problems_of(old_spec))  # the object had these before the change: the reconcile reports them
    return next((problem for problem in problems_of(spec) if problem not in already), None)


def content_problems(
    *,
    operation: str,
    namespace: str,
    name: str,
    spec: Mapping[str, Any],
    providers: Mapping[str, Mapping[str, Any]],
    claims: Mapping[str, Collection[str]],
    namespace_labels: Mapping[str, str] | None = None,
) -> list[str]:
    """Every problem of this spec on its own, the one to report first first: a spec that does not parse, or whose
    provider is missing, invalid or not for this namespace, has that one problem; else its name, catalog, TLS
    (on create) and claim problems together."""
    try:
        parsed = RedisDatabaseSpec.model_validate(dict(spec))
    except ValidationError as error:
        return [_pydantic_message(error)]
    provider_name = parsed.effective_provider_name()
    provider_spec = providers.get(provider_name)
    if provider_spec is None:
        known = ", ".join(sorted(providers)) or "none exist yet"
        return [
            f"spec.providerRef.name: RedisProvider {provider_name} does not exist (known: {known}); "
            "create the RedisProvider first or reference an existing one"
        ]
    try:
        provider = RedisProviderSpec.model_validate(dict(provider_spec))
    except ValidationError:
        return [
            f"spec.providerRef.name: RedisProvider {provider_name} has an invalid spec; fix the RedisProvider first"
        ]
    tenancy = namespace_problem(provider_name, provider.allowed_namespaces, namespace, namespace_labels)
    if tenancy:
        return [f"spec.providerRef.name: {tenancy}"]
    desired = DesiredDatabase.from_spec(parsed, namespace=namespace, metadata_name=name)
    problems: list[str] = []
    if naming := name_problem(parsed, desired.name):
        problems.append(naming)
    # The same catalog check the reconciler makes before any provider call, in the same words.
    problems += catalog_problems(provider.type, desired)
    if operation == "CREATE" and (tls := tls_problem(provider.type, parsed.tls)):
        problems.append(tls)  # tls is immutable: objects admitted before this rule stay editable
    holders = set(claims.get(provider_key(provider_name, desired.name), ())) - {f"{namespace}/{name}"}
    if holders:
        problems.append(
            f"spec.name: the provider-side name {desired.name} on RedisProvider {provider_name} is already used by "
            f"RedisDatabase {sorted(holders)[0]}; set a different spec.name"
        )
    return problems


def deletion_problem(spec: Mapping[str, Any], namespace: str, name: str) -> str | None:
    """A RedisDatabase with spec.deletionProtection: true is not deleted; the message gives the way out."""
    if spec.get("deletionProtection") is not True:
        return None
    return (
        f"RedisDatabase {namespace}/{name} has spec.deletionProtection: true and cannot be deleted; to delete it, "
        f"first set deletionProtection to false: kubectl patch rdb {name} -n {namespace} --type=merge -p "
        '\'{"spec":{"deletionProtection":false}}\' (deletionPolicy then decides whether the provider '
        "database is deleted or kept)"
    )


def name_problem(parsed: RedisDatabaseSpec, effective_name: str) -> str | None:
    """The default name `<namespace>-<metadata.name>` may be too long or contain dots; CEL cannot see it."""
    if parsed.name is not None:
        return None  # checked by the schema
    if len(effective_name) > NAME_MAX_LENGTH or not _NAME.fullmatch(effective_name):
        return (
            f"spec.name is unset and the default provider-side name {effective_name} (<namespace>-<metadata.name>) "
            f"is not usable ({len(effective_name)} characters, at most {NAME_MAX_LENGTH}; {NAME_FORMAT.split(': ')[1]})"
            ": set spec.name explicitly"
        )
    return None


def tls_problem(provider_type: ProviderType, tls: bool | None) -> str | None:
    """TLS as each provider really offers it (reference section 6); an absent tls means the provider's default."""
    if provider_type is ProviderType.UPSTASH and tls is False:
        return (
            "spec.tls: false is not possible: Upstash databases always use TLS (rediss://) and it cannot be turned "
            "off; remove spec.tls or set it to true"
        )
    if provider_type is ProviderType.FLY and tls is True:
        return (
            "spec.tls: true is not possible on a Fly.io provider: Fly's Upstash databases are reached over the "
            "organization's private network without TLS; remove spec.tls (or set it to false), or reference a "
            "RedisProvider of type upstash for TLS"
        )
    return None


def admission_warnings(
    *, operation: str, spec: Mapping[str, Any], providers: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """What kubectl should print without refusing: a retired region or a legacy plan is refused only at the
    reconcile's create, since admission cannot know whether the database already exists (adoption, restore)."""
    if operation != "CREATE":
        return []
    try:
        parsed = RedisDatabaseSpec.model_validate(dict(spec))
        provider = RedisProviderSpec.model_validate(dict(providers[parsed.effective_provider_name()]))
    except (ValidationError, KeyError):
        return []
    refusal = catalog.creation_refusal(
        provider.type, parsed.primary_region, parsed.read_regions or (), parsed.plan or catalog.DEFAULT_PLAN
    )
    if refusal is None:
        return []
    return [f"{refusal}. An existing database there is still managed; a new one will be refused at creation"]


def immutability_problem(
    parsed: RedisDatabaseSpec, old_spec: Mapping[str, Any], namespace: str, name: str
) -> str | None:
    """The same transition rules as the CRD's CEL, worded the same way, on the effective (defaulted) values."""
    try:
        old = RedisDatabaseSpec.model_validate(dict(old_spec))
    except ValidationError:
        return None  # the old object was invalid; let the new one through the other checks
    if old.primary_region != parsed.primary_region:
        return (
            f"spec.primaryRegion is immutable ({old.primary_region} -> {parsed.primary_region}): create a new "
            f"RedisDatabase in {parsed.primary_region} and migrate"
        )
    old_name, new_name = old.effective_name(namespace, name), parsed.effective_name(namespace, name)
    if old_name != new_name:
        return (
            f"spec.name is immutable ({old_name} -> {new_name}): the provider cannot rename a database; create a "
            f"new RedisDatabase named {new_name} and migrate"
        )
    old_provider, new_provider = old.effective_provider_name(), parsed.effective_provider_name()
    if old_provider != new_provider:
        return (
            f"spec.providerRef.name is immutable ({old_provider} -> {new_provider}): create a new RedisDatabase "
            f"on {new_provider} and migrate"
        )
    if old.tls is not None and parsed.tls is not None and old.tls != parsed.tls:
        before, after = str(old.tls).lower(), str(parsed.tls).lower()
        return (
            f"spec.tls is set at creation only ({before} -> {after}): keep tls: {before}, or create a new "
            f"RedisDatabase with tls: {after} and migrate"
        )
    return None
