"""The certificates the local provider's redis-servers serve TLS with, as real Upstash databases do (rediss://).

A CA (made once, kept in its directory, which several providers may share so that clients trust one file) signs
a server certificate for the redis host each time the provider starts. Clients verify against the CA file the
provider names at start-up (log line and ``/admin/health``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from redisdb_operator.tls import CertKey, issue_serving_cert, new_ca

CA_FILE = "ca.pem"
_CA_BUNDLE = "ca-with-key.pem"  # certificate and key in one file: created atomically, so all sharers agree


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def _split(bundle: bytes) -> CertKey:
    marker = b"-----BEGIN PRIVATE KEY-----"
    cert, _, key = bundle.partition(marker)
    return CertKey(cert.strip() + b"\n", marker + key)


def _ca(directory: Path) -> CertKey:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    bundle = directory / _CA_BUNDLE
    if not bundle.exists():
        made = new_ca("redisdb local provider databases")
        tmp = directory / f".ca-{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(made.cert_pem + made.key_pem)
        with contextlib.suppress(FileExistsError):  # another provider made it first: use theirs
            os.link(tmp, bundle)
        tmp.unlink()
    ca = _split(bundle.read_bytes())
    public = directory / CA_FILE
    if not public.exists() or public.read_bytes() != ca.cert_pem:
        tmp = directory / f".ca-public-{os.getpid()}.tmp"
        tmp.write_bytes(ca.cert_pem)
        os.replace(tmp, public)
    return ca


def ensure(ca_dir: Path, server_dir: Path, hosts: Iterable[str]) -> TlsFiles:
    """The CA in ``ca_dir`` (made if missing) and a fresh server certificate for ``hosts`` in ``server_dir``."""
    ca = _ca(ca_dir)
    cert_pem, key_pem = issue_serving_cert(ca, ["localhost", *hosts])
    server_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = TlsFiles(ca=ca_dir / CA_FILE, cert=server_dir / "server.pem", key=server_dir / "server.key")
    CertKey(cert_pem, key_pem).write(files.cert, files.key)
    return files
