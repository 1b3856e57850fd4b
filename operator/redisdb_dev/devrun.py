"""What `make demo`, `make bench` and the test harness all need to run the product on one machine: the
local provider's development credentials, RedisProvider manifests pointing at it, and the operator's command
line with its webhook on loopback. One place, so the three cannot drift apart."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

from redisdb_operator.models import API_VERSION
from redisdb_operator.webhook_certs import write_webhook_cert_dir

# The local provider's development credentials (its defaults): not secrets, they guard nothing real.
LOCAL_FLY_TOKEN = "local-fly-token"
LOCAL_FLY_ORG = "personal"
LOCAL_UPSTASH_EMAIL = "dev@example.com"
LOCAL_UPSTASH_API_KEY = "local-api-key"
SYSTEM_NAMESPACE = "redisdb-system"
WEBHOOK_CONFIGURATION = "redisdb.dev"


def free_port() -> int:
    """A port free right now (bound and released: another process may take it before it is used; prefer
    `operator_argv(ports_file=...)`, where the operator binds port 0 and reports what it got)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def fly_provider_manifests(
    name: str,
    url: str,
    *,
    organization: str = LOCAL_FLY_ORG,
    token: str = LOCAL_FLY_TOKEN,
    secret_name: str | None = None,
    namespace: str = SYSTEM_NAMESPACE,
) -> list[dict[str, Any]]:
    """A credentials Secret and a RedisProvider speaking the Fly GraphQL API at `url`."""
    secret_name = secret_name or f"{name}-credentials"
    return [
        _secret(secret_name, namespace, {"token": token}),
        _provider(name, {"type": "fly", "url": url, "organization": organization}, namespace, secret_name),
    ]


def upstash_provider_manifests(
    name: str,
    url: str,
    *,
    email: str = LOCAL_UPSTASH_EMAIL,
    api_key: str = LOCAL_UPSTASH_API_KEY,
    secret_name: str | None = None,
    namespace: str = SYSTEM_NAMESPACE,
) -> list[dict[str, Any]]:
    """A credentials Secret and a RedisProvider speaking the Upstash Developer API v2 at `url` (ending in /v2)."""
    secret_name = secret_name or f"{name}-credentials"
    return [
        _secret(secret_name, namespace, {"email": email, "apiKey": api_key}),
        _provider(name, {"type": "upstash", "url": url}, namespace, secret_name),
    ]


def _secret(name: str, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": data,
    }


def _provider(name: str, spec: dict[str, Any], namespace: str, secret_name: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "RedisProvider",
        "metadata": {"name": name},
        "spec": {**spec, "credentialsSecretRef": {"namespace": namespace, "name": secret_name}},
    }


def operator_argv(
    *,
    health_port: int | None = None,
    resync_interval: float,
    webhook_cert_dir: Path | None,
    extra_args: list[str] | tuple[str, ...] = (),
    ports_file: Path | None = None,
) -> list[str]:
    """`redisdb-operator run` for a local process; with `webhook_cert_dir`, the webhook on 127.0.0.1, managed.

    With `ports_file` the operator binds its liveness and webhook ports itself (port 0, the OS's choice, held
    for its whole life) and writes them to that file; without it, free ports are picked here.
    """
    if health_port is None:
        health_port = 0 if ports_file is not None else free_port()
    argv = [
        sys.executable,
        "-m",
        "redisdb_operator.cli",
        "run",
        "--liveness",
        f"http://127.0.0.1:{health_port}/healthz",
        "--resync-interval",
        str(resync_interval),
    ]
    if webhook_cert_dir is not None:
        argv += [
            "--webhook-listen",
            f"127.0.0.1:{0 if ports_file is not None else free_port()}",
            "--webhook-cert-dir",
            str(write_webhook_cert_dir(webhook_cert_dir)),
            "--webhook-host",
            "127.0.0.1",
            "--webhook-managed",
            WEBHOOK_CONFIGURATION,
        ]
    if ports_file is not None:
        argv += ["--ports-file", str(ports_file)]
    return [*argv, *extra_args]
