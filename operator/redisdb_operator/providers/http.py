"""The HTTP transport both adapters share: timeouts, connection reuse, bounded retries and error mapping.

Retrying lives here, not in the adapters, so that one rule holds everywhere: a call is repeated only when
repeating it cannot create a second database or invalidate a password the first attempt already issued.
After a small budget of attempts the transport raises a typed error and the operator's own (slower, durable)
backoff takes over; a reconcile never hangs for minutes inside one HTTP call.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from .. import metrics
from ..aiohttp_transport import default_transport
from .base import (
    AlreadyExistsError,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    RateLimitedError,
    UnauthorizedError,
    UnavailableError,
)

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 300
REDACTED = "***"


@dataclass(frozen=True)
class RetryPolicy:
    """How hard the transport tries before handing a temporary failure back to the operator.

    ``max_wait`` caps any single pause, including one the server asked for with ``Retry-After``: a longer
    request is not slept on in-process but reported (as ``retry_after``) so the operator can requeue.
    """

    max_attempts: int = 3
    base_delay: float = 0.2
    max_delay: float = 2.0
    max_wait: float = 5.0
    max_retry_after: float = 300.0

    def backoff(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Full jitter: uniform in [0, min(max_delay, base * 2**attempt)] so retrying clients spread out."""
        ceiling = min(self.max_delay, self.base_delay * (2.0**attempt))
        return max(0.0, rng()) * ceiling


@dataclass(frozen=True)
class Timeouts:
    """Connect timeout, and a total budget per attempt (httpx's own timeouts are per read, not per call)."""

    connect: float = 5.0
    total: float = 30.0


DEFAULT_TIMEOUTS = Timeouts()
DEFAULT_HOLD_SECONDS = 1.0  # after a 429 without Retry-After
HOLD_TOLERANCE = 0.05  # an in-process retry sleeps exactly Retry-After: do not refuse it for clock jitter
DEFAULT_RETRY = RetryPolicy()

# --- redaction ---------------------------------------------------------------------------------------------

_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s@\"']+)@")
_AUTH_HEADER = re.compile(
    r"(?i)\b(authorization|proxy-authorization)(\"?\s*[:=]\s*\"?)(basic|bearer|flyv1)?\s*[^\s\"',}]+"
)
_SCHEME_TOKEN = re.compile(r"(?i)\b(basic|bearer|flyv1)\s+[A-Za-z0-9._~+/=-]{8,}")
_SECRET_FIELD = re.compile(
    r"(?i)(\"?(?:password|passwd|rest_token|read_only_rest_token|api_?key|apikey|token|secret)\"?\s*[:=]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s,}&]+)"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove credentials from text that may reach a log line, an exception or a Kubernetes event.

    Known secrets (API key, token, the Basic credential) are replaced verbatim; passwords we cannot know in
    advance are caught by shape: URL userinfo, Authorization headers and JSON/form fields named like secrets.
    """
    if not text:  # a list parses every add-on's (empty) errorMessage: 9 % of the idle leader's samples at 3,000
        return text
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{_redact_userinfo(m['userinfo'])}@", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
    text = _SCHEME_TOKEN.sub(lambda m: f"{m[1]} {REDACTED}", text)
    text = _SECRET_FIELD.sub(lambda m: f"{m[1]}{_quote_like(m[2])}", text)
    return text


def _redact_userinfo(userinfo: str) -> str:
    user, sep, _ = userinfo.partition(":")
    # "redis://PASSWORD@host" (Fly's documented shape) carries the password as the user part.
    return f"{user}:{REDACTED}" if sep else REDACTED


def _quote_like(value: str) -> str:
    if value[:1] in ('"', "'"):
        return f"{value[0]}{REDACTED}{value[0]}"
    return REDACTED


# --- body and header parsing -------------------------------------------------------------------------------


def error_message(response: httpx.Response) -> str:
    """The provider's own words: a JSON string, ``{"error"}``, ``{"message"}``, GraphQL ``errors[]`` or text."""
    text = response.text.strip()
    if not text:
        return response.reason_phrase or f"HTTP {response.status_code}"
    try:
        body: Any = json.loads(text)
    except ValueError:
        return text
    return _message_from_json(body) or text


def _message_from_json(body: Any) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict):
                nested = _message_from_json(value)
                if nested:
                    return nested
        errors = body.get("errors")
        if isinstance(errors, list):
            messages = [e.get("message") for e in errors if isinstance(e, dict)]
            return ", ".join(m for m in messages if isinstance(m, str) and m)
    return ""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: either delta-seconds or an HTTP date. Garbage → None."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


# --- status mapping ----------------------------------------------------------------------------------------


def error_for_status(
    status: int,
    message: str,
    *,
    operation: str,
    retry_after: float | None = None,
) -> ProviderError:
    """Map an HTTP failure to the typed error the reconciler decides on. ``message`` must already be redacted."""
    text = f"{operation} failed (HTTP {status}): {message}"
    if status in (401, 403):
        return UnauthorizedError(text, status=status)
    if status == 404:
        return NotFoundError(text, status=status)
    if status == 429:
        return RateLimitedError(text, retry_after=retry_after, status=status)
    if status >= 500:
        # A gateway that gave up (502, 504) may have passed the request on; a 500 or 503 refused it.
        return UnavailableError(text, retry_after=retry_after, status=status, outcome_unknown=status in (502, 504))
    if status == 409 or "already exist" in message.lower():
        return AlreadyExistsError(text, status=status)
    return InvalidRequestError(text, status=status)


