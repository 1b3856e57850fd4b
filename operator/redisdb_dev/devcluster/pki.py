"""Certificates for the local control plane: its CAs, serving and client certificates, service-account keys.

The certificate-making primitives live in the runtime package (`redisdb_operator.tls`), which the webhook uses too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from redisdb_operator.tls import (
    CertKey,
    issue_client_cert,
    issue_serving_cert,
    new_ca,
    new_private_key,
    private_key_pem,
)

# The first address of --service-cluster-ip-range=10.0.0.0/24: the in-cluster `kubernetes` Service.
FIRST_SERVICE_IP = "10.0.0.1"
APISERVER_HOSTS: tuple[str, ...] = (
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    FIRST_SERVICE_IP,
)


@dataclass(frozen=True)
class ClusterPKI:
    """Every certificate and key the control plane needs, as files in one directory."""

    directory: Path

    @property
    def serving_ca(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def apiserver_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def client_ca(self) -> Path:
        return self.directory / "client-ca.crt"

    @property
    def admin_cert(self) -> Path:
        return self.directory / "admin.crt"

    @property
    def admin_key(self) -> Path:
        return self.directory / "admin.key"

    @property
    def controller_manager_cert(self) -> Path:
        return self.directory / "kube-controller-manager.crt"

    @property
    def controller_manager_key(self) -> Path:
        return self.directory / "kube-controller-manager.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.directory / "sa.pub"

    def serving_ca_certkey(self) -> CertKey:
        return CertKey.read(self.serving_ca, self.directory / "ca.key")

    @classmethod
    def generate(cls, directory: Path) -> ClusterPKI:
        """Writes a fresh set of certificates into `directory` (created if missing)."""
        directory.mkdir(parents=True, exist_ok=True)
        pki = cls(directory)
        serving_ca = new_ca("redisdb-devcluster-serving-ca")
        serving_ca.write(pki.serving_ca, directory / "ca.key")
        cert_pem, key_pem = issue_serving_cert(serving_ca, APISERVER_HOSTS)
        CertKey(cert_pem, key_pem).write(pki.apiserver_cert, pki.apiserver_key)

        client_ca = new_ca("redisdb-devcluster-client-ca")
        client_ca.write(pki.client_ca, directory / "client-ca.key")
        issue_client_cert(client_ca, "admin", ["system:masters"]).write(pki.admin_cert, pki.admin_key)
        issue_client_cert(client_ca, "system:kube-controller-manager").write(
            pki.controller_manager_cert, pki.controller_manager_key
        )

        sa_key = new_private_key()
        pki.service_account_key.touch(mode=0o600)
        pki.service_account_key.write_bytes(private_key_pem(sa_key))
        pki.service_account_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return pki
