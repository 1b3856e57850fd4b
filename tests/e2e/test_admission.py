"""Admission end to end, through the real kubectl: every manifest of tests/data/invalid is refused with its own
message, nothing reaches the provider, the CRD's CEL rules hold immutability with the webhook stopped, valid
edits pass, and server-side dry runs are checked but create nothing.

Each corpus file carries its expectations in a comment header:

    # <why it is invalid>
    # layer: cel | webhook         (who refuses it: the CRD schema/CEL, or the validating webhook)
    # operation: create | update   (update: it changes an object of _existing.yaml, which is applied first)
    # expect: <fragment>           (one or more; each must appear in kubectl's error)
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.harness.cluster import Cluster, get_json, kubectl, wait_for
from tests.harness.local_provider import LocalProvider
from tests.harness.operator import WEBHOOK_CONFIGURATION, OperatorProcess, start_operator, wait_gone, wait_ready

CORPUS = Path(__file__).resolve().parents[1] / "data" / "invalid"
# Provider calls that change something; reads (get/list, GraphQL queries) may come from resyncs of other objects.
WRITE_CALLS = {
    "upstash:create",
    "upstash:delete",
    "upstash:update-regions",
    "upstash:enable-eviction",
    "upstash:disable-eviction",
    "upstash:change-plan",
    "upstash:reset-password",
    "fly:createAddOn",
    "fly:updateAddOn",
    "fly:deleteAddOn",
    "fly:resetAddOnPassword",
}


@dataclass(frozen=True)
class Case:
    path: Path
    layer: str
    operation: str
    expect: tuple[str, ...]

    @property
    def text(self) -> str:
        return self.path.read_text()

    @property
    def name(self) -> str:
        return str(yaml.safe_load(self.text)["metadata"]["name"])


def load_case(path: Path) -> Case:
    header: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line.lstrip("# ").partition(": ")
        header.setdefault(key, []).append(value)
    return Case(path, header["layer"][0], header["operation"][0], tuple(header["expect"]))


CASES = [load_case(path) for path in sorted(CORPUS.glob("[0-9]*.yaml"))]
CEL_CASES = [case for case in CASES if case.layer == "cel"]
IMMUTABILITY_CASES = [case for case in CEL_CASES if case.operation == "update"]


def server_side_apply(text: str, namespace: str, *extra: str) -> tuple[int, str]:
    result = kubectl(
        "apply", "--server-side", "--field-manager=gitops", "-n", namespace, "-f", "-", *extra, input=text, check=False
    )
    return result.returncode, result.stdout + result.stderr


def assert_rejected(case: Case, namespace: str, *extra: str) -> str:
    code, output = server_side_apply(case.text, namespace, *extra)
    assert code != 0, f"{case.path.name} was admitted:\n{output}"
    missing = [fragment for fragment in case.expect if fragment not in output]
    assert not missing, f"{case.path.name}: {missing} not in kubectl's answer:\n{output}"
    return output


def write_calls(local_provider: LocalProvider) -> dict[str, int]:
    return {call: count for call, count in local_provider.admin.counters().items() if call in WRITE_CALLS and count}


def writes_once_the_operator_caught_up(local_provider: LocalProvider, namespace: str) -> dict[str, int]:
    """The provider's write calls since the last reset, other than a sentinel's: a valid RedisDatabase applied now
    and waited Ready (the operator has handled the watch stream past everything applied before it, so anything it
    was wrongly handed has reached the provider), then deleted and waited gone; its own create and delete are
    taken out, and the counters start again from zero."""
    name = f"sentinel-{secrets.token_hex(3)}"
    sentinel = {
        "apiVersion": "redisdb.dev/v1alpha1",
        "kind": "RedisDatabase",
        "metadata": {"name": name},
        "spec": {"providerRef": {"name": "local-upstash"}, "primaryRegion": "us-east-1"},
    }
    code, output = server_side_apply(yaml.safe_dump(sentinel), namespace)
    assert code == 0, output
    wait_ready(name, namespace, timeout=120)
    kubectl("delete", "redisdatabase", name, "-n", namespace, "--wait=false")
    wait_gone("redisdatabase", name, namespace, timeout=120)
    counted = write_calls(local_provider)
    for own in ("upstash:create", "upstash:delete"):
        assert counted.get(own, 0) >= 1, (own, counted)
        counted[own] -= 1
    local_provider.admin.reset_counters()
    return {call: count for call, count in counted.items() if count}


@pytest.fixture(scope="module")
def operator(cluster: Cluster, providers: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """Our own operator, so the module can stop its webhook; Ignore is the default, stated here to be explicit."""
    running = start_operator(
        cluster, tmp_path_factory.mktemp("admission-operator"), extra_args=["--webhook-failure-policy", "Ignore"]
    )
    try:
        yield running
    finally:
        running.runner.stop_all()


@pytest.fixture(scope="module")
def corpus_namespace(cluster: Cluster, operator: OperatorProcess, local_provider: LocalProvider) -> Iterator[str]:
    """A namespace holding the Ready objects of _existing.yaml; the provider's counters are reset afterwards."""
    name = f"adm-corpus-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    # the same field manager as the update cases, so they change its fields instead of conflicting with another's
    code, output = server_side_apply((CORPUS / "_existing.yaml").read_text(), name)
    assert code == 0, output
    for obj in yaml.safe_load_all((CORPUS / "_existing.yaml").read_text()):
        wait_ready(obj["metadata"]["name"], name, timeout=120)
    # Earlier suites delete their namespaces without waiting; this operator finishes those deletions. Let it,
    # so that the provider calls counted below are the corpus's alone.
    wait_for(lambda: _others_gone(name), 180, 0.5, message="RedisDatabases of earlier suites deleted")
    local_provider.admin.reset_counters()
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _others_gone(namespace: str) -> bool:
    listed = json.loads(kubectl("get", "redisdatabases", "--all-namespaces", "-o", "json").stdout)["items"]
    return all(item["metadata"]["namespace"] == namespace for item in listed)


