"""Admission checks that CEL cannot do: they need the referenced RedisProvider and the other RedisDatabases.

The checks are pure functions over kopf in-memory indexes (no API call, no provider call), so the webhook
answers in microseconds and honours dryRun trivially: it has no side effects. Immutability is checked here too,
with messages that show old and new values, but the CRD's CEL rules hold that line even when the webhook is
down — which is why the webhook can use `failurePolicy: Ignore` without risking a region change.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from pydantic import ValidationError

from .models import RedisDatabaseSpec, RedisProviderSpec
from .providers import catalog
from .reconcile import DesiredDatabase, validate_against_catalog


def _pydantic_message(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        problems.append(f"spec.{location}: {item['msg']}" if location else item["msg"])
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
) -> str | None:
    """Return why the object must be refused, or None to admit it.

    `providers` maps RedisProvider names to their spec; `claims` maps provider/name claims to the
    `namespace/name` of the RedisDatabases holding them.
    """
    if operation == "DELETE":
        return None
    try:
        parsed = RedisDatabaseSpec.model_validate(dict(spec))
    except ValidationError as error:
        return _pydantic_message(error)
    if operation == "UPDATE" and old_spec is not None:
        problem = _immutability_problem(parsed, old_spec, namespace, name)
        if problem:
            return problem
    provider_name = parsed.effective_provider_name()
    provider_spec = providers.get(provider_name)
    if provider_spec is None:
        known = ", ".join(sorted(providers)) or "none exist yet"
        return (
            f"spec.providerRef.name: RedisProvider {provider_name!r} does not exist (known: {known}); "
            "create the RedisProvider first or reference an existing one"
        )
    try:
        provider = RedisProviderSpec.model_validate(dict(provider_spec))
    except ValidationError:
        return f"spec.providerRef.name: RedisProvider {provider_name!r} has an invalid spec; fix the RedisProvider"
    desired = DesiredDatabase.from_spec(parsed, namespace=namespace, metadata_name=name)
    problem = validate_against_catalog(provider.type, desired)
    if problem:
        return problem
    if catalog.plan(provider.type, desired.plan) is None:  # pragma: no cover - caught above
        return f"spec.plan {desired.plan!r} is unknown"
    holders = set(claims.get(provider_key(provider_name, desired.name), ())) - {f"{namespace}/{name}"}
    if holders:
        return (
            f"spec.name: the provider-side name {desired.name!r} on RedisProvider {provider_name!r} is already "
            f"used by RedisDatabase {sorted(holders)[0]}; choose another spec.name"
        )
    return None


def _immutability_problem(
    parsed: RedisDatabaseSpec, old_spec: Mapping[str, Any], namespace: str, name: str
) -> str | None:
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
            "new RedisDatabase with the new name and migrate"
        )
    old_provider, new_provider = old.effective_provider_name(), parsed.effective_provider_name()
    if old_provider != new_provider:
        return (
            f"spec.providerRef.name is immutable ({old_provider} -> {new_provider}): create a new RedisDatabase "
            f"on {new_provider} and migrate"
        )
    return None
