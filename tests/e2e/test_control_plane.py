"""The local control plane behaves like a real cluster where the operator's tests depend on it.

Each test names the cluster feature it proves: CEL transition rules, ownerReference garbage collection,
namespace finalization, TokenRequest + RBAC, server-side dry-run of helm output, the stamped version, and the
runner's own lifecycle (idempotent start, a stop that leaves no process behind).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from redisdb_dev.devcluster.controlplane import REPO_ROOT, ControlPlane, read_versions
from tests.harness.cluster import (
    Cluster,
    KubectlError,
    apply,
    bin_dir,
    get_json,
    helm,
    kubectl,
    service_account_kubeconfig,
    wait_for,
)

DATA = Path(__file__).resolve().parents[1] / "data"


def test_version_is_the_pinned_kubernetes_version(cluster: Cluster) -> None:
    """Helm's kubeVersion checks read /version: an unstamped build reports v0.0.0-master."""
    versions = json.loads(kubectl("version", "-o", "json").stdout)
    pinned = read_versions()["KUBERNETES_VERSION"]
    assert versions["serverVersion"]["gitVersion"] == pinned
    assert versions["clientVersion"]["gitVersion"] == pinned


def test_namespace_and_secret_round_trip(cluster: Cluster, namespace: str) -> None:
    kubectl("create", "secret", "generic", "creds", "-n", namespace, "--from-literal=password=s3cret")
    secret = get_json("secret", "creds", namespace)
    assert secret is not None
    assert secret["data"] == {"password": "czNjcmV0"}
    assert get_json("secret", "absent", namespace) is None


def test_cel_transition_rule_rejects_an_update(cluster: Cluster, namespace: str) -> None:
    kubectl("apply", "-f", str(DATA / "crd-widgets.yaml"))
    wait_for(
        lambda: (
            "Established" in kubectl("get", "crd", "widgets.test.redisdb.dev", "-o", "json").stdout
            and kubectl("get", "widgets", "-n", namespace, check=False).returncode == 0
        ),
        message="the widgets CRD to be served",
    )
    widget = {
        "apiVersion": "test.redisdb.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"region": "ams", "size": 1},
    }
    apply(widget, namespace)
    apply({**widget, "spec": {"region": "ams", "size": 2}}, namespace)  # other fields stay mutable

    with pytest.raises(KubectlError, match=r"spec\.region is immutable; create a new Widget") as refused:
        apply({**widget, "spec": {"region": "fra", "size": 2}}, namespace)
    assert "Invalid value" in str(refused.value)
    stored = get_json("widget", "w1", namespace)
    assert stored is not None and stored["spec"] == {"region": "ams", "size": 2}


def test_owned_object_is_garbage_collected_after_its_owner(cluster: Cluster, namespace: str) -> None:
    (owner,) = apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}, namespace)
    owner_ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "owned", "ownerReferences": [owner_ref]},
            "stringData": {"k": "v"},
        },
        namespace,
    )
    kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(lambda: get_json("secret", "owned", namespace) is None, timeout=90, message="GC of the owned Secret")


def test_namespace_deletion_completes(cluster: Cluster) -> None:
    name = "t-ns-deletion"
    kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true")
    kubectl("create", "namespace", name)
    apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "content"}}, name)
    kubectl("delete", "namespace", name, "--wait=false")
    phase = wait_for(
        lambda: (get_json("namespace", name) or {"status": {"phase": "Gone"}})["status"]["phase"],
        message="the namespace to be Terminating or gone",
    )
    assert phase in ("Terminating", "Gone")
    wait_for(lambda: get_json("namespace", name) is None, timeout=120, message=f"namespace {name} to be deleted")


