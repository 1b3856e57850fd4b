"""The secret-hygiene check of the whole end-to-end run, at the end of the session whatever order the tests ran in.

No password or token issued during the run may appear in any operator log, the local providers' logs, any Event
(all namespaces, plus the snapshots taken before each test's namespace was deleted) or any RedisDatabase status
(issue 5, scenario 9; issue 9, fault 5). The check is the finalizer of a session fixture that every test using the
cluster and the local provider enrolls in; it runs before those two are torn down, and a leak fails the session
(an error in the teardown of the last test).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.audit import cluster_texts, file_texts, issued_secrets, scan_for_secrets
from tests.harness.cluster import Cluster
from tests.harness.local_provider import LocalProvider, session_providers
from tests.harness.operator import SESSION_EVENT_SNAPSHOTS, SESSION_OPERATOR_LOGS


def assert_no_secret_leaked(cluster: Cluster) -> None:
    providers = session_providers()
    values = issued_secrets(providers)
    if not SESSION_OPERATOR_LOGS or not any(kind == "password" for kind in values.values()):
        return  # no operator ran or no password was issued: nothing could have leaked
    texts = {
        **file_texts(SESSION_OPERATOR_LOGS, "operator log"),
        **file_texts([provider.log_path for provider in providers], "local provider log"),
        **cluster_texts(kubeconfig=cluster.kubeconfig),
        **{f"events snapshot {index}": text for index, text in enumerate(SESSION_EVENT_SNAPSHOTS)},
    }
    planted = next(value for value, kind in values.items() if kind == "password")
    assert scan_for_secrets(values, {"probe": f"leak {planted}"}), "the scanner cannot find a planted password"
    hits = scan_for_secrets(values, texts)
    assert not hits, f"secret hygiene: {len(hits)} secrets found (source, kind, line): {hits[:20]}"


@pytest.fixture(scope="session")
def secret_hygiene(cluster: Cluster, local_provider: LocalProvider) -> Iterator[None]:
    yield
    assert_no_secret_leaked(cluster)


@pytest.fixture(autouse=True)
def _enroll_in_secret_hygiene(request: pytest.FixtureRequest) -> None:
    if {"cluster", "local_provider"} <= set(request.fixturenames):
        request.getfixturevalue("secret_hygiene")
