"""One ``redis-server`` process per primary and per read replica, started and stopped from asyncio.

Secrets never appear on a command line (``/proc/*/cmdline`` is world-readable): the password goes into a
0600 config file in the instance's data dir, everything else is a command-line flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError

from .tls_files import TlsFiles

log = logging.getLogger(__name__)


def tls_client_options(tls: TlsFiles | None) -> dict[str, Any]:
    """redis-py options for a verified TLS connection to one of our servers (none for a plain one)."""
    return {} if tls is None else {"ssl": True, "ssl_ca_certs": str(tls.ca), "ssl_cert_reqs": "required"}


# Server cron frequency. Redis's default (10) costs ~0.1 core per 100 idle servers; at 1,000 databases that is
# most of this machine, and nothing here needs finer timing than a second (expiry is exact on access anyway).
REDIS_HZ = os.environ.get("LOCAL_PROVIDER_REDIS_HZ", "1")
REDIS_SERVER = os.environ.get("LOCAL_PROVIDER_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"

# Eviction policies. The seed says "keys with a TTL are evicted first, at random; without volatile keys, any key
# at random". No single Redis policy does both: ``volatile-random`` refuses writes (OOM) once no key has a TTL,
# which is exactly what enabling eviction promises not to do. ``allkeys-random`` keeps that promise and the
# randomness, and only loses the TTL-first preference, so it is the closer of the two.
POLICY_EVICTION_ON = "allkeys-random"
POLICY_EVICTION_OFF = "noeviction"

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_PROVIDER_PID = os.getpid()


def _die_with_parent() -> None:
    """Runs in the child before exec: if the provider dies (even by SIGKILL), the kernel sends SIGTERM.

    SIGTERM rather than SIGKILL so redis-server still flushes its append-only file on the way out.
    """
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != _PROVIDER_PID:  # the provider died between fork and prctl
        os._exit(1)


class RedisStartError(Exception):
    """redis-server exited or never answered PING."""


class PortAllocator:
    """Hands out free loopback ports and remembers which ones this provider holds.

    Probing with bind() is racy against other programs, so a start that loses the race is retried with a new
    port (see RedisInstance.start); remembering our own ports stops two of our instances racing each other.
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self._held: set[int] = set()

    def _is_free(self, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, port))
            except OSError:
                return False
        return True

    def allocate(self, preferred: int | None = None) -> int:
        if preferred and preferred not in self._held and self._is_free(preferred):
            self._held.add(preferred)
            return preferred
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind((self.host, 0))
                port: int = probe.getsockname()[1]
            if port not in self._held:
                self._held.add(port)
                return port
        raise RedisStartError("no free port")

    def release(self, port: int) -> None:
        self._held.discard(port)


@dataclass
class RedisSettings:
    """What one redis-server is told; replica_of is the primary's port for a read replica."""

    password: str
    maxmemory: int
    policy: str
    replica_of: int | None = None
    tls: TlsFiles | None = None  # serve TLS only (Upstash databases are rediss://), replicate over TLS
    maxclients: int = 512
    appendonly: bool = True  # primaries only (replicas never keep one)


