"""The one provider protocol every adapter implements, its normalized models and its typed errors.

The reconciler only ever sees these types: an adapter turns its wire API's shapes and failures into them,
so decisions (retry, give up, adopt) are made once, here, not per provider.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field


class ProviderType(enum.StrEnum):
    """The wire API a provider speaks."""

    FLY = "fly"
    UPSTASH = "upstash"


class Database(BaseModel):
    """A provider database as the operator sees it, whichever API reported it.

    Credential fields (password, tokens, URLs with a password) are excluded from ``repr`` so that
    logging a Database never leaks them.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    primary_region: str
    read_regions: tuple[str, ...] = ()
    plan: str
    # False when the provider's answer does not say which plan this is (Upstash ``type: "paid"``): ``plan`` then holds
    # the provider's own word and must never be compared with spec.plan (reference section 6).
    plan_observable: bool = True
    eviction: bool = False
    tls: bool = False
    state: str = "active"
    state_message: str = Field(default="", description="The provider's reason for the state (Fly's errorMessage)")
    host: str = ""
    port: int = 0
    password: str = Field(default="", repr=False)
    url: str = Field(default="", repr=False, description="Connection URL with the password (redis:// or rediss://)")
    rest_url: str = ""
    rest_token: str = Field(default="", repr=False)
    read_only_rest_token: str = Field(default="", repr=False)
    created_at: datetime.datetime | None = Field(
        default=None, description="When the provider created it (UTC), if it says: tells ours from a stranger's"
    )


class CreateDatabaseRequest(BaseModel):
    """What the operator asks a provider to create."""

    model_config = ConfigDict(frozen=True)

    name: str
    primary_region: str
    read_regions: tuple[str, ...] = ()
    plan: str | None = None
    eviction: bool = False
    tls: bool | None = None


class DatabaseUpdate(BaseModel):
    """An in-place change; ``None`` means leave that setting as it is.

    One object rather than one call per field because Fly changes plan, regions and options in a single
    mutation, while Upstash needs one call per field: each adapter does the fewest calls its API allows.
    """

    model_config = ConfigDict(frozen=True)

    read_regions: tuple[str, ...] | None = None
    plan: str | None = None
    eviction: bool | None = None

    def is_empty(self) -> bool:
        return self.read_regions is None and self.plan is None and self.eviction is None

    def applied_to(self, database: Database) -> Database:
        """The database as it is once this change has landed: what an adapter returns without reading it again."""
        changed: dict[str, object] = {"read_regions": self.read_regions, "plan": self.plan, "eviction": self.eviction}
        if self.plan is not None:
            changed["plan_observable"] = True  # we just set it: known until the provider says otherwise
        return database.model_copy(update={key: value for key, value in changed.items() if value is not None})


class DatabaseUsage(BaseModel):
    """What a provider reports a database has used this month so far; ``None`` where it reports nothing.

    Counters are the provider's own (Upstash's ``total_monthly_*``): they restart with the billing month.
    ``cost_usd`` is the provider's own bill so far (Upstash ``total_monthly_billing``), not an estimate of ours.
    """

    model_config = ConfigDict(frozen=True)

    requests: int | None = None
    data_size_bytes: int | None = None
    bandwidth_bytes: int | None = None
    cost_usd: float | None = None

    def is_empty(self) -> bool:
        return self.requests is None and self.data_size_bytes is None and self.bandwidth_bytes is None


class ProviderError(Exception):
    """Base of every error an adapter raises. Messages never contain credentials."""

    temporary: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class NotFoundError(ProviderError):
    """The database does not exist at the provider."""


class AlreadyExistsError(ProviderError):
    """A database with this name already exists at the provider."""


class InvalidRequestError(ProviderError):
    """The provider refused the request as invalid; retrying the same request cannot succeed."""


class UnauthorizedError(ProviderError):
    """The credentials are missing, wrong or lack permission."""


class RateLimitedError(ProviderError):
    """The provider asked us to slow down; ``retry_after`` is how long, in seconds."""

    temporary = True

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = 429) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class UnavailableError(ProviderError):
    """The provider could not answer now (5xx, timeout, connection error); worth retrying later.

    ``outcome_unknown``: the request reached the provider but no answer came back (a timeout after sending, a
    dropped connection, a gateway's 502/504), so the provider may still act on it. A create that ends so must
    not be repeated, nor its resource released, until the database has had time to appear.
    """

    temporary = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown


@runtime_checkable
class ProviderClient(Protocol):
    """One provider account (Fly organization or Upstash account) behind one API."""

    provider_type: ProviderType
    # True when the provider itself refuses a second database of one name. Only then may a create go first
    # and rely on AlreadyExistsError to find a database an interrupted create left behind; otherwise the
    # operator looks the name up before every create.
    names_are_unique: bool

    async def create(self, request: CreateDatabaseRequest) -> Database:
        """Create a database; raises AlreadyExistsError when the name is taken."""
        ...

    async def get(self, database_id: str) -> Database:
        """Return one database with its credentials; raises NotFoundError."""
        ...

    async def find_by_name(self, name: str) -> Database | None:
        """Return the database with this provider-side name, or None."""
        ...

    async def list(self) -> Sequence[Database]:
        """Every database of the account (credentials may be absent: use get for them)."""
        ...

    async def update(self, database: Database, update: DatabaseUpdate) -> Database:
        """Change read regions (the full set), plan and/or eviction of the observed `database` in place, and return
        it as changed (`update.applied_to(database)`: no extra read). An empty update makes no call."""
        ...

    async def reset_password(self, database_id: str) -> Database:
        """Issue a new password (the old one stops working) and return the database with it."""
        ...

    async def delete(self, database_id: str) -> None:
        """Destroy the database; a database that is already gone is not an error."""
        ...

    async def usage(self, database_id: str) -> DatabaseUsage | None:
        """One database's usage from the provider's stats call, sent once (no retry: a missed read waits for the
        next interval rather than spend the account's quota). None when the answer has no shape we know."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
