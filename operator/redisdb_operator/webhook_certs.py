"""Webhook serving certificates for runs outside a cluster (tests, `make demo`): a CA and a leaf for 127.0.0.1.

kopf's own self-signed mode needs oscrypto, which fails on current OpenSSL; these are made with `cryptography`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .tls import issue_serving_cert, new_ca


def write_webhook_cert_dir(directory: Path, hosts: Iterable[str] = ("localhost",)) -> Path:
    """Write ca.crt, tls.crt and tls.key (0600) into `directory`, reusing them when present."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / name for name in ("ca.crt", "tls.crt", "tls.key")}
    if all(path.exists() for path in paths.values()):
        return directory
    ca = new_ca("redisdb-operator-webhook-ca")
    cert_pem, key_pem = issue_serving_cert(ca, hosts)
    paths["ca.crt"].write_bytes(ca.cert_pem)
    paths["tls.crt"].write_bytes(cert_pem)
    descriptor = os.open(paths["tls.key"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key_pem)
    return directory
