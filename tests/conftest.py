"""Shared test configuration: fixture plugins, and (tests.harness.ci_rules) the rule that CI never skips an
end-to-end test."""

from __future__ import annotations

pytest_plugins = [
    "tests.harness.local_provider",
    "tests.harness.cluster",
    "tests.harness.operator",
    "tests.harness.ci_rules",
    "pytester",
]
