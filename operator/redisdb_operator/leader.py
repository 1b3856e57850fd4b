"""Leader election on a coordination.k8s.io/v1 Lease, and the gate every write of the leader passes through.

Every replica serves the webhook (and keeps the indexes it reads); only the holder of the Lease reconciles.
The Lease follows client-go's rules: the holder renews it every `retry_period`; a candidate takes it over only
after it has seen the same record for `lease_duration` by its own (monotonic) clock, so clocks need not agree.

The leader may write (provider calls, Secrets, kopf's status patches and Events) only until its *write
deadline*: the start of its last successful renewal plus `renew_deadline` (< `lease_duration`). Past it, the
process exits at once, before any further write; Kubernetes restarts it as a candidate. A write that started
before the deadline may still be in flight when a new leader starts: at most `lease_duration - renew_deadline`
of slack (4 s by default) covers a write that finishes within that time; a write slower than that (the
provider's 30 s timeout) can land after the successor started. That window is safe because every write is
idempotent or keyed: a create is keyed by the database name the provider refuses to duplicate (the successor
finds and adopts it), a delete of a gone database is a no-op, updates are re-checked by the successor's
reconcile, and Secrets are replaced with resourceVersion preconditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime
import functools
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import aiohttp

from . import metrics
from .aiohttp_transport import OWN_SESSIONS
from .kube import KubeClient, KubeConflict, KubeError
from .providers.base import CreateDatabaseRequest, Database, DatabaseUpdate, DatabaseUsage, ProviderClient

logger = logging.getLogger(__name__)

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
DEFAULT_LEASE_NAME = "redisdb-operator-leader"


class NotLeader(Exception):
    """A write was refused: this process does not hold the Lease (any more), or it is handing it over."""


def identity_from_environment() -> str:
    """The pod name (downward API POD_NAME) when in a pod; else host and pid, unique per local process."""
    pod = os.environ.get("POD_NAME", "")
    return pod or f"{socket.gethostname()}-{os.getpid()}"


def namespace_from_environment() -> str:
    """POD_NAMESPACE, else the ServiceAccount's namespace file, else empty."""
    namespace = os.environ.get("POD_NAMESPACE", "")
    if namespace:
        return namespace
    with contextlib.suppress(OSError), open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as handle:
        return handle.read().strip()
    return ""


def _microtime() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _exit_now(code: int) -> NoReturn:
    """Leave without cleanup: cleanup handlers and pending kopf patches would be writes."""
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    sys.stderr.flush()
    os._exit(code)


@dataclass(frozen=True)
class ElectionConfig:
    namespace: str
    name: str = DEFAULT_LEASE_NAME
    identity: str = ""
    lease_duration: float = 10.0
    renew_deadline: float = 6.0
    retry_period: float = 1.0

    def __post_init__(self) -> None:
        if not self.namespace:
            raise SystemExit(
                "leader election needs the Lease's namespace: set --leader-election-namespace or POD_NAMESPACE"
            )
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise SystemExit(
                "leader election timings must satisfy 0 < --leader-election-retry-period < "
                "--leader-election-renew-deadline < --leader-election-lease-duration"
            )


