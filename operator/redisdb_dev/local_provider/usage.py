"""Usage of a local database, counted from its real redis-server's ``INFO``, in the providers' stats shapes.

Upstash serves ``GET /v2/redis/stats/{id}`` (``DatabaseStats``, provider-apis.md §1.6); Fly serves ``AddOn.stats``
(JSON whose shape no source documents; Fly's add-ons are Upstash databases, so the same object is inferred).
The counters are redis-server's own, so they start again when a redis-server restarts, as the real daily counters
start again each day. The provider's own reads (``INFO``, ``COMMAND INFO``, and the ``HELLO``/``CLIENT SETINFO`` its
client sends on connect) are left out of the request counts, so a database nobody uses counts (almost) nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .registry import LocalDatabase

# What a request costs on pay-as-you-go: $0.20 per 100k (the seed; Fly's and Upstash's docs agree).
PAYG_DOLLARS_PER_REQUEST = 0.20 / 100_000
# Fixed plans' monthly prices in dollars (Fly's docs, provider-apis.md §3.5); Upstash sells the same sizes.
FIXED_PLAN_DOLLARS = {"fixed_250mb": 10, "fixed_1gb": 20, "fixed_5gb": 100, "fixed_10gb": 200, "fixed_50gb": 400}

_OWN_COMMANDS = ("info", "command|info", "hello", "client|setinfo")
# Command name -> "read" | "write" | "other", from the server's own COMMAND INFO flags; the same for every server.
_KIND: dict[str, str] = {}


@dataclass(frozen=True)
class Usage:
    requests: int
    read_requests: int
    write_requests: int
    script_requests: int
    bandwidth_bytes: int
    storage_bytes: int
    keys: int
    connections: int
    hits: int
    misses: int
    observed_at: float


async def _command_kinds(client: Any, names: list[str]) -> None:
    """Learn whether commands read or write from the server (once per name); replies are parsed raw."""
    unknown = [name for name in names if name not in _KIND]
    if not unknown:
        return
    connection = client.connection
    await connection.send_command("COMMAND", "INFO", *unknown)
    reply = await connection.read_response()
    for name, detail in zip(unknown, reply or [], strict=False):
        flags = {flag.decode() if isinstance(flag, bytes) else str(flag) for flag in (detail or [None, None, []])[2]}
        _KIND[name] = "write" if "write" in flags else "read" if "readonly" in flags else "other"


async def read_usage(database: LocalDatabase) -> Usage:
    """One INFO on the primary: commands, network bytes, memory and keys."""
    async with database.primary.client() as client:
        info: dict[str, Any] = await client.execute_command(  # type: ignore[no-untyped-call]
            "INFO", "stats", "memory", "clients", "commandstats", "keyspace"
        )
        calls = {
            key.removeprefix("cmdstat_"): int(value.get("calls", 0))
            for key, value in info.items()
            if key.startswith("cmdstat_") and isinstance(value, dict)
        }
        user_calls = {name: count for name, count in calls.items() if name not in _OWN_COMMANDS}
        await _command_kinds(client, [name for name in user_calls if "|" not in name])
    kinds = {name: _KIND.get(name.split("|")[0], "other") for name in user_calls}
    keys = sum(
        int(value.get("keys", 0)) for key, value in info.items() if key.startswith("db") and isinstance(value, dict)
    )
    return Usage(
        requests=sum(user_calls.values()),
        read_requests=sum(count for name, count in user_calls.items() if kinds[name] == "read"),
        write_requests=sum(count for name, count in user_calls.items() if kinds[name] == "write"),
        script_requests=sum(count for name, count in user_calls.items() if name.startswith(("eval", "fcall"))),
        bandwidth_bytes=int(info.get("total_net_input_bytes", 0)) + int(info.get("total_net_output_bytes", 0)),
        storage_bytes=int(info.get("used_memory_dataset", info.get("used_memory", 0))),
        keys=keys,
        connections=int(info.get("connected_clients", 0)),
        hits=int(info.get("keyspace_hits", 0)),
        misses=int(info.get("keyspace_misses", 0)),
        observed_at=time.time(),
    )


def billing_dollars(plan: str, usage: Usage) -> float:
    """What the month so far costs: requests on pay-as-you-go, the fixed price on a fixed plan, free is free."""
    if plan == "payg":
        return round(usage.requests * PAYG_DOLLARS_PER_REQUEST, 6)
    return float(FIXED_PLAN_DOLLARS.get(plan, 0))


def _point(value: float, at: float) -> list[dict[str, Any]]:
    """A one-point time series in Upstash's ``{x, y}`` form (x as "2025-08-31 15:12:52.79 +0000 UTC")."""
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-4] + " +0000 UTC"
    return [{"x": stamp, "y": value}]


def database_stats(plan: str, usage: Usage) -> dict[str, Any]:
    """Upstash's ``DatabaseStats`` object (every documented field; series carry the one current point)."""
    at = usage.observed_at
    billing = billing_dollars(plan, usage)
    day = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")
    return {
        "monitor_count": 0,
        "daily_net_commands": usage.requests,
        "daily_read_requests": usage.read_requests,
        "daily_write_requests": usage.write_requests,
        "connection_count": _point(usage.connections, at),
        "keyspace": _point(usage.keys, at),
        "throughput": _point(0, at),
        "diskusage": _point(usage.storage_bytes, at),
        "latencymean": _point(0, at),
        "latency_99": _point(0, at),
        "read_latency_mean": _point(0, at),
        "read_latency_99": _point(0, at),
        "write_latency_mean": _point(0, at),
        "write_latency_99": _point(0, at),
        "hits": _point(usage.hits, at),
        "misses": _point(usage.misses, at),
        "read": _point(usage.read_requests, at),
        "write": _point(usage.write_requests, at),
        "dailyrequests": _point(usage.requests, at),
        "dailybilling": _point(billing, at),
        "bandwidths": _point(usage.bandwidth_bytes, at),
        "days": [day],
        "dailybandwidth": usage.bandwidth_bytes,
        "total_monthly_bandwidth": usage.bandwidth_bytes,
        "total_monthly_requests": usage.requests,
        "total_monthly_read_requests": usage.read_requests,
        "total_monthly_write_requests": usage.write_requests,
        "total_monthly_script_requests": usage.script_requests,
        "queue_optimized": False,
        "total_monthly_storage": usage.storage_bytes,
        "current_storage": usage.storage_bytes,
        "total_monthly_billing": billing,
        "command_counts": [],
    }
