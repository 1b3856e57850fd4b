"""A seeded, bounded workload of mixed RedisDatabase operations, and the model of what must exist afterwards.

Every operation goes through the real kubectl. Specs are always valid for their provider (the point is that
faults lose nothing, not that bad specs are refused; bad input has its own tests), so after the faults stop
every live resource must converge to its last spec.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from redisdb_operator.providers import catalog
from redisdb_operator.providers.base import ProviderType
from tests.harness.cluster import KubectlError, apply, kubectl

PLANS = ("free", "payg", "fixed_250mb", "fixed_1gb")
PRIMARIES = {ProviderType.FLY: ("yyz", "ams", "fra", "iad"), ProviderType.UPSTASH: ("us-east-1", "eu-west-1")}
READ_REGIONS = {
    ProviderType.FLY: ("ams", "fra", "lhr", "cdg", "sjc"),
    ProviderType.UPSTASH: ("eu-west-1", "us-west-2", "ap-south-1", "eu-central-1"),
}


@dataclass
class Settings:
    """The mutable part of a spec, always valid for its provider type."""

    read_regions: list[str]
    plan: str
    eviction: bool

    def spec(self) -> dict[str, Any]:
        return {"readRegions": self.read_regions, "plan": self.plan, "eviction": self.eviction}


def random_settings(rng: random.Random, provider_type: ProviderType, primary: str) -> Settings:
    plan = rng.choice(PLANS)
    limit = catalog.PLANS[provider_type][plan].max_read_regions
    candidates = [region for region in READ_REGIONS[provider_type] if region != primary]
    count = 0 if limit == 0 else rng.choice((0, 0, 1, 1, 2))
    return Settings(sorted(rng.sample(candidates, count)), plan, rng.random() < 0.4)


@dataclass
class Resource:
    name: str
    provider: str
    provider_type: ProviderType
    primary: str
    settings: Settings
    orphan: bool
    # what was asked of it, in order: ("create" | "update" | "rotate:<stamp>", wall-clock time it was asked)
    history: list[tuple[str, float]] = field(default_factory=list)

    @property
    def last_rotation(self) -> tuple[str, float] | None:
        """The newest rotation asked (annotation value, when it was asked), or None."""
        for kind, at in reversed(self.history):
            if kind.startswith("rotate:"):
                return kind.removeprefix("rotate:"), at
        return None

    def manifest(self) -> dict[str, Any]:
        return {
            "apiVersion": "redisdb.dev/v1alpha1",
            "kind": "RedisDatabase",
            "metadata": {"name": self.name},
            "spec": {
                "providerRef": {"name": self.provider},
                "primaryRegion": self.primary,
                "deletionPolicy": "Orphan" if self.orphan else "Delete",
                **self.settings.spec(),
            },
        }


@dataclass
class Workload:
    """Applies random operations and remembers what must be true at the end."""

    namespace: str
    providers: dict[str, ProviderType]  # RedisProvider name -> type
    seed: int
    max_live: int = 12
    orphan_rate: float = 0.1
    rng: random.Random = field(init=False)
    live: dict[str, Resource] = field(default_factory=dict)
    orphaned: list[str] = field(default_factory=list)  # provider-side names kept on purpose
    counts: dict[str, int] = field(default_factory=lambda: {"create": 0, "update": 0, "rotate": 0, "delete": 0})
    kubectl_retries: int = 0
    _serial: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @property
    def ops(self) -> int:
        return sum(self.counts.values())

    def step(self) -> str:
        """One random operation; returns its kind."""
        roll = self.rng.random()
        if not self.live or (len(self.live) < self.max_live and roll < 0.3):
            return self.create()
        if roll < 0.6:
            return self.update()
        if roll < 0.75:
            return self.rotate()
        if len(self.live) <= 2:
            return self.create()
        return self.delete()

    def create(self) -> str:
        self._serial += 1
        provider = self.rng.choice(sorted(self.providers))
        provider_type = self.providers[provider]
        primary = self.rng.choice(PRIMARIES[provider_type])
        resource = Resource(
            name=f"db-{self._serial:03d}",
            provider=provider,
            provider_type=provider_type,
            primary=primary,
            settings=random_settings(self.rng, provider_type, primary),
            orphan=self.rng.random() < self.orphan_rate,
        )
        resource.history.append(("create", time.time()))
        self._kubectl(lambda: apply(resource.manifest(), self.namespace))
        self.live[resource.name] = resource
        self.counts["create"] += 1
        return "create"

    def update(self) -> str:
        resource = self.live[self.rng.choice(sorted(self.live))]
        resource.settings = random_settings(self.rng, resource.provider_type, resource.primary)
        patch = '{"spec": ' + _json(resource.settings.spec()) + "}"
        resource.history.append(("update", time.time()))
        self._kubectl(
            lambda: kubectl("patch", "redisdatabase", resource.name, "-n", self.namespace, "--type=merge", "-p", patch)
        )
        self.counts["update"] += 1
        return "update"

    def rotate(self) -> str:
        resource = self.live[self.rng.choice(sorted(self.live))]
        stamp = f"rotate-{self.ops}-{time.monotonic_ns()}"
        resource.history.append((f"rotate:{stamp}", time.time()))  # before the request: any reset it causes is later
        self._kubectl(
            lambda: kubectl(
                "annotate",
                "redisdatabase",
                resource.name,
                "-n",
                self.namespace,
                f"redisdb.dev/rotate-password={stamp}",
                "--overwrite",
            )
        )
        self.counts["rotate"] += 1
        return "rotate"

    def delete(self) -> str:
        resource = self.live.pop(self.rng.choice(sorted(self.live)))
        self._kubectl(lambda: kubectl("delete", "redisdatabase", resource.name, "-n", self.namespace, "--wait=false"))
        if resource.orphan:
            self.orphaned.append(f"{self.namespace}-{resource.name}")
        self.counts["delete"] += 1
        return "delete"

    def _kubectl(self, call: Callable[[], object], attempts: int = 30, pause: float = 2.0) -> None:
        """Retry while the apiserver is away (restarts are part of the chaos); bounded in count."""
        for attempt in range(attempts):
            try:
                call()
                return
            except KubectlError:
                if attempt == attempts - 1:
                    raise
                self.kubectl_retries += 1
                time.sleep(pause)

    def live_names(self) -> set[str]:
        return set(self.live)

    def rotations_asked(self) -> dict[str, tuple[str, float]]:
        """ "namespace/name" -> the newest rotation asked of each live resource (for the audit)."""
        return {
            f"{self.namespace}/{name}": rotation
            for name, resource in self.live.items()
            if (rotation := resource.last_rotation) is not None
        }


def _json(value: Any) -> str:
    import json

    return json.dumps(value)
