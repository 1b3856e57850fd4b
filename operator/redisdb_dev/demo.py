"""`python -m redisdb_dev.cli demo up|down` (make demo / make demo-down): the whole product on one machine.

Starts its own local control plane (always, unless asked otherwise), the local provider and the operator as
background processes; applies the seed's sample RedisDatabase; waits until it is Ready; prints its REDIS_URL and
proves it with a PING. `down` stops everything `up` started, and nothing else.

The cluster in your kubeconfig is used only when asked (`make demo USE_CURRENT_CLUSTER=1`, `--use-current-cluster`
or REDISDB_DEMO_USE_CURRENT_CLUSTER=1): the demo writes the cluster-scoped RedisProvider `default` (pointing at
this machine) and runs a second operator without leader election, which on a real cluster would recreate its
databases at the local provider and rewrite their Secrets.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
import yaml

from .devcluster.controlplane import ControlPlane, resolve_bin_dir
from .devrun import LOCAL_FLY_ORG, LOCAL_FLY_TOKEN, SYSTEM_NAMESPACE, fly_provider_manifests, operator_argv

REPO = Path(__file__).resolve().parents[2]
RUN_DIR = Path(os.environ.get("REDISDB_DEMO_DIR", REPO / ".run" / "demo"))
DEMO_NAMESPACE = "demo"
USE_CURRENT_CLUSTER_ENV = "REDISDB_DEMO_USE_CURRENT_CLUSTER"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def _opted_in(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


class Demo:
    def __init__(self, run_dir: Path, *, use_current_cluster: bool = False) -> None:
        self.run_dir = run_dir
        self.use_current_cluster = use_current_cluster
        self.state_file = run_dir / "state.json"
        self.kubectl_bin = str(resolve_bin_dir() / "kubectl")

    # --- state -----------------------------------------------------------------------------------------------
    def load_state(self) -> dict[str, Any]:
        if self.state_file.exists():
            state: dict[str, Any] = json.loads(self.state_file.read_text())
            return state
        return {}

    def save_state(self, state: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2))

    # --- helpers ---------------------------------------------------------------------------------------------
    def kubectl(self, kubeconfig: str, *args: str, input: str | None = None) -> str:
        result = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> int:
        log = (self.run_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=REPO,
            start_new_session=True,
        )
        return process.pid

    @staticmethod
    def alive(pid: int | None) -> bool:
        if not pid:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    @staticmethod
    def configured_kubeconfig() -> str:
        return os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")

    def configured_cluster(self) -> str:
        """The user's kubeconfig (asked for with --use-current-cluster); it must answer, or the demo stops."""
        candidate = self.configured_kubeconfig()
        if not all(Path(part).exists() for part in candidate.split(os.pathsep)):
            raise RuntimeError(
                f"--use-current-cluster: no kubeconfig at {candidate}; set KUBECONFIG, or run `make demo` without "
                "USE_CURRENT_CLUSTER to start a local control plane"
            )
        try:
            self.kubectl(candidate, "get", "--raw", "/readyz", "--request-timeout=5s")
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            raise RuntimeError(f"--use-current-cluster: the cluster in {candidate} does not answer: {error}") from None
        return candidate

    # --- up --------------------------------------------------------------------------------------------------
    def up(self) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = self.load_state()
        local_cluster = not self.use_current_cluster
        if local_cluster:
            say(
                "starting the demo's own local control plane (etcd, kube-apiserver, kube-controller-manager); "
                f"the cluster in your kubeconfig ({self.configured_kubeconfig()}) is not touched "
                "(make demo USE_CURRENT_CLUSTER=1 uses it instead)"
            )
            plane = ControlPlane()
            plane.start()
            kubeconfig = str(plane.kubeconfig)
        else:
            kubeconfig = self.configured_cluster()
            say(
                f"using the current cluster ({kubeconfig}), as asked: this writes the cluster-scoped RedisProvider "
                "'default' (pointing at this machine) and namespaces redisdb-system and demo, and runs an operator "
                "here; never do this on a cluster with RedisDatabases that matter"
            )
        state.update({"kubeconfig": kubeconfig, "local_cluster": local_cluster})

        if not self.alive(state.get("provider_pid")):
            if local_cluster:
                # A fresh control plane holds no RedisDatabase: databases kept from an earlier run would belong to
                # nobody (and the operator rightly refuses to take over an older database of the same name).
                shutil.rmtree(self.run_dir / "local-provider", ignore_errors=True)
            say("starting the local provider (Fly GraphQL + Upstash v2 APIs over real redis-servers)")
            port_file = self.run_dir / "local-provider.port"
            port_file.unlink(missing_ok=True)
            state["provider_pid"] = self.spawn(
                "local-provider",
                [
                    sys.executable,
                    "-m",
                    "redisdb_dev.cli",
                    "local-provider",
                    "--port",
                    "0",  # the OS's choice, read back from the port file: never probed free and raced for
                    "--port-file",
                    str(port_file),
                    "--state-dir",
                    str(self.run_dir / "local-provider"),
                    "--fly-token",
                    LOCAL_FLY_TOKEN,
                    "--fly-org",
                    LOCAL_FLY_ORG,
                ],
                {},
            )
            deadline = time.monotonic() + 60
            while not port_file.exists():
                if time.monotonic() > deadline or not self.alive(state["provider_pid"]):
                    raise RuntimeError(f"the local provider did not start; see {self.run_dir}/local-provider.log")
                time.sleep(0.1)
            state["provider_url"] = f"http://127.0.0.1:{int(port_file.read_text())}"
        self.save_state(state)

        say("installing the CRDs")
        self.kubectl(kubeconfig, "apply", "--server-side", "-f", str(REPO / "crds"))
        self.kubectl(
            kubeconfig,
            "wait",
            "--for=condition=Established",
            "crd/redisdatabases.redisdb.dev",
            "crd/redisproviders.redisdb.dev",
            "--timeout=60s",
        )

        if not self.alive(state.get("operator_pid")):
            say("starting the operator" + (" with its validating webhook" if local_cluster else ""))
            # a remote apiserver cannot call a webhook on this machine's loopback: only for the local cluster
            argv = operator_argv(
                resync_interval=30,
                webhook_cert_dir=self.run_dir / "webhook-certs" if local_cluster else None,
            )
            state["operator_pid"] = self.spawn("operator", argv, {"KUBECONFIG": kubeconfig})
            self.save_state(state)

        say("applying the sample: RedisProvider 'default' (local, Fly wire API) and RedisDatabase demo/cache")
        self.kubectl(kubeconfig, "apply", "-f", "-", input=self.provider_manifests(state["provider_url"]))
        self.kubectl(kubeconfig, "apply", "-n", DEMO_NAMESPACE, "-f", str(REPO / "examples" / "redisdatabase.yaml"))

        say("waiting until demo/cache is Ready")
        obj = self.wait_ready(kubeconfig)
        secret = json.loads(
            self.kubectl(kubeconfig, "get", "secret", obj["status"]["secretName"], "-n", DEMO_NAMESPACE, "-o", "json")
        )
        url = base64.b64decode(secret["data"]["REDIS_URL"]).decode()
        client = redis.Redis.from_url(url, socket_timeout=5)
        pong = client.ping()
        client.close()
        (self.run_dir / "env").write_text(
            f"export KUBECONFIG={kubeconfig}\nexport REDIS_URL={url}\n"
            f"export PATH={Path(self.kubectl_bin).parent}:$PATH\n"
        )
        print()
        print(self.kubectl(kubeconfig, "get", "rdb", "-n", DEMO_NAMESPACE).rstrip())
        print()
        print(f"REDIS_URL={url}")
        print(f"PING -> {'PONG' if pong else pong}")
        print()
        print(f"Next: source {self.run_dir / 'env'}  (sets KUBECONFIG, REDIS_URL and PATH for kubectl)")
        print(f"      kubectl get rdb -n {DEMO_NAMESPACE}; kubectl edit rdb cache -n {DEMO_NAMESPACE}")
        print("      make demo-down   # stops everything this started")
        return 0

    def provider_manifests(self, provider_url: str) -> str:
        namespaces: list[dict[str, Any]] = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            for name in (SYSTEM_NAMESPACE, DEMO_NAMESPACE)
        ]
        provider = fly_provider_manifests("default", provider_url, secret_name="local-fly-credentials")
        return yaml.safe_dump_all([*namespaces, *provider], sort_keys=False)

    def wait_ready(self, kubeconfig: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                obj: dict[str, Any] = json.loads(
                    self.kubectl(kubeconfig, "get", "rdb", "cache", "-n", DEMO_NAMESPACE, "-o", "json")
                )
            except RuntimeError as error:
                last = str(error)
            else:
                conditions = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
                ready = conditions.get("Ready", {})
                if ready.get("status") == "True":
                    return obj
                last = f"Ready={ready.get('status')} {ready.get('reason', '')}: {ready.get('message', '')}"
            time.sleep(0.5)
        raise RuntimeError(f"demo/cache not Ready after {timeout:.0f}s ({last}); see {self.run_dir}/operator.log")

    # --- down ------------------------------------------------------------------------------------------------
    def down(self) -> int:
        state = self.load_state()
        for key in ("operator_pid", "provider_pid"):
            pid = state.get(key)
            if pid is not None and self.alive(pid):
                say(f"stopping {key.removesuffix('_pid')} (pid {pid})")
                os.killpg(pid, signal.SIGTERM)
                deadline = time.monotonic() + 30
                while self.alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if self.alive(pid):
                    os.killpg(pid, signal.SIGKILL)
        if state.get("local_cluster"):
            say("stopping the local control plane")
            ControlPlane().stop()
        self.state_file.unlink(missing_ok=True)
        say("demo stopped")
        return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m redisdb_dev.cli demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("up", "down"))
    parser.add_argument(
        "--use-current-cluster",
        action="store_true",
        default=_opted_in(os.environ.get(USE_CURRENT_CLUSTER_ENV)),
        help=f"use the cluster in $KUBECONFIG (or ~/.kube/config) instead of starting a local control plane "
        f"(env {USE_CURRENT_CLUSTER_ENV}=1; make demo USE_CURRENT_CLUSTER=1)",
    )
    args = parser.parse_args(argv)
    demo = Demo(RUN_DIR, use_current_cluster=args.use_current_cluster)
    try:
        return demo.up() if args.command == "up" else demo.down()
    except RuntimeError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
