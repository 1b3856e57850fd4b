"""Fixtures and helpers for tests against a real control plane (etcd + kube-apiserver + kube-controller-manager).

`cluster` (session) starts one control plane per test session, or reuses the cluster of $REDISDB_KUBECONFIG;
`namespace` gives each test its own namespace; `processes` runs the operator and other subprocesses with their
logs kept under the test's tmp dir and attached to the report of a failing test.
Every kubectl/helm call uses the binaries built by hack/build-k8s-tools.sh: /usr/bin/kubectl on this machine is
a different (gcloud) build and must never be picked up from PATH.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from redisdb_dev.devcluster.controlplane import ControlPlane, kubeconfig_document, resolve_bin_dir

T = TypeVar("T")
Manifest = str | Mapping[str, Any] | Sequence[Mapping[str, Any]]


@functools.cache
def bin_dir() -> Path:
    return resolve_bin_dir()


def tool(name: str) -> str:
    """Absolute path of kubectl/helm/... from the versioned cache dir."""
    path = bin_dir() / name
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{path} is missing; run `make tools`")
    return str(path)


@dataclass(frozen=True)
class Cluster:
    """A reachable cluster: its admin kubeconfig, and the ControlPlane when this session started it."""

    kubeconfig: Path
    control_plane: ControlPlane | None = None

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return kubectl(*args, input=input, kubeconfig=self.kubeconfig, check=check)

    @functools.cached_property
    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = yaml.safe_load(self.kubeconfig.read_text())
        return config

    @property
    def server(self) -> str:
        return str(self._config["clusters"][0]["cluster"]["server"])

    @property
    def ca_pem(self) -> bytes:
        return base64.b64decode(self._config["clusters"][0]["cluster"]["certificate-authority-data"])


# The cluster of the running session: the default for the module-level helpers below.
_active_cluster: Cluster | None = None


def _default_kubeconfig(kubeconfig: Path | str | None) -> Path:
    if kubeconfig is not None:
        return Path(kubeconfig)
    if _active_cluster is None:
        raise RuntimeError("no cluster: request the `cluster` fixture (or pass kubeconfig=)")
    return _active_cluster.kubeconfig


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call whose message includes what kubectl said (CalledProcessError's omits it)."""

    def __str__(self) -> str:
        return f"{' '.join(map(str, self.cmd))} exited {self.returncode}: {(self.stderr or self.stdout or '').strip()}"


def kubectl(
    *args: str,
    input: str | None = None,
    kubeconfig: Path | str | None = None,
    check: bool = True,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Runs the real kubectl; with check=True a non-zero exit raises KubectlError carrying stderr."""
    cmd = [tool("kubectl"), f"--kubeconfig={_default_kubeconfig(kubeconfig)}", *args]
    result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise KubectlError(result.returncode, cmd, result.stdout, result.stderr)
    return result


def helm(*args: str, kubeconfig: Path | str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [tool("helm"), f"--kubeconfig={_default_kubeconfig(kubeconfig)}", *args]
    # Keep helm's caches out of $HOME: tests must not depend on (or pollute) a developer's helm setup.
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/redisdb-helm-cache", "HELM_CONFIG_HOME": "/tmp/redisdb-helm-config"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env)
    if check and result.returncode != 0:
        raise KubectlError(result.returncode, cmd, result.stdout, result.stderr)
    return result


def to_yaml(manifest: Manifest) -> str:
    if isinstance(manifest, str):
        return manifest
    if isinstance(manifest, Mapping):
        return yaml.safe_dump(dict(manifest), sort_keys=False)
    return yaml.safe_dump_all([dict(m) for m in manifest], sort_keys=False)


def apply(
    manifest: Manifest, namespace: str | None = None, *, kubeconfig: Path | str | None = None
) -> list[dict[str, Any]]:
    """`kubectl apply` a YAML string, a dict or a list of dicts; returns the objects as the server stored them."""
    args = ["apply", "-f", "-", "-o", "json"]
    if namespace:
        args += ["-n", namespace]
    out = kubectl(*args, input=to_yaml(manifest), kubeconfig=kubeconfig).stdout
    applied: dict[str, Any] = json.loads(out)
    items: list[dict[str, Any]] = applied["items"] if applied.get("kind") == "List" else [applied]
    return items


def get_json(
    kind: str, name: str, namespace: str | None = None, *, kubeconfig: Path | str | None = None
) -> dict[str, Any] | None:
    """The object as JSON, or None when it does not exist."""
    args = ["get", kind, name, "-o", "json", "--ignore-not-found"]
    if namespace:
        args += ["-n", namespace]
    out = kubectl(*args, kubeconfig=kubeconfig).stdout.strip()
    if not out:
        return None
    obj: dict[str, Any] = json.loads(out)
    return obj


def wait_for(
    predicate: Callable[[], T | None], timeout: float = 60, interval: float = 0.25, message: str = "condition"
) -> T:
    """Polls until `predicate` returns a truthy value and returns it; a timeout names what was awaited and the
    last value or exception seen, which is usually the clue to why."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as error:  # a not-yet-ready API often raises; keep polling, remember it
            last = error
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message}; last: {last!r}")
        time.sleep(interval)