class LeaderElector:
    """Acquire, renew and release the Lease; say whether a write may start now."""

    def __init__(
        self,
        kube: KubeClient,
        config: ElectionConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        exit_process: Callable[[int], NoReturn] = _exit_now,
    ) -> None:
        self._kube = kube
        self._config = config
        self._clock = clock
        self._exit = exit_process
        self.identity = config.identity or identity_from_environment()
        self.leading = False
        self.stepping_down = False
        self._write_deadline = float("-inf")
        self._observed_record: tuple[Any, ...] | None = None
        self._observed_at = float("-inf")
        self._in_flight = 0
        # The Lease as this process last wrote it: a renewal replaces it without reading it first (a conflict
        # means someone else wrote it, and the Lease is then read and judged as a candidate would).
        self._written: dict[str, Any] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        metrics.LEADER.set(0)

    @property
    def config(self) -> ElectionConfig:
        return self._config

    @property
    def path(self) -> str:
        return f"{LEASES.format(namespace=self._config.namespace)}/{self._config.name}"

    @property
    def seconds_left(self) -> float:
        return self._write_deadline - self._clock()

    def lost(self, why: str) -> NoReturn:
        """Leadership is gone or may be: exit at once (Kubernetes restarts the process as a candidate)."""
        logger.critical("lost the leader Lease %s/%s: %s; exiting", self._config.namespace, self._config.name, why)
        self.leading = False
        metrics.LEADER.set(0)
        self._exit(1)

    def check_write(self, what: str) -> None:
        """Raise NotLeader unless a write may start now; exit when the lease may have passed."""
        if self.stepping_down:
            raise NotLeader(f"handing the Lease over; not starting {what}")
        if not self.leading:
            raise NotLeader(f"not the leader; not starting {what}")
        if self._clock() >= self._write_deadline:
            self.lost(f"the lease may have passed before {what}")

    @contextlib.asynccontextmanager
    async def writing(self, what: str) -> AsyncIterator[None]:
        """Check the deadline, then count the write as in flight until it returns (SIGTERM waits for it)."""
        self.check_write(what)
        self._in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    # --- the Lease ----------------------------------------------------------------------------------------

    def _lease_body(self, existing: dict[str, Any] | None, now: str) -> dict[str, Any]:
        spec: dict[str, Any] = dict((existing or {}).get("spec") or {})
        taking_over = spec.get("holderIdentity") != self.identity
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=int(self._config.lease_duration),
            renewTime=now,
        )
        if taking_over:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if existing else 0)
        if existing is not None:
            return {**existing, "spec": spec}
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": self._config.name,
                "namespace": self._config.namespace,
                "labels": {"app.kubernetes.io/managed-by": "redisdb-operator"},
            },
            "spec": spec,
        }

    async def try_acquire_or_renew(self, kube: KubeClient | None = None) -> bool:
        """One attempt; True when this process holds the Lease afterwards. Exits when a holder finds it taken."""
        kube = kube or self._kube
        started = self._clock()
        written = self._written
        if self.leading and written is not None and not self.stepping_down:
            # A renewal: one PUT guarded by the resourceVersion we wrote (the GET before it was half the renewal
            # cost, about 0.4 % of a core at one renewal a second).
            if started >= self._write_deadline:
                self.lost("could not renew it in time")
            try:
                self._written = await kube.replace(self.path, self._lease_body(written, _microtime()))
            except KubeConflict:
                self._written = None  # written by someone else since: read it below
            else:
                self._write_deadline = started + self._config.renew_deadline
                return True
        existing = await kube.get(self.path)
        if existing is not None:
            spec = existing.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"))
            if record != self._observed_record:
                self._observed_record, self._observed_at = record, started
            if holder and holder != self.identity:
                if self.leading:
                    self.lost(f"{holder} holds it now")
                duration = float(spec.get("leaseDurationSeconds") or self._config.lease_duration)
                if started < self._observed_at + duration:
                    return False  # held by another and not expired by our clock
        if self.leading and started >= self._write_deadline:
            self.lost("could not renew it in time")  # never write the Lease after the deadline either
        if self.stepping_down:
            return False  # release() hands it over; a renewal from the keeper thread must not take it back
        body = self._lease_body(existing, _microtime())
        try:
            if existing is None:
                self._written = await kube.create(LEASES.format(namespace=self._config.namespace), body)
            else:
                self._written = await kube.replace(self.path, body)
        except KubeConflict:
            return False  # another candidate (or renewal) won this round; look again next time
        # Our record is written: nobody takes over before `started + lease_duration` by their clocks.
        self._write_deadline = started + self._config.renew_deadline
        if not self.leading:
            logger.info(
                "acquired the leader Lease %s/%s as %s", self._config.namespace, self._config.name, self.identity
            )
        self.leading = True
        metrics.LEADER.set(1)
        return True

    async def acquire(self) -> bool:
        """Wait as a candidate until this process holds the Lease (True), or until it is stopping (False)."""
        logger.info(
            "waiting for the leader Lease %s/%s as %s", self._config.namespace, self._config.name, self.identity
        )
        while not self.stepping_down:
            try:
                if await self.try_acquire_or_renew():
                    return True
            except KubeError as error:
                logger.warning("leader election: %s", error)
            await asyncio.sleep(self._config.retry_period)
        return False

    async def keep(self, kube: KubeClient | None = None) -> None:
        """Renew every `retry_period`; exit when the Lease is taken or cannot be renewed before the deadline.
        Returns when the process steps down (release() owns the Lease from there)."""
        while True:
            await asyncio.sleep(self._config.retry_period)
            if self.stepping_down:
                return
            if self._clock() >= self._write_deadline:
                self.lost("it was not renewed before the deadline (a stopped or starved process)")
            try:
                renewed = await asyncio.wait_for(self.try_acquire_or_renew(kube), timeout=max(0.1, self.seconds_left))
            except (KubeError, TimeoutError) as error:
                logger.warning("renewing the leader Lease failed (%.1fs left): %s", self.seconds_left, error)
                continue
            if not renewed and not self.stepping_down:
                logger.warning("renewing the leader Lease conflicted (%.1fs left); retrying", self.seconds_left)

    def keep_in_thread(self, make_kube: Callable[[], KubeClient]) -> threading.Thread:
        """`keep` on a thread of its own (own event loop, own client). The operator's loop can be seconds late
        when thousands of objects arrive at once (every ready task runs before the next timer): at 10,000
        databases a renewal on that loop missed its 6 s deadline and the leader exited mid-burst. The write gate
        still checks the deadline on the operator's side before every write."""

        def run() -> None:
            async def main() -> None:
                kube = make_kube()
                try:
                    await self.keep(kube)
                finally:
                    await kube.aclose()

            asyncio.run(main())

        thread = threading.Thread(target=run, name="leader lease renewal", daemon=True)
        thread.start()
        return thread

    async def release(self, wait_for_writes: float = 5.0) -> None:
        """Stop writing, let writes in flight finish, then hand the Lease over (SIGTERM: a rolling update)."""
        self.stepping_down = True
        if not self.leading:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=min(wait_for_writes, max(0.0, self.seconds_left)))
        if self._clock() >= self._write_deadline or self._in_flight:
            return  # too late to write the Lease safely, or a write still runs: let it expire instead
        try:
            for attempt in range(2):  # a renewal from the keeper thread may have been in flight: read once more
                existing = await self._kube.get(self.path)
                if existing is None or (existing.get("spec") or {}).get("holderIdentity") != self.identity:
                    return
                spec = dict(existing.get("spec") or {})
                spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=_microtime())
                try:
                    await self._kube.replace(self.path, {**existing, "spec": spec})
                except KubeConflict:
                    if attempt == 0 and self._clock() < self._write_deadline:
                        continue
                    raise
                break
            logger.info("released the leader Lease %s/%s", self._config.namespace, self._config.name)
        except KubeError as error:
            logger.warning("could not release the leader Lease (it expires by itself): %s", error)
        finally:
            self.leading = False
            metrics.LEADER.set(0)

    def exit_if_past_deadline(self) -> None:
        """For SIGCONT: a process resumed past its deadline leaves before any queued coroutine can write."""
        if self.leading and not self.stepping_down and self._clock() >= self._write_deadline:
            self.lost("the process was stopped past its deadline")

    def install_sigcont_check(self) -> None:
        # A plain (not event-loop) handler: Python runs it before the next bytecode of any other callback.
        signal.signal(signal.SIGCONT, lambda *_: self.exit_if_past_deadline())


