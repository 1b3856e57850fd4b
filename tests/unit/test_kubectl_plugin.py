"""The pure parts of `kubectl redisdb`: rows, tables, masking, links, catalogs and the connect pod."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from redisdb_operator.kubectl_plugin import cli, pod, render
from redisdb_operator.providers import catalog
from redisdb_operator.providers.base import ProviderType

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def stamp(delta: timedelta) -> str:
    return (NOW - delta).isoformat().replace("+00:00", "Z")


def database(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "cache",
            "namespace": "shop",
            "creationTimestamp": stamp(timedelta(hours=5)),
            "generation": 2,
        },
        "spec": {"providerRef": {"name": "fly"}, "primaryRegion": "mad", "readRegions": ["ams"], "eviction": False},
        "status": status,
    }


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600 + 60, "3h1m"),
        (10 * 3600, "10h"),
        (50 * 3600, "2d2h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400, "3y"),
    ],
)
def test_age_as_kubectl_prints_it(seconds: int, expected: str) -> None:
    assert render.human_duration(seconds) == expected


def test_list_row_prefers_what_the_operator_observed() -> None:
    obj = database(
        provider="fly",
        plan="payg",
        readRegions=["ams", "fra"],
        eviction=True,
        conditions=[{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}],
    )
    row = render.database_row(obj, NOW)
    assert row == {
        "namespace": "shop",
        "name": "cache",
        "provider": "fly",
        "primaryRegion": "mad",
        "readRegions": ["ams", "fra"],
        "plan": "payg",
        "eviction": True,
        "ready": "True",
        "synced": "False",
        "age": "5h",
    }
    fresh = render.database_row({**database(), "status": {}}, NOW)
    assert (fresh["ready"], fresh["synced"], fresh["plan"], fresh["readRegions"]) == (
        "Unknown",
        "Unknown",
        None,
        ["ams"],
    )


def test_list_table_has_kubectl_columns_and_namespace_only_with_all_namespaces() -> None:
    rows = [render.database_row(database(provider="fly", plan="payg"), NOW)]
    text = render.list_table(rows, all_namespaces=True)
    header, line = text.splitlines()
    assert header.split() == [
        "NAMESPACE", "NAME", "PROVIDER", "PRIMARY", "READ", "REGIONS", "PLAN", "EVICTION", "READY", "SYNCED", "AGE"
    ]  # fmt: skip
    assert line.split() == ["shop", "cache", "fly", "mad", "ams", "payg", "Disabled", "Unknown", "Unknown", "5h"]
    assert header.index("NAME ") == line.index("cache")  # columns line up
    assert not render.list_table(rows, all_namespaces=False).startswith("NAMESPACE")


def test_secret_values_are_masked_unless_asked() -> None:
    data = {
        "REDIS_URL": "redis://default:s3cret@db.example:6379",
        "REDIS_PASSWORD": "s3cret",
        "REDIS_HOST": "db.example",
        "REDIS_PORT": "6379",
        "UPSTASH_REDIS_REST_TOKEN": "tok",
    }
    masked = render.secret_view("cache-redis", data, show_secrets=False)
    assert masked["keys"] == sorted(data)
    assert "s3cret" not in json.dumps(masked) and "tok" not in json.dumps(masked)
    assert masked["values"]["REDIS_URL"] == "redis://default:********@db.example:6379"
    assert masked["values"]["REDIS_HOST"] == "db.example"
    shown = render.secret_view("cache-redis", data, show_secrets=True)
    assert shown["values"]["REDIS_PASSWORD"] == "s3cret"


def test_dashboard_link_never_carries_a_credential() -> None:
    fly = database(dashboardURL="https://fly.io/dashboard/personal/addons")
    assert render.dashboard_link(fly, "fly") == ("https://fly.io/dashboard/personal/addons", "status.dashboardURL")
    for leaky in (
        "https://fly.io/sso/addon?token=abc",
        "https://user:pw@console.example/redis/1",
        "https://console.example/x?sso_session=1",
    ):
        with pytest.raises(render.LinkIsCredential):
            render.dashboard_link(database(dashboardURL=leaky), "fly")
    upstash = database(databaseId="db-1")
    assert render.dashboard_link(upstash, "upstash")[0] == "https://console.upstash.com/redis/db-1"
    link, why = render.dashboard_link(database(databaseId="x"), "fly")
    assert link is None and "status.dashboardURL" in why
    assert "flyctl redis dashboard" in why and "sso" not in why.lower()
    link, why = render.dashboard_link(database(), "upstash")
    assert link is None and "not published" in why


def test_status_view_and_text_show_every_part_and_degrade_without_the_new_fields() -> None:
    obj = database(
        provider="fly",
        databaseId="abc",
        endpoint="db.example",
        port=6379,
        plan="payg",
        conditions=[
            {"type": "Ready", "status": "False", "reason": "ProviderError", "message": "quota exceeded"},
            {"type": "Synced", "status": "False", "reason": "ReconcileError", "message": "quota exceeded"},
        ],
    )
    secret = render.secret_view("cache-redis", {"REDIS_PASSWORD": "pw"}, show_secrets=False)
    events = [
        {"type": "Warning", "reason": "Old", "message": "m0", "lastTimestamp": stamp(timedelta(hours=2))},
        {"type": "Normal", "reason": "Created", "message": "m1", "lastTimestamp": stamp(timedelta(minutes=3))},
    ]
    view = render.status_view(obj, provider_type="fly", secret=secret, events=render.last_events(events, 1), now=NOW)
    assert [event["reason"] for event in view["events"]] == ["Created"]
    assert view["usage"] is None and view["estimatedMonthlyCost"] is None and view["dashboard"]["url"] is None
    text = render.status_text(view)
    for expected in (
        "ProviderError",
        "quota exceeded",
        "cache-redis",
        "REDIS_PASSWORD: ********",
        "<not reported yet>",
    ):
        assert expected in text
    assert "pw\n" not in text

    obj["status"] |= {
        "dashboardURL": "https://console.example/redis/abc",
        "usage": {
            "requests": 1234,
            "dataSizeBytes": 2048,
            "bandwidthBytes": 1048576,
            "observedAt": "2026-11-30T11:00:00Z",
            "cost": {"amount": 1.5, "currency": "USD", "basis": "reported by Upstash for this month so far"},
        },
        "estimatedMonthlyCost": {"amount": 0.25, "currency": "USD", "basis": "payg: $0.20 per 100k requests"},
        "planLimits": {"maxDataSizeBytes": 10 * 1024**3, "maxDailyCommands": None, "maxRequestSizeBytes": 10 * 1024**2},
    }
    text = render.status_text(render.status_view(obj, provider_type="fly", secret=secret, events=[], now=NOW))
    for expected in ("1234", "2 KiB", "1 MiB", "$0.25 (payg", "10 GiB", "https://console.example/redis/abc", "$1.50"):
        assert expected in text, expected


def test_catalog_falls_back_to_the_static_one_and_says_so() -> None:
    provider = {"metadata": {"name": "local-fly"}, "spec": {"type": "fly"}}
    doc = render.provider_catalog(provider)
    assert render.catalog_note(doc) == "(static catalog)"
    rows = render.region_rows("local-fly", "fly", doc)
    assert {row["code"] for row in rows} == set(catalog.REGIONS[ProviderType.FLY])
    mad = next(row for row in rows if row["code"] == "mad")
    assert mad["deprecated"] and "deprecated" in render.regions_table([mad])
    plans = render.plan_rows("local-fly", "fly", doc)
    assert {row["name"] for row in plans} == set(catalog.PLANS[ProviderType.FLY])
    # only the prices a source gives (Fly's published fixed-plan prices); none invented for the others
    prices = {row["name"]: row["pricePerMonth"] for row in plans}
    assert prices["fixed_1gb"] == 20 and prices["free"] == 0 and prices["payg"] is None
    assert "$0.20/100k requests" in render.plans_table(plans) and "$20.00/mo" in render.plans_table(plans)
    upstash = render.plan_rows("u", "upstash", render.provider_catalog({"spec": {"type": "upstash"}}))
    assert all(row["pricePerMonth"] is None for row in upstash if row["name"].startswith("fixed_"))


def test_published_catalog_wins_and_marks_prices_legacy_and_excluded() -> None:
    published = {
        "source": "live",
        "observedAt": "2026-11-30T10:00:00Z",
        "regions": [
            {"code": "iad", "name": "Ashburn", "deprecated": False, "excluded": True, "readRegionAllowed": True}
        ],
        "plans": [
            {"name": "payg", "displayName": "Pay-as-you-go", "pricePerMonth": 0, "maxDataSizeBytes": 10 * 1024**3,
             "maxReadRegions": None, "legacy": False},
            {"name": "pro_2k", "displayName": "Pro 2k", "pricePerMonth": 280.0, "maxDataSizeBytes": 50 * 1024**3,
             "maxReadRegions": 0, "legacy": True},
        ],
    }  # fmt: skip
    provider = {"metadata": {"name": "fly"}, "spec": {"type": "fly"}, "status": {"catalog": published}}
    doc = render.provider_catalog(provider)
    assert doc is published and "live catalog" in render.catalog_note(doc)
    text = render.plans_table(render.plan_rows("fly", "fly", doc))
    assert "$280.00/mo" in text and "legacy" in text and "50 GiB" in text
    assert "$0.20/100k requests" in text and "Free" not in text  # pay-as-you-go is not free at 0/month
    assert "excluded" in render.regions_table(render.region_rows("fly", "fly", doc))


def test_connect_pod_is_restricted_and_keeps_the_password_off_command_lines() -> None:
    manifest = pod.connect_pod(
        name="cache-connect-abc", namespace="shop", database="cache", secret_name="cache-redis", timeout_seconds=600
    )
    spec = manifest["spec"]
    (container,) = spec["containers"]
    assert container["env"][0] == {
        "name": "REDISCLI_AUTH",
        "valueFrom": {"secretKeyRef": {"name": "cache-redis", "key": "REDIS_PASSWORD"}},
    }
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] and security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["activeDeadlineSeconds"] == 600 and spec["automountServiceAccountToken"] is False
    assert container["image"] == pod.DEFAULT_IMAGE and ":" in pod.DEFAULT_IMAGE  # pinned, never :latest
    assert not pod.DEFAULT_IMAGE.endswith(":latest")
    argv = pod.redis_cli_argv(host="h", port=1, tls=True, cacert="/ca.crt", command=["PING"])
    assert argv == ["redis-cli", "-h", "h", "-p", "1", "--tls", "--cacert", "/ca.crt", "PING"]
    assert "password" not in json.dumps(manifest).lower().replace("redis_password", "")
    assert len(pod.pod_name("x" * 70)) <= 63


def test_every_subcommand_has_help_and_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("list", "status", "connect", "plans", "regions", "dashboard", "rotate"):
        with pytest.raises(SystemExit) as exited:
            cli.main([name, "--help"])
        assert exited.value.code == 0
        assert cli.EXAMPLES[name] in capsys.readouterr().out


def test_output_formats_round_trip() -> None:
    document = {"items": [{"name": "cache", "readRegions": ["ams"]}]}
    assert json.loads(render.dump(document, "json")) == document
    assert yaml.safe_load(render.dump(document, "yaml")) == document


def test_the_readme_shows_every_subcommand_help_and_example(capsys: pytest.CaptureFixture[str]) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name, example in cli.EXAMPLES.items():
        assert f"<code>kubectl redisdb {name} --help</code>" in readme, name
        assert f"$ {example.split(' -n ')[0]}" in readme or f"  {example}" in readme, name
        with pytest.raises(SystemExit):
            cli.main([name, "--help"])
        description = capsys.readouterr().out.split("\n\n")[1].split("\n")[0]
        assert description[:60] in readme, f"{name}: README help is stale"