def _truncate(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


# --- the transport -----------------------------------------------------------------------------------------

Sleep = Callable[[float], Awaitable[None]]


class HttpTransport:
    """One pooled ``httpx.AsyncClient`` per adapter plus the retry and error rules.

    ``secrets`` are the credentials this transport sends; they are scrubbed from every message it produces,
    even when a server echoes them back in an error body.

    A 429 holds back every call of this transport (one provider account) until its ``Retry-After`` has passed:
    the limit is the account's, so each reconcile, resync and check asking anyway would only spend the quota.
    Held calls fail at once with ``RateLimitedError`` and are not sent.
    """

    def __init__(
        self,
        base_url: str,
        *,
        provider: str,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        retry: RetryPolicy = DEFAULT_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        max_connections: int = 10,
    ) -> None:
        self.provider = provider
        self._clock = clock
        self._hold_until = 0.0  # the clock's time before which no call is sent (after a 429)
        self.retry = retry
        self.timeouts = timeouts
        self._secrets = tuple(s for s in secrets if s)
        self._sleep = sleep
        self._rng = rng
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            auth=auth,
            headers={"Accept": "application/json", "User-Agent": "redisdb-operator", **(headers or {})},
            timeout=httpx.Timeout(timeouts.total, connect=timeouts.connect),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            # httpx's API, aiohttp's connection pool (aiohttp_transport.py), httpx's own behind a proxy
            transport=transport or default_transport(max_connections=max_connections),
            follow_redirects=False,
        )

    def redact(self, text: str) -> str:
        return redact(text, self._secrets)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        idempotent: bool,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        metric_operation: str = "",
        outcome_of: Callable[[httpx.Response], str] | None = None,
    ) -> httpx.Response:
        """Send one logical call; return a 2xx response or raise a typed ProviderError.

        ``idempotent=False`` (create, reset-password) means exactly one attempt whatever happens: a timeout
        after the server acted would otherwise create a twin database or rotate the password twice.
        ``metric_operation`` names the call in metrics (``create``, ``graphql:createAddOn``); never an id or a
        name, which ``operation`` may carry. Without it, the first word of ``operation`` (its verb) stands in.
        ``outcome_of`` labels a 2xx answer in metrics when the API reports errors in its body (GraphQL).
        """
        attempts = self.retry.max_attempts if idempotent else 1
        label = f"{self.provider} {operation}"
        metric_operation = metric_operation or operation.split(" ", 1)[0]
        for attempt in range(attempts):
            last = attempt == attempts - 1
            held = self._hold_until - self._clock() if attempt == 0 else 0.0  # a retry below waited it out
            if held > HOLD_TOLERANCE:
                self._record(metric_operation, "held", time.monotonic())
                raise RateLimitedError(
                    f"{label} not sent: the provider asked to slow down, {held:.1f}s left", retry_after=held
                )
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.timeouts.total):
                    response = await self._client.request(method, path, json=json_body, params=params)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:  # nothing was sent
                detail = self.redact(_truncate(str(exc) or type(exc).__name__))
                error: ProviderError = UnavailableError(f"{label} failed: cannot connect: {detail}")
            except (httpx.TimeoutException, TimeoutError) as exc:
                error = UnavailableError(f"{label} failed: timed out ({type(exc).__name__})", outcome_unknown=True)
            except httpx.TransportError as exc:
                detail = self.redact(_truncate(str(exc) or type(exc).__name__))
                error = UnavailableError(f"{label} failed: connection error: {detail}", outcome_unknown=True)
            else:
                if response.is_success:
                    self._record(metric_operation, outcome_of(response) if outcome_of else "ok", started)
                    return response
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is not None:
                    retry_after = min(retry_after, self.retry.max_retry_after)
                message = self.redact(_truncate(error_message(response)))
                error = error_for_status(response.status_code, message, operation=label, retry_after=retry_after)
                if isinstance(error, RateLimitedError):
                    hold = retry_after if retry_after is not None else DEFAULT_HOLD_SECONDS
                    self._hold_until = max(self._hold_until, self._clock() + hold)
            self._record(metric_operation, type(error).__name__, started)
            if not error.temporary or last:
                raise error
            delay = self._delay(attempt, error)
            if delay is None:
                raise error
            log.debug("%s: attempt %d/%d failed (%s); retrying in %.2fs", label, attempt + 1, attempts, error, delay)
            await self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _record(self, operation: str, outcome: str, started: float) -> None:
        """One attempt in the provider metrics."""
        metrics.PROVIDER_REQUESTS.inc(provider_type=self.provider, operation=operation, outcome=outcome)
        metrics.PROVIDER_REQUEST_DURATION.observe(
            time.monotonic() - started, provider_type=self.provider, operation=operation
        )

    def _delay(self, attempt: int, error: ProviderError) -> float | None:
        """Pause before the next attempt, or None when the server asked for longer than we wait in-process."""
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return retry_after if retry_after <= self.retry.max_wait else None
        return min(self.retry.backoff(attempt, self._rng), self.retry.max_wait)


def json_or_none(response: httpx.Response) -> Any:
    """Decode a body that may be JSON, a bare ``"OK"`` string, plain ``OK`` text or empty."""
    text = response.text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
