"""`make demo` as a newcomer runs it: its own control plane, local provider and operator, a Ready sample, a
REDIS_URL that answers PING; `make demo-down` stops every process it started."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.harness.local_provider import redis_from_url, redis_servers_under

REPO = Path(__file__).resolve().parents[2]


def processes_under(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split()[2]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if marker in command and state not in ("Z", "X"):
            found.append(f"{entry.name}: {command[:120]}")
    return found


def test_demo_up_prints_a_working_redis_url_and_down_stops_everything(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "operator"),
        "REDISDB_DEMO_DIR": str(tmp_path / "demo"),
        "REDISDB_CLUSTER_DIR": str(tmp_path / "cluster"),
        "KUBECONFIG": str(tmp_path / "no-such-kubeconfig"),  # no configured cluster: the demo starts its own
    }
    command = [sys.executable, "-m", "redisdb_dev.cli", "demo"]
    try:
        up = subprocess.run([*command, "up"], env=env, capture_output=True, text=True, timeout=300, check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "starting the local control plane" in up.stdout
        assert re.search(r"^cache\s+True\s+default\s+cdg\s+\[\"ams\"\]\s+payg", up.stdout, re.MULTILINE), up.stdout
        match = re.search(r"^REDIS_URL=(redis://\S+)$", up.stdout, re.MULTILINE)
        assert match, up.stdout
        assert "PING -> PONG" in up.stdout
        client = redis_from_url(match.group(1))
        assert client.ping()
        client.set("demo", "works")
        client.close()
        env_file = (tmp_path / "demo" / "env").read_text()
        assert f"export REDIS_URL={match.group(1)}" in env_file
        assert processes_under(str(tmp_path)), "the demo's processes should be running"
        assert redis_servers_under(tmp_path / "demo" / "local-provider"), "the sample's redis-servers should run"
    finally:
        down = subprocess.run([*command, "down"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert down.returncode == 0, down.stdout + down.stderr
    leftovers = processes_under(str(tmp_path))
    assert leftovers == [], leftovers
    assert redis_servers_under(tmp_path / "demo" / "local-provider") == []

    # A newcomer runs it again: a fresh control plane, and a fresh provider to match (nothing older to refuse).
    try:
        again = subprocess.run([*command, "up"], env=env, capture_output=True, text=True, timeout=300, check=False)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "PING -> PONG" in again.stdout
    finally:
        down = subprocess.run([*command, "down"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert down.returncode == 0 and processes_under(str(tmp_path)) == []
