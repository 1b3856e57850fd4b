"""Small helpers for the local provider tests: names, ports, processes and polling."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.harness.local_provider import TLS_CA_FILE

T = TypeVar("T")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    """True for a live, non-zombie process."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().split(") ", 1)[-1]
    except OSError:
        return False
    return not state.startswith(("Z", "X"))


def redis_client(port: int, password: str, host: str = "127.0.0.1", *, tls: bool = False) -> aioredis.Redis:
    """No client-side retries: a refused password must fail at once, not after redis-py's backoff.

    ``tls``: an Upstash-type database, which serves TLS only; the certificate is verified against the local CA.
    """
    tls_options: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(TLS_CA_FILE)} if tls else {}
    return aioredis.Redis(
        host=host,
        port=port,
        password=password,
        socket_timeout=5,
        single_connection_client=True,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
        **tls_options,
    )


async def eventually(check: Callable[[], Awaitable[T]], within: float = 10.0, interval: float = 0.05) -> T:
    """Retry ``check`` until it returns a truthy value without raising; return that value."""
    deadline = asyncio.get_running_loop().time() + within
    last_error: BaseException | None = None
    while True:
        try:
            value = await check()
            if value:
                return value
        except Exception as error:  # the last one is reported below
            last_error = error
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s (last error: {last_error!r})")
        await asyncio.sleep(interval)


async def config_get(port: int, password: str, name: str, *, tls: bool = False) -> str:
    async with redis_client(port, password, tls=tls) as client:
        values = await client.config_get(name)
    return str(values[name])


async def replica_value(port: int, password: str, key: str, *, tls: bool = False) -> str | None:
    async with redis_client(port, password, tls=tls) as client:
        value = await client.get(key)
        return None if value is None else str(value)
