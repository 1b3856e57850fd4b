"""Fixtures: the local provider as a subprocess (owned by the provider work).

``local_provider`` (session scope) starts ``python -m redisdb_dev.cli local-provider`` on a free port with its own
state dir, waits for ``/admin/health``, and stops it at the end, checking that no redis-server it started
is left. When a test that used it fails, the provider's log is attached to the report.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

REPO = Path(__file__).resolve().parents[2]
UPSTASH_EMAIL = "dev@example.com"
UPSTASH_API_KEY = "local-api-key"
OTHER_UPSTASH_EMAIL = "other@example.com"
OTHER_UPSTASH_API_KEY = "other-api-key"
# As `fly tokens create org` prints it: the FlyV1 scheme before a macaroon (fm2_...); the adapter must send it as is.
FLY_TOKEN = "FlyV1 fm2_lJPECAAAAAAAAlocalTestMacaroon0000,fm2_lJPETHIRDPARTYlocalDischarge0000"
# An older personal token, sent with Bearer; and an organization token that sees only OTHER_FLY_ORG.
LEGACY_FLY_TOKEN = "fo1_local-legacy-personal-token"
FLY_ORG = "personal"
OTHER_FLY_ORG = "acme"
OTHER_ORG_FLY_TOKEN = "FlyV1 fm2_lJPECAAAAAAAAacmeOnlyMacaroon0000"

# One CA for every local provider of every test session (made by the first, shared through this directory), so a
# test verifies any Upstash-type database's TLS against one file.
TLS_CA_DIR = Path(tempfile.gettempdir()) / f"redisdb-local-provider-ca-{os.getuid()}"
TLS_CA_FILE = TLS_CA_DIR / "ca.pem"


def redis_from_url(url: str, **options: Any) -> redis.Redis:
    """A redis-py client for a connection URL from a Secret: rediss:// is verified against the local CA."""
    if url.startswith("rediss://"):
        options = {"ssl_ca_certs": str(TLS_CA_FILE), "ssl_cert_reqs": "required", **options}
    options.setdefault("socket_timeout", 5)
    return redis.Redis.from_url(url, **options)


_PROVIDERS: list[LocalProvider] = []  # every provider of this session, for failure reports and hygiene scans


def session_providers() -> list[LocalProvider]:
    """Every local provider started in this session (running or stopped), oldest first."""
    return list(_PROVIDERS)


def redis_servers_under(state_dir: Path) -> list[int]:
    """Pids of live redis-server processes working inside ``state_dir``.

    redis-server rewrites its command line (process title) and chdirs to its ``--dir``, so the working
    directory, not the command line, says whose it is.
    """
    marker = str(state_dir.resolve()) + os.sep
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().split(") ", 1)[-1]
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if state.startswith(("Z", "X")):
            continue  # a zombie is already dead
        if b"redis-server" in command and (cwd + os.sep).startswith(marker):
            pids.append(int(entry.name))
    return pids


