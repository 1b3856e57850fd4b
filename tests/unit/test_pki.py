"""The control plane's certificates: signed by the right CA, with the SANs and subjects Go clients check."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from redisdb_dev.devcluster.pki import APISERVER_HOSTS, ClusterPKI
from redisdb_operator.tls import CertKey, issue_serving_cert, new_ca


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterPKI:
    return ClusterPKI.generate(tmp_path_factory.mktemp("pki"))


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def test_apiserver_cert_is_signed_by_the_serving_ca_and_names_every_host(pki: ClusterPKI) -> None:
    cert = _cert(pki.apiserver_cert)
    cert.verify_directly_issued_by(_cert(pki.serving_ca))
    dns, ips = _sans(cert)
    assert {"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"} <= dns
    assert {"127.0.0.1", "10.0.0.1"} <= ips
    assert dns | ips == set(APISERVER_HOSTS)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]


@pytest.mark.parametrize(
    ("cert_attr", "user", "groups"),
    [("admin_cert", "admin", ["system:masters"]), ("controller_manager_cert", "system:kube-controller-manager", [])],
)
def test_client_certs_carry_user_in_cn_and_groups_in_o(
    pki: ClusterPKI, cert_attr: str, user: str, groups: list[str]
) -> None:
    cert = _cert(getattr(pki, cert_attr))
    cert.verify_directly_issued_by(_cert(pki.client_ca))
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == [user]
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == groups
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_client_certs_are_not_signed_by_the_serving_ca(pki: ClusterPKI) -> None:
    """Two CAs: a leaked webhook or serving key must not mint cluster-admin client certificates."""
    with pytest.raises((ValueError, TypeError)):
        _cert(pki.admin_cert).verify_directly_issued_by(_cert(pki.serving_ca))


def test_service_account_key_pair_matches(pki: ClusterPKI) -> None:
    private = serialization.load_pem_private_key(pki.service_account_key.read_bytes(), password=None)
    public = serialization.load_pem_public_key(pki.service_account_pub.read_bytes())
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert private.public_key().public_numbers() == public.public_numbers()
    assert oct(pki.service_account_key.stat().st_mode & 0o777) == "0o600"


def test_webhook_serving_cert_always_includes_loopback_ip() -> None:
    ca = new_ca("webhook-ca")
    cert_pem, _ = issue_serving_cert(ca, ["webhook.example.svc", "::1"])
    cert = x509.load_pem_x509_certificate(cert_pem)
    cert.verify_directly_issued_by(ca.cert)
    dns, ips = _sans(cert)
    assert dns == {"webhook.example.svc"}
    assert ips == {"127.0.0.1", str(ipaddress.ip_address("::1"))}


def test_webhook_serving_cert_completes_a_real_tls_handshake(tmp_path: Path) -> None:
    """What the apiserver will do when calling a webhook at https://127.0.0.1:<port>: verify chain + IP SAN."""
    ca = new_ca("webhook-ca")
    cert_pem, key_pem = issue_serving_cert(ca, [])
    CertKey(cert_pem, key_pem).write(tmp_path / "tls.crt", tmp_path / "tls.key")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with server_context.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        client_context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.recv(2) == b"ok"
    thread.join(timeout=5)
    listener.close()


def test_serving_cert_for_a_long_in_cluster_dns_name() -> None:
    from cryptography import x509 as _x509

    from redisdb_operator.tls import issue_serving_cert, new_ca

    long_name = "redisdb-operator-webhook." + "a-rather-long-namespace-name-for-tests" + ".svc.cluster.local"
    assert len(long_name) > 64
    cert_pem, _ = issue_serving_cert(new_ca("test-ca"), ["redisdb-operator-webhook", long_name])
    cert = _x509.load_pem_x509_certificate(cert_pem)
    names = cert.extensions.get_extension_for_class(_x509.SubjectAlternativeName).value.get_values_for_type(
        _x509.DNSName
    )
    assert long_name in names
