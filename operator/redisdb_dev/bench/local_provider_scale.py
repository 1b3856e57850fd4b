"""How the local provider scales: create N databases through the Upstash API, measure, delete them.

Reports create/delete latency percentiles and the memory of each redis-server (RSS, and PSS, which splits
shared pages fairly so the sum is the real total) and of the provider itself.

    python -m redisdb_dev.bench.local_provider_scale --count 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

EMAIL, API_KEY = "bench@example.com", "bench-api-key"


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def _memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of a process in KiB, from /proc."""
    rss = pss = 0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


@contextlib.contextmanager
def _provider(workdir: Path) -> Iterator[str]:
    """Start a provider of our own in ``workdir``; yield its base URL; stop it."""
    port_file = workdir / "port"
    log = (workdir / "provider.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "redisdb_dev.cli",
            "local-provider",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--state-dir",
            str(workdir / "state"),
            "--upstash-email",
            EMAIL,
            "--upstash-api-key",
            API_KEY,
            "--log-level",
            "WARNING",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"local provider did not start; see {workdir / 'provider.log'}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{int(port_file.read_text())}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


async def _timed_calls(count: int, concurrency: int, call: Any, label: str) -> tuple[list[float], list[Any], float]:
    limit = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    results: list[Any] = []

    async def one(index: int) -> None:
        async with limit:
            started = time.perf_counter()
            results.append(await call(index))
            latencies.append(time.perf_counter() - started)
            if len(latencies) % 100 == 0:
                print(f"  {label}: {len(latencies)}/{count}", file=sys.stderr, flush=True)

    started = time.perf_counter()
    await asyncio.gather(*(one(index) for index in range(count)))
    return latencies, results, time.perf_counter() - started


async def run(url: str, count: int, concurrency: int, keep: bool) -> dict[str, Any]:
    async with (
        httpx.AsyncClient(base_url=f"{url}/v2", auth=(EMAIL, API_KEY), timeout=120) as api,
        httpx.AsyncClient(base_url=url, timeout=120) as admin,
    ):
        prefix = f"bench-{os.getpid()}"

        async def create(index: int) -> str:
            response = await api.post(
                "/redis/database",
                json={"database_name": f"{prefix}-{index}", "region": "global", "primary_region": "us-east-1"},
            )
            response.raise_for_status()
            database_id: str = response.json()["database_id"]
            return database_id

        create_latencies, ids, create_wall = await _timed_calls(count, concurrency, create, "created")

        databases = (await admin.get("/admin/databases")).json()
        provider_pid = (await admin.get("/admin/health")).json()["pid"]
        memory = [_memory_kib(db["pid"]) for db in databases if db["id"] in set(ids) and db["pid"]]
        provider_rss, provider_pss = _memory_kib(provider_pid)

        async def delete(index: int) -> None:
            (await api.delete(f"/redis/database/{ids[index]}")).raise_for_status()

        delete_latencies: list[float] = []
        delete_wall = 0.0
        if not keep:
            delete_latencies, _, delete_wall = await _timed_calls(len(ids), concurrency, delete, "deleted")

    rss = [pair[0] for pair in memory]
    pss = [pair[1] for pair in memory]
    return {
        "databases": count,
        "concurrency": concurrency,
        "create_ms": {
            "p50": round(_percentile(create_latencies, 0.50) * 1000, 1),
            "p99": round(_percentile(create_latencies, 0.99) * 1000, 1),
            "max": round(max(create_latencies) * 1000, 1),
        },
        "create_wall_s": round(create_wall, 1),
        "creates_per_s": round(count / create_wall, 1),
        "delete_ms": {
            "p50": round(_percentile(delete_latencies, 0.50) * 1000, 1),
            "p99": round(_percentile(delete_latencies, 0.99) * 1000, 1),
        },
        "delete_wall_s": round(delete_wall, 1),
        "redis_server_kib": {
            "rss_median": int(statistics.median(rss)) if rss else 0,
            "rss_max": max(rss, default=0),
            "pss_median": int(statistics.median(pss)) if pss else 0,
            "pss_total_mib": round(sum(pss) / 1024, 1),
        },
        "provider_kib": {"rss": provider_rss, "pss": provider_pss},
        "total_pss_mib": round((sum(pss) + provider_pss) / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m redisdb_dev.bench.local_provider_scale")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8, help="creates/deletes in flight at once")
    parser.add_argument("--url", help="use a running provider (its Upstash account must be bench@example.com)")
    parser.add_argument("--keep", action="store_true", help="leave the databases in place")
    args = parser.parse_args(argv)
    if args.url:
        result = asyncio.run(run(args.url, args.count, args.concurrency, args.keep))
    else:
        with tempfile.TemporaryDirectory(prefix="lp-scale-") as workdir, _provider(Path(workdir)) as url:
            result = asyncio.run(run(url, args.count, args.concurrency, args.keep))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