class Admin:
    """Small synchronous helpers for the admin API."""

    def __init__(self, provider: LocalProvider) -> None:
        self._provider = provider

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self._provider.url, timeout=30)

    def health(self) -> dict[str, Any]:
        with self._client() as client:
            return client.get("/admin/health").raise_for_status().json()  # type: ignore[no-any-return]

    def counters(self) -> dict[str, int]:
        with self._client() as client:
            return client.get("/admin/counters").raise_for_status().json()["calls"]  # type: ignore[no-any-return]

    def counters_with_injected(self) -> dict[str, Any]:
        """The whole counters answer: ``calls`` per operation, ``total`` and ``injected`` failures by status."""
        with self._client() as client:
            return client.get("/admin/counters").raise_for_status().json()  # type: ignore[no-any-return]

    def issued_credentials(self) -> dict[str, Any]:
        """Test-only endpoint: every password ever issued (``passwords``) and every accepted API token (``tokens``)."""
        with self._client() as client:
            return client.get("/admin/issued-credentials").raise_for_status().json()  # type: ignore[no-any-return]

    def reset_counters(self) -> None:
        with self._client() as client:
            client.post("/admin/counters/reset").raise_for_status()

    def faults(self, **faults: Any) -> dict[str, Any]:
        with self._client() as client:
            return client.post("/admin/faults", json=faults).raise_for_status().json()  # type: ignore[no-any-return]

    def clear_faults(self) -> None:
        with self._client() as client:
            client.delete("/admin/faults").raise_for_status()

    def databases(self) -> list[dict[str, Any]]:
        with self._client() as client:
            return client.get("/admin/databases").raise_for_status().json()  # type: ignore[no-any-return]

    def database(self, database_id: str) -> dict[str, Any]:
        with self._client() as client:
            return client.get(f"/admin/databases/{database_id}").raise_for_status().json()  # type: ignore[no-any-return]

    def drift(self, database_id: str, **changes: Any) -> dict[str, Any]:
        with self._client() as client:
            response = client.post(f"/admin/databases/{database_id}/drift", json=changes)
            return response.raise_for_status().json()  # type: ignore[no-any-return]

    def hold(self, point: str, *, api: str | None = None, name: str | None = None) -> int:
        """Arm a crash point (before_create / after_create) for the next matching create; returns its id."""
        body = {key: value for key, value in {"point": point, "api": api, "name": name}.items() if value is not None}
        with self._client() as client:
            return int(client.post("/admin/holds", json=body).raise_for_status().json()["id"])

    def wait_held(self, hold_id: int, timeout: float = 60) -> dict[str, Any]:
        """Block until a call is held at `hold_id` (long poll); AssertionError when none arrives in `timeout`."""
        with httpx.Client(base_url=self._provider.url, timeout=timeout + 30) as client:
            response = client.post(f"/admin/holds/{hold_id}/wait", params={"timeout": timeout})
        if response.status_code == 408:
            raise AssertionError(f"no call reached hold {hold_id} within {timeout}s: {response.json()}")
        return response.raise_for_status().json()  # type: ignore[no-any-return]

    def release(self, hold_id: int, then: str = "answer") -> dict[str, Any]:
        """Let the held call go on: `answer` sends the answer, `drop` closes the connection unanswered."""
        with self._client() as client:
            response = client.post(f"/admin/holds/{hold_id}/release", json={"then": then})
            return response.raise_for_status().json()  # type: ignore[no-any-return]

    def clear_holds(self) -> None:
        with self._client() as client:
            client.delete("/admin/holds").raise_for_status()

    def calls(
        self, *, name: str | None = None, api: str | None = None, account: str | None = None
    ) -> list[dict[str, Any]]:
        """The management call log (optionally one database name's, one API's, one account's), oldest first."""
        params = {
            key: value for key, value in {"name": name, "api": api, "account": account}.items() if value is not None
        }
        with self._client() as client:
            return client.get("/admin/calls", params=params).raise_for_status().json()  # type: ignore[no-any-return]

    def clear_calls(self) -> None:
        with self._client() as client:
            client.delete("/admin/calls").raise_for_status()

    def credentials(self, **changes: Any) -> dict[str, Any]:
        """add_fly_tokens / revoke_fly_tokens / add_upstash_accounts / revoke_upstash_accounts, at runtime."""
        with self._client() as client:
            return client.post("/admin/credentials", json=changes).raise_for_status().json()  # type: ignore[no-any-return]

    def set_creation_time(self, database_id: str, unix_seconds: int) -> dict[str, Any]:
        """Make the provider report this creation time (whole seconds) for the database."""
        return self.drift(database_id, creation_time=unix_seconds)


