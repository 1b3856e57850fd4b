"""`redisdb-operator run`: configure and start the operator (flags, or REDISDB_* environment variables)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import datetime
import json
import logging
import os
import signal
import weakref
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import kopf
import uvloop

from . import metrics
from .controller import ControllerConfig, DatabaseController
from .database_book import DatabaseBook
from .handlers import register_admission, register_book, register_reconcilers
from .kube import KubeClient
from .leader import (
    DEFAULT_LEASE_NAME,
    LEADER_WORK,
    ElectionConfig,
    GatedKubeClient,
    GatedProviderClient,
    LeaderElector,
    install_kopf_write_gate,
    namespace_from_environment,
)
from .listeners import HeldPortWebhookServer, bound_port, liveness_port, start_liveness_server, write_ports_file
from .models import GROUP, DeletionPolicy
from .provider_registry import ProviderRegistry
from .providers.base import ProviderClient
from .providers.factory import make_client
from .sweep import SECRET_CHECKS_PER_SWEEP, StatusDiffBaseStorage, Sweeper
from .takeover import TakeoverLane
from .tls import DEFAULT_VALIDITY
from .usage import UsageConfig, UsageRefresher, UsageSchedule
from .webhook_bootstrap import bootstrap, keep_renewed, plan_from_args

# The book of RedisDatabases is listed again this often (at least): it drops what no event could remove.
BOOK_RELIST = 600.0


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="redisdb-operator run", description=__doc__)
    parser.add_argument(
        "--namespace",
        action="append",
        default=[n for n in os.environ.get("REDISDB_NAMESPACES", "").split(",") if n],
        help="watch only this namespace (repeatable; env REDISDB_NAMESPACES, comma-separated); default: all",
    )
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=_env_float("REDISDB_RESYNC_INTERVAL", 300.0),
        help="seconds between drift checks of each database (env REDISDB_RESYNC_INTERVAL; default 300)",
    )
    parser.add_argument(
        "--secret-checks-per-resync",
        type=int,
        default=int(_env_float("REDISDB_SECRET_CHECKS_PER_RESYNC", SECRET_CHECKS_PER_SWEEP)),
        help="connection Secrets read per resync sweep and RedisProvider at most; past it each is read every "
        "ceil(databases / this)-th interval, so a deleted or edited Secret is restored within that many "
        f"intervals (env REDISDB_SECRET_CHECKS_PER_RESYNC; default {SECRET_CHECKS_PER_SWEEP})",
    )
    parser.add_argument(
        "--max-concurrent-reconciles",
        type=int,
        default=int(_env_float("REDISDB_MAX_CONCURRENT_RECONCILES", 32)),
        help="reconciles in flight at once, for changes and (separately, so a change never waits behind them) for "
        "resumes and resyncs (env REDISDB_MAX_CONCURRENT_RECONCILES; default 32)",
    )
    parser.add_argument(
        "--liveness",
        default=os.environ.get("REDISDB_LIVENESS", "http://0.0.0.0:8080/healthz"),
        help="kopf liveness endpoint URL, or empty to disable (env REDISDB_LIVENESS); port 0: the OS picks one "
        "(see --ports-file)",
    )
    parser.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("REDISDB_LEADER_ELECTION", "").lower() in ("1", "true", "yes"),
        help="hold a coordination.k8s.io Lease to reconcile; every replica serves the webhook "
        "(env REDISDB_LEADER_ELECTION=true; the Helm chart always sets it)",
    )
    parser.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("REDISDB_LEADER_ELECTION_NAMESPACE", ""),
        help="namespace of the Lease; default: POD_NAMESPACE or the ServiceAccount's namespace",
    )
    parser.add_argument(
        "--leader-election-name",
        default=os.environ.get("REDISDB_LEADER_ELECTION_NAME", DEFAULT_LEASE_NAME),
        help=f"name of the Lease (default {DEFAULT_LEASE_NAME})",
    )
    parser.add_argument(
        "--leader-election-identity",
        default=os.environ.get("REDISDB_LEADER_ELECTION_IDENTITY", ""),
        help="holder identity; default: POD_NAME (downward API), else host name and process id",
    )
    parser.add_argument(
        "--leader-election-lease-duration",
        type=float,
        default=10.0,
        help="seconds (default 10: a SIGKILLed leader is replaced in about 11 s, under the 15 s target)",
    )
    parser.add_argument(
        "--leader-election-renew-deadline",
        type=float,
        default=6.0,
        help="seconds after its last renewal the leader stops writing and exits (default 6; 4 s of slack)",
    )
    parser.add_argument(
        "--leader-election-retry-period", type=float, default=1.0, help="seconds between attempts (default 1)"
    )
    parser.add_argument(
        "--webhook-listen",
        default=os.environ.get("REDISDB_WEBHOOK_LISTEN", ""),
        help="serve the validating webhook on ADDR:PORT (e.g. 0.0.0.0:9443); empty: no webhook",
    )
    parser.add_argument(
        "--webhook-cert-dir",
        default=os.environ.get("REDISDB_WEBHOOK_CERT_DIR", ""),
        help="directory with tls.crt, tls.key and ca.crt for the webhook server",
    )
    parser.add_argument(
        "--webhook-host",
        default=os.environ.get("REDISDB_WEBHOOK_HOST", ""),
        help="host name or IP the apiserver uses to reach the webhook (managed mode)",
    )
    parser.add_argument(
        "--webhook-managed",
        default=os.environ.get("REDISDB_WEBHOOK_MANAGED", ""),
        help="let the operator create/patch the ValidatingWebhookConfiguration of this name (local runs); "
        "empty: the Helm chart owns it",
    )
    parser.add_argument(
        "--webhook-failure-policy",
        choices=["Ignore", "Fail"],
        default=os.environ.get("REDISDB_WEBHOOK_FAILURE_POLICY", "Ignore"),
        help="Ignore (default: CEL rules still hold immutability when the webhook is down) or Fail",
    )
    parser.add_argument(
        "--webhook-cert-secret",
        default=os.environ.get("REDISDB_WEBHOOK_CERT_SECRET", ""),
        help="NAMESPACE/NAME of a Secret holding the webhook CA and serving certificate, shared by all replicas: "
        "created when absent, written to --webhook-cert-dir at startup (in-cluster without cert-manager)",
    )
    parser.add_argument(
        "--webhook-service",
        default=os.environ.get("REDISDB_WEBHOOK_SERVICE", ""),
        help="NAMESPACE/NAME of the webhook Service: the certificate's DNS names (with --webhook-cert-secret)",
    )
    parser.add_argument(
        "--webhook-configuration",
        default=os.environ.get("REDISDB_WEBHOOK_CONFIGURATION", ""),
        help="ValidatingWebhookConfiguration (owned by the chart) whose caBundle gets the CA of --webhook-cert-secret",
    )
    parser.add_argument(
        "--webhook-cert-validity",
        type=float,
        default=_env_float("REDISDB_WEBHOOK_CERT_VALIDITY", DEFAULT_VALIDITY.total_seconds()),
        help="seconds a self-managed serving certificate is valid (default one year); it is renewed with a "
        "third of that left, the CA lives five times as long (env REDISDB_WEBHOOK_CERT_VALIDITY)",
    )
    parser.add_argument(
        "--webhook-cert-check-interval",
        type=float,
        default=_env_float("REDISDB_WEBHOOK_CERT_CHECK_INTERVAL", 10.0),
        help="seconds between checks of the certificate files (cert-manager renewals) and of the "
        "--webhook-cert-secret (default 10)",
    )
    parser.add_argument(
        "--metrics-listen",
        default=os.environ.get("REDISDB_METRICS_LISTEN", ""),
        help="serve Prometheus metrics at GET /metrics on ADDR:PORT (e.g. 0.0.0.0:9090; env REDISDB_METRICS_LISTEN); "
        "empty: off",
    )
    parser.add_argument(
        "--usage-interval",
        type=float,
        default=_env_float("REDISDB_USAGE_INTERVAL", 3600.0),
        help="seconds between usage reads of each database (status.usage), spread over the interval; 0: off "
        "(env REDISDB_USAGE_INTERVAL; default 3600)",
    )
    parser.add_argument(
        "--usage-calls-per-minute",
        type=float,
        default=_env_float("REDISDB_USAGE_CALLS_PER_MINUTE", 60.0),
        help="most usage reads per minute per RedisProvider (a token bucket; reads over it are skipped, never "
        "queued, so reconciles keep the account's quota; env REDISDB_USAGE_CALLS_PER_MINUTE; default 60)",
    )
    parser.add_argument(
        "--default-deletion-policy",
        choices=[policy.value for policy in DeletionPolicy],
        default=os.environ.get("REDISDB_DEFAULT_DELETION_POLICY", DeletionPolicy.DELETE.value),
        help="deletionPolicy of RedisDatabases that set none: Delete (default) or Orphan (env "
        "REDISDB_DEFAULT_DELETION_POLICY)",
    )
    parser.add_argument(
        "--read-before-update",
        action=argparse.BooleanOptionalAction,
        default=os.environ.get("REDISDB_READ_BEFORE_UPDATE", "").lower() in ("1", "true", "yes"),
        help="read a database at the provider before applying a spec change to it (one call more per change) "
        "instead of taking the resync's snapshot; for accounts where fields the spec does not own (Fly add-on "
        "metadata, auto-upgrade) are changed outside Kubernetes (env REDISDB_READ_BEFORE_UPDATE; default off)",
    )
    parser.add_argument(
        "--ports-file",
        default=os.environ.get("REDISDB_PORTS_FILE", ""),
        help="once listening, write the liveness, webhook and metrics ports here as JSON (env REDISDB_PORTS_FILE); "
        "with port 0 in --liveness, --webhook-listen or --metrics-listen the OS picks the port, bound once",
    )
    parser.add_argument("--verbose", action="store_true", default=bool(os.environ.get("REDISDB_VERBOSE")))
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("REDISDB_LOG_FORMAT", "text"),
        help="text (one readable line per record) or json (one JSON object per line, for log pipelines; env "
        "REDISDB_LOG_FORMAT)",
    )
    args = parser.parse_args(list(argv))
    if args.usage_interval < 0:
        parser.error(f"--usage-interval must be 0 (off) or a number of seconds, not {args.usage_interval:g}")
    if args.secret_checks_per_resync < 1:
        parser.error(f"--secret-checks-per-resync must be at least 1, not {args.secret_checks_per_resync}")
    if args.usage_calls_per_minute <= 0:
        parser.error(f"--usage-calls-per-minute must be above 0, not {args.usage_calls_per_minute:g}")
    return args


def webhook_server(args: argparse.Namespace) -> HeldPortWebhookServer | None:
    if not args.webhook_listen:
        return None
    addr, _, port = args.webhook_listen.rpartition(":")
    cert_dir = args.webhook_cert_dir
    if not cert_dir:
        raise SystemExit("--webhook-listen needs --webhook-cert-dir (tls.crt, tls.key, ca.crt)")
    return HeldPortWebhookServer(
        addr=addr or None,
        port=int(port),
        host=args.webhook_host or None,
        certfile=os.path.join(cert_dir, "tls.crt"),
        pkeyfile=os.path.join(cert_dir, "tls.key"),
        cafile=os.path.join(cert_dir, "ca.crt"),
        file_check_interval=args.webhook_cert_check_interval,
    )


KOPF_PREFIX = f"kopf.{GROUP}"


# The webhook side's kopf (the admission handlers and the DatabaseBook's event handler) never handles a change, so
# kopf would strip a finalizer "no handler requires" from every object it sees (and, for one being deleted, let
# the deletion through before the leader's delete handler ran): it gets a finalizer name that no object carries.
ADMISSION_SIDE_FINALIZER = f"{GROUP}/admission-side-never-set"


def build_settings(
    settings: kopf.OperatorSettings, args: argparse.Namespace, server: kopf.WebhookServer | None = None
) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # kopf's bookkeeping under its own prefix: kopf leaves every annotation of its storage prefix out of the
    # change detection, and the user's redisdb.dev/rotate-password annotation must trigger a reconcile.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = StatusDiffBaseStorage()
    # Handler log lines stay in the log; only explicit Events and warnings reach the API.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    if server is not None:
        settings.admission.server = server
        settings.admission.managed = args.webhook_managed or None
        settings.persistence.finalizer = ADMISSION_SIDE_FINALIZER


def admission_settings(args: argparse.Namespace, server: kopf.WebhookServer | None) -> kopf.OperatorSettings:
    """The admission side's settings: with or without a webhook its kopf processes every RedisDatabase (the
    DatabaseBook's event handler), so it never carries the leader's finalizer name."""
    settings = kopf.OperatorSettings()
    build_settings(settings, args, server)
    settings.persistence.finalizer = ADMISSION_SIDE_FINALIZER
    return settings


def listening_ports(args: argparse.Namespace, settings: kopf.OperatorSettings, memo: kopf.Memo) -> dict[str, int]:
    """The ports this process listens on, for --ports-file; kopf's own liveness server counts by its URL."""
    ports: dict[str, int] = {}
    if args.liveness and liveness_port(args.liveness):
        ports["liveness"] = liveness_port(args.liveness) or 0
    if "liveness" in memo:
        ports["liveness"] = bound_port(memo["liveness"])
    if "metrics" in memo:
        ports["metrics"] = bound_port(memo["metrics"])
    server = settings.admission.server
    if isinstance(server, HeldPortWebhookServer):
        ports["webhook"] = server.bound_port
    return ports