def test_the_corpus_is_big_enough_and_names_its_messages() -> None:
    assert len(CASES) >= 30
    assert {case.layer for case in CASES} == {"cel", "webhook"}
    assert all(case.expect and all(case.expect) for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.path.stem for case in CASES])
def test_invalid_manifest_is_rejected_with_its_message(case: Case, corpus_namespace: str) -> None:
    if case.operation == "update":
        assert get_json("redisdatabase", case.name, corpus_namespace) is not None
    else:
        assert get_json("redisdatabase", case.name, corpus_namespace) is None
    assert_rejected(case, corpus_namespace)
    if case.operation == "create":
        assert get_json("redisdatabase", case.name, corpus_namespace) is None


def test_the_corpus_sent_nothing_to_the_provider(corpus_namespace: str, local_provider: LocalProvider) -> None:
    assert writes_once_the_operator_caught_up(local_provider, corpus_namespace) == {}
    for obj in yaml.safe_load_all((CORPUS / "_existing.yaml").read_text()):
        stored = get_json("redisdatabase", obj["metadata"]["name"], corpus_namespace)
        assert stored is not None and stored["metadata"]["generation"] == 1, "an update case changed the object"


def test_cel_alone_holds_every_schema_rule_with_the_webhook_stopped(
    cluster: Cluster, corpus_namespace: str, operator: OperatorProcess, local_provider: LocalProvider
) -> None:
    operator.process.stop()
    try:
        # With failurePolicy Ignore and no webhook, webhook-only rules are not enforced: proof it is really down.
        missing_provider = next(case for case in CASES if case.path.stem.endswith("webhook-missing-provider"))
        code, output = server_side_apply(missing_provider.text, corpus_namespace, "--dry-run=server")
        assert code == 0, f"the webhook still answers:\n{output}"
        for case in CEL_CASES:
            assert_rejected(case, corpus_namespace)
        assert {case.path.stem.split("-", 1)[1] for case in IMMUTABILITY_CASES} >= {
            "cel-update-primary-region",
            "cel-update-name",
            "cel-update-provider",
        }
    finally:
        operator.restart()
        wait_for(
            lambda: get_json("validatingwebhookconfiguration", WEBHOOK_CONFIGURATION, kubeconfig=cluster.kubeconfig),
            30,
            message="the managed ValidatingWebhookConfiguration",
        )
    assert writes_once_the_operator_caught_up(local_provider, corpus_namespace) == {}


