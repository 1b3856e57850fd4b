"""kopf's webhook server, with a serving certificate that is swapped in place when its files change.

kopf's WebhookServer loads the certificate once and, when the files change, closes the listener and opens a
new one: admission reviews that arrive in between fail. Here the listener stays; each TLS handshake picks the
newest good certificate (an SNI callback swaps the connection's SSLContext; OpenSSL calls it for every
ClientHello, with or without a server name). A renewed file pair that does not load (a key that does not match
the certificate, a half-written file) is ignored until it does, so a bad renewal never replaces a good one.
It also answers GET /readyz: "this replica can serve admission" (the listener is up with a loaded certificate).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp.web
import kopf

logger = logging.getLogger(__name__)
READINESS_PATH = "/readyz"


class ReloadingWebhookServer(kopf.WebhookServer):
    """A kopf WebhookServer (HTTPS from certfile/pkeyfile/cafile) that reloads its certificate without a restart."""

    def __init__(self, *, ca_propagation_delay: float = 3.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ca_propagation_delay = ca_propagation_delay
        self._current: ssl.SSLContext | None = None
        self.ready = False
        self.reloads = 0
        # What else must hold before this replica reports ready (the operator's first list of RedisDatabases).
        self.also_ready: Callable[[], bool] = lambda: True

    def _paths(self) -> list[Path]:
        return [Path(str(path)) for path in (self.certfile, self.pkeyfile, self.cafile) if path is not None]

    def _digest(self) -> str:
        hasher = hashlib.sha256()
        for path in self._paths():
            hasher.update(path.read_bytes())
            hasher.update(b"\0")
        return hasher.hexdigest()

    def _new_context(self) -> ssl.SSLContext:
        if self.certfile is None or self.pkeyfile is None:
            raise ValueError("the reloading webhook server needs certfile and pkeyfile")
        context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.certfile), str(self.pkeyfile), self.password)
        context.sni_callback = self._pick_context
        return context

    def _pick_context(self, connection: ssl.SSLObject | ssl.SSLSocket, _name: str | None, used: ssl.SSLContext) -> None:
        current = self._current
        if current is not None and current is not used:
            connection.context = current

    def _cadata(self) -> bytes | None:
        return Path(str(self.cafile)).read_bytes() if self.cafile is not None else None

    def _client_config(self, port: int, cadata: bytes | None) -> kopf.WebhookClientConfig:
        host = self.host or self.DEFAULT_HOST or self._get_accessible_addr(self.addr)
        config = kopf.WebhookClientConfig(url=self._build_url("https", host, port, self.path or ""))
        if cadata is not None:
            config["caBundle"] = base64.b64encode(cadata).decode("ascii")
        return config

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        async def serve(request: aiohttp.web.Request) -> aiohttp.web.Response:
            return await self._serve(fn, request)

        async def readiness(_: aiohttp.web.Request) -> aiohttp.web.Response:
            if not self.ready or not self.also_ready():
                raise aiohttp.web.HTTPServiceUnavailable(reason="not serving admission yet")
            return aiohttp.web.Response(text="ok")

        digest = self._digest()
        self._current = listening = self._new_context()
        cadata = self._cadata()
        path = self.path.rstrip("/") if self.path else ""
        app = aiohttp.web.Application()
        app.add_routes([aiohttp.web.get(READINESS_PATH, readiness), aiohttp.web.post(f"{path}/{{id:.*}}", serve)])
        runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        try:
            port = self.port or self._allocate_free_port()
            # On an OS-chosen port (listeners.HeldPortWebhookServer) a placeholder socket holds it with SO_REUSEPORT.
            site = aiohttp.web.TCPSite(
                runner, self.addr or None, port, ssl_context=listening, reuse_address=True, reuse_port=not self.port
            )
            await site.start()
            self.ready = True
            logger.debug("serving admission on port %s", port)
            yield self._client_config(port, cadata)
            while True:
                await asyncio.sleep(self.file_check_interval)
                try:
                    changed = self._digest()
                except OSError as error:
                    logger.warning("cannot read the webhook certificate files (keeping the loaded ones): %s", error)
                    continue
                if changed == digest:
                    continue
                try:
                    context = self._new_context()
                    new_cadata = self._cadata()
                except (OSError, ssl.SSLError, ValueError) as error:
                    logger.warning("the renewed webhook certificate does not load yet (keeping the old): %s", error)
                    continue
                if new_cadata != cadata:
                    # A managed configuration trusts the new CA and the one before it (until the next change), so
                    # neither a late handshake nor files that change one at a time meet a CA the bundle lacks.
                    yield self._client_config(port, (new_cadata or b"") + (cadata or b""))
                    cadata = new_cadata
                    await asyncio.sleep(self.ca_propagation_delay)
                self._current, digest = context, changed
                self.reloads += 1
                logger.info("loaded the renewed webhook serving certificate (no listener restart)")
        finally:
            self.ready = False
            await runner.cleanup()