@dataclass
class LocalProvider:
    """A running local provider subprocess and everything a test needs to talk to it."""

    workdir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    upstash_email: str = UPSTASH_EMAIL
    upstash_api_key: str = UPSTASH_API_KEY
    fly_token: str = FLY_TOKEN
    fly_org: str = FLY_ORG
    extra_args: list[str] = field(default_factory=list)
    pids_seen: set[int] = field(default_factory=set)
    issued_snapshot: dict[str, Any] = field(default_factory=dict)  # issued credentials, as of the last stop

    def __post_init__(self) -> None:
        self.admin = Admin(self)
        _PROVIDERS.append(self)

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def log_path(self) -> Path:
        return self.workdir / "provider.log"

    @property
    def port_file(self) -> Path:
        return self.workdir / "port"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def upstash_url(self) -> str:
        return f"{self.url}/v2"

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/graphql"

    @property
    def upstash_auth(self) -> tuple[str, str]:
        return (self.upstash_email, self.upstash_api_key)

    @property
    def fly_headers(self) -> dict[str, str]:
        """As fly-go sends the token: the scheme follows the token (FlyV1 for macaroons, else Bearer)."""
        from redisdb_operator.providers.fly import fly_authorization

        return {"Authorization": fly_authorization(self.fly_token)}

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 60) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "operator"), os.environ.get("PYTHONPATH")]))
        )
        command = [
            sys.executable,
            "-m",
            "redisdb_dev.cli",
            "local-provider",
            "--port",
            str(self.port),
            "--port-file",
            str(self.port_file),
            "--state-dir",
            str(self.state_dir),
            "--upstash-email",
            self.upstash_email,
            "--upstash-api-key",
            self.upstash_api_key,
            "--upstash-account",
            f"{OTHER_UPSTASH_EMAIL}:{OTHER_UPSTASH_API_KEY}",
            "--fly-token",
            self.fly_token,
            "--fly-token",
            LEGACY_FLY_TOKEN,
            "--fly-token",
            f"{OTHER_FLY_ORG}:{OTHER_ORG_FLY_TOKEN}",
            "--tls-ca-dir",
            str(TLS_CA_DIR),
            "--fly-org",
            self.fly_org,
            "--fly-org",
            OTHER_FLY_ORG,
            *self.extra_args,
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"local provider exited with {self.process.returncode}:\n{self.log_text()}")
            if self.port_file.exists():
                self.port = int(self.port_file.read_text())
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{self.url}/admin/health", timeout=2).json().get("ok"):
                        return
            time.sleep(0.05)
        raise RuntimeError(f"local provider not healthy after {timeout}s:\n{self.log_text()}")

    def issued_credentials(self) -> dict[str, Any]:
        """Every password and token issued: asked live while running, else as recorded when it stopped."""
        if self.process is not None and self.process.poll() is None:
            return self.admin.issued_credentials()
        return self.issued_snapshot or {"passwords": [], "tokens": []}

    def remember_pids(self) -> None:
        """Remember every redis-server pid the provider reports, to check later that none outlived it."""
        with contextlib.suppress(httpx.HTTPError):
            for database in self.admin.databases():
                self.pids_seen.update(p for p in [database["pid"], *(r["pid"] for r in database["replicas"])] if p)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Stop the provider (SIGTERM by default) and return its exit status."""
        if self.process is None:
            return 0
        self.remember_pids()
        with contextlib.suppress(httpx.HTTPError):
            self.issued_snapshot = self.admin.issued_credentials()
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code

    def restart(self) -> None:
        """Stop and start again on the same port and state dir (same URL, same databases)."""
        self.stop()
        self.start()

    def leftover_redis_servers(self, timeout: float = 10) -> list[int]:
        """redis-servers under this provider's state dir (or seen earlier) still alive after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            alive = set(redis_servers_under(self.state_dir))
            for pid in self.pids_seen:
                with contextlib.suppress(OSError):
                    if b"redis-server" in (Path("/proc") / str(pid) / "cmdline").read_bytes():
                        alive.add(pid)
            if not alive or time.monotonic() > deadline:
                return sorted(alive)
            time.sleep(0.1)


@contextlib.contextmanager
def running_local_provider(workdir: Path, **options: Any) -> Iterator[LocalProvider]:
    """A provider for one test (or one session); stopped afterwards, with a leftover-process check."""
    provider = LocalProvider(workdir, **options)
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()
        leftovers = provider.leftover_redis_servers()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not leftovers, f"redis-server processes left behind by the local provider: {leftovers}"


@pytest.fixture(scope="session")
def local_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalProvider]:
    with running_local_provider(tmp_path_factory.mktemp("local-provider")) as provider:
        yield provider


@pytest.fixture
def own_local_provider(tmp_path: Path) -> Iterator[LocalProvider]:
    """A provider for this test alone: for tests that restart or kill it, which must not disturb the session's."""
    with running_local_provider(tmp_path / "own-local-provider") as provider:
        yield provider


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the log tail of every provider started so far to the report of a failed test."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not report.failed:
        return
    for provider in _PROVIDERS:
        tail = "\n".join(provider.log_text().splitlines()[-100:])
        if tail:
            report.sections.append((f"local provider log {provider.workdir.name} (last 100 lines)", tail))
