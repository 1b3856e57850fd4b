"""Transport rules: error mapping, Retry-After, bounded jittered retries on safe calls only, redaction."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest
import respx

from redisdb_operator.providers.base import (
    AlreadyExistsError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    UnauthorizedError,
    UnavailableError,
)
from redisdb_operator.providers.http import (
    HttpTransport,
    RetryPolicy,
    Timeouts,
    error_message,
    json_or_none,
    parse_retry_after,
    redact,
)

BASE = "https://api.example.test/v2"


class Sleeps:
    """Records requested pauses instead of sleeping, so retry tests take no wall time."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def make_transport(sleeps: Sleeps, **policy: float) -> HttpTransport:
    return HttpTransport(
        BASE,
        provider="test",
        headers={"Authorization": "Bearer s3cr3t-token-value"},
        secrets=("s3cr3t-token-value",),
        retry=RetryPolicy(**policy),  # type: ignore[arg-type]
        sleep=sleeps,
        rng=lambda: 1.0,
    )


# --- redaction ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("url redis://default:hunter2pass@host:6379 failed", "hunter2pass"),
        ("url rediss://hunter2pass@host", "hunter2pass"),
        ('{"password": "hunter2pass", "ok": 1}', "hunter2pass"),
        ("password=hunter2pass&x=1", "hunter2pass"),
        ('{"rest_token":"AXW_tokenvalue=", "read_only_rest_token": "AnW_other="}', "AXW_tokenvalue="),
        ('{"read_only_rest_token": "AnW_otherToken="}', "AnW_otherToken="),
        ("Authorization: Basic dXNlckBleGFtcGxlLmNvbTprZXk=", "dXNlckBleGFtcGxlLmNvbTprZXk="),
        ("sent header authorization=Bearer abc.def.ghi", "abc.def.ghi"),
        ("token FlyV1 fm2_lJPECAAAAAAAAVeyxBBo", "fm2_lJPECAAAAAAAAVeyxBBo"),
        ("key was my-api-key-1234 in text", "my-api-key-1234"),
    ],
)
def test_redact_removes_credentials(text: str, leak: str) -> None:
    cleaned = redact(text, ["my-api-key-1234"])
    assert leak not in cleaned
    assert "***" in cleaned


def test_redact_keeps_ordinary_text() -> None:
    text = "database name already exists (region us-east-1)"
    assert redact(text, ["unrelated-secret"]) == text


def test_redact_ignores_empty_and_tiny_secrets() -> None:
    assert redact("a b c", ["", "a"]) == "a b c"


# --- body and header parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('"database name already exists"', "database name already exists"),
        ('{"error": "Unauthorized"}', "Unauthorized"),
        ('{"message": "invalid region"}', "invalid region"),
        ('{"error": {"message": "nested"}}', "nested"),
        ('{"errors": [{"message": "a"}, {"message": "b"}]}', "a, b"),
        ("plain text failure", "plain text failure"),
        ('{"unexpected": 1}', '{"unexpected": 1}'),
        ("", "Bad Request"),
    ],
)
def test_error_message_shapes(body: str, expected: str) -> None:
    response = httpx.Response(400, text=body)
    assert error_message(response) == expected


@pytest.mark.parametrize(("body", "expected"), [('"OK"', "OK"), ("OK", "OK"), ("", None), ('{"a": 1}', {"a": 1})])
def test_json_or_none(body: str, expected: object) -> None:
    assert json_or_none(httpx.Response(200, text=body)) == expected


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    now = time.time()
    date = email.utils.formatdate(now + 120, usegmt=True)
    parsed = parse_retry_after(date, now=now)
    assert parsed is not None and 118 <= parsed <= 121
    past = email.utils.formatdate(now - 60, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("nan") is None


def test_backoff_is_full_jitter_and_bounded() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    assert policy.backoff(0, lambda: 1.0) == 0.5
    assert policy.backoff(1, lambda: 1.0) == 1.0
    assert policy.backoff(10, lambda: 1.0) == 3.0
    assert policy.backoff(10, lambda: 0.0) == 0.0
    for attempt in range(20):
        assert 0.0 <= policy.backoff(attempt) <= 3.0


# --- status mapping and retries ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, '{"error": "Unauthorized"}', UnauthorizedError),
        (403, '"forbidden"', UnauthorizedError),
        (404, '"database not found"', NotFoundError),
        (409, '"conflict"', AlreadyExistsError),
        (400, '"database name already exists"', AlreadyExistsError),
        (400, '{"message": "invalid region"}', InvalidRequestError),
        (405, "Method Not Allowed", InvalidRequestError),
        (422, "{}", InvalidRequestError),
    ],
)
@respx.mock
async def test_status_mapping(status: int, body: str, error: type[Exception]) -> None:
    route = respx.post(f"{BASE}/thing").mock(return_value=httpx.Response(status, text=body))
    sleeps = Sleeps()
    transport = make_transport(sleeps)
    with pytest.raises(error) as raised:
        await transport.request("POST", "/thing", operation="do thing", idempotent=True)
    assert route.call_count == 1  # permanent errors are never retried
    assert "test do thing failed" in str(raised.value)
    assert raised.value.status == status  # type: ignore[attr-defined]
    await transport.aclose()


