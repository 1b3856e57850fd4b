"""The shell's part of the policies: a paused reconcile resolves no provider (so it also calls none), a held
deletion raises HeldDeletion with the status written and nothing deleted, and the operator's default
deletionPolicy reaches the decision. Proven end to end in tests/e2e/test_policies.py."""

from __future__ import annotations

import kopf
import pytest

from redisdb_operator.controller import ControllerConfig, DatabaseController, HeldDeletion
from redisdb_operator.models import DeletionPolicy
from redisdb_operator.status import condition
from tests.unit.fakes import LOGGER, FakeKube, InMemoryProvider, OneProvider, body

pytestmark = pytest.mark.usefixtures("posted_events")


class CountingProviders(OneProvider):
    def __init__(self, client: InMemoryProvider) -> None:
        super().__init__(client)
        self.resolved = 0

    async def get(self, name: str):  # type: ignore[no-untyped-def]
        self.resolved += 1
        return await super().get(name)


async def test_a_paused_reconcile_resolves_no_provider() -> None:
    provider = InMemoryProvider(names_are_unique=True)
    providers = CountingProviders(provider)
    controller = DatabaseController(FakeKube(), providers, ControllerConfig())  # type: ignore[arg-type]
    patch = kopf.Patch()
    paused = body({"databaseId": "db-1"}, annotations={"redisdb.dev/paused": "true"})
    await controller.reconcile(paused, fresh=True, patch=patch, logger=LOGGER)
    synced = condition(patch.status["conditions"], "Synced")
    assert synced is not None and synced["reason"] == "Paused"
    assert providers.resolved == 0 and provider.calls == []


@pytest.mark.parametrize(
    ("spec", "annotations", "reason"),
    [
        ({"primaryRegion": "us-east-1", "deletionProtection": True}, {}, "DeletionProtected"),
        ({"primaryRegion": "us-east-1"}, {"redisdb.dev/paused": "true"}, "Paused"),
    ],
)
async def test_a_held_deletion_keeps_the_database(
    spec: dict[str, object], annotations: dict[str, str], reason: str
) -> None:
    provider = InMemoryProvider(names_are_unique=True)
    controller = DatabaseController(FakeKube(), OneProvider(provider), ControllerConfig())  # type: ignore[arg-type]
    created = kopf.Patch()
    await controller.reconcile(body(spec=spec), fresh=True, patch=created, logger=LOGGER)
    patch = kopf.Patch()
    with pytest.raises(HeldDeletion) as held:
        await controller.delete(
            body(dict(created.status), spec=spec, annotations=annotations), patch=patch, logger=LOGGER
        )
    assert held.value.delay == 10.0
    synced = condition(patch.status["conditions"], "Synced")
    assert synced is not None and synced["reason"] == reason
    assert list(provider.databases) == ["db-1"] and "delete" not in provider.calls


@pytest.mark.parametrize(("default", "kept"), [(DeletionPolicy.DELETE, False), (DeletionPolicy.ORPHAN, True)])
async def test_the_default_deletion_policy_reaches_the_decision(default: DeletionPolicy, kept: bool) -> None:
    provider = InMemoryProvider(names_are_unique=True)
    config = ControllerConfig(default_deletion_policy=default)
    controller = DatabaseController(FakeKube(), OneProvider(provider), config)  # type: ignore[arg-type]
    created = kopf.Patch()
    await controller.reconcile(body(), fresh=True, patch=created, logger=LOGGER)
    await controller.delete(body(dict(created.status)), patch=kopf.Patch(), logger=LOGGER)
    assert (list(provider.databases) == ["db-1"]) is kept
