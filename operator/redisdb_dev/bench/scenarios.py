"""The four measurements of `make bench`: single apply at idle, bulk lifecycle, steady state, webhook latency.

Each takes the running processes (environment.py) and returns a JSON-ready dict. Times are wall clock seen
from the benchmark: an apply is a server-side apply PATCH (what `kubectl apply --server-side` sends), Ready is
the first watch event with Ready=True and Synced=True at the object's generation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiohttp
import httpx
import redis.asyncio as redis_asyncio

from redisdb_operator.models import API_VERSION
from redisdb_operator.providers.base import CreateDatabaseRequest, ProviderType
from redisdb_operator.providers.factory import make_client

from ..devrun import WEBHOOK_CONFIGURATION
from .environment import (
    FLY_ORG,
    FLY_TOKEN,
    LocalProvider,
    OperatorProcess,
    attribute_writes,
    write_requests,
)
from .webhook import (
    NAMESPACE,
    PROVIDER,
    Kube,
    _histogram_quantiles,
    _percentile,
    _webhook_buckets,
    _webhook_client_config,
    create_review,
)
from .webhook import bench_end_to_end as webhook_end_to_end
from .webhook import bench_webhook as webhook_direct

BASE = f"/apis/{API_VERSION}/namespaces/{NAMESPACE}/redisdatabases"
PRIMARY_REGION = "cdg"
UPDATED_READ_REGIONS = ["ams"]
Predicate = Callable[[Mapping[str, Any]], bool]


def say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def manifest(name: str, read_regions: list[str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "RedisDatabase",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "providerRef": {"name": PROVIDER},
            "primaryRegion": PRIMARY_REGION,
            "readRegions": list(read_regions or []),
        },
    }


def distribution(seconds: Iterable[float]) -> dict[str, float]:
    values = list(seconds)
    return {
        "runs": len(values),
        "p50_ms": round(_percentile(values, 0.50) * 1000, 1),
        "p95_ms": round(_percentile(values, 0.95) * 1000, 1),
        "p99_ms": round(_percentile(values, 0.99) * 1000, 1),
        "min_ms": round(min(values, default=0) * 1000, 1),
        "max_ms": round(max(values, default=0) * 1000, 1),
        "mean_ms": round(statistics.fmean(values) * 1000, 1) if values else 0.0,
    }


def _condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            found: Mapping[str, Any] = item
            return found
    return None


def is_ready(obj: Mapping[str, Any]) -> bool:
    status = obj.get("status") or {}
    ready, synced = _condition(obj, "Ready"), _condition(obj, "Synced")
    return (
        ready is not None
        and synced is not None
        and ready.get("status") == "True"
        and synced.get("status") == "True"
        and status.get("observedGeneration") == obj["metadata"].get("generation")
    )


def has_updated_regions(obj: Mapping[str, Any]) -> bool:
    return is_ready(obj) and list((obj.get("status") or {}).get("readRegions") or []) == UPDATED_READ_REGIONS


class DatabaseWatch:
    """One watch on the benchmark namespace's RedisDatabases: when each object first met a predicate, or left."""

    def __init__(self, kube: Kube) -> None:
        self._client = httpx.AsyncClient(base_url=kube.server, verify=kube.ssl, timeout=httpx.Timeout(30, read=None))
        self.objects: dict[str, Mapping[str, Any]] = {}
        self.met: dict[str, float] = {}
        self.gone: dict[str, float] = {}
        self._predicate: Predicate | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()

    async def __aenter__(self) -> DatabaseWatch:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._synced.wait(), 60)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()

    def expect(self, predicate: Predicate) -> None:
        """Start a phase: from now on, record when each object first satisfies ``predicate``."""
        self._predicate = predicate
        self.met = {}
        self.gone = {}
        now = time.perf_counter()
        for name, obj in self.objects.items():
            if predicate(obj):
                self.met[name] = now

    def _observe(self, kind: str, obj: Mapping[str, Any]) -> None:
        name = str(obj["metadata"]["name"])
        now = time.perf_counter()
        if kind == "DELETED":
            self.objects.pop(name, None)
            self.gone.setdefault(name, now)
        else:
            self.objects[name] = obj
            if self._predicate is not None and name not in self.met and self._predicate(obj):
                self.met[name] = now
        self._changed.set()

    async def _run(self) -> None:
        resource_version: str | None = None
        while True:
            try:
                if resource_version is None:
                    listed = (await self._client.get(BASE)).raise_for_status().json()
                    resource_version = str(listed["metadata"]["resourceVersion"])
                    self.objects = {str(item["metadata"]["name"]): item for item in listed["items"]}
                    self._synced.set()
                params = {"watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true"}
                async with self._client.stream("GET", BASE, params=params) as response:
                    response.raise_for_status()
                    async for line in response.aiter_lines():
                        if not line:
                            continue
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            resource_version = None  # expired: list again
                            break
                        resource_version = str(event["object"]["metadata"]["resourceVersion"])
                        if event["type"] != "BOOKMARK":
                            self._observe(event["type"], event["object"])
            except (httpx.TransportError, httpx.HTTPStatusError):
                await asyncio.sleep(0.5)

    async def wait(self, done: Callable[[], bool], within: float, what: str) -> None:
        deadline = time.perf_counter() + within
        while not done():
            self._changed.clear()
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {within:.0f}s waiting for {what}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))


