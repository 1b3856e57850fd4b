"""Command-line flags and environment variables of ``python -m redisdb_dev.cli local-provider``.

Credentials have dev defaults so ``make demo`` needs no setup; flags win over environment variables.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_UPSTASH_EMAIL = "dev@example.com"
DEFAULT_UPSTASH_API_KEY = "local-api-key"
DEFAULT_FLY_TOKEN = "local-fly-token"
DEFAULT_FLY_ORG = "personal"


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
    pool_size: int = 0  # benchmark-only pooled mode: databases share at most this many redis-servers per kind

    def fly_org_ids(self) -> dict[str, str]:
        """org id -> slug."""
        return {org_id(slug): slug for slug in self.fly_orgs}


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m redisdb_dev.cli local-provider",
        description="Serve the Upstash v2 API, the Fly GraphQL API and the admin API over real redis-servers.",
    )
    parser.add_argument("--host", default=env("LOCAL_PROVIDER_HOST", "127.0.0.1"), help="HTTP listen address")
    parser.add_argument("--port", type=int, default=int(env("LOCAL_PROVIDER_PORT", "0")), help="0 = a free port")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(env("LOCAL_PROVIDER_STATE_DIR", "./.run/local-provider")),
        help="registry database and redis data dirs",
    )
    parser.add_argument(
        "--redis-host", default=env("LOCAL_PROVIDER_REDIS_HOST", "127.0.0.1"), help="where redis-servers listen"
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


def parse_settings(argv: list[str]) -> Settings:
    args = _parser().parse_args(argv)
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
        host=args.host,
        port=args.port,
        port_file=args.port_file,
        redis_host=args.redis_host,
        upstash_accounts=accounts,
        fly_tokens=fly_tokens,
        fly_orgs=fly_orgs,
        log_level=args.log_level.upper(),
        access_log=args.access_log,
        tls_ca_dir=args.tls_ca_dir.resolve() if args.tls_ca_dir else None,
        pool_size=max(0, args.pool_size),
    )
