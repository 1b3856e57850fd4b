"""A small async Kubernetes REST client for the few objects the operator touches beyond its own resources.

kopf watches and patches RedisDatabases itself; the operator also reads RedisProviders and credentials
Secrets and writes connection Secrets. Those few verbs over httpx (sending through aiohttp, see
aiohttp_transport.py), built from the same login kopf uses, avoid pulling a full Kubernetes client library into
the image.
"""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
import tempfile
from collections.abc import Callable
from typing import Any

import httpx
import kopf

from .aiohttp_transport import default_transport


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"kubernetes API {status}: {message}")
        self.status = status
        self.message = message


class KubeConflict(KubeError):
    pass


class KubeUnavailable(KubeError):
    """The API server could not be reached or answered 429/5xx (a restart, etcd away): retry later."""


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context()
    if info.ca_path:
        context.load_verify_locations(cafile=os.fsdecode(info.ca_path))
    elif info.ca_data:
        data = _as_bytes(info.ca_data)
        with contextlib.suppress(ValueError):
            data = base64.b64decode(data, validate=True)
        context.load_verify_locations(cadata=data.decode())
    cert_path = os.fsdecode(info.certificate_path) if info.certificate_path else None
    key_path = os.fsdecode(info.private_key_path) if info.private_key_path else None
    if info.certificate_data and info.private_key_data:
        # ssl wants files; keep them in a private directory only this process reads.
        directory = tempfile.mkdtemp(prefix="redisdb-kube-")
        cert_path, key_path = os.path.join(directory, "client.crt"), os.path.join(directory, "client.key")
        for path, pem in ((cert_path, info.certificate_data), (key_path, info.private_key_data)):
            raw: bytes = _as_bytes(pem)
            if not raw.startswith(b"-----"):
                raw = base64.b64decode(raw)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
                handle.write(raw)
    if cert_path:
        context.load_cert_chain(cert_path, key_path)
    return context


class KubeClient:
    """Just the verbs the operator needs, each returning parsed JSON or raising KubeError."""

    def __init__(
        self,
        info: kopf.ConnectionInfo,
        *,
        timeout: float = 30.0,
        relogin: Callable[[], kopf.ConnectionInfo | None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._info = info
        self._relogin = relogin
        verify = _ssl_context(info)
        if transport is None:
            # Idle connections kept for 60 s: resync reads come every few seconds, and a new TLS connection per
            # read costs more CPU than the read. Ten serve 32 concurrent reconciles (a request takes milliseconds).
            transport = default_transport(ssl_context=verify, max_connections=10, keepalive_seconds=60)
        self._client = httpx.AsyncClient(
            base_url=info.server.rstrip("/"),
            verify=verify,  # for httpx's own transport, behind a proxy
            timeout=timeout,
            headers=info.as_http_headers(),
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=10, keepalive_expiry=60),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(
        self, method: str, path: str, *, json: Any = None, content_type: str | None = None
    ) -> dict[str, Any] | None:
        headers = {"Content-Type": content_type} if content_type else None
        try:
            response = await self._client.request(method, path, json=json, headers=headers)
        except httpx.TransportError as failure:
            raise KubeUnavailable(0, f"{type(failure).__name__}: {failure}"[:500]) from failure
        if response.status_code == 401 and self._relogin is not None:
            # A rotated ServiceAccount token (projected tokens expire): read it again and retry once.
            fresh = self._relogin()
            if fresh is not None and fresh.as_http_headers() != self._info.as_http_headers():
                self._info = fresh
                self._client.headers.update(fresh.as_http_headers())
                response = await self._client.request(method, path, json=json, headers=headers)
        if response.status_code == 404 and method == "GET":
            return None
        if response.status_code >= 400:
            try:
                message = str(response.json().get("message", response.text))
            except ValueError:
                message = response.text
            error = KubeConflict if response.status_code == 409 else KubeError
            if response.status_code == 429 or response.status_code >= 500:
                error = KubeUnavailable
            raise error(response.status_code, message[:500])
        parsed: dict[str, Any] = response.json()
        return parsed

    async def get(self, path: str) -> dict[str, Any] | None:
        return await self._request("GET", path)

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        result = await self._request("POST", path, json=body)
        assert result is not None
        return result

    async def replace(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        result = await self._request("PUT", path, json=body)
        assert result is not None
        return result

    async def merge_patch(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        result = await self._request("PATCH", path, json=body, content_type="application/merge-patch+json")
        assert result is not None
        return result


def secret_path(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{namespace}/secrets"
    return f"{base}/{name}" if name else base


def custom_path(group: str, version: str, plural: str, name: str, namespace: str | None = None) -> str:
    if namespace:
        return f"/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}"
    return f"/apis/{group}/{version}/{plural}/{name}"