async def apply(client: httpx.AsyncClient, body: Mapping[str, Any], *, dry_run: bool = False) -> httpx.Response:
    params = {"fieldManager": "bench", "force": "true"}
    if dry_run:
        params["dryRun"] = "All"
    response = await client.patch(
        f"{BASE}/{body['metadata']['name']}",
        params=params,
        content=json.dumps(body),
        headers={"Content-Type": "application/apply-patch+yaml"},
    )
    return response.raise_for_status()


async def _for_each(names: list[str], concurrency: int, call: Callable[[str], Any]) -> None:
    queue = iter(names)

    async def worker() -> None:
        for name in queue:
            await call(name)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def verify_secret(client: httpx.AsyncClient, name: str) -> None:
    """The connection Secret exists and its REDIS_URL answers PING: Ready means usable."""
    secret = (await client.get(f"/api/v1/namespaces/{NAMESPACE}/secrets/{name}-redis")).raise_for_status().json()
    url = base64.b64decode(secret["data"]["REDIS_URL"]).decode()
    connection = redis_asyncio.from_url(url)
    try:
        if not await connection.ping():
            raise RuntimeError(f"PING through the Secret of {name} failed")
    finally:
        await connection.aclose()


USAGE_READ_OPERATIONS = frozenset({"fly:addOn.stats", "upstash:stats"})  # the local provider's names for them


class Counters:
    """Provider calls and apiserver writes between two moments."""

    def __init__(self, kube: Kube, provider: LocalProvider) -> None:
        self._kube = kube
        self._provider = provider
        self._calls = provider.counters()
        self._writes = write_requests(kube.metrics())

    def result(self, resources: int) -> dict[str, Any]:
        calls = self._provider.counters() - self._calls
        writes = attribute_writes(self._writes, write_requests(self._kube.metrics()))
        # The usage reads (status.usage: a schedule of their own, capped per account) are counted apart, as the
        # lease renewals are apart from the apiserver writes: they come with time, not with the phase's objects.
        usage_reads = sum(count for operation, count in calls.items() if operation in USAGE_READ_OPERATIONS)
        total = sum(calls.values()) - usage_reads
        return {
            "provider_calls": total,
            "provider_calls_per_resource": round(total / resources, 2) if resources else None,
            "usage_reads": usage_reads,
            "provider_calls_by_operation": dict(sorted(calls.items())),
            **writes.to_json(resources),
        }


async def _wait_provider_count(provider: LocalProvider, count: int, within: float) -> None:
    deadline = time.perf_counter() + within
    while await asyncio.to_thread(provider.database_count) != count:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"the provider still holds databases other than the expected {count}")
        await asyncio.sleep(0.1)


# -- 1. single database at idle ------------------------------------------------------------------------------


