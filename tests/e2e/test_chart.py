"""The Helm chart against the real apiserver: lint, server-side dry-run of every values file, install and upgrade,
and least privilege: the operator, run under the chart's ServiceAccount (TokenRequest token, never the admin
certificate), takes a database through create -> update -> rotate -> delete; without one ClusterRole rule it cannot.

There is no kubelet, so the chart's Deployment never runs a pod: the operator runs as a local process with the
same flags the Deployment passes, and the apiserver reaches its webhook on 127.0.0.1 with the certificate the
operator bootstrapped into the chart's Secret and the chart's ValidatingWebhookConfiguration.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.cluster import (
    PROCESS_RUNNERS,
    Cluster,
    KubectlError,
    apply,
    get_json,
    helm,
    kubectl,
    service_account_kubeconfig,
    wait_for,
)
from tests.harness.local_provider import FLY_ORG, FLY_TOKEN, UPSTASH_API_KEY, UPSTASH_EMAIL, LocalProvider
from tests.harness.operator import REPO, OperatorProcess, secret_data, start_operator, wait_gone, wait_ready

CHART = REPO / "charts" / "redisdb-operator"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
PLATFORM_VALUES = CHART / "ci" / "platform-values.yaml"
RELEASE = "rdbop"
FULLNAME = "rdbop-redisdb-operator"
# How a refused request shows in the operator log (kopf's APIForbiddenError, our KubeError), not a timestamp's ",403".
FORBIDDEN = re.compile(r"Forbidden|forbidden|API 403|status=403")
# Not RBAC: the apiserver refuses new objects (kopf's Events) in a namespace that another test is deleting.
NOT_RBAC = "because it is being terminated"


def rbac_denials(log: str) -> list[str]:
    return [line for line in log.splitlines() if FORBIDDEN.search(line) and NOT_RBAC not in line]


CERT_MANAGER_STUB_CRDS = [
    ("certificates", "Certificate", "Namespaced"),
    ("issuers", "Issuer", "Namespaced"),
    ("clusterissuers", "ClusterIssuer", "Cluster"),
]
# prometheus-operator's kinds the chart can render (ServiceMonitor, PrometheusRule), stubbed the same way.
MONITORING_STUB_CRDS = [
    ("servicemonitors", "ServiceMonitor", "Namespaced"),
    ("prometheusrules", "PrometheusRule", "Namespaced"),
]


def server_version() -> str:
    version = json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    return str(version)


def render(namespace: str, *values_args: str, release: str = RELEASE) -> str:
    args = ["template", release, str(CHART), "--namespace", namespace, "--kube-version", server_version()]
    return helm(*args, *values_args).stdout


def documents(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


@pytest.fixture(scope="module")
def release_namespace(cluster: Cluster) -> Iterator[str]:
    name = f"redisdb-chart-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    yield name
    helm("uninstall", RELEASE, "--namespace", name, "--wait=false", check=False)
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="module")
def cert_manager_crds(cluster: Cluster) -> None:
    """cert-manager (and prometheus-operator) are not installed here: stand-in CRDs (any spec) let the apiserver
    accept their kinds in a dry run."""
    stubs = []
    kinds = [("cert-manager.io", *crd) for crd in CERT_MANAGER_STUB_CRDS]
    kinds += [("monitoring.coreos.com", *crd) for crd in MONITORING_STUB_CRDS]
    for group, plural, kind, scope in kinds:
        stubs.append(
            {
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.{group}"},
                "spec": {
                    "group": group,
                    "names": {"plural": plural, "kind": kind},
                    "scope": scope,
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {
                                "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                            },
                        }
                    ],
                },
            }
        )
    apply(stubs)
    names = [f"{plural}.{group}" for group, plural, _, _ in kinds]
    cluster.kubectl("wait", "--for=condition=Established", "crd", *names)


# -- static checks --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=["default", *(p.name for p in CI_VALUES)])
def test_helm_lint_strict(cluster: Cluster, values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART), "--kube-version", server_version()]
    if values:
        args += ["-f", str(values)]
    result = helm(*args)
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


def test_helm_lint_strict_as_a_subchart(cluster: Cluster) -> None:
    """`global` is what a parent chart passes down; the schema must accept it (it forbade it before)."""
    args = ["lint", "--strict", str(CHART), "--kube-version", server_version()]
    result = helm(*args, "--set", "global.imageRegistry=registry.example.com", "--set", "global.labels.team=a")
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout
    # Unknown keys are still refused, with the key named.
    refused = helm(*args, "--set", "operater.verbose=true", check=False)
    assert refused.returncode != 0 and "operater" in refused.stdout + refused.stderr


def by_kind(rendered: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents(rendered) if doc["kind"] == kind]


def test_pod_options_render_from_values(cluster: Cluster) -> None:
    """Defaults stay restricted; a platform's values (OpenShift SCC, proxy, JSON logs, scheduling, registry) land."""
    default = by_kind(render("redisdb-system"), "Deployment")[0]["spec"]["template"]["spec"]
    assert default["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = default["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert "--log-format=text" in container["args"]
    assert [item["name"] for item in container["env"]] == ["POD_NAME", "POD_NAMESPACE"]  # no extraEnv by default
    assert {"--usage-interval=3600", "--usage-calls-per-minute=60"} <= set(container["args"])  # hourly, capped
    assert not by_kind(render("redisdb-system"), "NetworkPolicy")
    assert not by_kind(render("redisdb-system"), "PrometheusRule")

    pod = by_kind(render("redisdb-system", "-f", str(PLATFORM_VALUES)), "Deployment")[0]["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    container = pod["containers"][0]
    assert container["env"][2] == {"name": "HTTPS_PROXY", "value": "http://proxy.example.com:3128"}
    assert container["args"][-2:] == ["--log-format=json", "--max-concurrent-reconciles=8"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod["affinity"]
    override = render("redisdb-system", "--set", "securityContext.readOnlyRootFilesystem=false")
    container = by_kind(override, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}, "a single override keeps the rest"


def test_network_policy_renders_from_values(cluster: Cluster) -> None:
    """A policy cannot name hosts: the API server and provider egress are exactly the CIDRs and ports given."""
    (policy,) = by_kind(render("redisdb-system", "-f", str(PLATFORM_VALUES)), "NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == RELEASE
    dns, api_server, providers = spec["egress"]
    assert dns == {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
    assert api_server == {
        "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}, {"ipBlock": {"cidr": "192.168.10.0/24"}}],
        "ports": [{"protocol": "TCP", "port": 6443}],
    }
    assert providers == {"to": [{"ipBlock": {"cidr": "10.20.30.40/32"}}], "ports": [{"protocol": "TCP", "port": 3128}]}
    (ingress,) = spec["ingress"]
    assert [p["port"] for p in ingress["ports"]] == [9443, 8080, 9090]  # webhook, health, metrics
    assert ingress["from"] == [{"ipBlock": {"cidr": "10.0.0.0/8"}}]

    defaults = render(
        "redisdb-system", "--set", "networkPolicy.enabled=true", "--set", "networkPolicy.apiServer.cidrs={10.96.0.1/32}"
    )
    (policy,) = by_kind(defaults, "NetworkPolicy")
    _, api_server, providers = policy["spec"]["egress"]
    assert [p["port"] for p in api_server["ports"]] == [443, 6443]
    assert providers == {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]}
    assert "from" not in policy["spec"]["ingress"][0]
    extra = '[{"to": [{"ipBlock": {"cidr": "10.5.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 8443}]}]'
    with_extra = render(
        "redisdb-system",
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "networkPolicy.apiServer.cidrs={10.96.0.1/32}",
        "--set",
        "networkPolicy.dns=false",
        "--set-json",
        f"networkPolicy.extraEgress={extra}",
    )
    egress = by_kind(with_extra, "NetworkPolicy")[0]["spec"]["egress"]
    assert len(egress) == 3 and egress[-1]["ports"] == [{"protocol": "TCP", "port": 8443}]
    assert all(rule.get("to") for rule in egress), "no DNS rule when networkPolicy.dns is false"

    missing = helm(
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "networkPolicy.enabled=true",
        "--kube-version",
        server_version(),
        check=False,
    )
    assert missing.returncode != 0 and "networkPolicy.apiServer.cidrs is required" in missing.stderr
    bad_cidr = helm(
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "networkPolicy.apiServer.cidrs={api.example.com}",
        check=False,
    )
    assert bad_cidr.returncode != 0 and "cidrs" in bad_cidr.stderr


def promtool() -> Path:
    path = Path(
        subprocess.run(
            ["bash", str(REPO / "hack" / "build-promtool.sh"), "--print-path"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    assert path.is_file(), f"{path} is missing: run `make tools` (hack/build-promtool.sh builds it)"
    return path


README_ALERT = re.compile(r"`((?:sum|increase|rate)\b[^`]*\s[<>]=?\s[^`]+)`")


def test_prometheus_rule_is_the_readme_alerts_and_passes_promtool(cluster: Cluster, tmp_path: Path) -> None:
    (rule,) = by_kind(render("redisdb-system", "-f", str(PLATFORM_VALUES)), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = [item for group in rule["spec"]["groups"] for item in group["rules"]]
    assert all(item["labels"]["team"] == "platform" for item in rules)
    expressions = {item["expr"] for item in rules}
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("What to alert on") :]
    section = section[: section.index("\n## ")]
    documented = set(README_ALERT.findall(section))
    assert len(documented) >= 4, documented
    assert documented == expressions, "the PrometheusRule and the README's alerts must be the same expressions"

    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    checked = subprocess.run([str(promtool()), "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout, checked.stdout

    # promtool does refuse a broken expression (so the check above means something).
    broken = {"groups": [{"name": "x", "rules": [{**rules[0], "expr": rules[0]["expr"].replace(")", "", 1)}]}]}
    rules_file.write_text(yaml.safe_dump(broken))
    refused = subprocess.run([str(promtool()), "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert refused.returncode != 0
    without_metrics = helm(
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "prometheusRule.enabled=true",
        "--kube-version",
        server_version(),
        check=False,
    )
    assert without_metrics.returncode != 0 and "needs metrics.enabled" in without_metrics.stderr


def test_chart_providers_and_their_secrets_survive_uninstall(cluster: Cluster) -> None:
    """helm.sh/resource-policy: keep on chart-made RedisProviders and credentials Secrets (databases may still
    need them to be deleted); existingSecret is not the chart's, so nothing is rendered for it."""
    rendered = render("redisdb-system", "-f", str(CHART / "ci" / "providers-values.yaml"))
    providers = by_kind(rendered, "RedisProvider")
    credentials = [doc for doc in by_kind(rendered, "Secret") if doc["metadata"]["name"].endswith("-credentials")]
    assert [p["metadata"]["name"] for p in providers] == ["ci-fly", "ci-upstash"]
    assert len(credentials) == 1
    for doc in [*providers, *credentials]:
        assert doc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep", doc["metadata"]["name"]


def test_chart_crds_are_the_generated_ones(cluster: Cluster) -> None:
    """files/crds is a copy of crds/ (generated from models.py); the rendered CRDs carry the same spec."""
    for generated in sorted((REPO / "crds").glob("*.yaml")):
        copy = CHART / "files" / "crds" / generated.name
        assert copy.read_text() == generated.read_text(), f"run: cp crds/{generated.name} {copy.relative_to(REPO)}"
    rendered = {doc["metadata"]["name"]: doc for doc in documents(render("redisdb-system"))}
    for generated in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(generated.read_text())
        assert rendered[crd["metadata"]["name"]]["spec"] == crd["spec"]
        assert rendered[crd["metadata"]["name"]]["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_kubectl_explain_and_get_show_the_new_crd_ux(cluster: Cluster, providers: None) -> None:
    """Through the real apiserver: `kubectl explain` prints the status and condition descriptions (RedisProvider's
    its own), `kubectl get rdbp` works by short name with TYPE, READY, DATABASES, AGE, `get rdb` has SYNCED and
    EVICTION."""
    reason = kubectl("explain", "redisdatabases.status.conditions.reason").stdout
    assert "ReconcileSuccess" in reason and "Unauthorized" in reason
    assert "READY can stay True" in kubectl("explain", "redisdatabases.status.conditions").stdout
    assert "observedGeneration" in kubectl("explain", "rdb.status").stdout
    provider_reason = kubectl("explain", "redisproviders.status.conditions.reason").stdout
    assert "CredentialsAccepted" in provider_reason and "ReconcileSuccess" not in provider_reason
    header = kubectl("get", "rdbp").stdout.splitlines()[0].split()
    assert header == ["NAME", "TYPE", "READY", "DATABASES", "AGE"]
    header = kubectl("get", "rdb", "-A").stdout.splitlines()
    assert not header or header[0].split()[:4] == ["NAMESPACE", "NAME", "READY", "SYNCED"]


def test_rbac_has_no_wildcards_and_no_secret_listing(cluster: Cluster) -> None:
    for values in [None, *CI_VALUES]:
        extra = ["-f", str(values)] if values else []
        for doc in documents(render("redisdb-system", *extra)):
            if doc["kind"] not in ("ClusterRole", "Role"):
                continue
            for rule in doc["rules"]:
                for key in ("apiGroups", "resources", "verbs"):
                    assert "*" not in rule.get(key, []), (values, rule)
                assert all("/" not in group for group in rule["apiGroups"]), "apiGroups are group names, no versions"
                if "secrets" in rule["resources"]:
                    assert not {"list", "watch", "delete"} & set(rule["verbs"]), rule


def test_no_per_render_randomness(cluster: Cluster) -> None:
    """Two renders are identical: no genCA / randAlphaNum, so GitOps never sees churn from the chart itself."""
    args = ["-f", str(CHART / "ci" / "providers-values.yaml")]
    assert render("redisdb-system", *args) == render("redisdb-system", *args)


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=["default", *(p.name for p in CI_VALUES)])
def test_template_passes_server_side_dry_run(
    cluster: Cluster, crds: None, cert_manager_crds: None, release_namespace: str, values: Path | None
) -> None:
    extra = ["-f", str(values)] if values else []
    rendered = render(release_namespace, *extra, release=f"dry{secrets.token_hex(2)}")
    result = kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
    kinds = {doc["kind"] for doc in documents(rendered)}
    assert {"Deployment", "ServiceAccount", "ValidatingWebhookConfiguration", "Service"} <= kinds
    assert "dry run" in result.stdout


# -- install, upgrade, least privilege -----------------------------------------------------------------------


def provider_values(local_provider: LocalProvider) -> dict[str, Any]:
    return {
        "providers": [
            {
                "name": "chart-fly",
                "type": "fly",
                "url": local_provider.url,
                "organization": FLY_ORG,
                "credentials": {"token": FLY_TOKEN},
            },
            {
                "name": "chart-upstash",
                "type": "upstash",
                "url": local_provider.upstash_url,
                "credentials": {"email": UPSTASH_EMAIL, "apiKey": UPSTASH_API_KEY},
            },
        ],
        # CRDs come from the session's `crds` fixture (crds/ applied server-side); the chart's own copy is
        # proven by the dry runs above.
        "crds": {"install": False},
        # There is no Service routing here; the test points the webhook at the local process below.
        "webhook": {"timeoutSeconds": 5},
    }


@pytest.fixture(scope="module")
def installed(
    cluster: Cluster, crds: None, local_provider: LocalProvider, release_namespace: str, tmp_path_factory: Any
) -> Path:
    values = tmp_path_factory.mktemp("chart") / "values.yaml"
    values.write_text(yaml.safe_dump(provider_values(local_provider)))
    result = helm("install", RELEASE, str(CHART), "--namespace", release_namespace, "-f", str(values))
    assert "STATUS: deployed" in result.stdout
    return values


def test_install_then_upgrade(cluster: Cluster, installed: Path, release_namespace: str) -> None:
    deployment = get_json("deployment", FULLNAME, release_namespace)
    assert deployment is not None
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["replicas"] == 2
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"--leader-election", f"--leader-election-namespace={release_namespace}"} <= set(container["args"])
    assert get_json("poddisruptionbudget", FULLNAME, release_namespace) is not None
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "--resync-interval=300" in container["args"]
    for kind, name in [("redisprovider", "chart-fly"), ("redisprovider", "chart-upstash")]:
        assert get_json(kind, name) is not None

    revision_before = helm_revision(release_namespace)
    try:
        result = helm(
            "upgrade",
            RELEASE,
            str(CHART),
            "--namespace",
            release_namespace,
            "-f",
            str(installed),
            "--set",
            "operator.resyncInterval=60",
        )
        assert "STATUS: deployed" in result.stdout and f"REVISION: {revision_before + 1}" in result.stdout
        deployment = get_json("deployment", FULLNAME, release_namespace)
        assert deployment is not None
        assert "--resync-interval=60" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        history = json.loads(helm("history", RELEASE, "--namespace", release_namespace, "-o", "json").stdout)
        assert [entry["status"] for entry in history][-2:] == ["superseded", "deployed"]
        assert history[-1]["revision"] == revision_before + 1
    finally:
        # back to the installed values, whatever failed above: later tests read the Deployment's flags
        helm("upgrade", RELEASE, str(CHART), "--namespace", release_namespace, "-f", str(installed))


def helm_revision(release_namespace: str) -> int:
    """The release's current revision (tests assert on the revisions they add, not on absolute numbers)."""
    history = json.loads(helm("history", RELEASE, "--namespace", release_namespace, "-o", "json").stdout)
    return int(history[-1]["revision"])


def test_namespace_edit_users_manage_redisdatabases(cluster: Cluster, installed: Path, namespace: str) -> None:
    """The chart's ClusterRoles join the built-in `edit` and `view` (aggregation): a user with a RoleBinding to
    `edit` in one namespace creates, changes and deletes RedisDatabases there (impersonated, the real RBAC
    authorizer), reads but never writes RedisProviders; a `view` user only reads."""
    for user, role in (("alice", "edit"), ("bob", "view")):
        kubectl("create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}", f"--user={user}", "-n", namespace)

    def can(user: str, verb: str, resource: str, *scope: str) -> bool:
        answer = kubectl("auth", "can-i", verb, resource, f"--as={user}", *scope, check=False).stdout.strip()
        return answer == "yes"

    # The clusterrole-aggregation controller copies the rules into `edit` asynchronously.
    wait_for(lambda: can("alice", "create", "redisdatabases.redisdb.dev", "-n", namespace), 60, message="edit")
    assert not can("alice", "create", "redisdatabases.redisdb.dev", "-n", "default"), "only where bound"
    assert not can("alice", "create", "redisproviders.redisdb.dev"), "providers bill an account: admins only"
    assert not can("alice", "update", "redisdatabases.redisdb.dev", "--subresource=status", "-n", namespace)
    assert can("bob", "list", "redisdatabases.redisdb.dev", "-n", namespace)
    assert not can("bob", "create", "redisdatabases.redisdb.dev", "-n", namespace)

    manifest = database("team-cache")
    created = kubectl("apply", "--as=alice", "-n", namespace, "-f", "-", "-o", "json", input=yaml.safe_dump(manifest))
    assert json.loads(created.stdout)["metadata"]["name"] == "team-cache"
    kubectl("label", "redisdatabase", "team-cache", "-n", namespace, "--as=alice", "team=shop")
    listed = kubectl("get", "redisdatabases", "-n", namespace, "--as=bob", "-o", "name")
    assert listed.stdout.strip() == "redisdatabase.redisdb.dev/team-cache"
    with pytest.raises(KubectlError, match="forbidden"):
        kubectl("delete", "redisdatabase", "team-cache", "-n", namespace, "--as=bob")
    with pytest.raises(KubectlError, match="forbidden"):
        kubectl("apply", "--as=bob", "-n", namespace, "-f", "-", input=yaml.safe_dump(database("bobs-cache")))
    kubectl("delete", "redisdatabase", "team-cache", "-n", namespace, "--as=alice", "--wait=false")


def deployment_args(release_namespace: str) -> list[str]:
    deployment = get_json("deployment", FULLNAME, release_namespace)
    assert deployment is not None
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def start_as_chart_service_account(
    cluster: Cluster, release_namespace: str, workdir: Path, kubeconfig: Path
) -> OperatorProcess:
    """The operator with the Deployment's webhook flags, except that it listens on 127.0.0.1 and a local cert dir."""
    args = deployment_args(release_namespace)
    bootstrap_flags = [arg for arg in args if arg.split("=")[0] in ("--webhook-cert-secret", "--webhook-service")]
    bootstrap_flags += [arg for arg in args if arg.startswith("--webhook-configuration=")]
    assert len(bootstrap_flags) == 3, args
    bootstrap_flags += [arg for arg in args if arg.split("=")[0].startswith("--leader-election")]
    # port 0: the operator binds a port the OS picks and holds it; operator.ports()["webhook"] reads it back
    operator = start_operator(
        cluster,
        workdir,
        resync_interval=300.0,  # the chart's default: rotation below must not wait for a resync
        webhook=False,
        kubeconfig=kubeconfig,
        extra_args=[
            "--webhook-listen=127.0.0.1:0",
            f"--webhook-cert-dir={workdir / 'webhook-certs'}",
            *bootstrap_flags,
        ],
    )
    return operator


def test_two_replicas_under_the_chart_service_account_elect_one_leader(
    cluster: Cluster,
    installed: Path,
    release_namespace: str,
    namespace: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """The chart's Role is enough for the Lease: one of two processes leads, the other waits; both stay healthy."""
    sa_kubeconfig = service_account_kubeconfig(cluster, release_namespace, FULLNAME, tmp_path / "sa.kubeconfig")
    first = start_as_chart_service_account(cluster, release_namespace, tmp_path / "a", sa_kubeconfig)
    request.node.stash[PROCESS_RUNNERS] = first.runner
    second = start_as_chart_service_account(cluster, release_namespace, tmp_path / "b", sa_kubeconfig)
    try:
        lease = f"{FULLNAME}-leader"

        def holder() -> str:
            spec = (get_json("lease", lease, release_namespace) or {}).get("spec") or {}
            return str(spec.get("holderIdentity") or "")

        leader = wait_for(holder, 60, message=f"Lease {release_namespace}/{lease} held")
        pids = {first.process.popen.pid: first, second.process.popen.pid: second}
        leading = [operator for pid, operator in pids.items() if leader.endswith(f"-{pid}")]
        assert len(leading) == 1, (leader, list(pids))
        standby = second if leading[0] is first else first
        assert "acquired the leader Lease" in leading[0].log()
        assert "acquired the leader Lease" not in standby.log()
        assert standby.process.alive and leading[0].process.alive
        route_webhook_to(standby.ports()["webhook"])  # the standby serves admission too
        with pytest.raises(KubectlError, match="no-such-provider"):
            apply(database("bad", providerRef={"name": "no-such-provider"}), namespace)
        apply(database("elected"), namespace)
        wait_ready("elected", namespace)
        kubectl("delete", "redisdatabase", "elected", "-n", namespace, "--timeout=60s")
    finally:
        route_webhook_to(None, release_namespace)
        second.runner.stop_all()
        first.runner.stop_all()
    for operator in (first, second):
        assert rbac_denials(operator.log()) == [], operator.log()[-3000:]


def route_webhook_to(port: int | None, release_namespace: str = "") -> None:
    """What a Service would do in a real cluster: send the chart's webhook to the operator (on 127.0.0.1);
    port None puts the chart's `service:` reference back (helm's 3-way merge would not remove a `url`)."""
    configuration = get_json("validatingwebhookconfiguration", FULLNAME)
    assert configuration is not None
    client_config: dict[str, Any] = {"caBundle": configuration["webhooks"][0]["clientConfig"]["caBundle"]}
    if port is None:
        client_config["service"] = {
            "name": f"{FULLNAME}-webhook",
            "namespace": release_namespace,
            "path": "/validate-redisdatabase",
            "port": 443,
        }
    else:
        client_config["url"] = f"https://127.0.0.1:{port}/validate-redisdatabase"
    patch = [
        {"op": "replace", "path": "/webhooks/0/clientConfig", "value": client_config},
        {"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore" if port is None else "Fail"},
    ]
    kubectl("patch", "validatingwebhookconfiguration", FULLNAME, "--type=json", "-p", json.dumps(patch))


def database(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "redisdb.dev/v1alpha1",
        "kind": "RedisDatabase",
        "metadata": {"name": name},
        "spec": {"providerRef": {"name": "chart-fly"}, "primaryRegion": "cdg", **spec},
    }


def test_least_privilege_lifecycle(
    cluster: Cluster,
    installed: Path,
    release_namespace: str,
    local_provider: LocalProvider,
    namespace: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    service_account = FULLNAME
    sa_kubeconfig = service_account_kubeconfig(cluster, release_namespace, service_account, tmp_path / "sa.kubeconfig")
    who = f"system:serviceaccount:{release_namespace}:{service_account}"
    for verb, resource in [("list", "secrets"), ("delete", "secrets"), ("watch", "secrets"), ("update", "pods")]:
        allowed = kubectl("auth", "can-i", verb, resource, "--all-namespaces", f"--as={who}", check=False)
        assert allowed.stdout.strip() == "no", (verb, resource)
    other = kubectl("auth", "can-i", "update", "validatingwebhookconfigurations/other", f"--as={who}", check=False)
    assert other.stdout.strip() == "no"

    operator = start_as_chart_service_account(cluster, release_namespace, tmp_path / "op", sa_kubeconfig)
    request.node.stash[PROCESS_RUNNERS] = operator.runner
    try:
        # The bootstrap: one Secret holds the CA and serving cert; the chart's configuration trusts that CA.
        cert = secret_data(f"{FULLNAME}-webhook-cert", release_namespace)
        configuration = get_json("validatingwebhookconfiguration", FULLNAME)
        assert configuration is not None
        assert base64.b64decode(configuration["webhooks"][0]["clientConfig"]["caBundle"]).decode() == cert["ca.crt"]
        port = operator.ports()["webhook"]
        context = ssl.create_default_context(cadata=cert["ca.crt"])
        service_host = f"{FULLNAME}-webhook.{release_namespace}.svc"
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=service_host) as tls,
        ):
            assert tls.version()
        route_webhook_to(port)

        # The webhook answers through the apiserver with the bootstrapped certificate (failurePolicy Fail above).
        with pytest.raises(KubectlError, match="no-such-provider"):
            apply(database("bad", providerRef={"name": "no-such-provider"}), namespace)

        # create
        apply(database("cache", readRegions=["ams"]), namespace)
        obj = wait_ready("cache", namespace)
        database_id = obj["status"]["databaseId"]
        password = secret_data("cache-redis", namespace)["REDIS_PASSWORD"]
        # update
        apply(database("cache", readRegions=["ams", "fra"]), namespace)
        obj = wait_ready("cache", namespace, generation=2)
        assert obj["status"]["readRegions"] == ["ams", "fra"]
        assert sorted(local_provider.admin.database(database_id)["read_regions"]) == ["ams", "fra"]
        # rotate
        kubectl("annotate", "redisdatabase", "cache", "-n", namespace, "redisdb.dev/rotate-password=first")

        def rotated() -> bool:
            status = (get_json("redisdatabase", "cache", namespace) or {}).get("status") or {}
            return status.get("lastHandledRotation") == "first" and bool(status.get("passwordRotatedAt"))

        wait_for(rotated, 60, message="password rotation handled at once, not at the next resync (300 s)")
        wait_for(lambda: secret_data("cache-redis", namespace)["REDIS_PASSWORD"] != password, 30, message="new pwd")
        # delete
        kubectl("delete", "redisdatabase", "cache", "-n", namespace, "--timeout=60s")
        wait_gone("redisdatabase", "cache", namespace)
        assert database_id not in {item["id"] for item in local_provider.admin.databases()}
    finally:
        operator.runner.stop_all()
        route_webhook_to(None, release_namespace)  # failurePolicy Fail at a stopped process would refuse everything
    assert rbac_denials(operator.log()) == [], operator.log()[-3000:]


def test_a_missing_rule_breaks_it(
    cluster: Cluster,
    installed: Path,
    release_namespace: str,
    namespace: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Without `redisdatabases/status: patch` the operator cannot report Ready; with the rule back it does."""
    role = get_json("clusterrole", FULLNAME)
    assert role is not None
    original = [dict(rule) for rule in role["rules"]]
    role["rules"] = [rule for rule in original if rule["resources"] != ["redisdatabases/status"]]
    assert len(role["rules"]) == len(original) - 1
    kubectl("replace", "-f", "-", input=json.dumps(role))

    sa_kubeconfig = service_account_kubeconfig(cluster, release_namespace, FULLNAME, tmp_path / "sa.kubeconfig")
    operator = start_as_chart_service_account(cluster, release_namespace, tmp_path / "op", sa_kubeconfig)
    request.node.stash[PROCESS_RUNNERS] = operator.runner
    try:
        route_webhook_to(operator.ports()["webhook"])
        apply(database("broken"), namespace)
        wait_for(lambda: rbac_denials(operator.log()), 60, message="a 403 in the operator log")
        with pytest.raises(AssertionError, match="timed out"):
            wait_ready("broken", namespace, timeout=15)

        route_webhook_to(None, release_namespace)
        helm(
            "upgrade",
            RELEASE,
            str(CHART),
            "--namespace",
            release_namespace,
            "-f",
            str(installed),
        )
        restored = get_json("clusterrole", FULLNAME)
        assert restored is not None and len(restored["rules"]) == len(original)
        wait_ready("broken", namespace, timeout=120)
        kubectl("delete", "redisdatabase", "broken", "-n", namespace, "--timeout=60s")
    finally:
        operator.runner.stop_all()
        route_webhook_to(None, release_namespace)
        current = get_json("clusterrole", FULLNAME)
        if current is not None and current["rules"] != original:
            current["rules"] = original  # the upgrade above did not run: put the rule back for later tests
            kubectl("replace", "-f", "-", input=json.dumps(current))


def _leaf_keys(values: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in ("resources", "podSecurityContext", "securityContext"):
            keys |= _leaf_keys(value, f"{path}.")
        else:
            keys.add(path)
    return keys


def test_every_value_is_in_the_schema_and_the_readme() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text()
    for key in sorted(_leaf_keys(values)):
        node = schema
        for part in key.split("."):
            node = node["properties"][part]
        assert f"`{key}`" in readme, f"{key} is missing from the chart README's values table"


def test_namespaced_mode_under_its_own_rbac(
    cluster: Cluster,
    crds: None,
    providers: None,
    local_provider: LocalProvider,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """A second release watching one namespace, its operator run under that release's own ServiceAccount with the
    Deployment's flags: a database in the watched namespace becomes Ready; one in another namespace is never
    touched (no finalizer, no status), and no request of the operator is refused."""
    suffix = secrets.token_hex(3)
    release, release_namespace = f"ns{suffix}", f"redisdb-ns-{suffix}"
    watched, other = f"team-a-{suffix}", f"team-b-{suffix}"
    for name in (release_namespace, watched, other):
        cluster.kubectl("create", "namespace", name)
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "crds": {"install": False},
                "operator": {"watchNamespaces": [watched], "resyncInterval": 300},
                "webhook": {"timeoutSeconds": 5},
            }
        )
    )
    operator: OperatorProcess | None = None
    try:
        helm("install", release, str(CHART), "--namespace", release_namespace, "-f", str(values))
        fullname = f"{release}-redisdb-operator"
        deployment = get_json("deployment", fullname, release_namespace)
        assert deployment is not None
        args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--namespace={watched}" in args
        kept = [arg for arg in args if arg.startswith(("--namespace=", "--resync-interval="))]
        sa_kubeconfig = service_account_kubeconfig(cluster, release_namespace, fullname, tmp_path / "sa.kubeconfig")
        operator = start_operator(cluster, tmp_path / "op", webhook=False, kubeconfig=sa_kubeconfig, extra_args=kept)
        request.node.stash[PROCESS_RUNNERS] = operator.runner
        manifest = database("cache", providerRef={"name": "local-fly"})  # the session's, not this module's
        apply(manifest, watched)
        apply(manifest, other)
        obj = wait_ready("cache", watched, timeout=120)
        assert obj["status"]["databaseId"]
        untouched = get_json("redisdatabase", "cache", other)
        assert untouched is not None and not untouched.get("status") and not untouched["metadata"].get("finalizers")
        assert not [d for d in local_provider.admin.databases() if d["name"] == f"{other}-cache"]
        kubectl("delete", "redisdatabase", "cache", "-n", watched, "--timeout=60s")
        wait_gone("redisdatabase", "cache", watched)
        assert rbac_denials(operator.log()) == [], operator.log()[-3000:]
    finally:
        if operator is not None:
            operator.runner.stop_all()
        kubectl("delete", "redisdatabase", "cache", "-n", other, "--ignore-not-found", "--wait=false", check=False)
        helm("uninstall", release, "--namespace", release_namespace, "--wait=false", check=False)
        for name in (release_namespace, watched, other):
            cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
