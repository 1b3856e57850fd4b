"""An httpx transport that sends its requests over aiohttp.

The operator's own HTTP clients (the Kubernetes one in kube.py, the providers' in providers/http.py) keep httpx's
API, and the tests keep httpx's MockTransport for the error shapes no real server produces on demand; only the
bytes go through aiohttp, which kopf already uses. httpcore's connection pool was the largest single cost of the
leader in the benchmark: it checks every pooled connection for readability on every request, and 10-15 % of the
leader's samples at 3,000 databases (create burst and idle resync alike) were httpx and httpcore, about 2.5x what
kopf's own aiohttp requests cost per request in the same profile.

Transport failures come back as the httpx exceptions they stand for, because the callers' rules depend on them:
a failure to connect sent nothing (a create may be retried), any later failure may have reached the server.
"""

from __future__ import annotations

import os
import ssl
import weakref
from typing import Any

import aiohttp
import httpx

# The sessions of this module. The leader's write gate (leader.install_kopf_write_gate) wraps every aiohttp request
# to stop kopf's writes once the Lease may have passed; these clients gate their own writes where they are made
# (GatedKubeClient, GatedProviderClient), and a write they already started must finish during a hand-over.
OWN_SESSIONS: weakref.WeakSet[aiohttp.ClientSession] = weakref.WeakSet()


PROXY_VARIABLES = ("https_proxy", "http_proxy", "all_proxy")


def proxy_configured() -> bool:
    """Whether the environment names an HTTP proxy (any case, as httpx reads them)."""
    return any(os.environ.get(name) or os.environ.get(name.upper()) for name in PROXY_VARIABLES)


def default_transport(**options: Any) -> httpx.AsyncBaseTransport | None:
    """This transport, or None (httpx's own) when a proxy is configured: httpx honours HTTPS_PROXY, HTTP_PROXY,
    ALL_PROXY and NO_PROXY only with its own transports (docs/install.md promises exactly its rules)."""
    return None if proxy_configured() else AiohttpTransport(**options)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (connection pool) per transport, made on first use in the loop that uses it."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | bool = True,
        max_connections: int = 10,
        keepalive_seconds: float = 5.0,
    ) -> None:
        self._ssl = ssl_context
        self._max_connections = max_connections
        self._keepalive_seconds = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_seconds,
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # httpx decodes the body by its Content-Encoding, and sends the headers it built (all of them)
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                timeout=aiohttp.ClientTimeout(total=None),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            OWN_SESSIONS.add(self._session)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open_session()
        timeouts: dict[str, Any] = request.extensions.get("timeout") or {}
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.get("pool"),  # waiting for a pooled connection, and connecting
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        headers = [(key.decode("latin-1"), value.decode("latin-1")) for key, value in request.headers.raw]
        body = await request.aread()
        try:
            async with session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                content = await response.read()
                return httpx.Response(
                    status_code=response.status,
                    headers=list(response.raw_headers),
                    content=content,
                    request=request,
                    extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
                )
        except aiohttp.ConnectionTimeoutError as failure:  # no connection: nothing was sent
            raise httpx.ConnectTimeout(_describe(failure), request=request) from failure
        except aiohttp.ServerTimeoutError as failure:  # sent, no answer in time
            raise httpx.ReadTimeout(_describe(failure), request=request) from failure
        except aiohttp.ClientConnectorError as failure:  # refused, unreachable, TLS handshake: nothing was sent
            raise httpx.ConnectError(_describe(failure), request=request) from failure
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as failure:
            raise httpx.RemoteProtocolError(_describe(failure), request=request) from failure
        except aiohttp.ClientError as failure:  # a reset or a broken pipe once the request was on its way
            raise httpx.ReadError(_describe(failure), request=request) from failure

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()


def _describe(failure: BaseException) -> str:
    return f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