def test_service_account_token_is_bound_by_rbac(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "read-configmaps"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "reader-reads-configmaps"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
                "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
            },
        ],
        namespace,
    )
    sa_config = service_account_kubeconfig(cluster, namespace, "reader", tmp_path / "reader.kubeconfig")

    whoami = json.loads(kubectl("auth", "whoami", "-o", "json", kubeconfig=sa_config).stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:reader"
    allowed = kubectl("get", "configmaps", "-n", namespace, "-o", "name", kubeconfig=sa_config)
    assert "configmap/kube-root-ca.crt" in allowed.stdout  # published by the root-ca-cert-publisher
    denied = kubectl("get", "secrets", "-n", namespace, kubeconfig=sa_config, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower() and f"system:serviceaccount:{namespace}:reader" in denied.stderr
    denied_write = kubectl("create", "configmap", "x", "-n", namespace, kubeconfig=sa_config, check=False)
    assert denied_write.returncode != 0 and 'cannot create resource "configmaps"' in denied_write.stderr


def test_helm_template_passes_server_side_dry_run(cluster: Cluster, namespace: str) -> None:
    rendered = helm(
        "template", "smoke", str(DATA / "chart-smoke"), "--namespace", namespace, "--validate"
    ).stdout  # --validate: checks Chart.yaml kubeVersion against the real /version
    assert f'kubeVersion: "{read_versions()["KUBERNETES_VERSION"]}"' in rendered
    result = kubectl("apply", "--dry-run=server", "-f", "-", "-o", "name", input=rendered)
    assert sorted(result.stdout.split()) == [
        "configmap/smoke-smoke",
        "role.rbac.authorization.k8s.io/smoke-smoke",
        "rolebinding.rbac.authorization.k8s.io/smoke-smoke",
        "serviceaccount/smoke-smoke",
    ]
    assert get_json("configmap", "smoke-smoke", namespace) is None  # dry run: nothing stored


def _cli(*args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDISDB_CLUSTER_DIR": str(state_dir), "REDISDB_BIN_DIR": str(bin_dir())}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "operator"), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "redisdb_dev.cli", "cluster", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def test_start_is_idempotent_and_down_from_another_process_leaves_nothing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A second control plane of its own: `up` twice reuses it, `down` in another process stops every process."""
    state_dir = tmp_path_factory.mktemp("lifecycle")
    plane = ControlPlane(state_dir, bin_dir(), die_with_parent=True)
    try:
        plane.start()
        state = plane.state()
        assert state is not None
        pids = {p.name: p.pid for p in state.processes}
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}

        plane.start()  # same object, again
        up = _cli("up", state_dir=state_dir)  # another process, same state dir
        assert up.returncode == 0, up.stderr
        assert "already running" in up.stdout
        state_again = plane.state()
        assert state_again is not None and {p.name: p.pid for p in state_again.processes} == pids
        assert _cli("status", state_dir=state_dir).returncode == 0
        env = _cli("env", state_dir=state_dir)
        assert env.stdout.strip() == f"export KUBECONFIG={plane.kubeconfig}"

        down = _cli("down", state_dir=state_dir)
        assert down.returncode == 0, down.stderr
        assert not plane.is_running()
        for process in state.processes:
            assert not process.alive(), f"{process.name} (pid {process.pid}) survived `cluster down`"
        assert _cli("status", state_dir=state_dir).returncode == 1
    finally:
        plane.stop()


def test_stale_state_is_cleaned_up_on_start(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A control plane with a dead member (a crash, an OOM kill) is replaced as a whole, survivors stopped."""
    plane = ControlPlane(tmp_path_factory.mktemp("stale"), bin_dir(), die_with_parent=True)
    try:
        plane.start()
        before = plane.state()
        assert before is not None
        apiserver = next(p for p in before.processes if p.name == "kube-apiserver")
        os.kill(apiserver.pid, signal.SIGKILL)
        wait_for(lambda: not apiserver.alive(), timeout=10, message="the killed kube-apiserver to be gone")
        assert not plane.is_running()

        plane.start()
        after = plane.state()
        assert after is not None and plane.is_running()
        assert {p.pid for p in after.processes}.isdisjoint(p.pid for p in before.processes)
        assert not any(p.alive() for p in before.processes), "a member of the stale control plane survived"
        assert json.loads(kubectl("version", "-o", "json", kubeconfig=plane.kubeconfig).stdout)["serverVersion"]
    finally:
        plane.stop()
