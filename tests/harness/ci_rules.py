"""The CI rule for the real-process suites: nothing there may be skipped, imported away or expected to fail.

Every component those suites need is installed by .ci/run, so a skip means a test proved nothing. The rule
looks at every report, not only test items: a module-level ``pytest.skip(allow_module_level=True)`` or
``pytest.importorskip`` shows up as a skipped *collection* report (``when == "collect"``, no keywords), and an
``xfail``/``xpass`` has its own outcome in the terminal reporter's stats.
"""

from __future__ import annotations

import os

import pytest

REAL_PROCESS_SUITES = ("e2e", "providers", "local_provider", "chaos", "contract")
_HOLE_OUTCOMES = ("skipped", "xfailed", "xpassed")


def in_real_process_suite(nodeid: str) -> bool:
    """True when the node lives under tests/<suite>/ for one of the real-process suites."""
    path = "/" + nodeid.split("::", 1)[0].replace(os.sep, "/")
    return any(f"/tests/{suite}/" in path for suite in REAL_PROCESS_SUITES)


# Scans everything the session produced for leaked secrets: it runs last whatever the file order or selection.
SESSION_END_MODULES = ("tests/e2e/test_zz_secret_hygiene.py",)


def runs_at_session_end(item: pytest.Item) -> bool:
    return any(item.nodeid.startswith(module) or f"/{module}" in str(item.fspath) for module in SESSION_END_MODULES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=runs_at_session_end)  # stable: every other test keeps its order
    for item in items:
        if in_real_process_suite(item.nodeid) or any(
            f"/tests/{suite}/" in str(item.fspath) for suite in REAL_PROCESS_SUITES
        ):
            item.add_marker(pytest.mark.e2e)


def holes(reporter: object) -> list[tuple[str, str]]:
    """(outcome, nodeid) of every skipped, xfailed or xpassed report in a real-process suite."""
    stats: dict[str, list[object]] = getattr(reporter, "stats", {})
    found: list[tuple[str, str]] = []
    for outcome in _HOLE_OUTCOMES:
        for report in stats.get(outcome, []):
            nodeid = str(getattr(report, "nodeid", ""))
            keywords = getattr(report, "keywords", {}) or {}
            fspath = str(getattr(report, "fspath", "") or "")
            if in_real_process_suite(nodeid) or "e2e" in keywords or in_real_process_suite(fspath):
                when = getattr(report, "when", "collect") or "collect"
                found.append((f"{outcome} ({when})", nodeid or fspath))
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped, xfailed or xpassed real-process test (or module) is a failure."""
    if not os.environ.get("CI"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    found = holes(reporter)
    if found:
        reporter.write_line(
            f"CI: {len(found)} real-process test(s) or module(s) were skipped or xfailed; that is a failure:", red=True
        )
        for outcome, nodeid in found:
            reporter.write_line(f"  {outcome}: {nodeid}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
