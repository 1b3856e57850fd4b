"""allowedNamespaces at admission (the same words as the reconcile), deletion protection at admission, and the
in-use message of a RedisProvider."""

from __future__ import annotations

from typing import Any

from redisdb_operator.admission import validate_redisdatabase
from redisdb_operator.tenancy import provider_in_use_message

PROVIDERS: dict[str, dict[str, Any]] = {
    "default": {
        "type": "fly",
        "organization": "personal",
        "credentialsSecretRef": {"namespace": "x", "name": "y"},
        "allowedNamespaces": {"matchLabels": {"team": "shop"}},
    },
}


def check(operation: str, spec: dict[str, Any], labels: dict[str, str] | None) -> str | None:
    return validate_redisdatabase(
        operation=operation,
        namespace="ads",
        name="cache",
        spec=spec,
        old_spec=None,
        providers=PROVIDERS,
        claims={},
        namespace_labels=labels,
    )


def test_a_namespace_outside_allowed_namespaces_is_refused_naming_the_selector() -> None:
    problem = check("CREATE", {"primaryRegion": "cdg"}, {"team": "ads"})
    assert problem is not None
    assert problem.startswith("spec.providerRef.name: namespace ads may not use RedisProvider default")
    assert "team=shop" in problem and "kubectl label namespace ads" in problem
    assert check("CREATE", {"primaryRegion": "cdg"}, {"team": "shop"}) is None
    assert check("CREATE", {"primaryRegion": "cdg"}, None) is None  # not indexed yet: the reconcile judges


def test_a_protected_database_cannot_be_deleted_and_the_message_says_how() -> None:
    problem = check("DELETE", {"primaryRegion": "cdg", "deletionProtection": True}, {})
    assert problem is not None and "spec.deletionProtection: true" in problem
    assert "kubectl patch rdb cache -n ads --type=merge" in problem and '"deletionProtection":false' in problem
    assert check("DELETE", {"primaryRegion": "cdg"}, {}) is None
    assert check("DELETE", {"primaryRegion": "cdg", "deletionProtection": False}, {}) is None


def test_the_in_use_message_lists_the_users() -> None:
    message = provider_in_use_message("default", [f"ns/db{index:02d}" for index in range(12)])
    assert "used by 12 RedisDatabase(s): ns/db00, ns/db01" in message and "and 2 more" in message
