"""`kubectl redisdb`: what `flyctl redis` gives Fly users, for RedisDatabase resources.

Every cluster call goes through the user's own `kubectl` (so contexts, exec credential plugins and RBAC work as
they do for kubectl itself); the plugin never holds provider credentials and never calls a provider.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import webbrowser
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from . import pod, render

RDB = "redisdatabases.redisdb.dev"
PROVIDERS = "redisproviders.redisdb.dev"
ROTATE_ANNOTATION = "redisdb.dev/rotate-password"


class PluginError(Exception):
    """A refusal with a message that says what to do; printed as kubectl prints errors (``error: ...``)."""


class KubectlFailed(Exception):
    """kubectl exited non-zero; its own message (e.g. ``Error from server (NotFound): ...``) is passed through."""

    def __init__(self, returncode: int, stderr: str) -> None:
        super().__init__(stderr)
        self.returncode = returncode
        self.stderr = stderr


class Kubectl:
    """Runs the user's kubectl with the connection flags given to the plugin."""

    def __init__(self, *, context: str | None, kubeconfig: str | None, binary: str | None = None) -> None:
        found = binary or os.environ.get("KUBECTL_REDISDB_KUBECTL") or shutil.which("kubectl")
        if not found:
            raise PluginError("kubectl was not found on PATH; install kubectl (the plugin runs it for every call)")
        self.binary = found
        self.flags = [f"--context={context}"] if context else []
        if kubeconfig:
            self.flags.append(f"--kubeconfig={kubeconfig}")

    def argv(self, *args: str) -> list[str]:
        return [self.binary, *self.flags, *args]

    def run(self, *args: str, input: str | None = None) -> str:
        result = subprocess.run(self.argv(*args), input=input, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KubectlFailed(result.returncode, result.stderr or result.stdout)
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))

    def interactive(self, *args: str) -> int:
        """A kubectl the user talks to directly (exec -it): stdio inherited."""
        return subprocess.run(self.argv(*args), check=False).returncode

    def current_namespace(self) -> str:
        try:
            namespace = self.run("config", "view", "--minify", "-o", "jsonpath={..namespace}").strip()
        except KubectlFailed:
            namespace = ""
        return namespace or "default"


def _namespace_args(args: argparse.Namespace) -> list[str]:
    return ["-n", args.namespace] if args.namespace else []


def _get_database(kubectl: Kubectl, args: argparse.Namespace) -> dict[str, Any]:
    obj: dict[str, Any] = kubectl.json("get", RDB, args.name, *_namespace_args(args))
    return obj


def _provider_of(kubectl: Kubectl, obj: dict[str, Any]) -> dict[str, Any] | None:
    """The RedisProvider serving a database, or None when it cannot be read (RBAC, not there yet)."""
    name = (obj.get("status") or {}).get("provider") or ((obj.get("spec") or {}).get("providerRef") or {}).get("name")
    if not name:
        return None
    try:
        provider: dict[str, Any] = kubectl.json("get", PROVIDERS, name)
    except KubectlFailed:
        return None
    return provider


def _provider_type(provider: dict[str, Any] | None) -> str | None:
    value = ((provider or {}).get("spec") or {}).get("type")
    return str(value) if value else None


def secret_name(obj: dict[str, Any]) -> str:
    status, spec = obj.get("status") or {}, obj.get("spec") or {}
    name = status.get("secretName") or (spec.get("connectionSecret") or {}).get("name")
    return str(name or f"{obj['metadata']['name']}-redis")


def _secret_data(kubectl: Kubectl, name: str, namespace: str) -> dict[str, str]:
    secret = kubectl.json("get", "secret", name, "-n", namespace)
    return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}


def _emit(document: Any, output: str | None, text: Callable[[], str]) -> None:
    sys.stdout.write(render.dump(document, output) if output in ("json", "yaml") else text())


