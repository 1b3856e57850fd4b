"""Fuzz the admission check and the reconcile core with hypothesis-generated specs and observations.

Whatever a user (or a broken client) puts in a spec, admission answers None or a message, never an exception;
the reconcile core turns any parseable spec and any observed database into exactly one action, and any failure
into a verdict. REDISDB_FUZZ_EXAMPLES sets the examples per property (`make chaos` runs many more).
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from redisdb_operator.admission import claim_of, content_problems, validate_redisdatabase
from redisdb_operator.desired import (
    ConflictAction,
    CreateAction,
    DesiredDatabase,
    NoAction,
    UpdateAction,
    catalog_problem,
    plan_action,
)
from redisdb_operator.models import RedisDatabaseSpec
from redisdb_operator.providers import catalog
from redisdb_operator.providers.base import Database, ProviderType

EXAMPLES = int(os.environ.get("REDISDB_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=10,
)
regions = st.sampled_from(
    sorted({code for table in catalog.REGIONS.values() for code in table} | {"", "MAD", "zz", "x" * 40, "mad "})
)
plans = st.sampled_from(sorted({name for table in catalog.PLANS.values() for name in table} | {"", "gold", "Free"}))
names = st.one_of(st.sampled_from(["cache", "shop-cache", "-x", "a.b", "x" * 70, ""]), st.text(max_size=12))


def field_value(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly plausible values, sometimes any JSON at all (wrong types, nesting, nulls)."""
    return st.one_of(good, good, json_values)


specs = st.fixed_dictionaries(
    {},
    optional={
        "providerRef": field_value(st.fixed_dictionaries({"name": st.sampled_from(["fly", "upstash", "missing", ""])})),
        "primaryRegion": field_value(regions),
        "readRegions": field_value(st.lists(regions, max_size=4)),
        "plan": field_value(plans),
        "eviction": field_value(st.booleans()),
        "tls": field_value(st.booleans()),
        "name": field_value(names),
        "deletionPolicy": field_value(st.sampled_from(["Delete", "Orphan", "delete", ""])),
        "connectionSecret": field_value(st.fixed_dictionaries({"name": names})),
    },
)
PROVIDERS: dict[str, dict[str, Any]] = {
    "fly": {"type": "fly", "organization": "personal", "credentialsSecretRef": {"namespace": "s", "name": "f"}},
    "upstash": {"type": "upstash", "credentialsSecretRef": {"namespace": "s", "name": "u"}},
    "broken": {"type": 7},
}


@FUZZ
@given(
    operation=st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", ""]),
    spec=st.one_of(specs, json_values),
    old_spec=st.one_of(st.none(), specs, json_values),
    namespace=st.sampled_from(["shop", "t-" + "n" * 60, "", "a.b"]),
    name=names,
)
def test_admission_answers_a_message_or_admits(
    operation: str, spec: Any, old_spec: Any, namespace: str, name: str
) -> None:
    if not isinstance(spec, dict):
        spec = {"value": spec}  # the webhook hands the check body.get("spec") or {}: always a mapping
    if old_spec is not None and not isinstance(old_spec, dict):
        old_spec = {"value": old_spec}
    claim = claim_of(spec, namespace, name)
    problem = validate_redisdatabase(
        operation=operation,
        namespace=namespace,
        name=name,
        spec=spec,
        old_spec=old_spec,
        providers=PROVIDERS,
        claims={claim: {"other/holder"}} if claim else {},
    )
    assert problem is None or (isinstance(problem, str) and problem.strip())
    if problem is None and operation == "UPDATE" and old_spec is not None:
        # The ratchet: an UPDATE is admitted with a problem only when the object already had that very problem.
        def problems_of(candidate: dict[str, Any]) -> list[str]:
            return content_problems(
                operation="UPDATE",
                namespace=namespace,
                name=name,
                spec=candidate,
                providers=PROVIDERS,
                claims={claim: {"other/holder"}} if claim else {},
            )

        assert set(problems_of(spec)) <= set(problems_of(old_spec))
        return
    if problem is None and operation in ("CREATE", "UPDATE"):
        # What admission lets through, the reconciler must be able to parse and plan for.
        parsed = RedisDatabaseSpec.model_validate(spec)
        desired = DesiredDatabase.from_spec(parsed, namespace=namespace, metadata_name=name)
        provider_type = ProviderType(PROVIDERS[parsed.effective_provider_name()]["type"])
        assert catalog_problem(provider_type, desired) is None


databases = st.builds(
    Database,
    id=st.sampled_from(["db1", "db2", ""]),
    name=names,
    primary_region=regions,
    read_regions=st.lists(regions, max_size=3).map(tuple),
    plan=plans,
    eviction=st.booleans(),
    tls=st.booleans(),
    state=st.sampled_from(["active", "ready", "creating", "", "failed"]),
    host=st.sampled_from(["127.0.0.1", ""]),
    port=st.integers(min_value=-1, max_value=70000),
)


@FUZZ
@given(
    spec=st.one_of(specs, json_values),
    observed=st.one_of(st.none(), databases),
    recorded_id=st.one_of(st.none(), st.sampled_from(["db1", "db2"])),
    provider_type=st.sampled_from(list(ProviderType)),
)
def test_reconcile_core_plans_exactly_one_action(
    spec: Any, observed: Database | None, recorded_id: str | None, provider_type: ProviderType
) -> None:
    try:
        parsed = RedisDatabaseSpec.model_validate(spec if isinstance(spec, dict) else {"value": spec})
    except ValidationError:
        return  # the controller reports InvalidSpec as a condition: tested in test_reconcile.py
    desired = DesiredDatabase.from_spec(parsed, namespace="shop", metadata_name="cache")
    problem = catalog_problem(provider_type, desired)
    assert problem is None or isinstance(problem, str)
    action = plan_action(desired, observed, recorded_id)
    assert isinstance(action, CreateAction | UpdateAction | ConflictAction | NoAction)
    if observed is None:
        assert isinstance(action, CreateAction) and action.recreate == (recorded_id is not None)
    if isinstance(action, UpdateAction):
        assert action.changes and not action.update.is_empty()
        assert observed is not None and observed.primary_region == desired.primary_region
    if isinstance(action, ConflictAction):
        assert action.message and action.reason
