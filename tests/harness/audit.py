"""The reusable end state check of the reliability promise, and the secret-hygiene scanner.

`audit()` compares what Kubernetes declares with what the local provider holds: every live RedisDatabase has
exactly one provider database (by status.databaseId and by name) whose primary region, read regions, plan and
eviction match its spec, is Ready and Synced for its generation, and has a Secret whose REDIS_URL answers PING
with the provider's current password; no provider database exists without a resource, except the ones a test
declares as orphans (deletionPolicy Orphan). Given what was asked (`rotations`: the newest rotation asked of each
resource and when), it also checks that the rotation was handled, the current password was issued after it was
asked, every older password of the database is refused by the primary and by every replica, and replication
works (a write on the primary acknowledged by every replica and read back there). `wait_for_clean_audit()`
polls it until clean and says how long convergence took.

`scan_for_secrets()` looks for every password and token the provider ever issued in operator logs, Events and
RedisDatabase status: the hygiene promise is zero hits.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import redis

from redisdb_operator.providers import catalog
from tests.harness.cluster import kubectl
from tests.harness.local_provider import TLS_CA_FILE, LocalProvider, redis_from_url

ProviderDatabase = dict[str, Any]


@dataclass
class AuditReport:
    """What the audit saw; ``problems`` is empty when the promise holds."""

    resources: int = 0
    provider_databases: int = 0
    matched: int = 0
    pinged: int = 0
    orphans_kept: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return (
            f"{self.resources} resources, {self.provider_databases} provider databases, {self.matched} matched, "
            f"{self.pinged} Secrets answered PING, {self.orphans_kept} declared orphans kept, "
            f"{len(self.problems)} problems"
        )

    def assert_clean(self) -> None:
        assert self.clean, "audit failed: " + self.summary() + "\n  " + "\n  ".join(self.problems[:40])


def _items(*args: str, kubeconfig: Path | str | None) -> list[dict[str, Any]]:
    out = kubectl("get", *args, "-o", "json", kubeconfig=kubeconfig, timeout=60).stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def _condition(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            found: Mapping[str, Any] = item
            return found
    return None


def _secrets_of(namespaces: Iterable[str], kubeconfig: Path | str | None) -> dict[tuple[str, str], dict[str, str]]:
    """(namespace, name) -> decoded data of every Secret in these namespaces, one kubectl call per namespace."""
    found = {}
    for namespace in sorted(set(namespaces)):
        for item in _items("secrets", "-n", namespace, kubeconfig=kubeconfig):
            data = item.get("data") or {}
            found[(namespace, item["metadata"]["name"])] = {
                key: base64.b64decode(value).decode(errors="replace") for key, value in data.items()
            }
    return found


def _ping(url: str) -> str | None:
    """None when the URL connects and answers PING, else why not."""
    try:
        client = redis_from_url(url, socket_connect_timeout=5)
        try:
            return None if client.ping() else "PING returned false"
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as error:
        return f"{type(error).__name__}: {str(error)[:120]}"


def audit(
    local_provider: LocalProvider,
    *,
    kubeconfig: Path | str | None = None,
    namespaces: Collection[str] | None = None,
    in_scope: Callable[[ProviderDatabase], bool] | None = None,
    orphans: Collection[str] = (),
    check_connections: bool = True,
    rotations: Mapping[str, tuple[str, float]] | None = None,
) -> AuditReport:
    """Check the promise once. ``namespaces`` limits the RedisDatabases looked at (default: all); ``in_scope``
    limits the provider databases (default: all of this provider, or those named ``<namespace>-...`` when
    ``namespaces`` is given); ``orphans`` are provider-side names allowed to exist without a resource."""
    report = AuditReport()
    wanted_namespaces = set(namespaces) if namespaces is not None else None
    if in_scope is None and wanted_namespaces is not None:
        prefixes = tuple(f"{namespace}-" for namespace in wanted_namespaces)

        def in_scope(database: ProviderDatabase) -> bool:
            return str(database["name"]).startswith(prefixes)

    providers = {
        item["metadata"]["name"]: item.get("spec") or {} for item in _items("redisproviders", kubeconfig=kubeconfig)
    }
    resources = [
        item
        for item in _items("redisdatabases", "--all-namespaces", kubeconfig=kubeconfig)
        if wanted_namespaces is None or item["metadata"]["namespace"] in wanted_namespaces
    ]
    databases = [d for d in local_provider.admin.databases() if in_scope is None or in_scope(d)]
    issued = local_provider.admin.issued_credentials()["passwords"]
    current_password = {entry["database_id"]: entry["password"] for entry in issued if entry["current"]}
    by_id = {database["id"]: database for database in databases}
    secrets = _secrets_of((r["metadata"]["namespace"] for r in resources), kubeconfig)
    report.provider_databases = len(databases)
    claimed: set[str] = set()

    for obj in resources:
        meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
        namespace, name = meta["namespace"], meta["name"]
        label = f"{namespace}/{name}"
        if meta.get("deletionTimestamp"):
            report.problems.append(f"{label}: still being deleted (finalizers {meta.get('finalizers')})")
            continue
        report.resources += 1
        provider_name = (spec.get("providerRef") or {}).get("name") or "default"
        provider_type = (providers.get(provider_name) or {}).get("type")
        provider_side_name = spec.get("name") or f"{namespace}-{name}"
        named = [d for d in databases if d["name"] == provider_side_name and d["api"] == provider_type]
        if len(named) != 1:
            report.problems.append(f"{label}: {len(named)} provider databases named {provider_side_name}")
        database_id = status.get("databaseId")
        database = by_id.get(database_id) if database_id else None
        if database is None:
            report.problems.append(f"{label}: status.databaseId {database_id!r} is not a provider database")
            claimed.update(d["id"] for d in named)
            continue
        claimed.add(database["id"])
        if named and database["id"] not in {d["id"] for d in named}:
            report.problems.append(f"{label}: status.databaseId {database_id} is not the database named by spec")
        problems = _spec_mismatches(spec, database)
        ready, synced = _condition(obj, "Ready"), _condition(obj, "Synced")
        if not (ready and ready.get("status") == "True" and synced and synced.get("status") == "True"):
            problems.append(
                f"not Ready+Synced (Ready={ready and ready.get('status')}/{ready and ready.get('reason')}, "
                f"Synced={synced and synced.get('status')}/{synced and synced.get('reason')})"
            )
        if status.get("observedGeneration") != meta.get("generation"):
            problems.append(f"observedGeneration {status.get('observedGeneration')} != {meta.get('generation')}")
        secret_name = (spec.get("connectionSecret") or {}).get("name") or f"{name}-redis"
        secret = secrets.get((namespace, secret_name))
        if secret is None:
            problems.append(f"Secret {secret_name} is missing")
        else:
            problems += _secret_mismatches(secret, database, current_password.get(database["id"]))
            if check_connections and "REDIS_URL" in secret:
                failure = _ping(secret["REDIS_URL"])
                if failure is None:
                    report.pinged += 1
                else:
                    problems.append(f"REDIS_URL does not connect: {failure}")
        asked = (rotations or {}).get(label)
        if asked is not None:
            problems += _rotation_problems(asked, status, database, issued)
        if check_connections and not problems and secret is not None:
            problems += _replication_problems(secret, database)
        report.problems += [f"{label}: {problem}" for problem in problems]
        if not problems:
            report.matched += 1

    orphan_names = set(orphans)
    for database in databases:
        if database["id"] in claimed:
            continue
        if database["name"] in orphan_names:
            report.orphans_kept += 1
            continue
        report.problems.append(
            f"provider database {database['name']} ({database['id']}, {database['api']}) has no RedisDatabase"
        )
    return report


def _refused(host: str, port: int, password: str, *, tls: bool = False) -> bool:
    """True when redis-server at host:port refuses `password` (an old one must be). `tls`: an Upstash-type
    database, which serves TLS only (verified against the local provider's CA)."""
    options: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(TLS_CA_FILE)} if tls else {}
    client = redis.Redis(host=host, port=port, password=password, socket_timeout=5, socket_connect_timeout=5, **options)
    try:
        client.ping()
    except redis.AuthenticationError:
        return True
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()
    return False


