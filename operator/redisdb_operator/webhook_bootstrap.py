"""In-cluster webhook TLS without cert-manager: one CA + serving certificate in a Secret that every replica shares.

At startup the operator (1) reads the Secret, or creates it when absent (a losing replica re-reads the
winner's), renewing it when its certificate has a third of its validity left or lacks a Service DNS name;
(2) writes tls.crt, tls.key and ca.crt for the webhook server; (3) puts the CA into the caBundle of the chart's
ValidatingWebhookConfiguration. Every replica then repeats that every few seconds (`keep_renewed`): the one
that renews writes the Secret (resourceVersion-guarded, so one renewal wins), and every replica writes the new
files, which its listener loads in place (webhook_server). The Secret is the source of truth, so certificates
never depend on which pod started first or on a Helm render (nothing random in Git).

Renewal keeps the CA (its key is in the Secret), so the caBundle does not change and there is no moment when
the apiserver distrusts the serving certificate. The CA lives five times as long as a serving certificate and
is replaced with two serving lifetimes left: the new CA joins the bundle next to the old one (caBundle patched
before the Secret changes), and the old one leaves the bundle once it has expired.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .kube import KubeClient, KubeConflict, KubeError, secret_path
from .tls import DEFAULT_VALIDITY, CertKey, issue_serving_cert, new_ca

FILES = ("ca.crt", "tls.crt", "tls.key")  # what the webhook server reads; the CA key stays in the Secret
CA_KEY = "ca.key"
CA_LIFETIMES = 5  # the CA is valid for this many serving-certificate lifetimes
WEBHOOK_CONFIGURATIONS = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"


@dataclass(frozen=True)
class WebhookBootstrap:
    """Where the shared certificate lives, which Service it serves, and which configuration trusts it."""

    secret_namespace: str
    secret_name: str
    service_namespace: str
    service_name: str
    configuration: str
    cert_dir: Path
    validity: datetime.timedelta = DEFAULT_VALIDITY
    extra_hosts: tuple[str, ...] = ()

    @property
    def renew_before(self) -> datetime.timedelta:
        return self.validity / 3

    @property
    def dns_names(self) -> list[str]:
        """The Service's DNS names; the bare name last, as it becomes the CN (at most 64 characters)."""
        service, namespace = self.service_name, self.service_namespace
        names = [*self.extra_hosts]
        if service:
            names += [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]
            names += [f"{service}.{namespace}", service]
        return names


def split_reference(value: str, flag: str) -> tuple[str, str]:
    """'namespace/name' -> (namespace, name), with an error that names the flag."""
    namespace, _, name = value.partition("/")
    if not namespace or not name or "/" in name:
        raise SystemExit(f"{flag} must be NAMESPACE/NAME, got {value!r}")
    return namespace, name


