"""The local provider's listen and advertise options: defaults stay on loopback, flags win, bad hosts are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from redisdb_dev.local_provider.settings import parse_settings

_ENV = (
    "LOCAL_PROVIDER_HOST",
    "LOCAL_PROVIDER_REDIS_HOST",
    "LOCAL_PROVIDER_LISTEN_HOST",
    "LOCAL_PROVIDER_ADVERTISE_HOST",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults_listen_and_advertise_loopback(tmp_path: Path) -> None:
    settings = parse_settings(["--state-dir", str(tmp_path)])
    assert (settings.host, settings.redis_host, settings.advertise_host) == ("127.0.0.1", "127.0.0.1", None)
    assert settings.redis_connect_host == "127.0.0.1" and settings.public_host == "127.0.0.1"
    assert settings.tls_hosts() == ["127.0.0.1"]


def test_listen_on_every_interface_and_advertise_a_gateway(tmp_path: Path) -> None:
    settings = parse_settings(
        ["--state-dir", str(tmp_path), "--listen-host", "0.0.0.0", "--advertise-host", "172.18.0.1"]
    )
    assert settings.host == "0.0.0.0" and settings.redis_host == "0.0.0.0"
    # The provider reaches its own redis-servers on loopback; clients are told the advertised address.
    assert settings.redis_connect_host == "127.0.0.1" and settings.public_host == "172.18.0.1"
    assert settings.tls_hosts() == ["127.0.0.1", "172.18.0.1"]


def test_one_listen_address_is_also_what_is_handed_out(tmp_path: Path) -> None:
    settings = parse_settings(["--state-dir", str(tmp_path), "--listen-host", "172.18.0.1"])
    assert (settings.host, settings.redis_host, settings.public_host) == ("172.18.0.1", "172.18.0.1", "172.18.0.1")
    assert settings.tls_hosts() == ["172.18.0.1"]


def test_per_part_flags_and_flags_over_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_PROVIDER_HOST", "10.0.0.9")
    monkeypatch.setenv("LOCAL_PROVIDER_ADVERTISE_HOST", "redis.example.test")
    settings = parse_settings(["--state-dir", str(tmp_path), "--listen-host", "0.0.0.0", "--redis-host", "::"])
    assert settings.host == "0.0.0.0"  # the flag beats $LOCAL_PROVIDER_HOST
    assert settings.redis_host == "::" and settings.redis_connect_host == "::1"
    assert settings.public_host == "redis.example.test"
    monkeypatch.setenv("LOCAL_PROVIDER_LISTEN_HOST", "0.0.0.0")
    from_env = parse_settings(["--state-dir", str(tmp_path)])
    assert from_env.host == "10.0.0.9" and from_env.redis_host == "0.0.0.0"


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--advertise-host", "http://172.18.0.1"], "--advertise-host"),
        (["--advertise-host", "172.18.0.1:8080"], "--advertise-host"),
        (["--listen-host", "every interface"], "--listen-host"),
        (["--advertise-host", "0.0.0.0"], "wildcard"),
    ],
)
def test_bad_hosts_are_refused_naming_the_flag(tmp_path: Path, argv: list[str], named: str) -> None:
    with pytest.raises(SystemExit) as refused:
        parse_settings(["--state-dir", str(tmp_path), *argv])
    assert named in str(refused.value)
