"""Every test here that uses the provider starts from one without injected faults."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.local_provider import LocalProvider


@pytest.fixture(autouse=True)
def _no_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    if "local_provider" not in request.fixturenames:
        yield  # a pure test: no provider needed
        return
    provider: LocalProvider = request.getfixturevalue("local_provider")
    provider.admin.clear_faults()
    yield
    provider.admin.clear_faults()