# -- list ------------------------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace, kubectl: Kubectl) -> int:
    scope = ["-A"] if args.all_namespaces else _namespace_args(args)
    items = kubectl.json("get", RDB, *scope)["items"]
    rows = [render.database_row(item) for item in items]
    rows.sort(key=lambda row: (row["namespace"] or "", row["name"] or ""))
    if not rows and args.output not in ("json", "yaml"):
        where = "" if args.all_namespaces else f" in {args.namespace or kubectl.current_namespace()} namespace"
        print(f"No resources found{where}.", file=sys.stderr)
        return 0
    _emit({"items": rows}, args.output, lambda: render.list_table(rows, all_namespaces=args.all_namespaces))
    return 0


# -- status ----------------------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace, kubectl: Kubectl) -> int:
    obj = _get_database(kubectl, args)
    namespace = obj["metadata"]["namespace"]
    provider = _provider_of(kubectl, obj)
    name = secret_name(obj)
    try:
        secret = render.secret_view(name, _secret_data(kubectl, name, namespace), show_secrets=args.show_secrets)
    except KubectlFailed as error:
        reason = "not found" if "(NotFound)" in error.stderr else f"not readable: {error.stderr.strip()}"
        secret = {"name": name, "keys": None, "error": reason}
    try:
        events = kubectl.json(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            f"involvedObject.name={obj['metadata']['name']},involvedObject.kind=RedisDatabase",
        )["items"]
    except KubectlFailed:
        events = []
    view = render.status_view(
        obj, provider_type=_provider_type(provider), secret=secret, events=render.last_events(events, args.events)
    )
    _emit(view, args.output, lambda: render.status_text(view))
    return 0


# -- dashboard -------------------------------------------------------------------------------------------------


def cmd_dashboard(args: argparse.Namespace, kubectl: Kubectl) -> int:
    obj = _get_database(kubectl, args)
    try:
        link, source = render.dashboard_link(obj, _provider_type(_provider_of(kubectl, obj)))
    except render.LinkIsCredential as error:
        raise PluginError(f"{error}: a sign-on link is a credential; open the dashboard from the provider") from None
    if link is None:
        raise PluginError(f'no dashboard link for {RDB} "{args.name}": {source}')
    _emit({"name": args.name, "url": link, "source": source}, args.output, lambda: f"{link}\n")
    if args.open and not webbrowser.open(link):
        raise PluginError(f"could not start a web browser; open {link} yourself")
    return 0


# -- plans / regions ---------------------------------------------------------------------------------------------


