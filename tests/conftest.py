"""Shared test configuration: fixture plugins, and the rule that CI never skips an end-to-end test."""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.harness.local_provider",
    "tests.harness.cluster",
    "tests.harness.operator",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(
            f"/tests/{suite}/" in str(item.fspath)
            for suite in ("e2e", "providers", "local_provider", "chaos", "contract")
        ):
            item.add_marker(pytest.mark.e2e)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped end-to-end test is a failure: every component it needs is installed by .ci/run."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped_e2e = [
        report.nodeid for report in reporter.stats.get("skipped", []) if "e2e" in getattr(report, "keywords", {})
    ]
    if skipped_e2e:
        reporter.write_line(f"CI: {len(skipped_e2e)} end-to-end test(s) were skipped; that is a failure:", red=True)
        for nodeid in skipped_e2e:
            reporter.write_line(f"  {nodeid}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
