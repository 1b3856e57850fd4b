"""The admission checks CEL cannot do, and a property test that no input makes them raise."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redisdb_operator.admission import claim_of, validate_redisdatabase

PROVIDERS: dict[str, dict[str, Any]] = {
    "default": {"type": "fly", "organization": "personal", "credentialsSecretRef": {"namespace": "x", "name": "y"}},
    "upstash": {"type": "upstash", "credentialsSecretRef": {"namespace": "x", "name": "y"}},
}


def check(
    spec: dict[str, Any], old: dict[str, Any] | None = None, claims: dict[str, set[str]] | None = None
) -> str | None:
    return validate_redisdatabase(
        operation="UPDATE" if old is not None else "CREATE",
        namespace="shop",
        name="cache",
        spec=spec,
        old_spec=old,
        providers=PROVIDERS,
        claims=claims or {},
    )


def test_valid_fly_database_is_admitted() -> None:
    assert check({"primaryRegion": "mad", "readRegions": ["ams"], "plan": "fixed_1gb", "eviction": True}) is None


def test_valid_edits_are_admitted() -> None:
    old = {"primaryRegion": "mad", "readRegions": ["ams"]}
    assert check({"primaryRegion": "mad", "readRegions": ["ams", "fra"], "plan": "fixed_1gb"}, old) is None
    assert check({"primaryRegion": "mad", "eviction": True}, old) is None


@pytest.mark.parametrize(
    ("new", "old", "message"),
    [
        ({"primaryRegion": "ams"}, {"primaryRegion": "mad"}, "spec.primaryRegion is immutable (mad -> ams)"),
        (
            {"primaryRegion": "mad", "name": "b"},
            {"primaryRegion": "mad", "name": "a"},
            "spec.name is immutable (a -> b)",
        ),
        (
            {"primaryRegion": "mad", "name": "other"},
            {"primaryRegion": "mad"},
            "spec.name is immutable (shop-cache -> other)",
        ),
        (
            {"primaryRegion": "us-east-1", "providerRef": {"name": "upstash"}},
            {"primaryRegion": "us-east-1"},
            "spec.providerRef.name is immutable (default -> upstash)",
        ),
    ],
)
def test_immutable_fields_name_old_new_and_the_fix(new: dict[str, Any], old: dict[str, Any], message: str) -> None:
    problem = check(new, old)
    assert problem is not None and problem.startswith(message)
    assert "create a new RedisDatabase" in problem


def test_setting_the_name_to_its_default_is_not_a_change() -> None:
    assert check({"primaryRegion": "mad", "name": "shop-cache"}, {"primaryRegion": "mad"}) is None


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"primaryRegion": "mad", "providerRef": {"name": "nope"}}, "RedisProvider 'nope' does not exist"),
        ({"primaryRegion": "us-east-1"}, "spec.primaryRegion 'us-east-1' is not a fly region"),
        ({"primaryRegion": "mad", "plan": "gold"}, "spec.plan 'gold' is not a fly plan"),
        ({"primaryRegion": "mad", "plan": "free", "readRegions": ["ams"]}, "allows at most 0 read regions"),
        ({"primaryRegion": "mad", "readRegions": ["mad"]}, "must not contain the primary region"),
        ({"readRegions": ["ams"]}, "spec.primaryRegion: Field required"),
        ({"primaryRegion": "mad", "eviction": "maybe"}, "spec.eviction"),
    ],
)
def test_bad_input_is_refused_with_the_field(spec: dict[str, Any], fragment: str) -> None:
    problem = check(spec)
    assert problem is not None and fragment in problem


def test_a_name_claimed_by_another_database_is_refused() -> None:
    claims = {"default/shop-cache": {"other/db"}}
    problem = check({"primaryRegion": "mad"}, claims=claims)
    assert problem is not None and "already used by RedisDatabase other/db" in problem
    # its own claim is not a conflict
    assert check({"primaryRegion": "mad"}, claims={"default/shop-cache": {"shop/cache"}}) is None


def test_claims_key_by_provider_and_effective_name() -> None:
    assert claim_of({"primaryRegion": "mad"}, "shop", "cache") == "default/shop-cache"
    assert claim_of({"primaryRegion": "mad", "providerRef": {"name": "p"}, "name": "n"}, "s", "c") == "p/n"
    assert claim_of({"primaryRegion": 5, "readRegions": "x"}, "s", "c") is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
spec_like = st.dictionaries(
    st.sampled_from(["primaryRegion", "readRegions", "plan", "eviction", "tls", "name", "providerRef", "x"]),
    json_values,
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(spec=spec_like, old=st.none() | spec_like, operation=st.sampled_from(["CREATE", "UPDATE", "DELETE"]))
def test_no_input_makes_validation_raise(spec: dict[str, Any], old: dict[str, Any] | None, operation: str) -> None:
    result = validate_redisdatabase(
        operation=operation, namespace="ns", name="n", spec=spec, old_spec=old, providers=PROVIDERS, claims={}
    )
    assert result is None or (isinstance(result, str) and result)