# --- the write gate ---------------------------------------------------------------------------------------

# Set in the context of the reconciling kopf operator: every task it spawns inherits it, so its own API writes
# (status patches, finalizers, progress annotations, Events) pass the gate; the webhook's operator never does.
LEADER_WORK: contextvars.ContextVar[LeaderElector | None] = contextvars.ContextVar("redisdb_leader_work", default=None)
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def install_kopf_write_gate() -> None:
    """Check the deadline before every non-read request kopf sends on behalf of the reconciling operator.

    kopf (1.45) sends every API request through one aiohttp.ClientSession.request call per attempt, retries
    included, so each attempt is checked. Requests outside LEADER_WORK (the webhook side) are untouched, and so
    are the operator's own clients (aiohttp_transport.OWN_SESSIONS): they check where they write (GatedKubeClient,
    GatedProviderClient), and the Lease's own release must pass while stepping down.
    """
    original = aiohttp.ClientSession.request
    if getattr(original, "redisdb_write_gate", False):
        return

    @functools.wraps(original)
    def gated(self: aiohttp.ClientSession, method: str, url: Any, **kwargs: Any) -> Any:
        elector = LEADER_WORK.get()
        if elector is not None and method.upper() not in _READ_METHODS and self not in OWN_SESSIONS:
            elector.check_write(f"{method.upper()} {url}")
        return original(self, method, url, **kwargs)

    gated.redisdb_write_gate = True  # type: ignore[attr-defined]
    aiohttp.ClientSession.request = gated  # type: ignore[method-assign]


class GatedKubeClient(KubeClient):
    """The controller's Kubernetes client: every write checks the leader's deadline first."""

    def __init__(self, *args: Any, elector: LeaderElector, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._elector = elector

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self._elector.writing(f"POST {path}"):
            return await super().create(path, body)

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self._elector.writing(f"PUT {path}"):
            return await super().replace(path, body)

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self._elector.writing(f"PATCH {path}"):
            return await super().merge_patch(path, body)


class GatedProviderClient:
    """A provider client whose writes check the leader's deadline first; reads pass straight through."""

    def __init__(self, client: ProviderClient, elector: LeaderElector) -> None:
        self._client = client
        self._elector = elector
        self.provider_type = client.provider_type
        self.names_are_unique = client.names_are_unique

    async def _write(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        async with self._elector.writing(what):
            return await call()

    async def create(self, request: CreateDatabaseRequest) -> Database:
        result: Database = await self._write(f"create {request.name}", lambda: self._client.create(request))
        return result

    async def update(self, database: Database, update: DatabaseUpdate) -> Database:
        result: Database = await self._write(f"update {database.id}", lambda: self._client.update(database, update))
        return result

    async def reset_password(self, database_id: str) -> Database:
        result: Database = await self._write(
            f"reset_password {database_id}", lambda: self._client.reset_password(database_id)
        )
        return result

    async def delete(self, database_id: str) -> None:
        await self._write(f"delete {database_id}", lambda: self._client.delete(database_id))

    async def list(self) -> Sequence[Database]:
        return await self._client.list()

    async def get(self, database_id: str) -> Database:
        return await self._client.get(database_id)

    async def find_by_name(self, name: str) -> Database | None:
        return await self._client.find_by_name(name)

    async def usage(self, database_id: str) -> DatabaseUsage | None:
        return await self._client.usage(database_id)  # a read: a standby's usage daemon never runs anyway

    async def aclose(self) -> None:
        await self._client.aclose()

    def __getattr__(self, name: str) -> Any:
        """Everything else an adapter offers is a read (the live catalog, usage): passed straight through."""
        return getattr(self._client, name)