def test_immutability_is_rejected_again_with_the_webhook_running(corpus_namespace: str) -> None:
    # the webhook answers again (a webhook-only rule is enforced), and the CEL messages are unchanged
    missing_provider = next(case for case in CASES if case.path.stem.endswith("webhook-missing-provider"))
    wait_for(
        lambda: server_side_apply(missing_provider.text, corpus_namespace, "--dry-run=server")[0] != 0,
        30,
        message="the restarted webhook to refuse a missing RedisProvider",
    )
    for case in IMMUTABILITY_CASES:
        assert_rejected(case, corpus_namespace)


def test_dry_run_is_checked_and_creates_nothing(corpus_namespace: str, local_provider: LocalProvider) -> None:
    for stem in (
        "20-cel-update-primary-region",
        "38-webhook-missing-provider",
        "40-webhook-duplicate-provider-side-name",
    ):
        assert_rejected(load_case(CORPUS / f"{stem}.yaml"), corpus_namespace, "--dry-run=server")
    local_provider.admin.reset_counters()
    valid = {
        "apiVersion": "redisdb.dev/v1alpha1",
        "kind": "RedisDatabase",
        "metadata": {"name": "dry-run-only"},
        "spec": {"providerRef": {"name": "local-upstash"}, "primaryRegion": "eu-west-1", "readRegions": ["us-east-1"]},
    }
    code, output = server_side_apply(yaml.safe_dump(valid), corpus_namespace, "--dry-run=server")
    assert code == 0 and "(server dry run)" in output, output
    assert get_json("redisdatabase", "dry-run-only", corpus_namespace) is None
    assert writes_once_the_operator_caught_up(local_provider, corpus_namespace) == {}


def test_valid_edits_pass_and_reach_ready(namespace: str, operator: OperatorProcess) -> None:
    def database(**spec: object) -> str:
        body = {
            "apiVersion": "redisdb.dev/v1alpha1",
            "kind": "RedisDatabase",
            "metadata": {"name": "editable"},
            "spec": {"providerRef": {"name": "local-fly"}, "primaryRegion": "cdg", **spec},
        }
        return yaml.safe_dump(body)

    steps: list[dict[str, object]] = [
        {"readRegions": ["ams"]},
        {"readRegions": ["ams", "fra"]},  # read regions change without downtime
        {"readRegions": ["ams", "fra"], "plan": "fixed_1gb"},
        {"readRegions": ["ams", "fra"], "plan": "fixed_1gb", "eviction": True},
        {"readRegions": ["fra"], "plan": "payg", "eviction": False},
    ]
    for generation, spec in enumerate(steps, start=1):
        code, output = server_side_apply(database(**spec), namespace)
        assert code == 0, output
        status = wait_ready("editable", namespace, generation=generation)["status"]
        assert status["primaryRegion"] == "cdg"
        assert sorted(status["readRegions"] or []) == sorted(spec["readRegions"])  # type: ignore[call-overload]
        assert status["plan"] == spec.get("plan", "payg")
        assert bool(status.get("eviction")) == bool(spec.get("eviction", False))
    kubectl("delete", "redisdatabase", "editable", "-n", namespace, "--timeout=60s")
    wait_gone("redisdatabase", "editable", namespace)
