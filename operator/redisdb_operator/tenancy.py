"""Which namespaces may use a RedisProvider (`spec.allowedNamespaces`) and who still uses one: pure functions the
webhook (over its in-memory indexes) and the reconcile core share, so both refuse in the same words.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from .models import LabelSelector


def selector_matches(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics; None (unset) and an empty selector match every namespace."""
    if selector is None:
        return True
    for key, value in (selector.match_labels or {}).items():
        if labels.get(key) != value:
            return False
    for requirement in selector.match_expressions or ():
        present = requirement.key in labels
        values = set(requirement.values or ())
        if requirement.operator == "In" and not (present and labels[requirement.key] in values):
            return False
        if requirement.operator == "NotIn" and present and labels[requirement.key] in values:
            return False
        if requirement.operator == "Exists" and not present:
            return False
        if requirement.operator == "DoesNotExist" and present:
            return False
    return True


def describe_selector(selector: LabelSelector) -> str:
    """The selector as kubectl's `-l` syntax, e.g. `team=shop,tier in (prod,staging)`."""
    parts = [f"{key}={value}" for key, value in sorted((selector.match_labels or {}).items())]
    for requirement in selector.match_expressions or ():
        values = ",".join(sorted(requirement.values or ()))
        if requirement.operator == "In":
            parts.append(f"{requirement.key} in ({values})")
        elif requirement.operator == "NotIn":
            parts.append(f"{requirement.key} notin ({values})")
        elif requirement.operator == "Exists":
            parts.append(requirement.key)
        else:
            parts.append(f"!{requirement.key}")
    return ",".join(parts) or "(everything)"


def namespace_problem(
    provider_name: str, selector: LabelSelector | None, namespace: str, labels: Mapping[str, str] | None
) -> str | None:
    """Why `namespace` may not use the provider (None: it may). Unknown labels (None) are not judged here."""
    if selector is None or labels is None or selector_matches(selector, labels):
        return None
    return (
        f"namespace {namespace} may not use RedisProvider {provider_name}: its spec.allowedNamespaces selects "
        f"namespaces labelled {describe_selector(selector)}; label the namespace to match (kubectl label namespace "
        f"{namespace} ...), ask the provider's owner to widen allowedNamespaces, or reference another RedisProvider"
    )


def provider_in_use_message(provider_name: str, users: Collection[str]) -> str:
    """The Event and status text while a RedisProvider's deletion waits for the databases that use it."""
    listed = sorted(users)
    shown = ", ".join(listed[:10]) + (f" and {len(listed) - 10} more" if len(listed) > 10 else "")
    return (
        f"RedisProvider {provider_name} is used by {len(listed)} RedisDatabase(s): {shown}; it is deleted once "
        f"they are gone (delete them, with deletionPolicy Orphan to keep their data). The deletion waits meanwhile"
    )
