"""Every failure gets one verdict (a condition reason and a retry decision); backoff honours the provider."""

from __future__ import annotations

import asyncio

import httpx
import kopf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redisdb_operator.errors import ConfigurationError, ErrorVerdict, backoff_delay, classify_error
from redisdb_operator.kube import KubeClient, KubeUnavailable
from redisdb_operator.providers.base import (
    AlreadyExistsError,
    InvalidRequestError,
    RateLimitedError,
    UnauthorizedError,
    UnavailableError,
)


@pytest.mark.parametrize(
    ("error", "reason", "temporary", "retry_after"),
    [
        (RateLimitedError("slow down", retry_after=7), "RateLimited", True, 7),
        (UnavailableError("503"), "ProviderUnavailable", True, None),
        (UnauthorizedError("bad key"), "Unauthorized", True, None),
        (InvalidRequestError("unknown region"), "InvalidRequest", False, None),
        (AlreadyExistsError("taken"), "AlreadyExists", True, 10.0),
        (ConfigurationError("CredentialsNotFound", "no secret"), "CredentialsNotFound", True, None),
        (RuntimeError("boom"), "InternalError", True, None),
    ],
)
def test_errors_map_to_reasons_and_retry_decisions(
    error: Exception, reason: str, temporary: bool, retry_after: float | None
) -> None:
    verdict = classify_error(error)
    assert (verdict.reason, verdict.temporary, verdict.retry_after) == (reason, temporary, retry_after)


def test_backoff_honours_retry_after_and_caps() -> None:
    assert backoff_delay(0, 12) == 12
    assert backoff_delay(3, 10_000) == 300
    for retry in range(20):
        delay = backoff_delay(retry, None)
        assert 0 < delay <= 300
    assert backoff_delay(10, None) >= 150  # exponential, half of it fixed


@settings(max_examples=150, deadline=None)
@given(message=st.text(max_size=50), kind=st.integers(min_value=0, max_value=4))
def test_every_failure_gets_a_verdict(message: str, kind: int) -> None:
    error: BaseException = [
        ValueError(message),
        KeyError(message),
        UnavailableError(message, retry_after=3),
        KubeUnavailable(0, message),
        RuntimeError(message),
    ][kind]
    verdict = classify_error(error)
    assert isinstance(verdict, ErrorVerdict) and verdict.reason


def test_regression_an_unreachable_apiserver_is_temporary_not_internal() -> None:
    """Found by the chaos suite: while kube-apiserver restarted, httpx.ConnectError from the operator's own
    Kubernetes client was classified InternalError and logged with a traceback on every retry."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("All connection attempts failed", request=request)

    async def call() -> None:
        client = KubeClient(
            kopf.ConnectionInfo(server="https://127.0.0.1:9", insecure=True), transport=httpx.MockTransport(refuse)
        )
        try:
            await client.get("/api/v1/namespaces/default/secrets/x")
        finally:
            await client.aclose()

    with pytest.raises(KubeUnavailable) as caught:
        asyncio.run(call())
    verdict = classify_error(caught.value)
    assert verdict.reason == "KubernetesUnavailable" and verdict.temporary

    def unavailable(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"message": "etcd is away"})

    async def call_503() -> None:
        client = KubeClient(
            kopf.ConnectionInfo(server="https://127.0.0.1:9", insecure=True), transport=httpx.MockTransport(unavailable)
        )
        try:
            await client.get("/api/v1/namespaces/default/secrets/x")
        finally:
            await client.aclose()

    with pytest.raises(KubeUnavailable):
        asyncio.run(call_503())


def test_an_unclassifiable_provider_error_is_retried_and_shown() -> None:
    """Issue 13: an errors[] message we cannot name is temporary (bounded backoff), with the provider's words."""
    from redisdb_operator.providers.fly import classify_graphql_errors
    from redisdb_operator.status import PERMANENT_REASONS

    error = classify_graphql_errors([{"message": "upstream connect error"}], operation="fly get add-on x")
    verdict = classify_error(error)
    assert verdict.temporary and verdict.reason == "ProviderError"
    assert "upstream connect error" in verdict.message
    assert verdict.reason not in PERMANENT_REASONS
    assert backoff_delay(50, verdict.retry_after) <= 300