class RedisInstance:
    """One redis-server process (a primary or one read replica) and its data dir."""

    def __init__(
        self,
        *,
        label: str,
        data_dir: Path,
        host: str,
        ports: PortAllocator,
        settings: RedisSettings,
        bind_host: str | None = None,
    ):
        self.label = label  # "<database id>/<region>": what log lines name
        self.data_dir = data_dir
        self.host = host  # where the provider reaches this server (and a replica its primary)
        self.bind_host = bind_host or host  # where it listens: `host`, or every interface (0.0.0.0)
        self.ports = ports
        self.settings = settings
        self.port = 0
        self.process: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        if self.process is None or self.process.returncode is not None:
            return None
        return self.process.pid

    def _write_secrets(self) -> None:
        path = self.data_dir / "secrets.conf"
        lines = [f'requirepass "{self.settings.password}"']
        if self.settings.replica_of is not None:
            lines.append(f'masterauth "{self.settings.password}"')
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        os.replace(tmp, path)

    def _argv(self, secrets: Path) -> list[str]:
        is_replica = self.settings.replica_of is not None
        argv = [
            REDIS_SERVER,
            str(secrets),
            "--port", str(self.port),
            "--bind", self.bind_host,
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
            "--loglevel", "warning",
            "--always-show-logo", "no",
            "--save", "",
            # Replicas resync from their primary on start, so only primaries keep an append-only file.
            "--appendonly", "yes" if self.settings.appendonly and not is_replica else "no",
            "--appendfsync", "everysec",
            "--maxmemory", str(self.settings.maxmemory),
            "--maxmemory-policy", self.settings.policy,
            # Small footprint: 1,000 of these share one small machine.
            "--maxclients", str(self.settings.maxclients),
            "--tcp-backlog", "128",
            "--hz", REDIS_HZ,
            "--dynamic-hz", "no",
            "--jemalloc-bg-thread", "no",
            "--repl-backlog-size", "262144",
            "--repl-diskless-sync", "yes",
            "--repl-diskless-sync-delay", "0",
            "--shutdown-timeout", "1",
        ]  # fmt: skip
        if is_replica:
            argv += ["--replicaof", self.host, str(self.settings.replica_of), "--replica-read-only", "yes"]
        tls = self.settings.tls
        if tls is not None:
            port_at = argv.index("--port")
            argv[port_at : port_at + 2] = ["--port", "0", "--tls-port", str(self.port)]
            argv += [
                "--tls-cert-file", str(tls.cert),
                "--tls-key-file", str(tls.key),
                "--tls-ca-cert-file", str(tls.ca),
                "--tls-auth-clients", "no",
                "--tls-replication", "yes",
            ]  # fmt: skip
        return argv

    async def start(self, preferred_port: int | None = None, wait_seconds: float = 30.0) -> None:
        """Start the process and return once it answers PING; retries on a lost port race."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_secrets()
        last_error: Exception | None = None
        for attempt in range(3):
            self.port = self.ports.allocate(preferred_port if attempt == 0 else None)
            self._stopping = False
            try:
                await self._spawn(wait_seconds)
            except RedisStartError as error:
                last_error = error
                await self._kill()
                self.ports.release(self.port)
                log.warning("redis-server %s did not start on port %d (attempt %d)", self.label, self.port, attempt + 1)
                continue
            self._watch = asyncio.create_task(self._watch_exit(self._running()))
            return
        raise RedisStartError(f"redis-server {self.label} failed to start: {last_error}")

    def _running(self) -> asyncio.subprocess.Process:
        assert self.process is not None
        return self.process

    async def _spawn(self, wait_seconds: float) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self._argv(self.data_dir / "secrets.conf"),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            close_fds=True,
        )
        await self._wait_ready(wait_seconds)

    async def _wait_ready(self, wait_seconds: float) -> None:
        assert self.process is not None
        deadline = asyncio.get_running_loop().time() + wait_seconds
        delay = 0.005
        while True:
            if self.process.returncode is not None:
                raise RedisStartError(f"exited with status {self.process.returncode}")
            try:
                async with self.client(socket_seconds=1.0) as client:
                    await client.ping()
                return
            except (RedisConnectionError, BusyLoadingError, OSError, TimeoutError):
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise RedisStartError("no answer to PING")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    def admin_client(self, socket_seconds: float = 5.0, *, max_connections: int | None = None) -> aioredis.Redis:
        """An admin client authenticated with the current password: one connection, or a pool of `max_connections`."""
        return aioredis.Redis(
            host=self.host,
            port=self.port,
            password=self.settings.password,
            socket_timeout=socket_seconds,
            socket_connect_timeout=socket_seconds,
            single_connection_client=max_connections is None,
            max_connections=max_connections,
            retry=Retry(NoBackoff(), 0),  # callers poll on their own schedule
            **tls_client_options(self.settings.tls),
        )

    @contextlib.asynccontextmanager
    async def client(self, socket_seconds: float = 5.0) -> AsyncIterator[aioredis.Redis]:
        """A one-connection admin client, closed on the way out."""
        client = self.admin_client(socket_seconds)
        try:
            yield client
        finally:
            await client.aclose()

    async def wait_replica_synced(self, wait_seconds: float = 10.0) -> bool:
        """For a replica: wait until its link to the primary is up (reads then see the primary's data)."""
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while asyncio.get_running_loop().time() < deadline:
            try:
                async with self.client() as client:
                    info = await client.info("replication")
                if info.get("master_link_status") == "up":
                    return True
            except RedisError:
                pass
            await asyncio.sleep(0.02)
        log.warning("replica %s not in sync after %.0fs", self.label, wait_seconds)
        return False

    async def config_set(self, values: dict[str, str]) -> None:
        async with self.client() as client:
            pairs = [item for pair in values.items() for item in pair]
            await client.config_set(*pairs)

    async def set_password(self, new_password: str) -> None:
        """Switch requirepass (and masterauth on a replica) in place; the old password stops working."""
        values = {"requirepass": new_password}
        if self.settings.replica_of is not None:
            values["masterauth"] = new_password
        await self.config_set(values)
        self.settings.password = new_password
        self._write_secrets()

    async def _watch_exit(self, process: asyncio.subprocess.Process) -> None:
        """Restart a redis-server that died on its own, on the same port and data, like a managed service would."""
        code = await process.wait()
        if self._stopping:
            return
        log.error("redis-server %s (pid %d) exited unexpectedly with status %s", self.label, process.pid, code)
        for attempt in range(5):
            await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
            if self._stopping:
                return
            try:
                await self._spawn(30.0)
            except RedisStartError:
                await self._kill()
                continue
            if self._stopping:  # stop() ran while we were starting it
                await self._kill()
                return
            log.warning("redis-server %s restarted on port %d (pid %d)", self.label, self.port, self._running().pid)
            self._watch = asyncio.create_task(self._watch_exit(self._running()))
            return
        log.error("gave up restarting redis-server %s", self.label)

    async def _kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.process.wait()

    async def stop(self, wait_seconds: float = 10.0) -> None:
        """SHUTDOWN (immediate, flushes the AOF), else SIGTERM, else SIGKILL; releases the port.

        The command comes first because redis-server only notices SIGTERM on its next cron tick, and the tick
        is deliberately slow (see REDIS_HZ).
        """
        self._stopping = True
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with self.client(socket_seconds=2.0) as client:
                    await client.shutdown(now=True)
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), 2.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), wait_seconds)
                except TimeoutError:
                    log.warning("redis-server %s ignored SIGTERM; killing it", self.label)
                    await self._kill()
        if self._watch is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self.port:
            self.ports.release(self.port)


