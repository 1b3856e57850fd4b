"""Prometheus metrics in the text exposition format (0.0.4), written by hand: counters, gauges, histograms.

No client library: the format is a few lines of text per series, and the operator runs on one event loop, so
plain dicts updated between awaits are consistent without locks. Metrics are module-level, as Prometheus
clients make them, so the HTTP transport and the controller record without threading a registry through
every constructor. Labels never carry a database name or id: the series count stays bounded by providers,
operations and outcomes, whatever the number of databases.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TypeVar

from aiohttp import web

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
RECONCILE_BUCKETS = (*DEFAULT_BUCKETS, 30.0, 60.0)

LabelValues = tuple[str, ...]


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_text(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in zip(names, values, strict=True))
    return "{" + pairs + "}"


class Metric:
    """A metric family: a name, its HELP text, fixed label names, and one value (or histogram) per label set."""

    kind = "untyped"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)

    def _key(self, labels: Mapping[str, str]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name}: labels {sorted(labels)} given, {sorted(self.labelnames)} expected")
        return tuple(str(labels[name]) for name in self.labelnames)

    def samples(self) -> Iterator[tuple[str, str, float]]:
        """(sample name, rendered labels, value) for every series."""
        raise NotImplementedError

    def render(self) -> str:
        lines = [f"# HELP {self.name} {escape_help(self.documentation)}", f"# TYPE {self.name} {self.kind}"]
        lines += [f"{name}{labels} {format_value(value)}" for name, labels, value in self.samples()]
        return "\n".join(lines) + "\n"


class Counter(Metric):
    kind = "counter"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, documentation, labelnames)
        self._values: dict[LabelValues, float] = {} if labelnames else {(): 0.0}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter only goes up (got {amount})")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterator[tuple[str, str, float]]:
        for key, value in sorted(self._values.items()):
            yield self.name, _label_text(self.labelnames, key), value


class Gauge(Counter):
    """A value that goes up and down; a label set once seen stays exported (at 0 when emptied)."""

    kind = "gauge"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, **labels: str) -> None:
        self.inc(-amount, **labels)

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = value


class Histogram(Metric):
    kind = "histogram"

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str] = (), buckets: Iterable[float] = DEFAULT_BUCKETS
    ) -> None:
        if "le" in labelnames:
            raise ValueError(f"{name}: 'le' is reserved for histogram buckets")
        super().__init__(name, documentation, labelnames)
        bounds = sorted(set(buckets))
        if not bounds or bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.buckets = tuple(bounds)
        # per label set: (count in each bucket, not cumulative; sum; count)
        self._series: dict[LabelValues, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = ([0] * len(self.buckets), [0.0, 0.0])
        counts, totals = series
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                counts[index] += 1
                break
        totals[0] += value
        totals[1] += 1

    def count(self, **labels: str) -> int:
        series = self._series.get(self._key(labels))
        return int(series[1][1]) if series else 0

    def samples(self) -> Iterator[tuple[str, str, float]]:
        bucket_names = (*self.labelnames, "le")
        for key, (counts, (total, count)) in sorted(self._series.items()):
            cumulative = 0
            for bound, in_bucket in zip(self.buckets, counts, strict=True):
                cumulative += in_bucket
                yield f"{self.name}_bucket", _label_text(bucket_names, (*key, format_value(bound))), cumulative
            labels = _label_text(self.labelnames, key)
            yield f"{self.name}_sum", labels, total
            yield f"{self.name}_count", labels, count


M = TypeVar("M", bound=Metric)


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}

    def register(self, metric: M) -> M:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def render(self) -> str:
        return "".join(metric.render() for metric in self._metrics.values())


class DatabaseReadiness:
    """`redisdb_databases{provider, ready}` from reconcile outcomes: each database counts once, where it last was."""

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self._where: dict[str, tuple[str, str]] = {}

    def set(self, uid: str, *, provider: str, ready: bool) -> None:
        now = (provider, "true" if ready else "false")
        before = self._where.get(uid)
        if before == now:
            return
        if before is not None:
            self._gauge.dec(provider=before[0], ready=before[1])
        self._gauge.inc(provider=now[0], ready=now[1])
        self._where[uid] = now

    def forget(self, uid: str) -> None:
        before = self._where.pop(uid, None)
        if before is not None:
            self._gauge.dec(provider=before[0], ready=before[1])


class ProviderTotals:
    """Per-provider sums of per-database values (usage, cost): each database counts once, with its latest values,
    and leaves the sums when it goes. Labels stay per provider, never per database."""

    def __init__(self, gauges: Mapping[str, Gauge]) -> None:
        self._gauges = gauges  # key in the values -> the gauge summing it
        self._last: dict[str, tuple[str, dict[str, float]]] = {}

    def set(self, uid: str, *, provider: str, status: Mapping[str, object]) -> None:
        """Take the database's values from its status: `usage.{requests,dataSizeBytes,bandwidthBytes}` and
        `estimatedMonthlyCost.amount`."""
        usage = status.get("usage")
        cost = status.get("estimatedMonthlyCost")
        found = {
            **(
                {key: usage.get(key) for key in ("requests", "dataSizeBytes", "bandwidthBytes")}
                if isinstance(usage, Mapping)
                else {}
            ),
            "estimatedMonthlyCost": cost.get("amount") if isinstance(cost, Mapping) else None,
        }
        values = {
            key: float(value) for key, value in found.items() if isinstance(value, int | float) and key in self._gauges
        }
        self.forget(uid)
        for key, value in values.items():
            self._gauges[key].inc(value, provider=provider)
        self._last[uid] = (provider, values)

    def forget(self, uid: str) -> None:
        before = self._last.pop(uid, None)
        if before is not None:
            provider, values = before
            for key, value in values.items():
                self._gauges[key].dec(value, provider=provider)


# --- the operator's metrics ---------------------------------------------------------------------------------

REGISTRY = Registry()

RECONCILES = REGISTRY.register(
    Counter(
        "redisdb_reconcile_total",
        "Reconciles of RedisDatabases by trigger (change, resync, delete) and result "
        "(success, temporary_error: retried with backoff, permanent_error: waits for a spec change, held: paused "
        "or a deletion held by deletionProtection, waiting for a person).",
        ("trigger", "result"),
    )
)
RECONCILE_DURATION = REGISTRY.register(
    Histogram(
        "redisdb_reconcile_duration_seconds",
        "Time spent in one reconcile (after it got a concurrency slot), by trigger.",
        ("trigger",),
        RECONCILE_BUCKETS,
    )
)
PROVIDER_REQUESTS = REGISTRY.register(
    Counter(
        "redisdb_provider_requests_total",
        "HTTP requests to provider APIs (each attempt), by provider type, operation and outcome "
        "(ok, or the typed error: UnavailableError, RateLimitedError, UnauthorizedError, ...).",
        ("provider_type", "operation", "outcome"),
    )
)
PROVIDER_REQUEST_DURATION = REGISTRY.register(
    Histogram(
        "redisdb_provider_request_duration_seconds",
        "Duration of HTTP requests to provider APIs (each attempt), by provider type and operation.",
        ("provider_type", "operation"),
    )
)
PROVIDER_ACTIONS = REGISTRY.register(
    Counter(
        "redisdb_provider_actions_total",
        "Changes made at providers: create, update, delete, reset_password, adopt, recreate.",
        ("action",),
    )
)
DATABASES = REGISTRY.register(
    Gauge(
        "redisdb_databases",
        "RedisDatabases this operator reconciled, by RedisProvider and by their Ready condition.",
        ("provider", "ready"),
    )
)
DRIFT_REPAIRS = REGISTRY.register(
    Counter("redisdb_drift_repairs_total", "Changes made outside Kubernetes that the operator repaired.")
)
SECRET_WRITES = REGISTRY.register(Counter("redisdb_secret_writes_total", "Connection Secrets created or rewritten."))
DATABASE_READINESS = DatabaseReadiness(DATABASES)
USAGE_READS = REGISTRY.register(
    Counter(
        "redisdb_usage_reads_total",
        "Usage reads (the provider's stats call) by RedisProvider and outcome: ok, rate_capped (the account's "
        "usage budget was spent: skipped, not sent), held (the account is held after a 429: skipped), "
        "unknown_shape, error.",
        ("provider", "outcome"),
    )
)
_USAGE_GAUGES = {
    "requests": REGISTRY.register(
        Gauge(
            "redisdb_usage_requests",
            "Requests this month so far, summed over the RedisProvider's databases (as the provider last reported).",
            ("provider",),
        )
    ),
    "dataSizeBytes": REGISTRY.register(
        Gauge("redisdb_usage_data_size_bytes", "Data stored, summed over the RedisProvider's databases.", ("provider",))
    ),
    "bandwidthBytes": REGISTRY.register(
        Gauge(
            "redisdb_usage_bandwidth_bytes",
            "Network bytes this month so far, summed over the RedisProvider's databases.",
            ("provider",),
        )
    ),
    "estimatedMonthlyCost": REGISTRY.register(
        Gauge(
            "redisdb_estimated_monthly_cost_usd",
            "status.estimatedMonthlyCost summed over the RedisProvider's databases (those a source prices).",
            ("provider",),
        )
    ),
}
USAGE_TOTALS = ProviderTotals(_USAGE_GAUGES)
SWEEPS = REGISTRY.register(
    Counter(
        "redisdb_resync_sweeps_total",
        "Resync sweeps (one provider list compared with every RedisDatabase of that provider), by RedisProvider.",
        ("provider",),
    )
)
SWEEP_WOKEN = REGISTRY.register(
    Counter(
        "redisdb_resync_woken_total",
        "RedisDatabases a resync sweep found drifted, missing or failed and reconciled, by RedisProvider.",
        ("provider",),
    )
)
LEADER = REGISTRY.register(
    Gauge("redisdb_leader", "1 while this replica holds the leader Lease and reconciles; 0 on a standby.")
)


# --- the HTTP endpoint --------------------------------------------------------------------------------------


def split_listen(listen: str) -> tuple[str | None, int]:
    """ADDR:PORT (ADDR may be empty, a name, an IPv4 address or a bracketed IPv6 address) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--metrics-listen must be ADDR:PORT (e.g. 0.0.0.0:9090), not {listen!r}")
    return (host.strip("[]") or None), int(port)


async def start_server(listen: str, registry: Registry = REGISTRY) -> web.AppRunner:
    """Serve GET /metrics on ADDR:PORT; the caller stops it with ``await runner.cleanup()``."""
    host, port = split_listen(listen)

    async def serve_metrics(_: web.Request) -> web.Response:
        return web.Response(body=registry.render().encode(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", serve_metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