async def measure_floor(kube: Kube, provider: LocalProvider, runs: int) -> dict[str, Any]:
    """The least any operator could take: the provider's own create plus the minimal apiserver round trips.

    Round trips: the apply (a dry-run server-side apply: schema, CEL and the webhook, nothing stored), the
    Secret POST and one status PATCH (a merge PATCH of a Secret stands in for it).
    """
    client = make_client(ProviderType.FLY, provider.url, {"token": FLY_TOKEN}, FLY_ORG)
    creates: list[float] = []
    applies: list[float] = []
    secret_posts: list[float] = []
    patches: list[float] = []
    try:
        async with kube.client(4) as api:
            for index in range(-1, runs):  # -1: warm-up (organization and plan lookups, connections)
                request = CreateDatabaseRequest(name=f"bench-floor-{index + 1}", primary_region=PRIMARY_REGION)
                started = time.perf_counter()
                created = await client.create(request)
                create_seconds = time.perf_counter() - started
                await client.delete(created.id)

                started = time.perf_counter()
                await apply(api, manifest(f"floor-{index + 1}"), dry_run=True)
                apply_seconds = time.perf_counter() - started

                secret = {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": f"bench-floor-{index + 1}", "namespace": NAMESPACE},
                    "stringData": {"REDIS_URL": "redis://floor"},
                }
                path = f"/api/v1/namespaces/{NAMESPACE}/secrets"
                started = time.perf_counter()
                (await api.post(path, json=secret)).raise_for_status()
                post_seconds = time.perf_counter() - started
                started = time.perf_counter()
                (
                    await api.patch(
                        f"{path}/bench-floor-{index + 1}",
                        content=json.dumps({"metadata": {"labels": {"phase": "ready"}}}),
                        headers={"Content-Type": "application/merge-patch+json"},
                    )
                ).raise_for_status()
                patch_seconds = time.perf_counter() - started
                (await api.delete(f"{path}/bench-floor-{index + 1}")).raise_for_status()
                if index >= 0:
                    creates.append(create_seconds)
                    applies.append(apply_seconds)
                    secret_posts.append(post_seconds)
                    patches.append(patch_seconds)
    finally:
        await client.aclose()
    parts = {
        "provider_create_ms": statistics.median(creates) * 1000,
        "apply_round_trip_ms": statistics.median(applies) * 1000,
        "secret_post_ms": statistics.median(secret_posts) * 1000,
        "status_patch_ms": statistics.median(patches) * 1000,
    }
    return {
        "floor_ms": round(sum(parts.values()), 1),
        "parts_median_ms": {key: round(value, 1) for key, value in parts.items()},
        "provider_create": distribution(creates),
        "provider_create_ms": [round(value * 1000, 1) for value in creates],
    }


async def single(kube: Kube, provider: LocalProvider, runs: int) -> dict[str, Any]:
    say(f"single database at idle: floor, then {runs} applies -> Ready")
    floor = await measure_floor(kube, provider, runs)
    latencies: list[float] = []
    counters: Counters | None = None
    async with kube.client(4) as api, DatabaseWatch(kube) as watch:
        for index in range(-1, runs):  # -1: warm-up (the operator's first provider client and connections)
            if index == 0:
                counters = await asyncio.to_thread(Counters, kube, provider)
            name = f"single-{index + 1}"
            watch.expect(is_ready)
            started = time.perf_counter()
            await apply(api, manifest(name))
            await watch.wait(lambda name=name: name in watch.met, 120, f"{name} Ready")  # type: ignore[misc]
            if index >= 0:
                latencies.append(watch.met[name] - started)
            await verify_secret(api, name)
            (await api.delete(f"{BASE}/{name}")).raise_for_status()
            await watch.wait(lambda name=name: name in watch.gone, 120, f"{name} deleted")  # type: ignore[misc]
            await _wait_provider_count(provider, 0, 60)
    assert counters is not None
    result = distribution(latencies)
    return {
        "apply_to_ready": result,
        "floor": floor,
        "ratio_p50_to_floor": round(result["p50_ms"] / floor["floor_ms"], 2),
        "latencies_ms": [round(value * 1000, 1) for value in latencies],
        "per_lifecycle": await asyncio.to_thread(counters.result, runs),
    }


# -- 2 + 3. bulk lifecycle and steady state ------------------------------------------------------------------


def _curve(started: float, times: Iterable[float]) -> list[float]:
    return [round(moment - started, 3) for moment in sorted(times)]


def _phase_result(size: int, started: float, finished: float, times: Iterable[float]) -> dict[str, Any]:
    wall = finished - started
    return {
        "seconds": round(wall, 2),
        "per_second": round(size / wall, 1) if wall else None,
        "curve_s": _curve(started, times),
    }


