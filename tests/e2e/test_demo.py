"""`make demo` as a newcomer runs it: its own control plane, local provider and operator, a Ready sample, a
REDIS_URL that answers PING; `make demo-down` stops every process it started. A cluster that the kubeconfig
reaches is left untouched unless the demo is asked to use it (USE_CURRENT_CLUSTER=1)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.harness.cluster import Cluster, kubectl
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


def cluster_state() -> dict[str, Any]:
    """Every namespace, CRD, RedisProvider and RedisDatabase of the test cluster, with its resourceVersion: a write
    by the demo (a new object, a changed one) shows as a difference."""
    listed = kubectl("get", "namespaces,crds,redisproviders,redisdatabases", "-A", "-o", "json").stdout
    return {
        (item["kind"], item["metadata"].get("namespace"), item["metadata"]["name"]): item["metadata"]["resourceVersion"]
        for item in json.loads(listed)["items"]
        if not item["metadata"].get("namespace", "").startswith("t-")  # other tests' namespaces come and go
        and not (item["kind"] == "Namespace" and item["metadata"]["name"].startswith("t-"))
    }


def test_demo_up_prints_a_working_redis_url_and_down_stops_everything(
    cluster: Cluster, crds: None, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "operator"),
        "REDISDB_DEMO_DIR": str(tmp_path / "demo"),
        "REDISDB_CLUSTER_DIR": str(tmp_path / "cluster"),
        # A kubeconfig that reaches a running cluster (the test's), with the RedisDatabase CRDs installed: without
        # USE_CURRENT_CLUSTER the demo must start its own control plane and leave this one alone.
        "KUBECONFIG": str(cluster.kubeconfig),
    }
    env.pop("REDISDB_DEMO_USE_CURRENT_CLUSTER", None)
    before = cluster_state()
    command = [sys.executable, "-m", "redisdb_dev.cli", "demo"]
    try:
        up = subprocess.run([*command, "up"], env=env, capture_output=True, text=True, timeout=300, check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "starting the demo's own local control plane" in up.stdout
        assert f"your kubeconfig ({cluster.kubeconfig}) is not touched" in up.stdout
        assert "USE_CURRENT_CLUSTER=1" in up.stdout, "the way to opt in is printed"
        assert cluster_state() == before, "the demo wrote to the cluster of $KUBECONFIG without being asked"
        assert f"export KUBECONFIG={cluster.kubeconfig}\n" not in (tmp_path / "demo" / "env").read_text()
        row = r"^cache\s+True\s+True\s+default\s+cdg\s+\[\"ams\"\]\s+payg\s+false"  # READY SYNCED ... EVICTION
        assert re.search(row, up.stdout, re.MULTILINE), up.stdout
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
    assert cluster_state() == before


def test_demo_on_the_current_cluster_only_when_it_answers(tmp_path: Path) -> None:
    """Asked to use the current cluster, the demo stops with the way out when there is none (it never falls back
    silently to something else)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "operator"),
        "REDISDB_DEMO_DIR": str(tmp_path / "demo"),
        "REDISDB_CLUSTER_DIR": str(tmp_path / "cluster"),
        "KUBECONFIG": str(tmp_path / "no-such-kubeconfig"),
        "REDISDB_DEMO_USE_CURRENT_CLUSTER": "1",
    }
    up = subprocess.run(
        [sys.executable, "-m", "redisdb_dev.cli", "demo", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert up.returncode != 0
    assert f"no kubeconfig at {tmp_path / 'no-such-kubeconfig'}" in up.stderr, up.stdout + up.stderr
    assert "without USE_CURRENT_CLUSTER" in up.stderr
    assert processes_under(str(tmp_path)) == [], "nothing was started"
