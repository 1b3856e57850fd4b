"""kopf wiring only: each handler hands the event to the controller and says how fresh its view must be."""

from __future__ import annotations

import logging
from typing import Any, TypeAlias

import kopf

from .controller import DatabaseController
from .models import GROUP, VERSION

DATABASES = (GROUP, VERSION, "redisdatabases")
PROVIDERS = (GROUP, VERSION, "redisproviders")
Logger: TypeAlias = logging.Logger | logging.LoggerAdapter[Any]


def register(registry: kopf.OperatorRegistry, *, resync_interval: float) -> None:
    """Register every handler in `registry`; intervals come from configuration, hence no module-level decorators."""

    async def on_redisdatabase_change(
        body: kopf.Body, patch: kopf.Patch, logger: Logger, memo: Any, **kwargs: Any
    ) -> None:
        controller: DatabaseController = memo["controller"]
        await controller.reconcile(body, fresh=True, patch=patch, logger=logger, retry=kwargs.get("retry", 0))

    async def on_redisdatabase_resync(
        body: kopf.Body, patch: kopf.Patch, logger: Logger, memo: Any, **kwargs: Any
    ) -> None:
        controller: DatabaseController = memo["controller"]
        await controller.reconcile(body, fresh=False, patch=patch, logger=logger, retry=kwargs.get("retry", 0))

    async def on_redisdatabase_delete(
        body: kopf.Body, patch: kopf.Patch, logger: Logger, memo: Any, **kwargs: Any
    ) -> None:
        controller: DatabaseController = memo["controller"]
        await controller.delete(body, patch=patch, logger=logger, retry=kwargs.get("retry", 0))

    async def on_redisprovider_event(name: str, memo: Any, **_: Any) -> None:
        memo["controller"].registry.invalidate(name)

    kopf.on.create(*DATABASES, id="reconcile", registry=registry)(on_redisdatabase_change)
    kopf.on.update(*DATABASES, id="reconcile", registry=registry)(on_redisdatabase_change)
    kopf.on.resume(*DATABASES, id="reconcile", registry=registry)(on_redisdatabase_change)
    kopf.timer(*DATABASES, id="resync", interval=resync_interval, initial_delay=resync_interval, registry=registry)(
        on_redisdatabase_resync
    )
    kopf.on.delete(*DATABASES, id="delete", registry=registry)(on_redisdatabase_delete)
    kopf.on.event(*PROVIDERS, id="provider-changed", registry=registry)(on_redisprovider_event)
