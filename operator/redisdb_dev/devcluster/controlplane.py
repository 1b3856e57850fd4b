"""Runs etcd, kube-apiserver and kube-controller-manager as local processes: a real control plane without Docker.

The processes outlive the Python process that started them (`make cluster-up` returns), so everything needed
to find and stop them again lives in `state_dir/state.json`: pids plus each process's kernel start time, which
guards against killing an unrelated process that reused a pid. A file lock serialises `up`/`down` callers.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from redisdb_dev.devcluster.pki import ClusterPKI

REPO_ROOT = Path(__file__).resolve().parents[3]
# The controllers a test of an operator needs: ownerReference cascades, namespace deletion, the `default`
# ServiceAccount and the kube-root-ca.crt ConfigMap, and ClusterRole aggregation (the chart's roles join
# `edit`/`view`). No kubelet runs, so pod-related controllers are useless.
CONTROLLERS = (
    "clusterrole-aggregation-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
STOP_GRACE_SECONDS = 10.0


class ControlPlaneError(RuntimeError):
    """A control-plane process failed to start or become ready; the message carries its log tail."""


def read_versions() -> dict[str, str]:
    """versions.env is the one place external versions are pinned; the harness compares against it."""
    versions: dict[str, str] = {}
    for line in (REPO_ROOT / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


def default_state_dir() -> Path:
    return Path(os.environ.get("REDISDB_CLUSTER_DIR") or REPO_ROOT / ".run" / "cluster")


def resolve_bin_dir() -> Path:
    """The versioned cache dir of hack/build-k8s-tools.sh: never a kubectl from PATH (it may be another build)."""
    if env_dir := os.environ.get("REDISDB_BIN_DIR"):
        return Path(env_dir)
    script = REPO_ROOT / "hack" / "build-k8s-tools.sh"
    out = subprocess.run(["bash", str(script), "--print-bin-dir"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """A port free right now, bound and released. Kept here (and nowhere else) on purpose: etcd,
    kube-apiserver and kube-controller-manager take their ports on the command line and cannot report a port-0
    choice back (etcd would advertise port 0 to itself; the apiserver's URL goes into the kubeconfig before it
    starts). The race it leaves (another process taking the port between this probe and the bind) is handled by
    `start`: a member that exits with "address already in use" raises _PortClash, and the whole start is retried
    with new ports (three attempts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def has_default_route() -> bool:
    """kube-apiserver derives its advertise address from the default-route interface and fails without one.

    A network namespace without networking still lists an IPv6 "unreachable" default on `lo`; that one does
    not count (the apiserver cannot use it either).
    """
    rtf_reject = 0x0200
    try:
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            iface, destination, _gateway, flags, *_ = line.split()
            if destination == "00000000" and iface != "lo" and not int(flags, 16) & rtf_reject:
                return True
        for line in Path("/proc/net/ipv6_route").read_text().splitlines():
            fields = line.split()
            if fields[:2] == ["0" * 32, "00"] and fields[9] != "lo" and not int(fields[8], 16) & rtf_reject:
                return True
    except (OSError, ValueError, IndexError):
        return True  # cannot tell: let the apiserver decide
    return False


def _proc_start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks, or None when the pid is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


@dataclass
class ProcessRecord:
    name: str
    pid: int
    start_ticks: int

    def alive(self) -> bool:
        return _proc_start_ticks(self.pid) == self.start_ticks


@dataclass
class ClusterState:
    server: str
    etcd_port: int
    api_port: int
    controller_manager_port: int
    processes: list[ProcessRecord]

    @classmethod
    def load(cls, path: Path) -> ClusterState | None:
        try:
            raw = json.loads(path.read_text())
            raw["processes"] = [ProcessRecord(**p) for p in raw["processes"]]
            return cls(**raw)
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)