def _certificates(bundle: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(bundle)
    except ValueError:
        return []


def issue(
    dns_names: Sequence[str],
    validity: datetime.timedelta = DEFAULT_VALIDITY,
    *,
    previous: dict[str, bytes] | None = None,
    now: datetime.datetime | None = None,
) -> dict[str, bytes]:
    """New serving files; the previous CA signs them while it has two serving lifetimes left, else a new CA
    does and the previous one stays in ca.crt (the caBundle) until it expires."""
    now = now or datetime.datetime.now(datetime.UTC)
    previous = previous or {}
    ca: CertKey | None = None
    kept_cas: list[x509.Certificate] = []
    if previous.get(CA_KEY) and previous.get("ca.crt"):
        chain = _certificates(previous["ca.crt"])
        if chain and chain[0].not_valid_after_utc - now > 2 * validity:
            ca = CertKey(chain[0].public_bytes(serialization.Encoding.PEM), previous[CA_KEY])
            kept_cas = chain[1:]
        else:
            kept_cas = chain
    if ca is None:
        ca = new_ca("redisdb-operator-webhook-ca", validity * CA_LIFETIMES)
    cert_pem, key_pem = issue_serving_cert(ca, dns_names, validity)
    bundle = ca.cert_pem + b"".join(
        cert.public_bytes(serialization.Encoding.PEM) for cert in kept_cas if cert.not_valid_after_utc > now
    )
    return {"ca.crt": bundle, "tls.crt": cert_pem, "tls.key": key_pem, CA_KEY: ca.key_pem}


def still_good(
    files: dict[str, bytes],
    dns_names: Sequence[str],
    now: datetime.datetime | None = None,
    renew_before: datetime.timedelta = DEFAULT_VALIDITY / 3,
) -> bool:
    """True when the stored certificate covers every Service name and has more than `renew_before` left."""
    if any(not files.get(name) for name in (*FILES, CA_KEY)):
        return False
    try:
        cert = x509.load_pem_x509_certificate(files["tls.crt"])
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    now = now or datetime.datetime.now(datetime.UTC)
    covered = set(sans.get_values_for_type(x509.DNSName)) | {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    return set(dns_names) <= covered and cert.not_valid_after_utc - now > renew_before


def _secret_body(plan: WebhookBootstrap, files: dict[str, bytes], resource_version: str | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": plan.secret_name,
        "namespace": plan.secret_namespace,
        "labels": {"app.kubernetes.io/managed-by": "redisdb-operator", "app.kubernetes.io/component": "webhook"},
    }
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "kubernetes.io/tls",
        "data": {name: base64.b64encode(files[name]).decode() for name in (*FILES, CA_KEY)},
    }


def _decode(secret: dict[str, Any]) -> dict[str, bytes]:
    data: dict[str, str] = secret.get("data") or {}
    return {name: base64.b64decode(value) for name, value in data.items()}


async def ensure_secret(
    kube: KubeClient, plan: WebhookBootstrap, logger: logging.Logger, *, quiet: bool = False
) -> dict[str, bytes]:
    """The shared certificate files: read, created when absent, renewed when due; races end in one winner."""
    path = secret_path(plan.secret_namespace, plan.secret_name)
    for _ in range(5):
        existing = await kube.get(path)
        if existing is not None:
            files = _decode(existing)
            if still_good(files, plan.dns_names, renew_before=plan.renew_before):
                return files
            logger.info("renewing the webhook certificate in Secret %s/%s", plan.secret_namespace, plan.secret_name)
            renewed = issue(plan.dns_names, plan.validity, previous=files)
            if renewed["ca.crt"] != files.get("ca.crt") and plan.configuration:
                # Trust first: the bundle holds the new CA before any replica can serve a certificate it signed.
                await ensure_ca_bundle(kube, plan.configuration, renewed["ca.crt"], logger, keep=files.get("ca.crt"))
            version = str(existing["metadata"]["resourceVersion"])
            try:
                await kube.replace(path, _secret_body(plan, renewed, version))
            except KubeConflict:
                continue  # another replica renewed it first: use theirs
        else:
            try:
                await kube.create(
                    secret_path(plan.secret_namespace), _secret_body(plan, issue(plan.dns_names, plan.validity), None)
                )
                logger.info("created webhook certificate Secret %s/%s", plan.secret_namespace, plan.secret_name)
            except KubeConflict:
                continue  # another replica created it first: use theirs
    files_now = await kube.get(path)
    if files_now is None:
        raise RuntimeError(f"Secret {plan.secret_namespace}/{plan.secret_name} vanished while bootstrapping")
    return _decode(files_now)


def write_files(cert_dir: Path, files: dict[str, bytes]) -> bool:
    """Write the PEM files the webhook server reads (tls.key 0600) into a writable (emptyDir) directory.

    Each file is replaced atomically (written aside, then renamed); True when any content changed.
    """
    cert_dir.mkdir(parents=True, exist_ok=True)
    changed = False
    for name in FILES:
        target = cert_dir / name
        if target.exists() and target.read_bytes() == files[name]:
            continue
        aside = cert_dir / f".{name}.new"
        descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if name == "tls.key" else 0o644)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(files[name])
        os.replace(aside, target)
        changed = True
    return changed


