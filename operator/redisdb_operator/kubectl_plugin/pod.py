"""The short-lived pod `kubectl redisdb connect` runs redis-cli in when the endpoint is not reachable from here.

The pod meets the `restricted` Pod Security level, gets the password from the connection Secret through
`secretKeyRef` (never on a command line: redis-cli reads ``REDISCLI_AUTH``), holds no API token, and stops by itself
after the timeout (``activeDeadlineSeconds``) should the plugin die before deleting it.
"""

from __future__ import annotations

import secrets
from typing import Any

# Pinned: a connect session must not change under the user; override with --image.
DEFAULT_IMAGE = "docker.io/library/redis:7.4.2-alpine"
REDIS_UID = 999  # the `redis` user of the official image
CA_MOUNT = "/etc/redisdb-connect"
CA_KEY = "ca.crt"
LABEL_COMPONENT = "app.kubernetes.io/component"
COMPONENT = "kubectl-redisdb-connect"
LABEL_DATABASE = "redisdb.dev/database"


def pod_name(database: str) -> str:
    suffix = secrets.token_hex(3)
    return f"{database[: 63 - len('-connect-') - len(suffix)]}-connect-{suffix}"


def redis_cli_argv(*, host: str, port: int, tls: bool, cacert: str | None, command: list[str] | None) -> list[str]:
    """redis-cli's arguments: where to connect and how; the password comes from REDISCLI_AUTH, never from here."""
    argv = ["redis-cli", "-h", host, "-p", str(port)]
    if tls:
        argv.append("--tls")
        if cacert:
            argv += ["--cacert", cacert]
    return argv + (command or [])


def connect_pod(
    *,
    name: str,
    namespace: str,
    database: str,
    secret_name: str,
    image: str = DEFAULT_IMAGE,
    timeout_seconds: int = 3600,
    ca_config_map: str | None = None,
    password_key: str = "REDIS_PASSWORD",
) -> dict[str, Any]:
    volume_mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    if ca_config_map:
        volume_mounts.append({"name": "ca", "mountPath": CA_MOUNT, "readOnly": True})
        volumes.append({"name": "ca", "configMap": {"name": ca_config_map}})
    container: dict[str, Any] = {
        "name": "redis-cli",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        # The session runs through `kubectl exec`; the container only waits (and ends at the deadline).
        "command": ["sleep", str(timeout_seconds)],
        "env": [
            {"name": "REDISCLI_AUTH", "valueFrom": {"secretKeyRef": {"name": secret_name, "key": password_key}}},
            {"name": "HOME", "value": "/tmp"},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": REDIS_UID,
            "runAsGroup": REDIS_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "200m", "memory": "64Mi"},
        },
        "volumeMounts": [*volume_mounts, {"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "redis-cli",
                LABEL_COMPONENT: COMPONENT,
                "app.kubernetes.io/managed-by": "kubectl-redisdb",
                LABEL_DATABASE: database,
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": timeout_seconds,
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": REDIS_UID,
                "runAsGroup": REDIS_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [container],
            "volumes": [*volumes, {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
        },
    }


def ca_config_map(*, name: str, namespace: str, database: str, ca_pem: str) -> dict[str, Any]:
    """The private CA for --cacert inside the pod (a CA certificate is public; it goes in a ConfigMap)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {LABEL_COMPONENT: COMPONENT, LABEL_DATABASE: database},
        },
        "data": {CA_KEY: ca_pem},
    }