def _die_with_parent() -> None:
    """preexec hook: SIGKILL the child when its parent dies, so a killed pytest leaks no control plane. Not
    SIGTERM: without etcd a terminating kube-apiserver lingers for a long time, and the state is throwaway."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def kubeconfig_document(server: str, ca_pem: bytes, user: dict[str, str], name: str = "redisdb-dev") -> str:
    """A one-cluster, one-user kubeconfig with everything embedded, so it can be copied anywhere."""
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()},
            }
        ],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }
    return yaml.safe_dump(doc, sort_keys=False)


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager rooted in `state_dir`.

    `start()` is idempotent: a healthy control plane recorded in `state_dir` (by this or another process) is
    reused, a stale one is cleaned up first. `stop()` stops every recorded process, whoever started it.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        bin_dir: Path | None = None,
        *,
        start_timeout: float = 180.0,
        die_with_parent: bool = False,
    ) -> None:
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self._bin_dir = bin_dir
        self.start_timeout = start_timeout
        self.die_with_parent = die_with_parent
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    # -- paths ----------------------------------------------------------------------------------------------
    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = resolve_bin_dir()
        return self._bin_dir

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pki(self) -> ClusterPKI:
        return ClusterPKI(self.state_dir / "pki")

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    def state(self) -> ClusterState | None:
        return ClusterState.load(self._state_file)

    # -- lifecycle --------------------------------------------------------------------------------------------
    def start(self) -> None:
        with self._locked():
            if self._healthy():
                return
            self._stop_locked()
            for attempt in range(3):
                try:
                    self._start_locked()
                    return
                except _PortClash:
                    self._stop_locked()
                    if attempt == 2:
                        raise ControlPlaneError("could not find free ports for the control plane") from None
                except BaseException:
                    self._stop_locked()
                    raise

    def stop(self) -> None:
        with self._locked():
            self._stop_locked()

    def is_running(self) -> bool:
        return self._healthy()

    def restart_member(self, name: str, *, timeout: float = 90.0) -> float:
        """Stop one process (etcd, kube-apiserver or kube-controller-manager) and start it again with the same
        arguments, ports and data; return the seconds until it answered again. For chaos tests: clients must
        reconnect by themselves."""
        with self._locked():
            state = self.state()
            if state is None:
                raise ControlPlaneError("no control plane is recorded in this state dir")
            index = next((i for i, record in enumerate(state.processes) if record.name == name), None)
            if index is None:
                raise ControlPlaneError(f"no control-plane process named {name!r}; known: {BINARIES}")
            old = state.processes[index]
            try:
                argv = Path(f"/proc/{old.pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            except OSError as error:
                raise ControlPlaneError(f"{name} (pid {old.pid}) is not running") from error
            args = [arg.decode() for arg in argv[1:]]
            started = time.monotonic()
            self._terminate(old)
            self._children.pop(old.pid, None)
            del state.processes[index]
            record = self._spawn(state, name, args)
            state.processes.remove(record)
            state.processes.insert(index, record)
            state.save(self._state_file)
            deadline = time.monotonic() + timeout
            api = next(record for record in state.processes if record.name == "kube-apiserver")

            def etcd_ready() -> bool:
                return _http_ok(f"http://127.0.0.1:{state.etcd_port}/health")

            def apiserver_ready() -> bool:
                return self._ok(state.server, "/readyz")

            if name == "etcd":
                self._wait(record, deadline, "etcd after a restart", etcd_ready)
            # Whatever restarted, the apiserver must serve again (it reconnects to etcd by itself).
            self._wait(api, deadline, f"kube-apiserver after {name} restarted", apiserver_ready)
            return time.monotonic() - started

    # -- internals --------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / ".lock").open("w") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _healthy(self) -> bool:
        state = self.state()
        if state is None or len(state.processes) != 3 or not all(p.alive() for p in state.processes):
            return False
        if not self.kubeconfig.exists():
            return False
        status, _ = self._request(state.server, "GET", "/readyz", timeout=5)
        return status == 200

    def _stop_locked(self) -> None:
        state = self.state()
        records = list(reversed(state.processes)) if state else []
        for record in records:
            self._terminate(record)
        self._children.clear()
        self._state_file.unlink(missing_ok=True)
        self.kubeconfig.unlink(missing_ok=True)

    def _terminate(self, record: ProcessRecord) -> None:
        """SIGTERM the process group, SIGKILL it after a grace period; reap it when it is our child."""
        if not record.alive():
            self._reap(record.pid)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline:
            self._reap(record.pid, block=False)
            if not record.alive():
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pid, signal.SIGKILL)
        self._reap(record.pid)

    def _reap(self, pid: int, block: bool = True) -> None:
        child = self._children.get(pid)
        if child is None:
            return
        if block:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=STOP_GRACE_SECONDS)
        else:
            child.poll()

    def _start_locked(self) -> None:
        missing = [name for name in BINARIES if not os.access(self.bin_dir / name, os.X_OK)]
        if missing:
            raise ControlPlaneError(f"missing in {self.bin_dir}: {', '.join(missing)}; build them with `make tools`")
        for stale in ("etcd-data", "pki", "logs"):
            shutil.rmtree(self.state_dir / stale, ignore_errors=True)
        self.logs_dir.mkdir(parents=True)
        pki = ClusterPKI.generate(self.state_dir / "pki")
        etcd_port, etcd_peer_port, api_port, kcm_port = (free_port() for _ in range(4))
        server = f"https://127.0.0.1:{api_port}"
        state = ClusterState(server, etcd_port, api_port, kcm_port, [])
        deadline = time.monotonic() + self.start_timeout

        etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{etcd_peer_port}"
        etcd = self._spawn(
            state,
            "etcd",
            [
                "--name=redisdb-dev",
                f"--data-dir={self.state_dir / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=redisdb-dev={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._wait(etcd, deadline, "etcd /health", lambda: _http_ok(f"{etcd_url}/health"))

        apiserver_args = [
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--cert-dir={pki.directory}",
            f"--tls-cert-file={pki.apiserver_cert}",
            f"--tls-private-key-file={pki.apiserver_key}",
            f"--client-ca-file={pki.client_ca}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            f"--service-account-issuer={server}",
            f"--service-account-key-file={pki.service_account_pub}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            # Pods never run here (no kubelet); the admission plugin would only race the `default` SA.
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            "--profiling=false",
        ]
        if not has_default_route():
            # No default route: the apiserver cannot pick an advertise address itself. Loopback is refused by
            # the endpoint reconcilers, so turn the `kubernetes` Service endpoint reconciler off.
            apiserver_args += ["--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"]
        apiserver = self._spawn(state, "kube-apiserver", apiserver_args)
        self._write_kubeconfigs(server, pki)
        self._wait(apiserver, deadline, "kube-apiserver /readyz", lambda: self._ok(server, "/readyz"))
        self._wait(apiserver, deadline, "the default namespace", lambda: self._ok(server, "/api/v1/namespaces/default"))
        self._grant_controller_manager(server)

        controller_manager = self._spawn(
            state,
            "kube-controller-manager",
            [
                f"--kubeconfig={self.state_dir / 'kube-controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                "--leader-elect=false",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.serving_ca}",
                "--use-service-account-credentials=false",
                "--profiling=false",
            ],
        )
        # The `default` ServiceAccount and kube-root-ca.crt appear only once those controllers work.
        self._wait(
            controller_manager,
            deadline,
            "the default ServiceAccount (serviceaccount controller)",
            lambda: self._ok(server, "/api/v1/namespaces/default/serviceaccounts/default"),
        )
        self._wait(
            controller_manager,
            deadline,
            "the kube-root-ca.crt ConfigMap (root-ca-certificate-publisher)",
            lambda: self._ok(server, "/api/v1/namespaces/default/configmaps/kube-root-ca.crt"),
        )

    def _spawn(self, state: ClusterState, name: str, args: list[str]) -> ProcessRecord:
        binary = self.bin_dir / name
        if not os.access(binary, os.X_OK):
            raise ControlPlaneError(f"{binary} is missing; build it with `make tools` (hack/build-k8s-tools.sh)")
        log_path = self.logs_dir / f"{name}.log"
        with log_path.open("ab") as log:
            child = subprocess.Popen(
                [str(binary), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.state_dir,
                start_new_session=True,  # its own process group: `down` signals the whole group
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        self._children[child.pid] = child
        ticks = None
        for _ in range(50):
            ticks = _proc_start_ticks(child.pid)
            if ticks is not None or child.poll() is not None:
                break
            time.sleep(0.01)
        record = ProcessRecord(name, child.pid, ticks or 0)
        state.processes.append(record)
        state.save(self._state_file)
        return record

    def _wait(self, record: ProcessRecord, deadline: float, what: str, ready: Callable[[], bool]) -> None:
        log_path = self.logs_dir / f"{record.name}.log"
        while True:
            if not record.alive():
                self._reap(record.pid)
                tail = log_tail(log_path)
                if "address already in use" in tail:
                    raise _PortClash(record.name)
                raise ControlPlaneError(f"{record.name} exited while waiting for {what}; {log_path}:\n{tail}")
            if ready():
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"timed out after {self.start_timeout:.0f}s waiting for {what}; {log_path}:\n{log_tail(log_path)}"
                )
            time.sleep(0.2)

    def _write_kubeconfigs(self, server: str, pki: ClusterPKI) -> None:
        ca_pem = pki.serving_ca.read_bytes()

        def cert_user(cert: Path, key: Path) -> dict[str, str]:
            return {
                "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
                "client-key-data": base64.b64encode(key.read_bytes()).decode(),
            }

        for path, user in (
            (
                self.state_dir / "kube-controller-manager.kubeconfig",
                cert_user(pki.controller_manager_cert, pki.controller_manager_key),
            ),
            (self.kubeconfig, cert_user(pki.admin_cert, pki.admin_key)),
        ):
            tmp = path.with_suffix(".tmp")
            tmp.touch(mode=0o600)
            tmp.write_text(kubeconfig_document(server, ca_pem, user))
            tmp.replace(path)

    def _grant_controller_manager(self, server: str) -> None:
        """The bootstrap role system:kube-controller-manager only lists and watches: it expects one
        ServiceAccount per controller (--use-service-account-credentials=true). With a single identity the
        garbage collector and namespace controller need to delete anything, so bind it to cluster-admin."""
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "redisdb-devcluster:kube-controller-manager"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:kube-controller-manager"}
            ],
        }
        status, body = self._request(
            server, "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", json.dumps(binding).encode()
        )
        if status not in (201, 409):
            raise ControlPlaneError(f"creating the kube-controller-manager ClusterRoleBinding: HTTP {status}: {body!r}")

    def _ssl_context(self) -> ssl.SSLContext:
        pki = self.pki
        context = ssl.create_default_context(cafile=str(pki.serving_ca))
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        return context

    def _ok(self, server: str, path: str) -> bool:
        status, _ = self._request(server, "GET", path)
        return status == 200

    def _request(
        self, server: str, method: str, path: str, body: bytes | None = None, timeout: float = 10
    ) -> tuple[int, bytes]:
        """A request as the admin user; (0, b"") when the server cannot be reached yet."""
        request = urllib.request.Request(
            server + path, data=body, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, context=self._ssl_context(), timeout=timeout) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except (OSError, ssl.SSLError):
            return 0, b""


class _PortClash(Exception):
    """A process lost a race for a port chosen as free; the whole start is retried with new ports."""


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status) == 200
    except (OSError, ValueError):
        return False
