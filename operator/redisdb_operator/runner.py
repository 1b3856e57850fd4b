"""`redisdb-operator run`: configure and start the operator (flags, or REDISDB_* environment variables)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Any

import kopf
import uvloop

from . import metrics
from .controller import ControllerConfig, DatabaseController
from .handlers import register
from .kube import KubeClient
from .listeners import HeldPortWebhookServer, bound_port, liveness_port, start_liveness_server, write_ports_file
from .models import GROUP
from .provider_registry import ProviderRegistry
from .webhook_bootstrap import bootstrap, plan_from_args


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
        "--max-concurrent-reconciles",
        type=int,
        default=int(_env_float("REDISDB_MAX_CONCURRENT_RECONCILES", 32)),
        help="provider calls in flight at once (env REDISDB_MAX_CONCURRENT_RECONCILES; default 32)",
    )
    parser.add_argument(
        "--liveness",
        default=os.environ.get("REDISDB_LIVENESS", "http://0.0.0.0:8080/healthz"),
        help="kopf liveness endpoint URL, or empty to disable (env REDISDB_LIVENESS); port 0: the OS picks one "
        "(see --ports-file)",
    )
    parser.add_argument(
        "--peering",
        default=os.environ.get("REDISDB_PEERING", ""),
        help="kopf peering name for several replicas (one active); empty: standalone (env REDISDB_PEERING)",
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
        "--metrics-listen",
        default=os.environ.get("REDISDB_METRICS_LISTEN", ""),
        help="serve Prometheus metrics at GET /metrics on ADDR:PORT (e.g. 0.0.0.0:9090; env REDISDB_METRICS_LISTEN); "
        "empty: off",
    )
    parser.add_argument(
        "--ports-file",
        default=os.environ.get("REDISDB_PORTS_FILE", ""),
        help="once listening, write the liveness, webhook and metrics ports here as JSON (env REDISDB_PORTS_FILE); "
        "with port 0 in --liveness, --webhook-listen or --metrics-listen the OS picks the port, bound once",
    )
    parser.add_argument("--verbose", action="store_true", default=bool(os.environ.get("REDISDB_VERBOSE")))
    return parser.parse_args(list(argv))


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
    )


KOPF_PREFIX = f"kopf.{GROUP}"


class OwnPrefixBlindDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base, blind to every annotation of our kopf prefix (progress included), as to its own.

    kopf recognises only `kopf.zalando.org` and prefixes marked `<prefix>/kopf-managed` (a marker it does not
    write for prefixes starting with `kopf.`); the marker would also hide the user's redisdb.dev/* annotations.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        annotations = essence.get("metadata", {}).get("annotations", {})
        for key in [key for key in annotations if key.startswith(f"{self.prefix}/")]:
            del annotations[key]
        self.remove_empty_stanzas(essence)
        return essence


def build_settings(settings: kopf.OperatorSettings, args: argparse.Namespace) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # kopf's bookkeeping under its own prefix: kopf leaves every annotation of its storage prefix out of the
    # change detection, and the user's redisdb.dev/rotate-password annotation must trigger a reconcile.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = OwnPrefixBlindDiffBaseStorage(
        prefix=KOPF_PREFIX, key="last-handled-configuration"
    )
    # Handler log lines stay in the log; only explicit Events and warnings reach the API.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    server = webhook_server(args)
    if server is not None:
        settings.admission.server = server
        settings.admission.managed = args.webhook_managed or None


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


async def run_operator(args: argparse.Namespace) -> None:
    registry = kopf.OperatorRegistry()
    register(
        registry,
        resync_interval=args.resync_interval,
        webhook=bool(args.webhook_listen),
        webhook_ignore_failures=args.webhook_failure_policy == "Ignore",
    )

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(
            **kwargs
        )
        return info

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Any, **_: Any) -> None:
        build_settings(settings, args)
        info = kopf.login_with_service_account(settings=settings, logger=logger) or kopf.login_with_kubeconfig(
            settings=settings, logger=logger
        )
        if info is None:
            raise kopf.PermanentError("no Kubernetes credentials: set KUBECONFIG or run in a pod")
        kube = KubeClient(info, relogin=lambda: kopf.login_with_service_account(settings=settings, logger=logger))
        memo["kube"] = kube
        plan = plan_from_args(
            args.webhook_cert_secret, args.webhook_service, args.webhook_configuration, args.webhook_cert_dir
        )
        if plan is not None:
            await bootstrap(kube, plan, logger)
        memo["controller"] = DatabaseController(
            kube,
            ProviderRegistry(kube),
            ControllerConfig(
                resync_interval=args.resync_interval, max_concurrent_reconciles=args.max_concurrent_reconciles
            ),
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
        if "liveness" in memo:
            await memo["liveness"].cleanup()
        if "metrics" in memo:
            await memo["metrics"].cleanup()
        if "controller" in memo:
            await memo["controller"].registry.aclose()
        if "kube" in memo:
            await memo["kube"].aclose()

    namespaces = list(args.namespace)
    await kopf.operator(
        registry=registry,
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=not args.peering,
        peering_name=args.peering or None,
        # port 0: the endpoint started in startup() stands in for kopf's (which reads port 0 as 80)
        liveness_endpoint=args.liveness if args.liveness and liveness_port(args.liveness) != 0 else None,
        memo=kopf.Memo(),
    )


class _RoutineSuccesses(logging.Filter):
    """Drop kopf's line for every successful resync and admission review (kept with --verbose).

    With 1,000 databases they were most of the log and a few percent of the CPU, and a failure logs anyway.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        return not (
            record.levelno == logging.INFO
            and isinstance(message, str)
            and message.endswith(" succeeded.")
            and message.startswith(("Timer 'resync'", "Webhook '"))
        )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if not args.verbose:
        logging.getLogger("kopf.objects").addFilter(_RoutineSuccesses())
    # uvloop, as `kopf run` picks it: socket and TLS work in C, which is most of what the operator does at scale.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run_operator(args))
    return 0