@respx.mock
async def test_idempotent_call_retries_then_raises_unavailable() -> None:
    route = respx.get(f"{BASE}/x").mock(return_value=httpx.Response(503, text='"maintenance"'))
    sleeps = Sleeps()
    transport = make_transport(sleeps, max_attempts=3, base_delay=0.1, max_delay=1.0)
    with pytest.raises(UnavailableError, match="maintenance"):
        await transport.request("GET", "/x", operation="get", idempotent=True)
    assert route.call_count == 3
    assert sleeps.delays == [0.1, 0.2]  # rng pinned to 1.0: the jitter ceilings
    await transport.aclose()


@respx.mock
async def test_non_idempotent_call_is_sent_once() -> None:
    route = respx.post(f"{BASE}/create").mock(return_value=httpx.Response(503))
    sleeps = Sleeps()
    transport = make_transport(sleeps)
    with pytest.raises(UnavailableError):
        await transport.request("POST", "/create", operation="create", idempotent=False)
    assert route.call_count == 1
    assert sleeps.delays == []
    await transport.aclose()


@respx.mock
async def test_retry_recovers() -> None:
    route = respx.get(f"{BASE}/x").mock(
        side_effect=[httpx.Response(502), httpx.ConnectError("boom"), httpx.Response(200, json={"ok": True})]
    )
    transport = make_transport(Sleeps())
    response = await transport.request("GET", "/x", operation="get", idempotent=True)
    assert response.json() == {"ok": True}
    assert route.call_count == 3
    await transport.aclose()


@respx.mock
async def test_retry_after_is_honoured_then_reported() -> None:
    route = respx.get(f"{BASE}/x").mock(return_value=httpx.Response(429, headers={"Retry-After": "2"}))
    sleeps = Sleeps()
    transport = make_transport(sleeps, max_attempts=3, max_wait=5.0)
    with pytest.raises(RateLimitedError) as raised:
        await transport.request("GET", "/x", operation="get", idempotent=True)
    assert raised.value.retry_after == 2.0
    assert route.call_count == 3
    assert sleeps.delays == [2.0, 2.0]
    await transport.aclose()


@respx.mock
async def test_long_retry_after_goes_straight_to_the_operator() -> None:
    date = email.utils.formatdate(time.time() + 90, usegmt=True)
    route = respx.get(f"{BASE}/x").mock(return_value=httpx.Response(429, headers={"Retry-After": date}))
    sleeps = Sleeps()
    transport = make_transport(sleeps, max_wait=5.0)
    with pytest.raises(RateLimitedError) as raised:
        await transport.request("GET", "/x", operation="get", idempotent=True)
    assert raised.value.retry_after is not None and 85 <= raised.value.retry_after <= 91
    assert route.call_count == 1
    assert sleeps.delays == []
    await transport.aclose()


@respx.mock
async def test_retry_after_is_capped() -> None:
    respx.get(f"{BASE}/x").mock(return_value=httpx.Response(503, headers={"Retry-After": "999999"}))
    transport = make_transport(Sleeps(), max_retry_after=60.0)
    with pytest.raises(UnavailableError) as raised:
        await transport.request("GET", "/x", operation="get", idempotent=True)
    assert raised.value.retry_after == 60.0
    await transport.aclose()