def _login(registry: kopf.OperatorRegistry) -> None:
    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(
            **kwargs
        )
        return info


def _connection(settings: kopf.OperatorSettings, logger: Any) -> kopf.ConnectionInfo:
    info = kopf.login_with_service_account(settings=settings, logger=logger) or kopf.login_with_kubeconfig(
        settings=settings, logger=logger
    )
    if info is None:
        raise kopf.PermanentError("no Kubernetes credentials: set KUBECONFIG or run in a pod")
    return info


def election_config(args: argparse.Namespace) -> ElectionConfig | None:
    if not args.leader_election:
        return None
    return ElectionConfig(
        namespace=args.leader_election_namespace or namespace_from_environment(),
        name=args.leader_election_name,
        identity=args.leader_election_identity,
        lease_duration=args.leader_election_lease_duration,
        renew_deadline=args.leader_election_renew_deadline,
        retry_period=args.leader_election_retry_period,
    )


# Which half of the process created a task: kopf's run_tasks cancels every task that appeared after it started
# ("hung" ones) when it stops, which would take the other half's tasks (and the shutdown) with it.
_SIDE: contextvars.ContextVar[str] = contextvars.ContextVar("redisdb_side", default="")
_TASK_SIDES: weakref.WeakKeyDictionary[asyncio.Task[Any], str] = weakref.WeakKeyDictionary()


