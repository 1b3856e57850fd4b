"""--listen-host / --advertise-host: clients on another machine (pods of a kind cluster) reach the databases.

The provider listens on every interface and hands out this machine's own non-loopback address (from
``hostname -I``, else 127.0.0.2); clients then connect to that address: a Fly-type database in plain text (with a
read replica, which replicates from its primary through loopback), an Upstash-type one over TLS verified against
the CA, whose server certificate carries the advertised address. The session's provider (defaults) stays on loopback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from cryptography import x509

from redisdb_operator.kubectl_plugin import pod as connect_pod
from tests.harness.local_provider import REPO, LocalProvider, redis_servers_under, running_local_provider

from .helpers import port_open, redis_client, unique
from .test_fly_api import Fly


def _machine_address() -> str:
    """This machine's first non-loopback IPv4 address, else 127.0.0.2 (Linux routes all of 127/8 to lo).

    Either way an address apart from the default 127.0.0.1, so listening and advertising are proven; never a skip.
    """
    try:
        listed = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False).stdout.split()
    except OSError:
        listed = []
    for address in listed:
        parsed = ipaddress.ip_address(address)
        if parsed.version == 4 and not parsed.is_loopback and not parsed.is_link_local:
            return address
    return "127.0.0.2"


MACHINE_IP = _machine_address()


@pytest.fixture(scope="module")
def advertising_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalProvider]:
    with running_local_provider(
        tmp_path_factory.mktemp("advertising-provider"),
        extra_args=["--listen-host", "0.0.0.0", "--advertise-host", MACHINE_IP],
    ) as provider:
        yield provider


def _upstash_database(prefix: str) -> dict[str, str]:
    return {"database_name": unique(prefix), "platform": "aws", "primary_region": "us-east-1", "plan": "payg"}


def _san_ips(cert_file: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}


async def test_upstash_database_is_handed_out_and_served_over_tls_at_the_advertised_address(
    advertising_provider: LocalProvider,
) -> None:
    assert MACHINE_IP in _san_ips(advertising_provider.state_dir / "tls" / "server.pem")
    # The HTTP APIs answer on that address too, and hand out URLs naming it.
    machine_url = f"http://{MACHINE_IP}:{advertising_provider.port}"
    async with httpx.AsyncClient(
        base_url=f"{machine_url}/v2", auth=advertising_provider.upstash_auth, timeout=60
    ) as api:
        response = await api.post(
            "/redis/database",
            json={
                "database_name": unique("advertised"),
                "platform": "aws",
                "primary_region": "us-east-1",
                "plan": "payg",
            },
        )
        assert response.status_code == 200, response.text
        created = response.json()
    assert created["endpoint"] == MACHINE_IP and created["tls"] is True
    assert created["rest_url"].startswith(f"{machine_url}/rest/")
    # Asked through loopback, the answer still names the advertised address.
    async with httpx.AsyncClient(
        base_url=advertising_provider.upstash_url, auth=advertising_provider.upstash_auth, timeout=60
    ) as api:
        listed = (await api.get(f"/redis/database/{created['database_id']}")).json()
    assert listed["endpoint"] == MACHINE_IP and listed["rest_url"].startswith(f"{machine_url}/rest/")
    # Certificate verification (hostname included) against the CA passes for the advertised address.
    async with redis_client(created["port"], created["password"], host=MACHINE_IP, tls=True) as client:
        assert await client.ping() is True
        assert await client.set("where", "advertised") is True
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(
            f"{listed['rest_url']}/get/where", headers={"Authorization": f"Bearer {created['rest_token']}"}
        )
    assert answer.json() == {"result": "advertised"}


async def test_fly_database_is_handed_out_and_served_at_the_advertised_address(
    advertising_provider: LocalProvider,
) -> None:
    fly = Fly(advertising_provider)
    try:
        add_on = await fly.create_add_on(
            unique("advertised-fly"), "cdg", ["ams"], org_slug=advertising_provider.fly_org
        )
    finally:
        await fly.aclose()
    assert add_on["hostname"] == MACHINE_IP and add_on["privateIp"] == MACHINE_IP
    url = httpx.URL(add_on["publicUrl"])
    assert url.host == MACHINE_IP and url.scheme == "redis"
    assert url.port is not None
    async with redis_client(url.port, add_on["password"], host=MACHINE_IP) as client:
        assert await client.ping() is True
        replication = await client.info("replication")
    assert replication["connected_slaves"] == 1  # the read replica follows its primary on every-interface redis


async def test_defaults_stay_on_loopback(local_provider: LocalProvider) -> None:
    assert not port_open(local_provider.port, MACHINE_IP)  # the HTTP APIs
    async with httpx.AsyncClient(
        base_url=local_provider.upstash_url, auth=local_provider.upstash_auth, timeout=60
    ) as api:
        response = await api.post(
            "/redis/database",
            json={
                "database_name": unique("loopback"),
                "platform": "aws",
                "primary_region": "us-east-1",
                "plan": "payg",
            },
        )
        created = response.json()
        try:
            assert created["endpoint"] == "127.0.0.1"
            assert created["rest_url"].startswith(f"{local_provider.url}/rest/")
            assert port_open(created["port"]) and not port_open(created["port"], MACHINE_IP)
            assert MACHINE_IP not in _san_ips(local_provider.state_dir / "tls" / "server.pem")
        finally:
            await api.delete(f"/redis/database/{created['database_id']}")


def test_e2e_kind_script_starts_the_provider_on_the_address_it_hands_out(tmp_path: Path) -> None:
    """hack/e2e-kind.sh's own start_local_provider (sourced), with this machine's address for the kind gateway."""
    script = REPO / "hack" / "e2e-kind.sh"
    shell = subprocess.Popen(
        [
            "bash",
            "-c",
            f'source "{script}"; start_local_provider "$1"; echo "$PROVIDER_PORT"; read -r _; stop_local_provider',
            "e2e-kind",
            MACHINE_IP,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PROVIDER_DIR": str(tmp_path), "PYTHON": sys.executable},
    )
    assert shell.stdin is not None and shell.stdout is not None
    try:
        port = int(shell.stdout.readline())
        base = f"http://{MACHINE_IP}:{port}"
        with httpx.Client(base_url=base, timeout=60) as http:
            assert http.get("/admin/health").json()["ok"] is True
            response = http.post(
                "/v2/redis/database", json=_upstash_database("kind-script"), auth=("dev@example.com", "local-api-key")
            )
        created = response.json()
        assert created["endpoint"] == MACHINE_IP
        assert not port_open(port)  # only on the given address, not on loopback too
        ca_file = tmp_path / "ca" / "ca.pem"  # what the script gives `connect --cacert`
        with redis.Redis(
            host=MACHINE_IP, port=created["port"], password=created["password"], ssl=True, ssl_ca_certs=str(ca_file)
        ) as client:
            assert client.ping() is True
    finally:
        with contextlib.suppress(BrokenPipeError):  # the shell ended early: its exit status tells why
            shell.stdin.write("\n")
            shell.stdin.close()
        assert shell.wait(timeout=60) == 0
    assert redis_servers_under(tmp_path / "state") == []


def test_the_connect_pods_redis_cli_command_answers_at_the_advertised_address(
    advertising_provider: LocalProvider, tmp_path: Path
) -> None:
    """The exact redis-cli argv `kubectl redisdb connect --mode pod` runs in its pod (the CA at a file path, the
    password in REDISCLI_AUTH), run here against the advertised address: what the kind run does from a pod."""
    redis_cli = shutil.which("redis-cli")
    if redis_cli is None:
        pytest.fail("redis-cli is missing (Debian: redis-tools, installed with redis-server)")
    with httpx.Client(
        base_url=advertising_provider.upstash_url, auth=advertising_provider.upstash_auth, timeout=60
    ) as api:
        created = api.post("/redis/database", json=_upstash_database("pod-argv")).json()
    ca_copy = tmp_path / "ca.crt"  # as mounted from the ConfigMap
    ca_copy.write_bytes(Path(str(advertising_provider.admin.health()["tls_ca_file"])).read_bytes())
    for cacert, expected in ((str(ca_copy), "PONG"), (None, "certificate")):
        argv = connect_pod.redis_cli_argv(
            host=created["endpoint"], port=created["port"], tls=created["tls"], cacert=cacert, command=["PING"]
        )
        answer = subprocess.run(
            [redis_cli, *argv[1:]],
            env={**os.environ, "REDISCLI_AUTH": created["password"]},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert expected in (answer.stdout + answer.stderr), (cacert, answer)