async def steady_state(
    kube: Kube, provider: LocalProvider, operator: OperatorProcess, size: int, interval: float, intervals: int
) -> dict[str, Any]:
    """With every database Ready and nothing changing: provider calls per resync interval, CPU, memory."""
    say(f"steady state with {size} Ready databases: {intervals} resync intervals of {interval:g}s")
    await asyncio.sleep(min(interval, 5.0))  # let the last status writes and Events settle
    counters = await asyncio.to_thread(Counters, kube, provider)
    first = operator.sample()
    rss: list[int] = []
    deadline = time.monotonic() + interval * intervals
    while time.monotonic() < deadline:
        await asyncio.sleep(min(1.0, deadline - time.monotonic()))
        operator.check_alive()
        rss.append(operator.sample().rss_kib)
    last = operator.sample()
    result = await asyncio.to_thread(counters.result, size)
    calls = result["provider_calls"]
    return {
        "databases": size,
        "resync_interval_s": interval,
        "intervals": intervals,
        "provider_calls_per_interval": round(calls / intervals, 2),
        "usage_reads_per_interval": round(result["usage_reads"] / intervals, 2),
        "provider_calls_by_operation": result["provider_calls_by_operation"],
        "apiserver_writes_per_interval": round(result["operator_writes"] / intervals, 2),
        "events_per_interval": round(result["events"] / intervals, 2),
        "operator_cpu_percent": round(100 * (last.cpu_seconds - first.cpu_seconds) / (last.at - first.at), 2),
        "operator_cpu_ms_per_database_per_interval": round(
            1000 * (last.cpu_seconds - first.cpu_seconds) / (size * intervals), 2
        ),
        "operator_rss_mib": round(statistics.median(rss) / 1024, 1),
        "operator_peak_rss_mib": round(last.peak_rss_kib / 1024, 1),
    }


async def bulk(
    kube: Kube,
    provider: LocalProvider,
    operator: OperatorProcess,
    size: int,
    *,
    concurrency: int,
    phase_limit: float,
    steady_interval: float | None,
    steady_intervals: int,
    profiler: Any = None,
) -> dict[str, Any]:
    names = [f"bulk-{size}-{index}" for index in range(size)]
    result: dict[str, Any] = {"databases": size, "apply_concurrency": concurrency}
    async with kube.client(concurrency) as api, DatabaseWatch(kube) as watch:
        # create
        say(f"bulk {size}: apply all -> Ready")
        counters = await asyncio.to_thread(Counters, kube, provider)
        watch.expect(is_ready)
        with profiler(f"create-{size}") if profiler else contextlib.nullcontext():
            started = time.perf_counter()
            await _for_each(names, concurrency, lambda name: apply(api, manifest(name)))
            applied = time.perf_counter()
            await watch.wait(lambda: all(name in watch.met for name in names), phase_limit, f"{size} Ready")
            finished = max(watch.met[name] for name in names)
        create = _phase_result(size, started, finished, (watch.met[name] for name in names))
        create["apply_seconds"] = round(applied - started, 2)
        await asyncio.sleep(2)  # the last Events land after the status write
        create.update(await asyncio.to_thread(counters.result, size))
        secrets = (await api.get(f"/api/v1/namespaces/{NAMESPACE}/secrets")).raise_for_status().json()["items"]
        create["secrets"] = sum(1 for item in secrets if str(item["metadata"]["name"]).startswith(f"bulk-{size}-"))
        await verify_secret(api, names[0])
        await verify_secret(api, names[-1])
        create["operator_rss_mib"] = round(operator.sample().rss_kib / 1024, 1)
        result["create"] = create

        if steady_interval:
            with profiler(f"steady-{size}") if profiler else contextlib.nullcontext():
                result["steady"] = await steady_state(kube, provider, operator, size, steady_interval, steady_intervals)

        # update read regions
        say(f"bulk {size}: readRegions [] -> {UPDATED_READ_REGIONS} on all")
        counters = await asyncio.to_thread(Counters, kube, provider)
        watch.expect(has_updated_regions)
        with profiler(f"update-{size}") if profiler else contextlib.nullcontext():
            started = time.perf_counter()
            await _for_each(names, concurrency, lambda name: apply(api, manifest(name, UPDATED_READ_REGIONS)))
            await watch.wait(lambda: all(name in watch.met for name in names), phase_limit, f"{size} updated")
            finished = max(watch.met[name] for name in names)
        update = _phase_result(size, started, finished, (watch.met[name] for name in names))
        await asyncio.sleep(2)
        update.update(await asyncio.to_thread(counters.result, size))
        result["update"] = update

        # delete
        say(f"bulk {size}: delete all")
        counters = await asyncio.to_thread(Counters, kube, provider)
        watch.expect(lambda _: False)
        with profiler(f"delete-{size}") if profiler else contextlib.nullcontext():
            started = time.perf_counter()
            await _for_each(names, concurrency, lambda name: api.delete(f"{BASE}/{name}"))
            await watch.wait(lambda: all(name in watch.gone for name in names), phase_limit, f"{size} deleted")
            await _wait_provider_count(provider, 0, phase_limit)
            finished = time.perf_counter()
        delete = _phase_result(size, started, finished, (watch.gone[name] for name in names))
        await asyncio.sleep(2)
        delete.update(await asyncio.to_thread(counters.result, size))
        result["delete"] = delete
    result["operator_peak_rss_mib"] = round(operator.sample().peak_rss_kib / 1024, 1)
    return result


