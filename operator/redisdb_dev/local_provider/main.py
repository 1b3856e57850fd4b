"""``python -m redisdb_dev.cli local-provider``: restore the registry, serve its APIs on one port, stop cleanly.

The port file is written only once every stored database is back and the socket is listening, so whoever
waits for it can use the provider at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import resource
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from . import tls_files
from .admin_api import AdminApi
from .fly_api import FlyApi
from .gate import WireGate
from .processes import use_pidfd_child_watcher
from .registry import Registry
from .rest_api import ADVERTISE_HOST, RestApi
from .settings import Settings, parse_settings
from .upstash_api import UpstashApi

log = logging.getLogger("redisdb_dev.local_provider")


@web.middleware
async def _internal_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """An unexpected failure answers JSON 500 (adapters treat it as temporary) instead of an HTML page."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("internal error serving %s %s", request.method, request.path)
        return web.json_response({"error": "internal error"}, status=500)


class PathAccessLogger(AbstractAccessLogger):
    """Method, path, status and time; never the query (``?_token=`` carries a REST token) and, under ``/rest/``,
    no path past the command name (path-style arguments are the application's data)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %d %.3fs", request.method, loggable_path(request.path), response.status, time)


def loggable_path(path: str) -> str:
    if path.startswith("/rest/"):
        return "/".join(path.split("/", 5)[:4])  # "", "rest", id, command
    return path


def build_app(registry: Registry, gate: WireGate, settings: Settings) -> web.Application:
    app = web.Application(middlewares=[_internal_errors, gate.crash_points.middleware])
    if settings.advertise_host:
        app[ADVERTISE_HOST] = settings.advertise_host
    app.add_routes(AdminApi(registry, gate, settings).routes())
    app.add_routes(FlyApi(registry, gate, settings).routes())
    app.add_routes(UpstashApi(registry, gate, settings).routes())
    app.add_routes(RestApi(registry, gate).routes())
    return app


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _raise_open_file_limit() -> None:
    """Each database holds a few descriptors in the provider (pidfd, admin connections)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(settings: Settings) -> int:
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_file = (settings.state_dir / "provider.lock").open("w")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.error("another local provider is using %s", settings.state_dir)
        return 1

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    tls = tls_files.ensure(
        settings.tls_ca_dir or settings.state_dir / "tls", settings.state_dir / "tls", settings.tls_hosts()
    )
    log.info("Upstash-type databases serve TLS only; verify them against the CA in %s", tls.ca)
    registry = Registry(
        settings.state_dir,
        host=settings.redis_connect_host,
        tls=tls,
        bind_host=settings.redis_host,
        public_host=settings.public_host,
        pool_size=settings.pool_size,
    )
    if settings.pool_size:
        log.warning(
            "pooled mode: every database is a password on one of at most %d shared redis-servers per kind; "
            "no isolation between databases, plan and eviction not applied (benchmarks only)",
            settings.pool_size,
        )
    runner: web.AppRunner | None = None
    try:
        await registry.restore()
        if stop.is_set():
            return 0
        runner = web.AppRunner(
            build_app(registry, WireGate(), settings),
            access_log=log if settings.access_log else None,
            access_log_class=PathAccessLogger,
            handle_signals=False,
        )
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        port = next(address[1] for address in runner.addresses if isinstance(address, tuple))
        if settings.port_file is not None:
            _write_atomically(settings.port_file, f"{port}\n")
        log.info(
            "local provider listening on http://%s:%d, redis-servers on %s, handing out %s (%d databases; "
            "Upstash accounts: %s; Fly orgs: %s)",
            settings.host,
            port,
            settings.redis_host,
            settings.public_host,
            len(registry.databases),
            ", ".join(settings.upstash_accounts),
            ", ".join(settings.fly_orgs),
        )
        await stop.wait()
        log.info("stopping")
    finally:
        if runner is not None:
            await runner.cleanup()
        await registry.close()
        if settings.port_file is not None:
            with contextlib.suppress(FileNotFoundError):
                settings.port_file.unlink()
        lock_file.close()
    return 0


def main(argv: list[str]) -> int:
    settings = parse_settings(argv)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _raise_open_file_limit()
    use_pidfd_child_watcher()
    return asyncio.run(serve(settings))