def use_pidfd_child_watcher() -> None:
    """Python 3.11's default child watcher runs one thread per child; with 1,000+ children use pidfds instead."""
    if not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_child_watcher(asyncio.PidfdChildWatcher())


class RedisPool:
    """Benchmark-only (``--pool-size N``): at most N shared redis-servers per kind (plain, TLS) hold every database.

    Each database is one more password of the server's ``default`` user (``ACL SETUSER default >PASSWORD``), so
    its published URL stays ``redis://default:PASSWORD@host:port``. Nothing is isolated: every database on a server
    sees the others' keys, and plan and eviction are recorded but not applied (they are per server). Made for
    holding 10,000 databases on one small machine, never for the tests of isolation, eviction or replicas.
    """

    def __init__(self, *, size: int, state_dir: Path, host: str, ports: PortAllocator) -> None:
        self.size = size
        self.state_dir = state_dir
        self.host = host
        self.ports = ports
        self._servers: dict[bool, list[RedisInstance]] = {False: [], True: []}
        self._members: dict[int, int] = {}  # server port -> databases on it
        self._lock = asyncio.Lock()
        # server port -> its admin client, kept: a client per ACL change cost most of the provider's CPU per create
        self._admins: dict[int, aioredis.Redis] = {}

    async def acl(self, server: RedisInstance, *rules: str) -> None:
        """`ACL SETUSER default RULES...` on a pooled server, over its long-lived admin connections."""
        client = self._admins.get(server.port)
        if client is None:
            client = self._admins[server.port] = server.admin_client(max_connections=8)
        await client.execute_command("ACL", "SETUSER", "default", *rules)  # type: ignore[no-untyped-call]

    async def acquire(self, tls: TlsFiles | None) -> RedisInstance:
        """The least loaded server of the kind, started when the pool is not full yet."""
        kind = tls is not None
        async with self._lock:
            servers = self._servers[kind]
            if len(servers) < self.size:
                index = len(servers)
                server = RedisInstance(
                    label=f"pool/{'tls' if kind else 'plain'}-{index}",
                    data_dir=self.state_dir / "pool" / f"{'tls' if kind else 'plain'}-{index}",
                    host=self.host,
                    ports=self.ports,
                    settings=RedisSettings(
                        password=os.urandom(16).hex(),
                        maxmemory=0,
                        policy=POLICY_EVICTION_OFF,
                        tls=tls,
                        maxclients=10000,
                        appendonly=False,
                    ),
                )
                await server.start()
                servers.append(server)
                self._members[server.port] = 0
            chosen = min(servers, key=lambda candidate: self._members.get(candidate.port, 0))
            self._members[chosen.port] = self._members.get(chosen.port, 0) + 1
            return chosen

    def server_at(self, port: int) -> RedisInstance:
        for server in (server for kind in self._servers.values() for server in kind):
            if server.port == port:
                return server
        raise RedisStartError(f"no pooled redis-server on port {port}")

    def release(self, server: RedisInstance) -> None:
        self._members[server.port] = max(0, self._members.get(server.port, 0) - 1)

    async def close(self) -> None:
        admins, self._admins = list(self._admins.values()), {}
        await asyncio.gather(*(admin.aclose() for admin in admins), return_exceptions=True)
        servers = [server for kind in self._servers.values() for server in kind]
        await asyncio.gather(*(server.stop() for server in servers), return_exceptions=True)