def _rotation_problems(
    asked: tuple[str, float], status: Mapping[str, Any], database: ProviderDatabase, issued: list[dict[str, Any]]
) -> list[str]:
    """The newest rotation asked was handled, with a password issued after it was asked; every older password of
    this database is refused by the primary and every replica."""
    stamp, asked_at = asked
    problems = []
    if status.get("lastHandledRotation") != stamp:
        problems.append(f"rotation {stamp} not handled (lastHandledRotation {status.get('lastHandledRotation')!r})")
    mine = [entry for entry in issued if entry["database_id"] == database["id"]]
    current = [entry for entry in mine if entry["current"]]
    if current and current[0]["issued_at"] < asked_at:
        problems.append(f"the current password was issued before rotation {stamp} was asked: the rotation was lost")
    ports = [("primary", database["port"]), *((f"replica {r['region']}", r["port"]) for r in database["replicas"])]
    for number, entry in enumerate(entry for entry in mine if not entry["current"]):
        for where, port in ports:
            if not _refused("127.0.0.1", port, entry["password"], tls=bool(database.get("tls"))):
                problems.append(f"old password #{number + 1} is still accepted by the {where}")
    return problems


def _replication_problems(secret: Mapping[str, str], database: ProviderDatabase) -> list[str]:
    """A write on the primary is acknowledged by every replica (WAIT) and read back on each of them."""
    replicas = database["replicas"]
    if not replicas:
        return []
    password = secret.get("REDIS_PASSWORD", "")
    key, value = "audit:replication", f"{time.time_ns()}"
    tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(TLS_CA_FILE)} if database.get("tls") else {}
    try:
        primary = redis.Redis(host="127.0.0.1", port=database["port"], password=password, socket_timeout=10, **tls)
        try:
            primary.set(key, value)
            acknowledged = int(primary.execute_command("WAIT", len(replicas), 5000))
        finally:
            primary.close()
        if acknowledged < len(replicas):
            return [f"replication: {acknowledged} of {len(replicas)} replicas acknowledged a write"]
        problems = []
        for replica in replicas:
            client = redis.Redis(host="127.0.0.1", port=replica["port"], password=password, socket_timeout=5, **tls)
            try:
                if client.get(key) != value.encode():
                    problems.append(f"replication: the replica in {replica['region']} does not have the write")
            finally:
                client.close()
        return problems
    except (redis.RedisError, OSError) as error:
        return [f"replication check failed: {type(error).__name__}: {str(error)[:120]}"]


