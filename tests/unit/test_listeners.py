"""Listeners on OS-chosen ports: bound once and held, so nothing else on the machine can take them."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest

from redisdb_operator.listeners import HeldPortWebhookServer, bound_port, start_liveness_server, write_ports_file
from redisdb_operator.runner import parse_args, webhook_server


def test_the_held_webhook_port_refuses_other_processes_but_not_kopf(tmp_path: Path) -> None:
    args = parse_args(["--webhook-listen", "127.0.0.1:0", "--webhook-cert-dir", str(tmp_path)])
    server = webhook_server(args)
    assert isinstance(server, HeldPortWebhookServer)
    port = server.bound_port
    assert port > 0 and server._allocate_free_port() == port, "one port for the process's life"
    with socket.socket() as like_redis:  # redis-server sets SO_REUSEADDR, never SO_REUSEPORT
        like_redis.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError, match="in use"):
            like_redis.bind(("127.0.0.1", port))
    with socket.socket() as like_kopf:  # kopf's TCPSite: reuse_address and reuse_port
        like_kopf.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        like_kopf.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        like_kopf.bind(("127.0.0.1", port))
        like_kopf.listen()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            accepted, _ = like_kopf.accept()
            accepted.close()


async def test_liveness_on_port_zero_answers_on_the_port_it_reports(tmp_path: Path) -> None:
    runner = await start_liveness_server("http://127.0.0.1:0/healthz")
    try:
        port = bound_port(runner)
        write_ports_file(tmp_path / "ports.json", {"liveness": port})
        assert json.loads((tmp_path / "ports.json").read_text()) == {"liveness": port}
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/healthz")
        assert response.status_code == 200 and response.json() == {}
    finally:
        await runner.cleanup()