def _providers(kubectl: Kubectl, args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.provider:
        return [kubectl.json("get", PROVIDERS, args.provider)]
    items: list[dict[str, Any]] = kubectl.json("get", PROVIDERS)["items"]
    return sorted(items, key=lambda item: str(item["metadata"]["name"]))


def _catalog_command(args: argparse.Namespace, kubectl: Kubectl, kind: str) -> int:
    providers = _providers(kubectl, args)
    if not providers:
        print("No resources found (no RedisProvider).", file=sys.stderr)
        return 0
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for provider in providers:
        name, provider_type = provider["metadata"]["name"], str((provider.get("spec") or {}).get("type"))
        catalog_doc = render.provider_catalog(provider)
        rows += (render.plan_rows if kind == "plans" else render.region_rows)(name, provider_type, catalog_doc)
        notes.append(f"{name} ({provider_type}): {render.catalog_note(catalog_doc)}")
    table = render.plans_table if kind == "plans" else render.regions_table
    _emit({"items": rows}, args.output, lambda: table(rows) + "\n" + "\n".join(notes) + "\n")
    return 0


def cmd_plans(args: argparse.Namespace, kubectl: Kubectl) -> int:
    return _catalog_command(args, kubectl, "plans")


def cmd_regions(args: argparse.Namespace, kubectl: Kubectl) -> int:
    return _catalog_command(args, kubectl, "regions")


# -- rotate ------------------------------------------------------------------------------------------------------


def cmd_rotate(args: argparse.Namespace, kubectl: Kubectl) -> int:
    obj = _get_database(kubectl, args)
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    status = obj.get("status") or {}
    if not status.get("databaseId"):
        raise PluginError(f'{RDB} "{name}" has no provider database yet; rotate once it is Ready')
    secret = secret_name(obj)
    try:
        before = _secret_data(kubectl, secret, namespace).get("REDIS_PASSWORD")
    except KubectlFailed:
        before = None
    rotated_before = status.get("passwordRotatedAt")
    value = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kubectl.run("annotate", RDB, name, "-n", namespace, f"{ROTATE_ANNOTATION}={value}", "--overwrite")
    if not args.wait:
        print(f"{RDB}/{name} annotated {ROTATE_ANNOTATION}={value}")
        return 0
    deadline = time.monotonic() + args.timeout
    while True:
        current = kubectl.json("get", RDB, name, "-n", namespace).get("status") or {}
        if current.get("lastHandledRotation") == value:
            if current.get("passwordRotatedAt") == rotated_before:
                raise PluginError(
                    f"the operator took the annotation without rotating ({RDB} {name} was being created); "
                    "run rotate again"
                )
            try:
                after = _secret_data(kubectl, secret, namespace).get("REDIS_PASSWORD")
            except KubectlFailed:
                after = None
            if after is not None and after != before:
                print(f"{RDB}/{name} password rotated; Secret {secret} holds the new one")
                return 0
        if time.monotonic() > deadline:
            raise PluginError(
                f"timed out after {args.timeout:g}s waiting for the operator to rotate the password of {name}; "
                f"the annotation {ROTATE_ANNOTATION}={value} stays and the operator acts on it when it can "
                f"(see `kubectl redisdb status {name} -n {namespace}`)"
            )
        time.sleep(1)


# -- connect -----------------------------------------------------------------------------------------------------


def _reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class _Terminated(Exception):
    pass


@contextmanager
def _cleanup_on_signals() -> Iterator[None]:
    """SIGTERM/SIGHUP end the session like Ctrl-C does, so the pod is removed on every way out."""

    def stop(signum: int, frame: FrameType | None) -> NoReturn:
        raise _Terminated(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_connect(args: argparse.Namespace, kubectl: Kubectl) -> int:
    obj = _get_database(kubectl, args)
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    status = obj.get("status") or {}
    host, port, tls = status.get("endpoint"), status.get("port"), bool(status.get("tls"))
    if not host or not port:
        ready = render.condition(obj, "Ready")
        raise PluginError(
            f'{RDB} "{name}" has no endpoint yet (Ready={ready.get("status", "Unknown")}: '
            f"{ready.get('reason') or 'not reconciled'}); see `kubectl redisdb status {name} -n {namespace}`"
        )
    command = shlex.split(args.command) if args.command is not None else None
    if args.command is not None and not command:
        raise PluginError("--command is empty; give a Redis command such as --command 'PING'")
    if args.cacert and not Path(args.cacert).is_file():
        raise PluginError(f"--cacert {args.cacert}: no such file")
    secret = secret_name(obj)

    if args.dry_run == "none" and args.mode != "pod":
        redis_cli = shutil.which(args.redis_cli)
        reachable = _reachable(str(host), int(port))
        if redis_cli and reachable:
            password = _secret_data(kubectl, secret, namespace).get("REDIS_PASSWORD", "")
            argv = pod.redis_cli_argv(host=str(host), port=int(port), tls=tls, cacert=args.cacert, command=command)
            env = {**os.environ, "REDISCLI_AUTH": password}
            return subprocess.run([redis_cli, *argv[1:]], env=env, check=False).returncode
        if args.mode == "local":
            why = f"{args.redis_cli} is not installed" if not redis_cli else f"{host}:{port} is not reachable from here"
            raise PluginError(f"cannot connect locally: {why}; drop --mode local to run redis-cli in a pod")
    return _connect_in_pod(
        args,
        kubectl,
        namespace=namespace,
        database=name,
        secret=secret,
        host=str(host),
        port=int(port),
        tls=tls,
        command=command,
    )


def _json_documents(text: str) -> list[Any]:
    """kubectl prints one JSON document per created object, one after another."""
    decoder, documents, index = json.JSONDecoder(), [], 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        document, index = decoder.raw_decode(text, index)
        documents.append(document)
    return documents


def _connect_in_pod(
    args: argparse.Namespace,
    kubectl: Kubectl,
    *,
    namespace: str,
    database: str,
    secret: str,
    host: str,
    port: int,
    tls: bool,
    command: list[str] | None,
) -> int:
    pod_name = pod.pod_name(database)
    config_map = f"{pod_name}-ca" if args.cacert else None
    manifests: list[dict[str, Any]] = []
    if config_map:
        ca_pem = Path(args.cacert).read_text()
        manifests.append(pod.ca_config_map(name=config_map, namespace=namespace, database=database, ca_pem=ca_pem))
    manifests.append(
        pod.connect_pod(
            name=pod_name,
            namespace=namespace,
            database=database,
            secret_name=secret,
            image=args.image,
            timeout_seconds=args.timeout,
            ca_config_map=config_map,
        )
    )
    document = manifests[0] if len(manifests) == 1 else {"apiVersion": "v1", "kind": "List", "items": manifests}
    if args.dry_run == "client":
        sys.stdout.write(render.dump(document, args.output or "yaml"))
        return 0
    if args.dry_run == "server":
        answer = kubectl.run("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(document))
        admitted = _json_documents(answer)
        result = admitted[0] if len(admitted) == 1 else {"apiVersion": "v1", "kind": "List", "items": admitted}
        sys.stdout.write(render.dump(result, args.output or "yaml"))
        return 0

    selector = f"{pod.LABEL_COMPONENT}={pod.COMPONENT},{pod.LABEL_DATABASE}={database}"
    # Sessions that ended without cleaning up (killed plugin): their pods stopped at the deadline; remove them now.
    kubectl.run(
        "delete",
        "pod",
        "-n",
        namespace,
        "-l",
        selector,
        "--field-selector=status.phase!=Running,status.phase!=Pending",
        "--ignore-not-found",
        "--wait=false",
    )
    cli = pod.redis_cli_argv(
        host=host, port=port, tls=tls, cacert=f"{pod.CA_MOUNT}/{pod.CA_KEY}" if config_map else None, command=command
    )
    attempted = False
    try:
        with _cleanup_on_signals():
            attempted = True
            kubectl.run("create", "-f", "-", input=json.dumps(document))
            print(f"pod/{pod_name} created in {namespace}; waiting for it to start", file=sys.stderr)
            kubectl.run(
                "wait", "-n", namespace, f"pod/{pod_name}", "--for=condition=Ready", f"--timeout={args.start_timeout}s"
            )
            tty = ["-it"] if command is None and sys.stdin.isatty() else ["-i"] if command is None else []
            return kubectl.interactive("exec", *tty, "-n", namespace, pod_name, "-c", "redis-cli", "--", *cli)
    except (KeyboardInterrupt, _Terminated):
        return 130
    finally:
        if attempted:  # whatever happened (a half-created List too): remove what this session made
            _delete_quietly(kubectl, "pod", pod_name, namespace)
            if config_map:
                _delete_quietly(kubectl, "configmap", config_map, namespace)


def _delete_quietly(kubectl: Kubectl, kind: str, name: str, namespace: str) -> None:
    try:
        kubectl.run("delete", kind, name, "-n", namespace, "--ignore-not-found", "--wait=false")
    except KubectlFailed as error:
        print(f"warning: could not delete {kind}/{name}: {error.stderr.strip()}", file=sys.stderr)


# -- parser ------------------------------------------------------------------------------------------------------

EXAMPLES = {
    "list": "kubectl redisdb list -A",
    "status": "kubectl redisdb status cache -n shop",
    "connect": "kubectl redisdb connect cache -n shop --command 'PING'",
    "plans": "kubectl redisdb plans --provider default",
    "regions": "kubectl redisdb regions --provider default",
    "dashboard": "kubectl redisdb dashboard cache -n shop",
    "rotate": "kubectl redisdb rotate cache -n shop",
}


def _common(output: bool = True) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--context", help="the kubeconfig context to use")
    parent.add_argument("--kubeconfig", help="path to the kubeconfig file to use")
    parent.add_argument("-n", "--namespace", help="namespace (default: the context's namespace)")
    if output:
        parent.add_argument("-o", "--output", choices=["json", "yaml"], help="print JSON or YAML instead of a table")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl redisdb",
        description="Inspect and use RedisDatabases (Upstash Redis via Fly.io or Upstash) with your kubeconfig.",
    )
    commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)

    def add(name: str, help_text: str, handler: Callable[[argparse.Namespace, Kubectl], int], **kw: Any) -> Any:
        sub = commands.add_parser(
            name,
            help=help_text,
            description=help_text,
            parents=[_common(kw.pop("output", True))],
            epilog=f"example:\n  {EXAMPLES[name]}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    sub = add("list", "List RedisDatabases: provider, regions, plan, eviction, Ready and Synced.", cmd_list)
    sub.add_argument("-A", "--all-namespaces", action="store_true", help="list across all namespaces")

    sub = add(
        "status",
        "Show one RedisDatabase: every field, conditions, its Secret's keys, dashboard, usage and cost, events.",
        cmd_status,
    )
    sub.add_argument("name", help="the RedisDatabase")
    sub.add_argument("--show-secrets", action="store_true", help="print the password and tokens instead of ****")
    sub.add_argument("--events", type=int, default=10, metavar="N", help="how many recent events to show (10)")

    sub = add(
        "connect",
        "Open redis-cli on a RedisDatabase: locally when reachable and redis-cli is installed, else in a "
        "short-lived pod in the database's namespace.",
        cmd_connect,
    )
    sub.add_argument("name", help="the RedisDatabase")
    sub.add_argument("--command", help="run one Redis command (e.g. 'PING') and exit instead of a session")
    sub.add_argument("--cacert", help="CA certificate file for a TLS endpoint signed by a private CA")
    sub.add_argument(
        "--mode",
        choices=["auto", "local", "pod"],
        default="auto",
        help="where redis-cli runs: auto (here when the endpoint is reachable and redis-cli is installed, else in "
        "a pod), local (here or fail), pod (always in a short-lived pod, as from inside the cluster; --cacert goes "
        "into it through a ConfigMap)",
    )
    sub.add_argument("--image", default=pod.DEFAULT_IMAGE, help=f"image of the pod (default {pod.DEFAULT_IMAGE})")
    sub.add_argument("--timeout", type=int, default=3600, metavar="SECONDS", help="the pod stops after this (3600)")
    sub.add_argument(
        "--start-timeout", type=int, default=120, metavar="SECONDS", help="wait this long for the pod to start (120)"
    )
    sub.add_argument(
        "--dry-run",
        choices=["none", "client", "server"],
        default="none",
        help="print the pod (client), or have the API server validate it without creating it (server)",
    )
    sub.add_argument("--redis-cli", default="redis-cli", help=argparse.SUPPRESS)

    for kind, handler in (("plans", cmd_plans), ("regions", cmd_regions)):
        text = (
            "List the plans (prices, data size, read regions) the providers publish."
            if kind == "plans"
            else "List the regions the providers publish (deprecated and excluded ones marked)."
        )
        sub = add(kind, text, handler)
        sub.add_argument("--provider", metavar="P", help="only this RedisProvider (default: all)")

    sub = add("dashboard", "Print (or --open) the provider's console link for a RedisDatabase.", cmd_dashboard)
    sub.add_argument("name", help="the RedisDatabase")
    sub.add_argument("--open", action="store_true", help="open the link in a web browser")

    sub = add(
        "rotate",
        f"Rotate the password: set {ROTATE_ANNOTATION} and wait until the Secret holds the new one.",
        cmd_rotate,
        output=False,
    )
    sub.add_argument("name", help="the RedisDatabase")
    sub.add_argument("--timeout", type=float, default=300, metavar="SECONDS", help="how long to wait (300)")
    sub.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True, help="wait for the new Secret")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not hasattr(args, "output"):
        args.output = None
    try:
        kubectl = Kubectl(context=args.context, kubeconfig=args.kubeconfig)
        handler: Callable[[argparse.Namespace, Kubectl], int] = args.handler
        return handler(args, kubectl)
    except KubectlFailed as error:
        sys.stderr.write(error.stderr if error.stderr.endswith("\n") else error.stderr + "\n")
        return error.returncode or 1
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
