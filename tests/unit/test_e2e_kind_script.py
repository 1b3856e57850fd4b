"""hack/e2e-kind.sh without Docker: its syntax, shellcheck, and the manifests it applies, against the models.

The kind run itself needs a Docker engine (not on the development VM); every piece it calls is proven here or in
tests/local_provider/test_listen_and_advertise.py (its start_local_provider) and tests/e2e/test_kubectl_plugin.py
(the plugin's --mode pod).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from redisdb_operator.models import RedisDatabaseSpec, RedisProviderSpec

SCRIPT = Path(__file__).resolve().parents[2] / "hack" / "e2e-kind.sh"
GATEWAY_URL = "http://172.18.0.1:43210"


def sourced(*commands: str) -> subprocess.CompletedProcess[str]:
    """Run shell commands after sourcing the script (which then defines its functions and runs nothing)."""
    env = {key: value for key, value in os.environ.items() if key not in ("NAMESPACE", "CONNECT_NAMESPACE")}
    return subprocess.run(
        ["bash", "-c", f'source "{SCRIPT}"; {"; ".join(commands)}'],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=60,
    )


def documents(text: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(text) if document]


def test_the_script_parses_and_passes_shellcheck() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0
    shellcheck = shutil.which("shellcheck")
    assert shellcheck is not None, "shellcheck is missing: `make deps` installs it (Debian: apt-get install shellcheck)"
    checked = subprocess.run([shellcheck, "-x", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout


def test_sourcing_runs_nothing() -> None:
    """Tests source the script for its functions: no cluster, no Docker call, no output."""
    done = sourced("type main connect_pods_for_real start_local_provider >/dev/null")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""


def test_providers_it_applies_are_valid_and_point_at_the_advertised_local_provider() -> None:
    done = sourced(f"provider_manifests {GATEWAY_URL}")
    assert done.returncode == 0, done.stderr
    providers = {document["metadata"]["name"]: document for document in documents(done.stdout)}
    assert set(providers) == {"kind-fly", "kind-upstash"}
    specs = {name: RedisProviderSpec.model_validate(provider["spec"]) for name, provider in providers.items()}
    assert specs["kind-fly"].type.value == "fly" and specs["kind-fly"].url == GATEWAY_URL
    assert specs["kind-fly"].organization == "personal"
    assert specs["kind-upstash"].type.value == "upstash" and specs["kind-upstash"].url == f"{GATEWAY_URL}/v2"
    for spec in specs.values():
        # The credentials Secrets the script creates, in the release namespace the operator reads.
        assert spec.credentials_secret_ref.namespace == "redisdb-system"
        assert f"create secret generic {spec.credentials_secret_ref.name}" in SCRIPT.read_text()


def test_databases_it_applies_are_valid_one_per_wire_api() -> None:
    done = sourced("database_manifests")
    assert done.returncode == 0, done.stderr
    databases = {document["metadata"]["name"]: document for document in documents(done.stdout)}
    specs = {name: RedisDatabaseSpec.model_validate(database["spec"]) for name, database in databases.items()}
    assert {name: spec.provider_ref.name for name, spec in specs.items()} == {
        "plain": "kind-fly",
        "secure": "kind-upstash",
    }


def test_pod_connect_is_forced_onto_the_pod_path_with_the_private_ca() -> None:
    text = SCRIPT.read_text()
    assert '--mode pod --command PING "$@"' in text
    assert 'assert_pod_connect_pongs secure --cacert "$ca_file"' in text
    assert '--listen-host "$address" --advertise-host "$address"' in text
