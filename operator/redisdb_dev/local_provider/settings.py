"""Command-line flags and environment variables of ``python -m redisdb_dev.cli local-provider``.

Credentials have dev defaults so ``make demo`` needs no setup; flags win over environment variables.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_UPSTASH_EMAIL = "dev@example.com"
DEFAULT_UPSTASH_API_KEY = "local-api-key"
DEFAULT_FLY_TOKEN = "local-fly-token"
DEFAULT_FLY_ORG = "personal"
LOOPBACK = "127.0.0.1"
# A listen address that means "every interface": the provider itself then reaches its redis-servers on loopback.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


def org_id(slug: str) -> str:
    """A stable id per organization slug, so ids survive restarts without being stored."""
    return "org_" + hashlib.sha256(slug.encode()).hexdigest()[:12]


@dataclass
class Settings:
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    port_file: Path | None = None
    redis_host: str = "127.0.0.1"
    upstash_accounts: dict[str, str] = field(default_factory=lambda: {DEFAULT_UPSTASH_EMAIL: DEFAULT_UPSTASH_API_KEY})
    fly_tokens: list[str] = field(default_factory=lambda: [DEFAULT_FLY_TOKEN])
    fly_orgs: list[str] = field(default_factory=lambda: [DEFAULT_FLY_ORG])
    log_level: str = "INFO"
    access_log: bool = False
    tls_ca_dir: Path | None = None  # where the databases' CA lives (default: <state dir>/tls)
    # The host put in the connection details and URLs this provider hands out (endpoint, hostname, REDIS_URL,
    # rest_url, dashboard links) and in its TLS certificate; None = where the redis-servers are reached locally.
    advertise_host: str | None = None
    pool_size: int = 0  # benchmark-only pooled mode: databases share at most this many redis-servers per kind

    @property
    def redis_connect_host(self) -> str:
        """Where the provider itself reaches its redis-servers (loopback when they listen on every interface)."""
        return _WILDCARDS.get(self.redis_host, self.redis_host)

    @property
    def public_host(self) -> str:
        """The host clients are told to connect to."""
        return self.advertise_host or self.redis_connect_host

    def tls_hosts(self) -> list[str]:
        """The names and addresses the databases' TLS certificate must carry (127.0.0.1 and localhost always)."""
        return list(dict.fromkeys([self.redis_connect_host, self.public_host]))

    def fly_org_ids(self) -> dict[str, str]:
        """org id -> slug."""
        return {org_id(slug): slug for slug in self.fly_orgs}


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m redisdb_dev.cli local-provider",
        description="Serve the Upstash v2 API, the Fly GraphQL API and the admin API over real redis-servers.",
    )
    parser.add_argument(
        "--listen-host",
        help="listen address of both the HTTP APIs and the redis-servers, e.g. 0.0.0.0 for every interface or "
        "one address such as 172.18.0.1 (default $LOCAL_PROVIDER_LISTEN_HOST or 127.0.0.1; --host and "
        "--redis-host override it per part)",
    )
    parser.add_argument(
        "--advertise-host",
        default=env("LOCAL_PROVIDER_ADVERTISE_HOST"),
        help="host (IP or DNS name) put in the endpoints, URLs and TLS certificate this provider hands out, for "
        "clients elsewhere (pods of a kind cluster: the Docker network's gateway); default: the listen address, "
        "or 127.0.0.1 when that is every interface",
    )
    parser.add_argument("--host", help="HTTP listen address (default $LOCAL_PROVIDER_HOST or the listen host)")
    parser.add_argument("--port", type=int, default=int(env("LOCAL_PROVIDER_PORT", "0")), help="0 = a free port")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(env("LOCAL_PROVIDER_STATE_DIR", "./.run/local-provider")),
        help="registry database and redis data dirs",
    )
    parser.add_argument(
        "--redis-host", help="where redis-servers listen (default $LOCAL_PROVIDER_REDIS_HOST or the listen host)"
    )
    parser.add_argument("--upstash-email", default=env("LOCAL_PROVIDER_UPSTASH_EMAIL", DEFAULT_UPSTASH_EMAIL))
    parser.add_argument("--upstash-api-key", default=env("LOCAL_PROVIDER_UPSTASH_API_KEY", DEFAULT_UPSTASH_API_KEY))
    parser.add_argument(
        "--upstash-account",
        action="append",
        default=[],
        metavar="EMAIL:KEY",
        help="an extra Upstash account (repeatable)",
    )
    parser.add_argument(
        "--fly-token",
        action="append",
        default=None,
        help="an accepted Fly API token (repeatable; default $LOCAL_PROVIDER_FLY_TOKEN or local-fly-token)",
    )
    parser.add_argument(
        "--fly-org",
        action="append",
        default=None,
        help="a Fly organization slug (repeatable; default $LOCAL_PROVIDER_FLY_ORGS, comma-separated, or personal)",
    )
    parser.add_argument(
        "--tls-ca-dir",
        type=Path,
        default=Path(os.environ["LOCAL_PROVIDER_TLS_CA_DIR"]) if os.environ.get("LOCAL_PROVIDER_TLS_CA_DIR") else None,
        help="directory of the CA the databases' TLS certificates are signed by (made if missing; may be shared "
        "by several providers); default <state dir>/tls",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=int(env("LOCAL_PROVIDER_POOL_SIZE", "0")),
        help="benchmarks only: databases share at most N redis-servers (per plain/TLS kind), each database one more "
        "password of the default user; no isolation between databases, plan and eviction not applied. "
        "Default 0: one redis-server per database (and per read replica)",
    )
    parser.add_argument("--log-level", default=env("LOCAL_PROVIDER_LOG_LEVEL", "INFO"))
    parser.add_argument("--access-log", action="store_true", help="log every HTTP request (paths only)")
    return parser


