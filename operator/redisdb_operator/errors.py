"""Every failure as one typed verdict (a condition reason and a retry decision), and the delay before a retry.

The one module that knows both the provider's typed errors and the Kubernetes client's: the pure reconcile core
stays free of `kube`, and the provider registry reports a missing object without importing the reconcile core.
"""

from __future__ import annotations

import dataclasses
import random

from .kube import KubeError, KubeUnavailable
from .providers.base import (
    AlreadyExistsError,
    InvalidRequestError,
    NotFoundError,
    ProviderError,
    RateLimitedError,
    UnauthorizedError,
    UnavailableError,
)


@dataclasses.dataclass(frozen=True)
class ErrorVerdict:
    """How the shell must react to a failure: retry later (temporary) or wait for a spec change (permanent)."""

    reason: str
    message: str
    temporary: bool
    retry_after: float | None = None


class ConfigurationError(Exception):
    """Something the user must fix in Kubernetes (a missing RedisProvider or credentials Secret/key)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def classify_error(error: BaseException) -> ErrorVerdict:
    """Map any failure to a condition reason and a retry decision."""
    if isinstance(error, ConfigurationError):
        # The user fixes it by creating/updating an object: poll for that with growing (capped) delays.
        return ErrorVerdict(error.reason, error.message, temporary=True)
    if isinstance(error, RateLimitedError):
        return ErrorVerdict("RateLimited", f"provider rate limit: {error.message}", True, error.retry_after)
    if isinstance(error, UnavailableError):
        return ErrorVerdict("ProviderUnavailable", f"provider unavailable: {error.message}", True, error.retry_after)
    if isinstance(error, UnauthorizedError):
        return ErrorVerdict(
            "Unauthorized",
            f"the provider refused the credentials ({error.message}); fix the credentials Secret of the RedisProvider",
            temporary=True,
        )
    if isinstance(error, AlreadyExistsError):
        return ErrorVerdict("AlreadyExists", f"provider: {error.message}", temporary=True, retry_after=10.0)
    if isinstance(error, InvalidRequestError):
        return ErrorVerdict("InvalidRequest", f"the provider refused the request: {error.message}", False)
    if isinstance(error, NotFoundError):
        return ErrorVerdict("NotFound", f"provider: {error.message}", temporary=True, retry_after=5.0)
    if isinstance(error, ProviderError):
        return ErrorVerdict("ProviderError", error.message, temporary=error.temporary)
    if isinstance(error, KubeUnavailable):
        # An apiserver restart or an etcd outage: expected, retried, and no reason for a traceback.
        return ErrorVerdict("KubernetesUnavailable", f"the Kubernetes API is unavailable: {error.message}", True, 5.0)
    if isinstance(error, KubeError):
        return ErrorVerdict("KubernetesError", str(error), temporary=True)
    return ErrorVerdict("InternalError", f"{type(error).__name__}: {error}", temporary=True)


def backoff_delay(retry: int, retry_after: float | None, *, base: float = 2.0, cap: float = 300.0) -> float:
    """Delay before the next attempt: the provider's Retry-After when given, else capped exponential + jitter."""
    if retry_after is not None and retry_after > 0:
        return min(float(retry_after), cap)
    exponential = min(cap, base * float(2 ** min(retry, 16)))
    return exponential / 2 + random.uniform(0, exponential / 2)
