"""Runs last in the end-to-end suite: no password or token issued during the whole run appears in any operator
log, the local providers' logs, any Event (all namespaces, plus the snapshots taken before each test's namespace
was deleted) or any RedisDatabase status (issue 5, scenario 9; issue 9, fault 5)."""

from __future__ import annotations

import pytest

from tests.harness.audit import cluster_texts, file_texts, issued_secrets, scan_for_secrets
from tests.harness.cluster import Cluster
from tests.harness.local_provider import LocalProvider, session_providers
from tests.harness.operator import SESSION_EVENT_SNAPSHOTS, SESSION_OPERATOR_LOGS


def test_no_password_or_token_in_any_log_event_or_status_of_the_run(
    cluster: Cluster, local_provider: LocalProvider
) -> None:
    providers = session_providers()
    values = issued_secrets(providers)
    if not SESSION_OPERATOR_LOGS or not any(kind == "password" for kind in values.values()):
        pytest.skip("run with the rest of the suite: no operator ran or no password was issued in this session")
    texts = {
        **file_texts(SESSION_OPERATOR_LOGS, "operator log"),
        **file_texts([provider.log_path for provider in providers], "local provider log"),
        **cluster_texts(kubeconfig=cluster.kubeconfig),
        **{f"events snapshot {index}": text for index, text in enumerate(SESSION_EVENT_SNAPSHOTS)},
    }
    planted = next(value for value, kind in values.items() if kind == "password")
    assert scan_for_secrets(values, {"probe": f"leak {planted}"}), "the scanner cannot find a planted password"
    hits = scan_for_secrets(values, texts)
    assert not hits, f"{len(hits)} secrets found (source, kind, line): {hits[:20]}"