# -- 4. webhook ----------------------------------------------------------------------------------------------


def _admission_review(index: int) -> bytes:
    return json.dumps(create_review(manifest(f"bench-direct-{index}", ["ams"]))).encode()


async def webhook_direct_light(url: str, ca_pem: bytes, total: int, concurrency: int) -> dict[str, Any]:
    """AdmissionReviews straight to the webhook from aiohttp (on uvloop): a client that costs the shared two
    cores far less than httpx, so the latency measured is the webhook's, not the load generator's."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    connector = aiohttp.TCPConnector(limit=concurrency, ssl=context)
    bodies = [_admission_review(index) for index in range(total + 1)]
    latencies: list[float] = []
    errors = 0
    queue = iter(range(1, total + 1))
    async with aiohttp.ClientSession(connector=connector, headers={"Content-Type": "application/json"}) as session:

        async def one(index: int) -> bool:
            async with session.post(url, data=bodies[index]) as response:
                answer = await response.json()
                return response.status == 200 and bool(answer["response"]["allowed"])

        async def worker() -> None:
            nonlocal errors
            for index in queue:
                started = time.perf_counter()
                ok = await one(index)
                latencies.append(time.perf_counter() - started)
                errors += not ok

        # Warm up every connection first, as the apiserver keeps its connections to a webhook: the timed requests
        # measure reviews, not 50 simultaneous TLS handshakes.
        await asyncio.gather(*(one(0) for _ in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": round(_percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 2),
        "max_ms": round(max(latencies, default=0) * 1000, 2),
        "throughput_per_s": round(len(latencies) / wall, 1) if wall else 0.0,
        "latencies_ms": [round(value * 1000, 2) for value in latencies],
    }


async def webhook(kube: Kube, requests: int, concurrency: int) -> dict[str, Any]:
    """Admission latency under ``concurrency`` requests in flight, three ways.

    ``webhook``: AdmissionReviews straight to the webhook from a light client (the target's number);
    ``webhook_httpx``: the same from httpx (bench/webhook.py), whose client cost on two shared cores shows up
    as latency; ``apiserver_webhook_metric``: the apiserver's own histogram of its calls to the webhook during
    ``dry_run_apply_end_to_end``, server-side dry-run applies through the apiserver (schema, CEL, webhook).
    """
    say(f"webhook: {requests} admission reviews, {concurrency} in flight")
    url, ca_pem = await asyncio.to_thread(_webhook_client_config, kube, WEBHOOK_CONFIGURATION)
    light = await webhook_direct_light(url, ca_pem, requests, concurrency)
    sequential = await webhook_direct_light(url, ca_pem, min(requests, 200), 1)
    sequential.pop("latencies_ms")
    direct_httpx = await webhook_direct(url, ca_pem, requests, concurrency)
    before = _webhook_buckets(await asyncio.to_thread(kube.metrics))
    end_to_end = await webhook_end_to_end(kube, requests, concurrency)
    apiserver = _histogram_quantiles(before, _webhook_buckets(await asyncio.to_thread(kube.metrics)))
    return {
        "concurrency": concurrency,
        "webhook": light,
        "webhook_sequential": sequential,
        "webhook_httpx": direct_httpx,
        "apiserver_webhook_metric": apiserver,
        "dry_run_apply_end_to_end": end_to_end,
    }


def provider_calls_total(calls: Counter[str]) -> int:
    return sum(calls.values())
