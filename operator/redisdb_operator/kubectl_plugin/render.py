"""Pure views for `kubectl redisdb`: objects as kubectl returns them -> rows, tables, JSON/YAML documents.

Nothing here talks to a cluster, so every format decision is unit-tested on plain dicts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import yaml

from ..providers import catalog
from ..providers.base import ProviderType

MASK = "********"
SECRET_KEYS = ("REDIS_PASSWORD", "UPSTASH_REDIS_REST_TOKEN")
URL_KEYS = ("REDIS_URL",)
# Query parameters that make a link a credential (a sign-on token, a signature): such a link is never printed.
_CREDENTIAL_PARAMS = ("token", "sso", "auth", "signature", "sig", "key", "code", "password", "secret", "session")
UPSTASH_CONSOLE = "https://console.upstash.com/redis/{database_id}"


class LinkIsCredential(ValueError):
    """A dashboard link that would sign its holder in; printing it would leak a credential."""


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """kubectl's AGE format (k8s.io/apimachinery duration.HumanDuration)."""
    seconds = int(max(seconds, 0))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{hours // (24 * 365)}y"


def age(timestamp: str | None, now: datetime | None = None) -> str:
    created = parse_time(timestamp)
    if created is None:
        return "<unknown>"
    return human_duration(((now or datetime.now(UTC)) - created).total_seconds())


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """kubectl's plain table: upper-case headers, columns padded to the widest cell plus three spaces."""
    cells = [[str(header).upper() for header in headers], *[[cell_text(cell) for cell in row] for row in rows]]
    widths = [max(len(row[index]) for row in cells) for index in range(len(headers))]
    lines = ["   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines) + "\n"


def cell_text(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "<none>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def dump(document: Any, output: str) -> str:
    if output == "json":
        return json.dumps(document, indent=2, sort_keys=False) + "\n"
    text: str = yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    return text


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return {}


def database_row(obj: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """One database as `flyctl redis list` shows it; observed values (status) win over desired ones (spec)."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    read_regions = status.get("readRegions") if status.get("readRegions") is not None else spec.get("readRegions")
    eviction = status.get("eviction") if status.get("eviction") is not None else spec.get("eviction")
    return {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "provider": status.get("provider") or (spec.get("providerRef") or {}).get("name"),
        "primaryRegion": status.get("primaryRegion") or spec.get("primaryRegion"),
        "readRegions": list(read_regions or []),
        "plan": status.get("plan") or spec.get("plan"),
        "eviction": eviction,
        "ready": condition(obj, "Ready").get("status", "Unknown"),
        "synced": condition(obj, "Synced").get("status", "Unknown"),
        "age": age(meta.get("creationTimestamp"), now),
    }


def list_table(rows: Sequence[Mapping[str, Any]], *, all_namespaces: bool) -> str:
    headers = ["name", "provider", "primary", "read regions", "plan", "eviction", "ready", "synced", "age"]
    keys = ["name", "provider", "primaryRegion", "readRegions", "plan", "eviction", "ready", "synced", "age"]
    if all_namespaces:
        headers, keys = ["namespace", *headers], ["namespace", *keys]
    body = [
        [
            ("None" if key == "readRegions" and not row[key] else row[key])
            if key != "eviction"
            else ("Enabled" if row[key] else "Disabled" if row[key] is not None else None)
            for key in keys
        ]
        for row in rows
    ]
    return table(headers, body)


def mask_url(url: str) -> str:
    """A connection URL with its password replaced by the mask (user, host and port stay readable)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:{MASK}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def secret_view(name: str, data: Mapping[str, str] | None, *, show_secrets: bool) -> dict[str, Any]:
    """The Secret's name and keys; credential values masked unless asked for."""
    if data is None:
        return {"name": name, "keys": None}
    values: dict[str, str] = {}
    for key in sorted(data):
        value = data[key]
        if not show_secrets and key in SECRET_KEYS:
            value = MASK
        elif not show_secrets and key in URL_KEYS:
            value = mask_url(value)
        values[key] = value
    return {"name": name, "keys": sorted(data), "values": values}


def is_credential_link(url: str) -> bool:
    parts = urlsplit(url)
    if parts.username or parts.password:
        return True
    names = {name.lower() for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
    return any(any(marker in name for marker in _CREDENTIAL_PARAMS) for name in names)


def dashboard_link(obj: Mapping[str, Any], provider_type: str | None) -> tuple[str | None, str]:
    """(link, source): the operator's `status.dashboardURL`, else Upstash's console page for the database id.

    Raises ``LinkIsCredential`` rather than return a link that would sign its holder in (Fly's ``ssoLink``).
    """
    status = obj.get("status") or {}
    link = status.get("dashboardURL")
    if isinstance(link, str) and link:
        if is_credential_link(link):
            raise LinkIsCredential("status.dashboardURL carries a credential; it is not shown")
        return link, "status.dashboardURL"
    database_id = status.get("databaseId")
    if provider_type == ProviderType.UPSTASH.value and database_id:
        return UPSTASH_CONSOLE.format(database_id=database_id), "Upstash console (from status.databaseId)"
    if provider_type == ProviderType.FLY.value:
        return None, (
            "Fly.io has no console link without a credential in it (its sign-on link is one), so "
            "status.dashboardURL stays unset; run `flyctl redis dashboard <org>`"
        )
    return None, "not published: the operator has not written status.dashboardURL"


def format_bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" or size == int(size) else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"  # pragma: no cover - the loop always returns


def format_money(value: Any, currency: str = "USD") -> str:
    if not isinstance(value, int | float):
        return "-"
    symbol = "$" if currency == "USD" else f"{currency} "
    return f"{symbol}{value:,.2f}"


def status_view(
    obj: Mapping[str, Any],
    *,
    provider_type: str | None,
    secret: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    now: datetime | None = None,
) -> dict[str, Any]:
    """Everything `kubectl redisdb status` shows, as one document (also what `-o json|yaml` prints)."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    row = database_row(obj, now)
    try:
        link, link_source = dashboard_link(obj, provider_type)
    except LinkIsCredential as error:
        link, link_source = None, str(error)
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "provider": row["provider"],
        "providerType": provider_type,
        "databaseId": status.get("databaseId"),
        "providerName": status.get("providerName"),
        "state": status.get("state"),
        "endpoint": status.get("endpoint"),
        "port": status.get("port"),
        "tls": status.get("tls") if status.get("tls") is not None else spec.get("tls"),
        "primaryRegion": row["primaryRegion"],
        "readRegions": row["readRegions"],
        "plan": row["plan"],
        "eviction": row["eviction"],
        "deletionPolicy": spec.get("deletionPolicy"),
        "generation": meta.get("generation"),
        "observedGeneration": status.get("observedGeneration"),
        "lastSyncTime": status.get("lastSyncTime"),
        "passwordRotatedAt": status.get("passwordRotatedAt"),
        "age": row["age"],
        "conditions": [
            {key: item.get(key) for key in ("type", "status", "reason", "message", "lastTransitionTime")}
            for item in status.get("conditions") or []
        ],
        "secret": dict(secret),
        "dashboard": {"url": link, "source": link_source},
        "planLimits": status.get("planLimits"),
        "usage": status.get("usage"),
        "estimatedMonthlyCost": status.get("estimatedMonthlyCost"),
        "events": [event_row(event, now) for event in events],
    }


def event_time(event: Mapping[str, Any]) -> str:
    series = event.get("series") or {}
    return str(
        series.get("lastObservedTime")
        or event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def last_events(events: Iterable[Mapping[str, Any]], limit: int = 10) -> list[Mapping[str, Any]]:
    """The newest ``limit`` events, oldest first (as `kubectl describe` lists them)."""

    def key(event: Mapping[str, Any]) -> tuple[datetime, int]:
        version = str((event.get("metadata") or {}).get("resourceVersion") or "0")
        when = parse_time(event_time(event)) or datetime.min.replace(tzinfo=UTC)
        return when, int(version) if version.isdigit() else 0  # same second: the order they were written

    ordered = sorted(events, key=key)
    return ordered[-limit:]


def event_row(event: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    return {
        "type": event.get("type"),
        "reason": event.get("reason"),
        "age": age(event_time(event), now),
        "count": event.get("count") or (event.get("series") or {}).get("count") or 1,
        "message": event.get("message"),
    }


def status_text(view: Mapping[str, Any]) -> str:
    """The human form of `status`: a vertical table like `flyctl redis status`, then conditions and events."""
    lines: list[str] = []

    def field(label: str, value: Any) -> None:
        lines.append(f"{label + ':':<22}{cell_text(value)}")

    field("Name", view["name"])
    field("Namespace", view["namespace"])
    field("Provider", f"{view['provider']} ({view['providerType']})" if view["providerType"] else view["provider"])
    field("Database ID", view["databaseId"])
    field("Provider Name", view["providerName"])
    field("State", view["state"])
    field("Plan", view["plan"])
    field("Primary Region", view["primaryRegion"])
    field("Read Regions", view["readRegions"] or "None")
    field("Eviction", "Enabled" if view["eviction"] else "Disabled")
    field("TLS", "Enabled" if view["tls"] else "Disabled")
    field("Endpoint", f"{view['endpoint']}:{view['port']}" if view["endpoint"] else None)
    field("Deletion Policy", view["deletionPolicy"] or "Delete")
    field("Generation", f"{view['generation']} (observed {cell_text(view['observedGeneration'])})")
    field("Last Sync", view["lastSyncTime"])
    field("Password Rotated", view["passwordRotatedAt"])
    field("Age", view["age"])
    dashboard = view["dashboard"]
    field("Dashboard", dashboard["url"] or f"<none> ({dashboard['source']})")

    lines.append("")
    secret = view["secret"]
    if secret.get("keys") is None:
        lines.append(f"Secret: {secret['name']} ({secret.get('error') or 'not found'})")
    else:
        lines.append(f"Secret: {secret['name']}")
        for key in secret["keys"]:
            lines.append(f"  {key}: {secret['values'][key]}")

    lines.append("")
    lines.append("Usage:")
    usage = view["usage"] or {}
    cost = view["estimatedMonthlyCost"] or {}
    limits = view["planLimits"] or {}
    if usage:
        lines.append(f"  Requests:            {cell_text(usage.get('requests'))}")
        lines.append(f"  Data Size:           {format_bytes(usage.get('dataSizeBytes'))}")
        lines.append(f"  Bandwidth:           {format_bytes(usage.get('bandwidthBytes'))}")
        lines.append(f"  Observed At:         {cell_text(usage.get('observedAt'))}")
        billed = usage.get("cost") or {}
        if billed:
            lines.append(f"  Billed So Far:       {format_money(billed.get('amount'), billed.get('currency', 'USD'))}")
    else:
        lines.append("  <not reported yet>")
    if cost:
        basis = f" ({cost['basis']})" if cost.get("basis") else ""
        lines.append(f"  Est. Monthly Cost:   {format_money(cost.get('amount'), cost.get('currency', 'USD'))}{basis}")
    else:
        lines.append("  Est. Monthly Cost:   <no price source>")
    if limits:
        lines.append(
            f"  Plan Limits:         data {format_bytes(limits.get('maxDataSizeBytes'))}, "
            f"{cell_text(limits.get('maxDailyCommands'))} commands/day, "
            f"request {format_bytes(limits.get('maxRequestSizeBytes'))}"
        )

    lines.append("")
    lines.append("Conditions:")
    if view["conditions"]:
        lines.append(
            _indent(
                table(
                    ["type", "status", "reason", "message", "last transition"],
                    [
                        [c["type"], c["status"], c["reason"], c["message"], c["lastTransitionTime"]]
                        for c in view["conditions"]
                    ],
                )
            )
        )
    else:
        lines.append("  <none>")
    lines.append("")
    lines.append("Events:")
    if view["events"]:
        lines.append(
            _indent(
                table(
                    ["type", "reason", "age", "count", "message"],
                    [[e["type"], e["reason"], e["age"], e["count"], e["message"]] for e in view["events"]],
                )
            )
        )
    else:
        lines.append("  <none>")
    return "\n".join(lines).rstrip() + "\n"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.rstrip("\n").split("\n"))


# -- catalogs -------------------------------------------------------------------------------------------------


def static_catalog(provider_type: str) -> dict[str, Any]:
    """The catalog this release ships, in the shape the operator publishes on `RedisProvider.status.catalog`."""
    kind = ProviderType(provider_type)
    return {
        "source": "static",
        "observedAt": None,
        "regions": [
            {
                "code": region.code,
                "name": region.name,
                "deprecated": region.deprecated,
                "excluded": False,
                "readRegionAllowed": region.read_region_allowed,
            }
            for region in catalog.REGIONS[kind].values()
        ],
        "plans": [
            {
                "name": plan.name,
                "displayName": plan.display_name,
                "pricePerMonth": plan.price_per_month,
                "maxDataSizeBytes": plan.max_data_size_bytes,
                "maxReadRegions": plan.max_read_regions,
                "legacy": False,
            }
            for plan in catalog.PLANS[kind].values()
        ],
    }


def provider_catalog(provider: Mapping[str, Any]) -> dict[str, Any]:
    """The RedisProvider's published catalog, else the static one for its type."""
    published = (provider.get("status") or {}).get("catalog")
    if isinstance(published, dict) and (published.get("plans") or published.get("regions")):
        return published
    provider_type = (provider.get("spec") or {}).get("type")
    if provider_type not in {kind.value for kind in ProviderType}:
        return {"source": "static", "observedAt": None, "regions": [], "plans": []}
    return static_catalog(str(provider_type))


def catalog_note(catalog_doc: Mapping[str, Any]) -> str:
    if catalog_doc.get("source") == "static":
        return "(static catalog)"
    return f"({catalog_doc.get('source', 'live')} catalog, observed {cell_text(catalog_doc.get('observedAt'))})"


def plan_rows(provider_name: str, provider_type: str, catalog_doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "provider": provider_name,
            "type": provider_type,
            "name": plan.get("name"),
            "displayName": plan.get("displayName"),
            "pricePerMonth": plan.get("pricePerMonth"),
            "maxDataSizeBytes": plan.get("maxDataSizeBytes"),
            "maxReadRegions": plan.get("maxReadRegions"),
            "legacy": bool(plan.get("legacy")),
            "source": catalog_doc.get("source"),
        }
        for plan in catalog_doc.get("plans") or []
    ]


def region_rows(provider_name: str, provider_type: str, catalog_doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "provider": provider_name,
            "type": provider_type,
            "code": region.get("code"),
            "name": region.get("name"),
            "deprecated": bool(region.get("deprecated")),
            "excluded": bool(region.get("excluded")),
            "readRegionAllowed": region.get("readRegionAllowed", True),
            "source": catalog_doc.get("source"),
        }
        for region in catalog_doc.get("regions") or []
    ]


def plans_table(rows: Sequence[Mapping[str, Any]]) -> str:
    def price(row: Mapping[str, Any]) -> str:
        value = row["pricePerMonth"]
        if row["name"] == "payg" and not value:  # Fly lists pay-as-you-go at 0/month: it is billed per request
            return "$0.20/100k requests"
        if value is None:
            return "Free" if row["name"] == "free" else "-"
        return "Free" if value == 0 else f"{format_money(value)}/mo"

    def read_regions(value: Any) -> str:
        return "unlimited" if value is None else "none" if value == 0 else str(value)

    return table(
        ["provider", "name", "display name", "price", "max data size", "read regions", "notes"],
        [
            [
                row["provider"],
                row["name"],
                row["displayName"],
                price(row),
                format_bytes(row["maxDataSizeBytes"]),
                read_regions(row["maxReadRegions"]),
                "legacy (existing databases only)" if row["legacy"] else "-",
            ]
            for row in rows
        ],
    )


def regions_table(rows: Sequence[Mapping[str, Any]]) -> str:
    def state(row: Mapping[str, Any]) -> str:
        marks = [mark for mark in ("deprecated", "excluded") if row[mark]]
        return ",".join(marks) if marks else "available"

    return table(
        ["provider", "code", "name", "status", "read region"],
        [
            [row["provider"], row["code"], row["name"], state(row), "yes" if row["readRegionAllowed"] else "no"]
            for row in rows
        ],
    )
