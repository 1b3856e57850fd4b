"""Every test here starts from a provider without injected faults."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.local_provider import LocalProvider


@pytest.fixture(autouse=True)
def _no_faults(local_provider: LocalProvider) -> Iterator[None]:
    local_provider.admin.clear_faults()
    yield
    local_provider.admin.clear_faults()