def _task_factory(
    loop: asyncio.AbstractEventLoop, coro: Any, context: contextvars.Context | None = None, **kwargs: Any
) -> asyncio.Task[Any]:
    task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, context=context, **kwargs)
    side = context.run(_SIDE.get) if context is not None else _SIDE.get()
    if side:
        _TASK_SIDES[task] = side
    return task


class _OtherSides(Collection[asyncio.Task[Any]]):
    """For kopf.run_tasks(ignored=...): every task that is not this side's."""

    def __init__(self, side: str) -> None:
        self._side = side

    def __contains__(self, task: object) -> bool:
        return not isinstance(task, asyncio.Task) or _TASK_SIDES.get(task) != self._side

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(())

    def __len__(self) -> int:
        return 0


class Operator:
    """Two kopf operators in one process: the admission side on every replica, the reconciling side on the leader.

    The admission side (validating webhook, the indexes it reads, liveness, metrics, certificate renewal) starts
    at once and never writes a RedisDatabase. The reconciling side (create/update/resume/delete handlers and the
    timers) starts only once this process holds the Lease, and then lists everything as a restart would: kopf
    resumes each object, from the shared provider snapshot. Every request it sends that is not a read passes
    the leader's write gate (LEADER_WORK). Without --leader-election it starts at once, ungated.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.memo = kopf.Memo()
        self.book = self.memo["book"] = DatabaseBook()  # both sides read it; the admission side feeds it
        self.server = webhook_server(args)
        if self.server is not None:
            self.server.also_ready = self.book.listed.is_set
        self.election = election_config(args)
        self.elector: LeaderElector | None = None
        self.admission_stop = asyncio.Event()
        self.leading_stop = asyncio.Event()
        self.stopping = False
        self.leading_task: asyncio.Task[None] | None = None
        self.plan = plan_from_args(
            args.webhook_cert_secret,
            args.webhook_service,
            args.webhook_configuration,
            args.webhook_cert_dir,
            validity=datetime.timedelta(seconds=args.webhook_cert_validity),
            managed_host=(args.webhook_host or "127.0.0.1") if args.webhook_managed else "",
        )

    # --- the admission side (every replica) -----------------------------------------------------------

    def admission_registry(self) -> kopf.OperatorRegistry:
        registry = kopf.OperatorRegistry()
        if self.server is not None:
            register_admission(registry, webhook_ignore_failures=self.args.webhook_failure_policy == "Ignore")
        register_book(registry)
        _login(registry)
        args = self.args

        @kopf.on.startup(registry=registry)
        async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Any, **_: Any) -> None:
            info = _connection(settings, logger)
            kube = KubeClient(info, relogin=lambda: kopf.login_with_service_account(settings=settings, logger=logger))
            memo["kube"] = kube
            memo["book_listing"] = asyncio.create_task(self._keep_book(kube), name="RedisDatabase list")
            if self.plan is not None:
                await bootstrap(kube, self.plan, logger)
                memo["cert_renewal"] = asyncio.create_task(
                    keep_renewed(kube, self.plan, logger, min(args.webhook_cert_check_interval, 60.0)),
                    name="webhook certificate renewal",
                )
            if args.metrics_listen and "metrics" not in memo:
                try:
                    memo["metrics"] = await metrics.start_server(args.metrics_listen)
                except (OSError, ValueError) as error:
                    raise kopf.PermanentError(f"--metrics-listen {args.metrics_listen}: {error}") from None
            if args.liveness and liveness_port(args.liveness) == 0 and "liveness" not in memo:
                memo["liveness"] = await start_liveness_server(args.liveness)
            if args.ports_file:
                write_ports_file(args.ports_file, listening_ports(args, settings, memo))

        @kopf.on.cleanup(registry=registry)
        async def cleanup(memo: kopf.Memo, **_: Any) -> None:
            if "book_listing" in memo:
                memo["book_listing"].cancel()
            if "cert_renewal" in memo:
                memo["cert_renewal"].cancel()
            if "liveness" in memo:
                await memo["liveness"].cleanup()
            if "metrics" in memo:
                await memo["metrics"].cleanup()
            if "kube" in memo:
                await memo["kube"].aclose()

        return registry

    async def _keep_book(self, kube: KubeClient) -> None:
        """The first list of RedisDatabases (retried until it works), then one every BOOK_RELIST seconds."""
        namespaces = list(self.args.namespace)
        delay = 0.5
        while not self.book.listed.is_set():
            try:
                await self.book.list_from(kube, namespaces)
            except Exception as error:
                logging.getLogger(__name__).warning("listing RedisDatabases failed (retrying): %s", error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        await self.book.keep_listed(kube, namespaces, max(self.args.resync_interval, BOOK_RELIST))

    # --- the reconciling side (the leader) ------------------------------------------------------------

    def leading_registry(self) -> kopf.OperatorRegistry:
        registry = kopf.OperatorRegistry()
        register_reconcilers(registry, resync_interval=self.args.resync_interval)
        _login(registry)
        args, elector = self.args, self.elector

        def gated_client(*factory_args: Any) -> ProviderClient:
            client = make_client(*factory_args)
            if elector is None:
                return client
            gated: ProviderClient = GatedProviderClient(client, elector)
            return gated

        @kopf.on.startup(registry=registry)
        async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Any, **_: Any) -> None:
            info = _connection(settings, logger)

            def relogin() -> kopf.ConnectionInfo | None:
                return kopf.login_with_service_account(settings=settings, logger=logger)

            kube = (
                KubeClient(info, relogin=relogin)
                if elector is None
                else GatedKubeClient(info, relogin=relogin, elector=elector)
            )
            memo["controller_kube"] = kube
            provider_registry = ProviderRegistry(kube, client_factory=gated_client)
            memo["controller"] = controller = DatabaseController(
                kube,
                provider_registry,
                ControllerConfig(
                    resync_interval=args.resync_interval,
                    max_concurrent_reconciles=args.max_concurrent_reconciles,
                    default_deletion_policy=DeletionPolicy(args.default_deletion_policy),
                    read_before_update=args.read_before_update,
                ),
            )
            # Usage shares the leader's provider clients (one 429 hold per account) and its gated status writes.
            memo["usage"] = UsageRefresher(
                kube,
                provider_registry,
                UsageConfig(interval=args.usage_interval, calls_per_minute=args.usage_calls_per_minute),
            )
            memo["sweeper"] = Sweeper(controller, args.resync_interval, args.secret_checks_per_resync)
            # Usage: one task for every database (usage.UsageSchedule), not a kopf daemon per database.
            book: DatabaseBook = memo["book"]
            memo["usage_schedule"] = asyncio.create_task(
                UsageSchedule(memo["usage"], book).run(book.listed.wait), name="usage schedule"
            )
            # Changes the old leader left pending go first, before kopf's walk of every object (takeover.py).
            memo["takeover"] = lane = TakeoverLane(controller, book)
            await lane.first_pass()

        @kopf.on.cleanup(registry=registry)
        async def cleanup(memo: kopf.Memo, **_: Any) -> None:
            if "takeover" in memo:
                await memo["takeover"].stop()
            if "usage_schedule" in memo:
                memo["usage_schedule"].cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await memo["usage_schedule"]
            if "sweeper" in memo:
                await memo["sweeper"].stop()
            if "controller" in memo:
                await memo["controller"].registry.aclose()
            if "controller_kube" in memo:
                await memo["controller_kube"].aclose()

        return registry

    # --- running ----------------------------------------------------------------------------------------

    def _kopf_liveness(self) -> str | None:
        """kopf's liveness endpoint; on port 0 the admission side's own server (started at startup) stands in."""
        liveness: str = self.args.liveness
        if not liveness or liveness_port(liveness) == 0:
            return None
        return liveness

    async def _run_kopf(
        self,
        registry: kopf.OperatorRegistry,
        settings: kopf.OperatorSettings,
        stop: asyncio.Event,
        liveness: str | None,
    ) -> None:
        namespaces = list(self.args.namespace)
        side = _SIDE.get()
        tasks = await kopf.spawn_tasks(
            registry=registry,
            settings=settings,
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            liveness_endpoint=liveness,
            stop_flag=stop,
            memo=self.memo,
        )
        self._install_signal_handlers()  # kopf's own would stop only the operator that installed them last
        await kopf.run_tasks(tasks, ignored=_OtherSides(side))

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        if self.stopping:
            return
        self.stopping = True
        logging.getLogger(__name__).info("%s: handing over and stopping", signal.Signals(signum).name)
        asyncio.get_running_loop().create_task(self.shutdown(), context=contextvars.Context())

    async def shutdown(self) -> None:
        """SIGTERM: stop writing, release the Lease (a standby takes over within its retry period), then stop."""
        if self.elector is not None:
            await self.elector.release()
        self.leading_stop.set()
        if self.leading_task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.leading_task
        self.admission_stop.set()

    async def _lead(self) -> None:
        """Wait for the Lease (when electing), then run the reconciling operator; exit if it ends unasked."""
        if self.elector is not None:
            await self.elector.acquire()
            if self.stopping:  # SIGTERM while a candidate (or just as it won): hand back what it may hold
                await self.elector.release()
                return
            self.elector.install_sigcont_check()
            self.elector.keep_in_thread(self.election_client)
            LEADER_WORK.set(self.elector)
        else:
            metrics.LEADER.set(1)
        settings = kopf.OperatorSettings()
        build_settings(settings, self.args)
        try:
            await self._run_kopf(self.leading_registry(), settings, self.leading_stop, None)
        finally:
            if self.elector is not None and not self.stopping:
                self.elector.lost("the reconciling operator stopped")

    def election_client(self) -> KubeClient:
        """A client for the Lease (one for the candidate, one for the renewal thread: each loop its own)."""
        assert self.election is not None
        settings = kopf.OperatorSettings()
        logger = logging.getLogger(__name__)
        return KubeClient(
            _connection(settings, logger),
            timeout=min(5.0, self.election.renew_deadline / 2),
            relogin=lambda: kopf.login_with_service_account(settings=settings, logger=logger),
        )

    async def run(self) -> None:
        install_kopf_write_gate()
        if self.election is not None:
            self.elector = LeaderElector(self.election_client(), self.election)
        settings = admission_settings(self.args, self.server)
        asyncio.get_running_loop().set_task_factory(_task_factory)
        admission_context, leading_context = contextvars.copy_context(), contextvars.copy_context()
        admission_context.run(_SIDE.set, "admission")
        leading_context.run(_SIDE.set, "leading")
        admission = asyncio.create_task(
            self._run_kopf(self.admission_registry(), settings, self.admission_stop, self._kopf_liveness()),
            name="admission side",
            context=admission_context,
        )
        self.leading_task = leading = asyncio.create_task(
            self._lead(), name="reconciling side", context=leading_context
        )
        await asyncio.wait({admission, leading}, return_when=asyncio.FIRST_COMPLETED)
        signalled = self.stopping
        if not signalled:
            # One side ended unasked: hand the Lease over and stop the other (Kubernetes restarts the pod).
            self.stopping = True
            await self.shutdown()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await leading
        self.admission_stop.set()
        await admission
        if not signalled and not leading.cancelled() and leading.exception() is not None:
            raise RuntimeError("the reconciling operator failed") from leading.exception()
        if not signalled:
            raise RuntimeError("the operator stopped unasked")


async def run_operator(args: argparse.Namespace) -> None:
    await Operator(args).run()


class _RoutineSuccesses(logging.Filter):
    """Drop kopf's line for every successful resync, admission review and book event (kept with --verbose).

    With 1,000 databases they were most of the log and a few percent of the CPU, and a failure logs anyway.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        return not (
            record.levelno == logging.INFO
            and isinstance(message, str)
            and message.endswith(" succeeded.")
            and message.startswith(("Timer 'resync'", "Timer 'recheck'", "Webhook '", "Handler 'book'"))
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per record, so log pipelines need no parsing rules: time, level, logger, message, and for
    kopf's per-object records the object they are about (kopf's `k8s_ref`: kind, namespace, name, uid)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        reference = getattr(record, "k8s_ref", None)
        if isinstance(reference, dict):
            entry["object"] = {
                key: reference[key] for key in ("kind", "namespace", "name", "uid") if reference.get(key)
            }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(*, verbose: bool, log_format: str) -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    configure_logging(verbose=args.verbose, log_format=args.log_format)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if not args.verbose:
        logging.getLogger("kopf.objects").addFilter(_RoutineSuccesses())
    # uvloop, as `kopf run` picks it: socket and TLS work in C, which is most of what the operator does at scale.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run_operator(args))
    return 0
