"""What `make demo`, `make bench` and the test harness all need to run the product on one machine: the
local provider's development credentials, RedisProvider manifests pointing at it, and the operator's command
line with its webhook on loopback. One place, so the three cannot drift apart."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
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


def wait_for_ports(ports_file: Path, alive: Callable[[], bool], *, timeout: float, log: Path) -> dict[str, int]:
    """The ports an operator started with `operator_argv(ports_file=...)` bound (port 0, the OS's choice) and
    wrote once it listens: read back, never guessed, so nothing here races other processes for a port."""
    deadline = time.monotonic() + timeout
    while not ports_file.exists():
        if not alive():
            raise SystemExit(f"the operator exited before it listened; see {log}")
        if time.monotonic() > deadline:
            raise SystemExit(f"the operator did not report its ports in {timeout:.0f}s; see {log}")
        time.sleep(0.1)
    ports: dict[str, int] = json.loads(ports_file.read_text())
    return ports


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
    resync_interval: float,
    webhook_cert_dir: Path | None,
    extra_args: list[str] | tuple[str, ...] = (),
    ports_file: Path | None = None,
) -> list[str]:
    """`redisdb-operator run` for a local process; with `webhook_cert_dir`, the webhook on 127.0.0.1, managed.

    The operator binds its liveness and webhook ports itself (port 0, the OS's choice, held for its whole life;
    the managed webhook configuration names the port it got); with `ports_file` it writes them there
    (`wait_for_ports` reads them back). No port is picked here: a port probed free and released can be taken
    by another process (a redis-server the local provider starts) before the operator binds it.
    """
    argv = [
        sys.executable,
        "-m",
        "redisdb_operator.cli",
        "run",
        "--liveness",
        "http://127.0.0.1:0/healthz",
        "--resync-interval",
        str(resync_interval),
    ]
    if webhook_cert_dir is not None:
        argv += [
            "--webhook-listen",
            "127.0.0.1:0",
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