def _host_option(flag: str, value: str | None) -> str | None:
    """An address or host name, else a clear error naming the flag (a URL or host:port is a common slip)."""
    if value is None:
        return None
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        if _HOST_NAME.match(host):
            return host
    raise SystemExit(f"{flag} {value!r}: give an IP address or a host name without scheme or port, e.g. 172.18.0.1")


def parse_settings(argv: list[str]) -> Settings:
    args = _parser().parse_args(argv)
    env = os.environ.get
    listen_flag = _host_option("--listen-host", args.listen_host)
    listen_env = _host_option("$LOCAL_PROVIDER_LISTEN_HOST", env("LOCAL_PROVIDER_LISTEN_HOST"))

    def listen(flag: str, value: str | None, variable: str) -> str:
        """The part's own flag, then --listen-host, then the part's variable, then the listen variable (flags win)."""
        return (
            _host_option(flag, value) or listen_flag or _host_option(f"${variable}", env(variable)) or listen_env
        ) or LOOPBACK

    advertise_host = _host_option("--advertise-host", args.advertise_host)
    if advertise_host in _WILDCARDS:
        raise SystemExit(
            f"--advertise-host {advertise_host}: clients cannot connect to a wildcard address; give the address "
            "they reach this machine at"
        )
    accounts = {args.upstash_email: args.upstash_api_key}
    for entry in args.upstash_account:
        email, sep, key = entry.partition(":")
        if not sep or not email or not key:
            raise SystemExit("--upstash-account wants EMAIL:KEY")
        accounts[email] = key
    fly_tokens = args.fly_token or [os.environ.get("LOCAL_PROVIDER_FLY_TOKEN") or DEFAULT_FLY_TOKEN]
    fly_orgs = args.fly_org or [
        slug.strip() for slug in os.environ.get("LOCAL_PROVIDER_FLY_ORGS", DEFAULT_FLY_ORG).split(",") if slug.strip()
    ]
    return Settings(
        state_dir=args.state_dir.resolve(),
        host=listen("--host", args.host, "LOCAL_PROVIDER_HOST"),
        port=args.port,
        port_file=args.port_file,
        redis_host=listen("--redis-host", args.redis_host, "LOCAL_PROVIDER_REDIS_HOST"),
        upstash_accounts=accounts,
        fly_tokens=fly_tokens,
        fly_orgs=fly_orgs,
        log_level=args.log_level.upper(),
        access_log=args.access_log,
        tls_ca_dir=args.tls_ca_dir.resolve() if args.tls_ca_dir else None,
        advertise_host=advertise_host,
        pool_size=max(0, args.pool_size),
    )