async def ensure_ca_bundle(
    kube: KubeClient, configuration: str, ca_pem: bytes, logger: logging.Logger, *, keep: bytes | None = None
) -> bool:
    """Put `ca_pem` (plus `keep`, the CAs still in use) into every webhook's caBundle; True when it changed."""
    bundle = base64.b64encode(ca_pem + (keep or b"")).decode()
    path = f"{WEBHOOK_CONFIGURATIONS}/{configuration}"
    for _ in range(5):
        current = await kube.get(path)
        if current is None:
            raise RuntimeError(
                f"ValidatingWebhookConfiguration {configuration} does not exist; install it with the Helm chart "
                "or drop --webhook-configuration"
            )
        webhooks: list[dict[str, Any]] = current.get("webhooks") or []
        if all(webhook.get("clientConfig", {}).get("caBundle") == bundle for webhook in webhooks):
            return False
        for webhook in webhooks:
            webhook.setdefault("clientConfig", {})["caBundle"] = bundle
        try:
            await kube.replace(path, current)
        except KubeConflict:
            continue
        logger.info("wrote the webhook CA into ValidatingWebhookConfiguration %s", configuration)
        return True
    raise RuntimeError(f"ValidatingWebhookConfiguration {configuration} kept changing; caBundle not written")


async def bootstrap(kube: KubeClient, plan: WebhookBootstrap, logger: logging.Logger) -> None:
    files = await ensure_secret(kube, plan, logger)
    write_files(plan.cert_dir, files)
    if plan.configuration:
        await ensure_ca_bundle(kube, plan.configuration, files["ca.crt"], logger)


async def keep_renewed(kube: KubeClient, plan: WebhookBootstrap, logger: logging.Logger, interval: float) -> None:
    """Every `interval`: renew the Secret when due (one replica wins), write its files, keep the caBundle."""
    while True:
        await asyncio.sleep(interval)
        try:
            files = await ensure_secret(kube, plan, logger)
            if write_files(plan.cert_dir, files):
                logger.info("wrote the renewed webhook certificate files")
            if plan.configuration:
                await ensure_ca_bundle(kube, plan.configuration, files["ca.crt"], logger)
        except (KubeError, RuntimeError, OSError) as error:
            logger.warning("webhook certificate renewal check failed (retrying): %s", error)


def plan_from_args(
    cert_secret: str,
    service: str,
    configuration: str,
    cert_dir: str,
    *,
    validity: datetime.timedelta = DEFAULT_VALIDITY,
    managed_host: str = "",
) -> WebhookBootstrap | None:
    """The bootstrap plan from the run flags, or None when --webhook-cert-secret is not given.

    With --webhook-managed (local runs), kopf keeps the configuration's caBundle and the certificate names the
    --webhook-host; otherwise the chart's Service and ValidatingWebhookConfiguration are named.
    """
    if not cert_secret:
        return None
    if not cert_dir or not (managed_host or (service and configuration)):
        raise SystemExit(
            "--webhook-cert-secret needs --webhook-cert-dir and either --webhook-service with "
            "--webhook-configuration, or --webhook-managed with --webhook-host"
        )
    if validity < datetime.timedelta(seconds=60):
        raise SystemExit("--webhook-cert-validity must be at least 60 seconds")
    secret_namespace, secret_name = split_reference(cert_secret, "--webhook-cert-secret")
    service_namespace, service_name = split_reference(service, "--webhook-service") if service else ("", "")
    return WebhookBootstrap(
        secret_namespace,
        secret_name,
        service_namespace,
        service_name,
        configuration,
        Path(cert_dir),
        validity,
        (managed_host,) if managed_host else (),
    )
