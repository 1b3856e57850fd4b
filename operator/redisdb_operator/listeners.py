"""The operator's listeners when the OS picks their ports (port 0): bound once, never released and re-bound.

Picking a "free" port by binding and closing a probe socket races with every other process on the machine
(on a test machine: the redis-servers a provider starts). Here the liveness and metrics servers bind port 0
and read the port back; the webhook port is held by a placeholder socket for the life of the process (kopf
binds its server itself, with SO_REUSEPORT, so it can share the held port; processes without SO_REUSEPORT,
redis-server among them, cannot). ``--ports-file`` tells whoever started the operator which ports it got.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.parse
from pathlib import Path

from aiohttp import web

from .webhook_server import ReloadingWebhookServer


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port an aiohttp runner is listening on (the OS's choice when it was started on port 0)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the server is not listening on a TCP port")


def liveness_port(url: str) -> int | None:
    """The port of a ``--liveness`` URL (None when the URL names none)."""
    return urllib.parse.urlsplit(url).port


async def start_liveness_server(url: str) -> web.AppRunner:
    """Serve the liveness endpoint on an OS-chosen port (the URL's port is 0).

    kopf's own endpoint takes a port 0 to mean port 80, so this one stands in for it. It answers 200 and an
    empty JSON object, as kopf's does for an operator without probe handlers (this operator has none).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"--liveness must be an http:// URL, not {url!r}")

    async def healthy(_: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get(parts.path or "/", healthy)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, parts.hostname or "127.0.0.1", 0).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


class HeldPortWebhookServer(ReloadingWebhookServer):
    """The reloading webhook server; with port 0 the OS picks the port once and a placeholder socket holds it.

    kopf would pick a port by binding and closing a probe socket, then bind again (a race). The placeholder has
    SO_REUSEPORT and never listens: the server's listener (also SO_REUSEPORT on a held port) binds the same port
    and gets every connection, and no other process can take the port in between.
    """

    _holder: socket.socket | None = None

    def _allocate_free_port(self) -> int:  # type: ignore[override]
        if self._holder is None:
            address = self.addr or ""
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            holder = socket.socket(family, socket.SOCK_STREAM)
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            holder.bind((address, 0))
            self._holder = holder
        return int(self._holder.getsockname()[1])

    @property
    def bound_port(self) -> int:
        """The port the server listens (or will listen) on."""
        return int(self.port) if self.port else self._allocate_free_port()


def write_ports_file(path: str | os.PathLike[str], ports: dict[str, int]) -> None:
    """Write ``{"liveness": ..., "webhook": ..., "metrics": ...}`` atomically (readers never see half a file)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(ports, sort_keys=True) + "\n")
    os.replace(tmp, target)