@respx.mock
async def test_timeout_maps_to_unavailable() -> None:
    respx.get(f"{BASE}/x").mock(side_effect=httpx.ReadTimeout("slow"))
    transport = make_transport(Sleeps(), max_attempts=2)
    with pytest.raises(UnavailableError, match="timed out"):
        await transport.request("GET", "/x", operation="get", idempotent=True)
    await transport.aclose()


async def test_total_timeout_per_attempt() -> None:
    import asyncio

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        return httpx.Response(200)

    transport = HttpTransport(
        BASE,
        provider="test",
        timeouts=Timeouts(connect=0.1, total=0.05),
        retry=RetryPolicy(max_attempts=1),
        transport=httpx.MockTransport(hang),
    )
    with pytest.raises(UnavailableError, match="timed out"):
        await transport.request("GET", "/x", operation="get", idempotent=True)
    await transport.aclose()


@respx.mock
async def test_echoed_credentials_never_reach_the_exception() -> None:
    echo = (
        '{"error": "bad request from Authorization: Bearer s3cr3t-token-value '
        'password=hunter2pass url redis://default:hunter2pass@h:1"}'
    )
    respx.post(f"{BASE}/x").mock(return_value=httpx.Response(400, text=echo))
    transport = make_transport(Sleeps())
    with pytest.raises(InvalidRequestError) as raised:
        await transport.request("POST", "/x", operation="op", idempotent=False)
    text = str(raised.value) + repr(raised.value) + raised.value.message
    assert "s3cr3t-token-value" not in text
    assert "hunter2pass" not in text
    await transport.aclose()


@respx.mock
async def test_connection_error_text_is_redacted() -> None:
    respx.get(f"{BASE}/x").mock(side_effect=httpx.ConnectError("cannot reach s3cr3t-token-value"))
    transport = make_transport(Sleeps(), max_attempts=1)
    with pytest.raises(UnavailableError) as raised:
        await transport.request("GET", "/x", operation="get", idempotent=True)
    assert "s3cr3t-token-value" not in str(raised.value)
    await transport.aclose()


@respx.mock
@pytest.mark.parametrize(
    ("failure", "outcome_unknown"),
    [
        (httpx.ConnectError("refused"), False),  # nothing was sent
        (httpx.ConnectTimeout("slow connect"), False),
        (httpx.ReadTimeout("slow answer"), True),  # sent; the provider may act on it yet
        (httpx.RemoteProtocolError("peer closed"), True),
        (httpx.Response(503, text="busy"), False),  # refused
        (httpx.Response(500, text="boom"), False),
        (httpx.Response(502, text="bad gateway"), True),  # a gateway may have passed it on
        (httpx.Response(504, text="gateway timeout"), True),
    ],
)
async def test_a_create_knows_whether_the_provider_may_still_act_on_it(
    failure: Exception | httpx.Response, outcome_unknown: bool
) -> None:
    route = respx.post(f"{BASE}/x")
    if isinstance(failure, httpx.Response):
        route.mock(return_value=failure)
    else:
        route.mock(side_effect=failure)
    transport = make_transport(Sleeps(), max_attempts=3)
    with pytest.raises(UnavailableError) as raised:
        await transport.request("POST", "/x", operation="create", idempotent=False)
    assert raised.value.outcome_unknown is outcome_unknown
    assert route.call_count == 1  # a create is never repeated in-process
    await transport.aclose()


@respx.mock
async def test_a_429_holds_back_every_call_of_the_account_until_retry_after() -> None:
    now = [100.0]
    limited = respx.get(f"{BASE}/x").mock(return_value=httpx.Response(429, headers={"Retry-After": "30"}))
    other = respx.get(f"{BASE}/y").mock(return_value=httpx.Response(200, json={}))
    transport = HttpTransport(
        BASE, provider="test", retry=RetryPolicy(max_attempts=3), sleep=Sleeps(), clock=lambda: now[0]
    )
    with pytest.raises(RateLimitedError):  # 30 s is longer than the transport waits in-process
        await transport.request("GET", "/x", operation="get", idempotent=True)
    now[0] += 10
    with pytest.raises(RateLimitedError, match="not sent") as held:
        await transport.request("GET", "/y", operation="list", idempotent=True)
    assert held.value.retry_after == pytest.approx(20.0)
    assert other.call_count == 0 and limited.call_count == 1  # the quota is not spent on asking again
    now[0] += 20
    await transport.request("GET", "/y", operation="list", idempotent=True)
    assert other.call_count == 1
    await transport.aclose()
