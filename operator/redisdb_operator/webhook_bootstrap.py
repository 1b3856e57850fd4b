"""In-cluster webhook TLS without cert-manager: one CA + serving certificate in a Secret that every replica shares.

At startup the operator (1) reads the Secret, or creates it when absent (a losing replica re-reads the
winner's), replacing it only when its certificate is about to expire or lacks a Service DNS name; (2) writes
tls.crt, tls.key and ca.crt for kopf's WebhookServer; (3) puts the CA into the caBundle of the chart's
ValidatingWebhookConfiguration. The Secret is the source of truth, so certificates never depend on which pod
started first or on a Helm render (no per-render regeneration, nothing random in Git).
"""

from __future__ import annotations

import base64
import datetime
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from .kube import KubeClient, KubeConflict, secret_path
from .tls import issue_serving_cert, new_ca

# Re-issue a certificate that has less than this left; the operator does this on (re)start.
RENEW_BEFORE = datetime.timedelta(days=30)
FILES = ("ca.crt", "tls.crt", "tls.key")
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

    @property
    def dns_names(self) -> list[str]:
        """The Service's DNS names; the bare name last, as it becomes the CN (at most 64 characters)."""
        service, namespace = self.service_name, self.service_namespace
        return [
            f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.cluster.local",
            f"{service}.{namespace}",
            service,
        ]


def split_reference(value: str, flag: str) -> tuple[str, str]:
    """'namespace/name' -> (namespace, name), with an error that names the flag."""
    namespace, _, name = value.partition("/")
    if not namespace or not name or "/" in name:
        raise SystemExit(f"{flag} must be NAMESPACE/NAME, got {value!r}")
    return namespace, name


def issue(dns_names: Sequence[str]) -> dict[str, bytes]:
    ca = new_ca("redisdb-operator-webhook-ca")
    cert_pem, key_pem = issue_serving_cert(ca, dns_names)
    return {"ca.crt": ca.cert_pem, "tls.crt": cert_pem, "tls.key": key_pem}


def still_good(files: dict[str, bytes], dns_names: Sequence[str], now: datetime.datetime | None = None) -> bool:
    """True when the stored certificate covers every Service name and is not close to expiry."""
    if any(not files.get(name) for name in FILES):
        return False
    try:
        cert = x509.load_pem_x509_certificate(files["tls.crt"])
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    now = now or datetime.datetime.now(datetime.UTC)
    covered = set(sans.get_values_for_type(x509.DNSName))
    return set(dns_names) <= covered and cert.not_valid_after_utc - now > RENEW_BEFORE


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
        "data": {name: base64.b64encode(files[name]).decode() for name in FILES},
    }


def _decode(secret: dict[str, Any]) -> dict[str, bytes]:
    data: dict[str, str] = secret.get("data") or {}
    return {name: base64.b64decode(value) for name, value in data.items()}


async def ensure_secret(kube: KubeClient, plan: WebhookBootstrap, logger: logging.Logger) -> dict[str, bytes]:
    """The shared certificate files: read, created when absent, replaced when stale; races end in one winner."""
    path = secret_path(plan.secret_namespace, plan.secret_name)
    for _ in range(5):
        existing = await kube.get(path)
        if existing is not None:
            files = _decode(existing)
            if still_good(files, plan.dns_names):
                return files
            logger.info(
                "webhook certificate in Secret %s/%s is stale; re-issuing", plan.secret_namespace, plan.secret_name
            )
            version = str(existing["metadata"]["resourceVersion"])
            try:
                await kube.replace(path, _secret_body(plan, issue(plan.dns_names), version))
            except KubeConflict:
                continue  # another replica replaced it first: use theirs
        else:
            try:
                await kube.create(secret_path(plan.secret_namespace), _secret_body(plan, issue(plan.dns_names), None))
                logger.info("created webhook certificate Secret %s/%s", plan.secret_namespace, plan.secret_name)
            except KubeConflict:
                continue  # another replica created it first: use theirs
    files_now = await kube.get(path)
    if files_now is None:
        raise RuntimeError(f"Secret {plan.secret_namespace}/{plan.secret_name} vanished while bootstrapping")
    return _decode(files_now)


def write_files(cert_dir: Path, files: dict[str, bytes]) -> None:
    """Write the PEM files kopf's WebhookServer reads (tls.key 0600) into a writable (emptyDir) directory."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        target = cert_dir / name
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if name == "tls.key" else 0o644)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(files[name])


async def ensure_ca_bundle(kube: KubeClient, configuration: str, ca_pem: bytes, logger: logging.Logger) -> bool:
    """Put `ca_pem` into every webhook's caBundle of the configuration; True when it had to change."""
    bundle = base64.b64encode(ca_pem).decode()
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
    await ensure_ca_bundle(kube, plan.configuration, files["ca.crt"], logger)


def plan_from_args(cert_secret: str, service: str, configuration: str, cert_dir: str) -> WebhookBootstrap | None:
    """The bootstrap plan from the run flags, or None when --webhook-cert-secret is not given."""
    if not cert_secret:
        return None
    if not service or not configuration or not cert_dir:
        raise SystemExit(
            "--webhook-cert-secret needs --webhook-service, --webhook-configuration and --webhook-cert-dir"
        )
    secret_namespace, secret_name = split_reference(cert_secret, "--webhook-cert-secret")
    service_namespace, service_name = split_reference(service, "--webhook-service")
    return WebhookBootstrap(
        secret_namespace, secret_name, service_namespace, service_name, configuration, Path(cert_dir)
    )