class PooledInstance(RedisInstance):
    """A database's "instance" in pooled mode: a password on a shared server of the RedisPool.

    A read replica is one too (on the primary's server: there is no replication in this mode).
    """

    def __init__(self, *, label: str, data_dir: Path, host: str, pool: RedisPool, settings: RedisSettings) -> None:
        super().__init__(label=label, data_dir=data_dir, host=host, ports=pool.ports, settings=settings)
        self.pool = pool
        self.server: RedisInstance | None = None

    @property
    def pid(self) -> int | None:
        return self.server.pid if self.server is not None else None

    async def _acl(self, *rules: str) -> None:
        assert self.server is not None
        await self.pool.acl(self.server, *rules)

    async def start(self, preferred_port: int | None = None, wait_seconds: float = 30.0) -> None:
        del preferred_port, wait_seconds  # the shared server's port, whatever was stored
        if self.settings.replica_of is not None:  # the primary's server and password: nothing to add
            self.server = self.pool.server_at(self.settings.replica_of)
            self.port = self.server.port
            return
        self.server = await self.pool.acquire(self.settings.tls)
        self.port = self.server.port
        try:
            await self._acl("on", f">{self.settings.password}")
        except (RedisError, OSError) as error:
            self.pool.release(self.server)
            raise RedisStartError(f"could not add the password on {self.server.label}: {error}") from error

    async def config_set(self, values: dict[str, str]) -> None:
        """Plan and eviction are per server: recorded by the registry, not applied to the shared server."""

    async def wait_replica_synced(self, wait_seconds: float = 10.0) -> bool:
        return True

    async def set_password(self, new_password: str) -> None:
        old, self.settings.password = self.settings.password, new_password
        if self.settings.replica_of is None:
            await self._acl(f">{new_password}", f"<{old}")

    async def stop(self, wait_seconds: float = 10.0) -> None:
        if self.server is None:
            return
        server, self.server = self.server, None
        if self.settings.replica_of is not None:
            return
        with contextlib.suppress(RedisError, OSError):
            await self.pool.acl(server, f"<{self.settings.password}")
        self.pool.release(server)
