"""The aiohttp-backed httpx transport, against a real aiohttp server on 127.0.0.1.

Each failure is one a real server produces on demand here (refuse, hang up mid-answer, answer too late), and each
must come back as the httpx exception the callers' rules depend on: nothing-sent failures may be retried, the rest
may have reached the server.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import httpx
import kopf
import pytest
from aiohttp import web

from redisdb_operator.aiohttp_transport import AiohttpTransport
from redisdb_operator.kube import KubeClient, KubeConflict, KubeUnavailable
from redisdb_operator.leader import LEADER_WORK, NotLeader, install_kopf_write_gate
from redisdb_operator.providers.base import UnavailableError
from redisdb_operator.providers.http import HttpTransport, RetryPolicy

Handler = Callable[[web.Request], Any]


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, dict[str, Handler], list[web.Request]]]:
    """A server whose routes the test sets: (base URL, path -> handler, requests seen)."""
    routes: dict[str, Handler] = {}
    seen: list[web.Request] = []

    async def dispatch(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        result: web.StreamResponse = await routes[request.path](request)
        return result

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", routes, seen
    await runner.cleanup()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_request_and_its_answer_cross_unchanged(server: Any) -> None:
    base, routes, seen = server
    received: dict[str, Any] = {}

    async def echo(request: web.Request) -> web.Response:
        received.update(
            method=request.method,
            query=dict(request.query),
            body=await request.json(),
            authorization=request.headers.get("Authorization"),
            content_type=request.headers.get("Content-Type"),
        )
        payload = gzip.compress(json.dumps({"items": ["a"] * 1000}).encode())
        return web.Response(
            body=payload,
            status=201,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json", "X-Seen": "yes"},
        )

    routes["/things"] = echo
    async with httpx.AsyncClient(
        base_url=base, transport=AiohttpTransport(), headers={"Authorization": "Bearer t"}
    ) as client:
        response = await client.post("/things", params={"limit": "5"}, json={"name": "x"})
    assert received == {
        "method": "POST",
        "query": {"limit": "5"},
        "body": {"name": "x"},
        "authorization": "Bearer t",
        "content_type": "application/json",
    }
    assert response.status_code == 201 and response.headers["X-Seen"] == "yes"
    assert response.json() == {"items": ["a"] * 1000}  # decoded once, by httpx
    assert len(seen) == 1


async def test_kube_client_over_aiohttp_maps_the_apiserver_answers(server: Any) -> None:
    base, routes, _ = server
    tokens: list[str] = []

    async def secrets(request: web.Request) -> web.Response:
        tokens.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != "Bearer fresh":
            return web.json_response({"message": "Unauthorized"}, status=401)
        if request.method == "GET":
            return web.json_response({"message": "not found"}, status=404)
        if request.method == "POST":
            return web.json_response({"message": "already exists"}, status=409)
        return web.json_response({"message": "etcd is away"}, status=503)

    routes["/api/v1/namespaces/n/secrets"] = secrets
    routes["/api/v1/namespaces/n/secrets/s"] = secrets
    info = kopf.ConnectionInfo(server=base, token="stale")
    fresh = kopf.ConnectionInfo(server=base, token="fresh")
    client = KubeClient(info, relogin=lambda: fresh)
    try:
        assert await client.get("/api/v1/namespaces/n/secrets/s") is None  # 401, relogin, then 404
        with pytest.raises(KubeConflict):
            await client.create("/api/v1/namespaces/n/secrets", {"metadata": {"name": "s"}})
        with pytest.raises(KubeUnavailable):
            await client.merge_patch("/api/v1/namespaces/n/secrets/s", {"data": {}})
    finally:
        await client.aclose()
    assert tokens == ["Bearer stale", "Bearer fresh", "Bearer fresh", "Bearer fresh"]


async def failed_create(transport: HttpTransport, match: str) -> UnavailableError:
    """A create (one attempt: not idempotent) through `transport`, which must fail with `match`."""
    try:
        with pytest.raises(UnavailableError, match=match) as caught:
            await transport.request("POST", "/graphql", operation="create", idempotent=False, json_body={})
    finally:
        await transport.aclose()
    return caught.value


async def test_a_refused_connection_is_connect_error_so_nothing_was_sent() -> None:
    transport = HttpTransport(f"http://127.0.0.1:{free_port()}", provider="fly", retry=RetryPolicy(max_attempts=1))
    assert (await failed_create(transport, "cannot connect")).outcome_unknown is False
    kube = KubeClient(kopf.ConnectionInfo(server=f"http://127.0.0.1:{free_port()}", token="t"))
    try:
        with pytest.raises(KubeUnavailable, match="ConnectError"):
            await kube.get("/api/v1/namespaces")
    finally:
        await kube.aclose()


async def test_a_hang_up_after_the_request_is_an_unknown_outcome_sent_once(server: Any) -> None:
    base, routes, seen = server

    async def hang_up(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()  # the request arrived; no answer
        return web.Response()

    routes["/graphql"] = hang_up
    transport = HttpTransport(base, provider="fly", retry=RetryPolicy(max_attempts=3, base_delay=0.001))
    assert (await failed_create(transport, "connection error")).outcome_unknown is True
    assert len(seen) == 1  # a create is never sent twice


async def test_an_answer_later_than_the_read_timeout_is_a_timeout(server: Any) -> None:
    base, routes, _ = server
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    routes["/slow"] = slow
    async with httpx.AsyncClient(base_url=base, transport=AiohttpTransport(), timeout=httpx.Timeout(0.2)) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/slow")
    release.set()


async def test_the_leader_write_gate_passes_the_operators_own_clients(server: Any) -> None:
    """A write the operator's own client already started (or the Lease's release) must not be stopped by the
    gate that stops kopf's writes; kopf's own aiohttp requests stay gated."""
    base, routes, seen = server

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    routes["/lease"] = ok

    class SteppingDown:
        def check_write(self, what: str) -> None:
            raise NotLeader(f"handing the Lease over; not starting {what}")

    install_kopf_write_gate()
    token = LEADER_WORK.set(SteppingDown())  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(base_url=base, transport=AiohttpTransport()) as client:
            assert (await client.put("/lease", json={})).json() == {"ok": True}
        async with aiohttp.ClientSession() as kopf_like:
            with pytest.raises(NotLeader):
                await kopf_like.request("PUT", f"{base}/lease")
    finally:
        LEADER_WORK.reset(token)
    assert len(seen) == 1


async def test_behind_a_proxy_both_clients_go_through_it(server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/install.md: the provider clients and the operator's Kubernetes client honour HTTP(S)_PROXY. httpx does
    that only with its own transports, so a configured proxy keeps them; here the test server is the proxy."""
    base, routes, seen = server

    async def proxied(request: web.Request) -> web.Response:
        return web.json_response({"host": request.host, "path": request.path})

    routes["/api/v1/namespaces/n/secrets/s"] = proxied
    routes["/graphql"] = proxied
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", base)
    kube = KubeClient(kopf.ConnectionInfo(server="http://kube.invalid", token="t"))
    provider = HttpTransport("http://api.fly.invalid", provider="fly")
    try:
        assert await kube.get("/api/v1/namespaces/n/secrets/s") == {
            "host": "kube.invalid",
            "path": "/api/v1/namespaces/n/secrets/s",
        }
        answer = await provider.request("POST", "/graphql", operation="probe", idempotent=True, json_body={})
        assert answer.json() == {"host": "api.fly.invalid", "path": "/graphql"}
    finally:
        await kube.aclose()
        await provider.aclose()
    assert len(seen) == 2