def service_account_kubeconfig(
    cluster: Cluster, namespace: str, service_account: str, path: Path | None = None, duration: str = "1h"
) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount with a TokenRequest token (creating the SA when
    missing): the way to test least privilege, since the admin user is in system:masters and bypasses RBAC."""
    if get_json("serviceaccount", service_account, namespace, kubeconfig=cluster.kubeconfig) is None:
        cluster.kubectl("create", "serviceaccount", service_account, "-n", namespace)
    token = cluster.kubectl(
        "create", "token", service_account, "-n", namespace, f"--duration={duration}"
    ).stdout.strip()
    path = path or cluster.kubeconfig.parent / f"sa-{namespace}-{service_account}.kubeconfig"
    path.touch(mode=0o600)
    path.write_text(
        kubeconfig_document(cluster.server, cluster.ca_pem, {"token": token}, name=f"{namespace}-{service_account}")
    )
    return path


# -- subprocesses ---------------------------------------------------------------------------------------------


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM the process group (kopf exits cleanly on it), SIGKILL after `timeout`; returns the exit code."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        return self.popen.returncode


@dataclass
class ProcessRunner:
    """Starts subprocesses with one log file each under `log_dir`, and stops all of them at teardown."""

    log_dir: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        process = ManagedProcess(name, popen, log_path)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def log_sections(self, tail_lines: int = 200) -> list[tuple[str, str]]:
        sections = []
        for process in self.processes:
            lines = process.log().splitlines()
            state = "running" if process.alive else f"exited {process.popen.returncode}"
            header = f"{process.log_path} ({state}, last {min(tail_lines, len(lines))} of {len(lines)} lines)"
            sections.append((f"process log: {process.name}", "\n".join([header, *lines[-tail_lines:]])))
        return sections


@contextlib.contextmanager
def managed_process(
    name: str, argv: Sequence[str], log_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[ManagedProcess]:
    """One subprocess for the duration of a `with` block (for use outside the `processes` fixture)."""
    runner = ProcessRunner(log_dir)
    try:
        yield runner.start(name, argv, env)
    finally:
        runner.stop_all()


PROCESS_RUNNERS = pytest.StashKey[ProcessRunner]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keeps each phase's report on the item (`item.rep_call`) and attaches process logs to failures."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    runner = item.stash.get(PROCESS_RUNNERS, None)
    if report.failed and runner is not None:
        report.sections.extend(runner.log_sections())
    return report


# -- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One control plane per session (about 20-60 s to start on 2 cores), or the cluster of $REDISDB_KUBECONFIG."""
    global _active_cluster
    if reuse := os.environ.get("REDISDB_KUBECONFIG"):
        _active_cluster = Cluster(Path(reuse))
        kubectl("get", "--raw", "/readyz")
        yield _active_cluster
        _active_cluster = None
        return
    plane = ControlPlane(tmp_path_factory.mktemp("cluster"), bin_dir(), die_with_parent=True)
    plane.start()
    _active_cluster = Cluster(plane.kubeconfig, plane)
    try:
        yield _active_cluster
    finally:
        _active_cluster = None
        plane.stop()


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{slug}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test; deleted afterwards without waiting (the namespace controller finishes it)."""
    name = _namespace_name(request.node.name)
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def processes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessRunner]:
    runner = ProcessRunner(tmp_path / "logs")
    request.node.stash[PROCESS_RUNNERS] = runner
    yield runner
    runner.stop_all()