def _spec_mismatches(spec: Mapping[str, Any], database: ProviderDatabase) -> list[str]:
    problems = []
    if database["primary_region"] != spec.get("primaryRegion"):
        problems.append(f"primary region {database['primary_region']} != spec {spec.get('primaryRegion')}")
    if sorted(database["read_regions"]) != sorted(spec.get("readRegions") or []):
        problems.append(
            f"read regions {sorted(database['read_regions'])} != spec {sorted(spec.get('readRegions') or [])}"
        )
    plan = spec.get("plan") or catalog.DEFAULT_PLAN
    if database["plan"] != plan:
        problems.append(f"plan {database['plan']} != spec {plan}")
    if bool(database["eviction"]) != bool(spec.get("eviction")):
        problems.append(f"eviction {database['eviction']} != spec {bool(spec.get('eviction'))}")
    return problems


def _secret_mismatches(secret: Mapping[str, str], database: ProviderDatabase, password: str | None) -> list[str]:
    problems = []
    url = secret.get("REDIS_URL", "")
    if not url:
        return ["the Secret has no REDIS_URL"]
    parts = urlsplit(url)
    if password is None:
        problems.append("the provider reports no current password")
    elif secret.get("REDIS_PASSWORD") != password or unquote(parts.password or "") != password:
        problems.append("the Secret's password is not the provider's current password")
    with contextlib.suppress(ValueError):
        if parts.port != database["port"]:
            problems.append(f"REDIS_URL port {parts.port} != provider port {database['port']}")
    return problems


def wait_for_clean_audit(
    local_provider: LocalProvider,
    *,
    timeout: float,
    interval: float = 3.0,
    **options: Any,
) -> tuple[AuditReport, float]:
    """Audit until clean (bounded by ``timeout``); returns the clean report and the seconds it took.

    On timeout it fails with the last report's problems, which name each resource and what is wrong with it.
    """
    started = time.monotonic()
    deadline = started + timeout
    report = AuditReport(problems=["not audited yet"])
    for _ in range(10_000):  # bounded by the deadline; the count is a second bound
        report = audit(local_provider, **options)
        if report.clean or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    report.assert_clean()
    return report, time.monotonic() - started


# -- secret hygiene ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretHit:
    source: str
    kind: str  # "password" or "token": never the value itself
    line: int


def issued_secrets(providers: Iterable[LocalProvider]) -> dict[str, str]:
    """Every password and token the providers ever issued or accepted -> its kind, with the encodings a leak
    could take (URL-quoted, the Basic credential's base64)."""
    found: dict[str, str] = {}
    for provider in providers:
        issued = provider.issued_credentials()
        for entry in issued["passwords"]:
            found[entry["password"]] = "password"
            found[quote(entry["password"], safe="")] = "password"
        for token in issued["tokens"]:
            found[token] = "token"
        basic = base64.b64encode(f"{provider.upstash_email}:{provider.upstash_api_key}".encode()).decode()
        found[basic] = "token"
    return {value: kind for value, kind in found.items() if len(value) >= 8}


def scan_for_secrets(secrets: Mapping[str, str], texts: Mapping[str, str]) -> list[SecretHit]:
    """Every (source, line) where a secret occurs. Hits carry no secret, so they can be printed."""
    hits = []
    for source, text in texts.items():
        for number, line in enumerate(text.splitlines(), start=1):
            for value, kind in secrets.items():
                if value in line:
                    hits.append(SecretHit(source, kind, number))
    return hits


def cluster_texts(*, kubeconfig: Path | str | None = None) -> dict[str, str]:
    """All Events in all namespaces and the status of every RedisDatabase, as scannable text."""
    events = _items("events", "--all-namespaces", kubeconfig=kubeconfig)
    resources = _items("redisdatabases", "--all-namespaces", kubeconfig=kubeconfig)
    return {
        "events (all namespaces)": "\n".join(
            json.dumps({k: e.get(k) for k in ("reason", "message", "note", "involvedObject")}) for e in events
        ),
        "RedisDatabase status (all namespaces)": "\n".join(json.dumps(r.get("status") or {}) for r in resources),
    }


def file_texts(paths: Iterable[Path], label: str) -> dict[str, str]:
    texts = {}
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            texts[f"{label} {path}"] = path.read_text(errors="replace")
    return texts
