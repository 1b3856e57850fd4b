"""Fuzz the adapters' response parsing: whatever a provider answers (malformed JSON, missing fields, wrong types,
odd statuses and headers), every protocol call returns a valid result or raises a typed ProviderError.

REDISDB_FUZZ_EXAMPLES sets the examples per property (`make chaos` runs them with many more).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redisdb_operator.providers.base import CreateDatabaseRequest, Database, DatabaseUpdate, ProviderError
from redisdb_operator.providers.fly import FREE_PLAN_ID, PAYG_PLAN_ID, FlyClient
from redisdb_operator.providers.http import RetryPolicy, Timeouts
from redisdb_operator.providers.upstash import UpstashClient

EXAMPLES = int(os.environ.get("REDISDB_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NO_WAIT = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0, max_wait=0.0)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
odd_strings = st.sampled_from(
    [
        "",
        "redis://[::1",
        "redis://:pw@[::1]:6379",
        "redis://user@host:99999",
        "rediss://default:p%zz@h:1",
        "²",
        "12",
        "-1",
        "global",
        "Fixed 1GB",
        "\x00",
        "redis://h:port",
        "http://x",
    ]
)


def mutated(template: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """The template with each field kept, dropped, or replaced by an odd string or any JSON value."""

    def one(key: str, value: Any) -> st.SearchStrategy[tuple[str, Any] | None]:
        return st.one_of(
            st.just((key, value)),
            st.just(None),
            odd_strings.map(lambda v: (key, v)),
            json_values.map(lambda v: (key, v)),
        )

    return st.tuples(*(one(key, value) for key, value in template.items())).map(
        lambda pairs: {pair[0]: pair[1] for pair in pairs if pair is not None}
    )


UPSTASH_DATABASE = {
    "database_id": "db1",
    "database_name": "shop-cache",
    "database_type": "Pay as You Go",
    "region": "global",
    "type": "payg",
    "port": 6379,
    "state": "active",
    "endpoint": "127.0.0.1",
    "tls": False,
    "eviction": True,
    "primary_region": "us-east-1",
    "read_regions": ["eu-west-1"],
    "plan": "payg",
    "password": "secret-password",
    "rest_token": "tok",
}
FLY_ADD_ON = {
    "id": "add1",
    "name": "shop-cache",
    "primaryRegion": "mad",
    "readRegions": ["ams"],
    "status": "ready",
    "options": {"eviction": True},
    "publicUrl": "redis://default:pw@127.0.0.1:6379",
    "password": "pw",
    "hostname": "127.0.0.1",
    "addOnPlan": {"id": PAYG_PLAN_ID, "name": "payg", "displayName": "Pay as You Go"},
    "organization": {"id": "org1", "slug": "personal"},
}


def upstash_bodies() -> st.SearchStrategy[Any]:
    database = mutated(UPSTASH_DATABASE)
    return st.one_of(database, st.lists(database, max_size=3), json_values, st.just("OK"))


def fly_bodies() -> st.SearchStrategy[Any]:
    add_on = mutated(FLY_ADD_ON)
    data = st.one_of(
        st.fixed_dictionaries({"addOn": st.one_of(add_on, json_values)}),
        st.fixed_dictionaries({"createAddOn": st.fixed_dictionaries({"addOn": add_on})}),
        st.fixed_dictionaries({"resetAddOnPassword": st.one_of(json_values, st.fixed_dictionaries({"addOn": add_on}))}),
        st.fixed_dictionaries(
            {
                "organization": st.one_of(
                    json_values,
                    st.fixed_dictionaries(
                        {
                            "id": st.one_of(st.just("org1"), json_values),
                            "addOns": st.one_of(
                                json_values, st.fixed_dictionaries({"nodes": st.lists(add_on, max_size=3)})
                            ),
                        }
                    ),
                )
            }
        ),
        st.fixed_dictionaries(
            {
                "addOnPlans": st.fixed_dictionaries(
                    {
                        "nodes": st.lists(
                            mutated({"id": FREE_PLAN_ID, "name": "free", "displayName": "Free"}), max_size=3
                        )
                    }
                )
            }
        ),
        json_values,
    )
    errors = st.lists(
        st.one_of(
            json_values,
            st.fixed_dictionaries(
                {
                    "message": st.one_of(st.text(max_size=20), json_values),
                    "extensions": st.one_of(
                        json_values, st.fixed_dictionaries({"code": st.one_of(st.text(), json_values)})
                    ),
                }
            ),
        ),
        max_size=3,
    )
    return st.one_of(
        st.fixed_dictionaries({"data": data}),
        st.fixed_dictionaries({"data": data, "errors": errors}),
        st.fixed_dictionaries({"errors": errors}),
        json_values,
    )


def responses(bodies: st.SearchStrategy[Any]) -> st.SearchStrategy[httpx.Response]:
    content = st.one_of(
        bodies.map(lambda body: json.dumps(body).encode()),
        st.binary(max_size=40),
        st.just(b""),
        st.just(b"{not json"),
    )
    status = st.sampled_from([200, 200, 200, 200, 201, 204, 400, 401, 403, 404, 405, 409, 422, 429, 500, 502, 503])
    retry_after = st.one_of(
        st.none(), st.sampled_from(["0", "1e400", "nan", "-5", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"])
    )

    def build(code: int, body: bytes, after: str | None) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if after is not None:
            headers["Retry-After"] = after
        return httpx.Response(code, content=body, headers=headers)

    return st.builds(build, status, content, retry_after)


def transport(answers: list[httpx.Response]) -> httpx.MockTransport:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers[min(calls["n"], len(answers) - 1)]
        calls["n"] += 1
        return httpx.Response(answer.status_code, content=answer.content, headers=answer.headers)

    return httpx.MockTransport(handler)


Operation = Callable[[Any], Awaitable[Any]]
OPERATIONS: dict[str, Operation] = {
    "create": lambda c: c.create(
        CreateDatabaseRequest(
            name="shop-cache", primary_region="mad", read_regions=("ams",), plan="payg", eviction=True
        )
    ),
    "get": lambda c: c.get("db1"),
    "find_by_name": lambda c: c.find_by_name("shop-cache"),
    "list": lambda c: c.list(),
    "update": lambda c: c.update(
        Database(id="db1", name="shop-cache", primary_region="mad", plan="payg"),
        DatabaseUpdate(read_regions=("ams",), plan="fixed_1gb", eviction=False),
    ),
    "reset_password": lambda c: c.reset_password("db1"),
    "delete": lambda c: c.delete("db1"),
}


def check_result(operation: str, result: Any) -> None:
    if operation in ("create", "get", "update", "reset_password"):
        assert isinstance(result, Database)
    elif operation == "find_by_name":
        assert result is None or isinstance(result, Database)
    elif operation == "list":
        assert all(isinstance(item, Database) for item in result)
    else:
        assert result is None


def run(client: Any, operation: str) -> None:
    async def go() -> None:
        try:
            result = await OPERATIONS[operation](client)
        except ProviderError as error:
            assert isinstance(error.message, str)
        else:
            check_result(operation, result)
        finally:
            await client.aclose()

    asyncio.run(go())


@FUZZ
@given(
    operation=st.sampled_from(sorted(OPERATIONS)),
    answers=st.lists(responses(upstash_bodies()), min_size=1, max_size=5),
)
def test_upstash_adapter_survives_any_response(operation: str, answers: list[httpx.Response]) -> None:
    client = UpstashClient(
        "http://127.0.0.1:9/v2",
        email="e@example.com",
        api_key="k",
        retry=NO_WAIT,
        timeouts=Timeouts(connect=1, total=5),
        transport=transport(answers),
    )
    run(client, operation)


@FUZZ
@given(
    operation=st.sampled_from(sorted(OPERATIONS)),
    answers=st.lists(responses(fly_bodies()), min_size=1, max_size=6),
)
def test_fly_adapter_survives_any_response(operation: str, answers: list[httpx.Response]) -> None:
    client = FlyClient(
        "http://127.0.0.1:9",
        token="t0ken-value",
        organization="personal",
        retry=NO_WAIT,
        timeouts=Timeouts(connect=1, total=5),
        transport=transport(answers),
    )
    run(client, operation)


def test_the_fuzzer_reaches_real_parsing() -> None:
    """A sanity check that the harness can pass a well-formed answer through: results, not only errors."""
    body = json.dumps(UPSTASH_DATABASE).encode()
    client = UpstashClient(
        "http://127.0.0.1:9/v2",
        email="e@example.com",
        api_key="k",
        retry=NO_WAIT,
        transport=transport([httpx.Response(200, content=body)]),
    )

    async def go() -> Database:
        try:
            return await client.get("db1")
        finally:
            await client.aclose()

    database = asyncio.run(go())
    assert database.id == "db1" and database.eviction and database.read_regions == ("eu-west-1",)


def test_regression_a_unicode_digit_port_is_no_port() -> None:
    """Found by the fuzzer: "²".isdigit() is True but int("²") raises; the parser let the ValueError out."""
    from redisdb_operator.providers.upstash import parse_database

    assert parse_database({"database_id": "x", "port": "²"}).port == 0


def test_regression_a_malformed_ipv6_url_is_no_url() -> None:
    """Found by the fuzzer: urlsplit("redis://[::1") raises ValueError; the parser let it out."""
    from redisdb_operator.providers.fly import parse_add_on

    database = parse_add_on({"id": "x", "publicUrl": "redis://[::1", "hostname": "h"}, operation="get")
    assert database.host == "h" and database.password == ""
