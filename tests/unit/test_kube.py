"""The operator's small Kubernetes client: a rotated ServiceAccount token is re-read once on 401.

A MockTransport, because a real apiserver will not expire a token on demand (TokenRequest's minimum is 10 min).
"""

from __future__ import annotations

import httpx
import kopf
import pytest

from redisdb_operator.kube import KubeClient, KubeConflict, KubeError


async def test_401_rereads_the_token_and_retries_once() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        if request.headers["Authorization"] == "Bearer old":
            return httpx.Response(401, json={"message": "Unauthorized"})
        return httpx.Response(200, json={"metadata": {"name": "s"}})

    info = kopf.ConnectionInfo(server="https://k8s.invalid", scheme="Bearer", token="old", insecure=True)
    fresh = kopf.ConnectionInfo(server="https://k8s.invalid", scheme="Bearer", token="new", insecure=True)
    client = KubeClient(info, relogin=lambda: fresh, transport=httpx.MockTransport(handler))
    assert await client.get("/api/v1/namespaces/x/secrets/s") == {"metadata": {"name": "s"}}
    assert seen == ["Bearer old", "Bearer new"]
    assert await client.get("/api/v1/namespaces/x/secrets/s") is not None
    assert seen[-1] == "Bearer new"
    await client.aclose()


async def test_errors_are_typed_and_404_on_get_is_none() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(404, json={"message": "not found"})
        if request.method == "POST":
            return httpx.Response(409, json={"message": "already exists"})
        return httpx.Response(403, json={"message": "forbidden: no patch"})

    info = kopf.ConnectionInfo(server="https://k8s.invalid", insecure=True)
    client = KubeClient(info, transport=httpx.MockTransport(handler))
    assert await client.get("/x") is None
    with pytest.raises(KubeConflict):
        await client.create("/x", {})
    with pytest.raises(KubeError, match="403: forbidden: no patch"):
        await client.merge_patch("/x", {})
    await client.aclose()
