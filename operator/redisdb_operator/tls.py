"""Certificates made with `cryptography`: the webhook's self-managed serving certificate, and (through the dev
package) the local control plane's.

Go (>= 1.15) verifies hosts only against SANs, so every serving certificate carries them. ECDSA P-256 keys keep
generation fast on small machines. kopf's own self-signed path needs oscrypto, which is broken on current
OpenSSL; the admission-webhook work therefore uses `issue_serving_cert` from here.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Valid from an hour ago (clock skew between processes is irrelevant here, but cheap to allow).
_BACKDATE = datetime.timedelta(hours=1)
DEFAULT_VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class CertKey:
    """A PEM certificate and its PEM (PKCS#8, unencrypted) private key."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise TypeError(f"expected an ECDSA key, got {type(key).__name__}")
        return key

    def write(self, cert_path: Path, key_path: Path) -> None:
        cert_path.write_bytes(self.cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(self.key_pem)

    @classmethod
    def read(cls, cert_path: Path, key_path: Path) -> CertKey:
        return cls(cert_path.read_bytes(), key_path.read_bytes())


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    validity: datetime.timedelta = DEFAULT_VALIDITY,
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + validity)
    )


def new_ca(common_name: str, validity: datetime.timedelta = DEFAULT_VALIDITY) -> CertKey:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = new_private_key()
    name = _name(common_name)
    cert = (
        _builder(name, name, key.public_key(), validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertKey(cert.public_bytes(serialization.Encoding.PEM), private_key_pem(key))


def _issue(
    ca: CertKey,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName],
    validity: datetime.timedelta = DEFAULT_VALIDITY,
) -> CertKey:
    key = new_private_key()
    ca_cert = ca.cert
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.private_key().public_key()), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca.private_key(), hashes.SHA256())
    return CertKey(cert.public_bytes(serialization.Encoding.PEM), private_key_pem(key))


def _general_names(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):  # keep order, drop duplicates
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue_serving_cert(
    ca: CertKey, hosts: Iterable[str], validity: datetime.timedelta = DEFAULT_VALIDITY
) -> tuple[bytes, bytes]:
    """A TLS server certificate signed by `ca` for 127.0.0.1 plus `hosts` (IPs or DNS names).

    Returns (cert_pem, key_pem); give the apiserver `ca.cert_pem` as the webhook's caBundle.
    """
    host_list = ["127.0.0.1", *hosts]
    # Hosts are verified against SANs only; the CN is informational and X.509 caps it at 64 characters.
    common_name = next((host for host in hosts if len(host) <= 64), "redisdb-operator-webhook")
    issued = _issue(ca, _name(common_name), ExtendedKeyUsageOID.SERVER_AUTH, _general_names(host_list), validity)
    return issued.cert_pem, issued.key_pem


def issue_client_cert(ca: CertKey, user: str, groups: Sequence[str] = ()) -> CertKey:
    """A client certificate: the apiserver reads the user from CN and the groups from O."""
    return _issue(ca, _name(user, groups), ExtendedKeyUsageOID.CLIENT_AUTH, [])
