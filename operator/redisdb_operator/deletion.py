"""The one decision of a deletion: keep or destroy the provider database of a RedisDatabase being deleted, in the
order deletion protection, Observe, force-orphan, paused, deletionPolicy. Pure; `controller.py` carries it out.
"""

from __future__ import annotations

import dataclasses

from .decision import (
    Delete,
    Facts,
    KubeEvent,
    LookUp,
    Observation,
    Plan,
    Release,
    Resource,
    Step,
    Wait,
    hold,
    kubectl_target,
)
from .models import (
    ANNOTATION_FORCE_ORPHAN,
    ANNOTATION_PAUSED,
    DeletionPolicy,
)


def decide_deletion(facts: Facts, seen: Observation) -> Plan:
    """Keep or destroy the provider database of a RedisDatabase being deleted (`facts.provider` is not needed).

    In this order: deletion protection holds everything (whatever the policy); Observe never deletes; the
    force-orphan annotation keeps the database; a paused resource waits; then deletionPolicy (the resource's, else
    the operator's default).
    """
    resource = facts.resource
    if resource.spec is None:
        event = KubeEvent("Warning", "Orphaned", "the spec is invalid; nothing was deleted at the provider")
        return Plan(Release(), seen, events=(event,))
    if seen.step is Step.START:
        if resource.spec.deletion_protection:
            return hold(facts, seen, "DeletionProtected", deletion_protected_message(resource))
        if resource.observe_only:
            message = "managementPolicy is Observe: the provider database is never deleted"
            event = KubeEvent("Normal", "Orphaned", message)
            return Plan(Release(), seen, events=(event,))
        if resource.annotations.get(ANNOTATION_FORCE_ORPHAN) == "true":
            event = KubeEvent("Warning", "Orphaned", f"{ANNOTATION_FORCE_ORPHAN} is set: the database is kept")
            return Plan(Release(), seen, events=(event,))
        policy = resource.spec.effective_deletion_policy(facts.default_deletion_policy)
        if policy is DeletionPolicy.ORPHAN:
            event = KubeEvent("Normal", "Orphaned", "deletionPolicy is Orphan: the provider database is kept")
            return Plan(Release(), seen, events=(event,))
        if resource.paused:
            return hold(facts, seen, "Paused", paused_deletion_message(resource))
        if seen.known_id is not None:
            return Plan(Delete(seen.known_id), seen)
        return Plan(LookUp(Step.FOUND_BY_NAME, resource.desired().name), seen)
    if seen.step is Step.FOUND_BY_NAME:
        found = seen.database
        events: tuple[KubeEvent, ...] = ()
        if found is not None and facts.stranger(found) is not None:
            message = (
                f"the provider database {found.name} ({found.id}) predates this RedisDatabase and was never "
                f"adopted: not deleted"
            )
            events, found = (KubeEvent("Warning", "Kept", message),), None
        if found is not None:
            return Plan(Delete(found.id), dataclasses.replace(seen, known_id=found.id))
        if (pending := facts.create_pending()) > 0:
            # Releasing now would leave a late-landing database with no owner: wait for it, then delete it.
            message = (
                f"an earlier create timed out and may still land at the provider; checking again for up to "
                f"{pending:.0f}s before releasing the resource"
            )
            return Plan(Wait(message, min(pending, 10.0) + 1.0), seen, events=events)
        return Plan(Release(), seen, events=events)
    if seen.step is Step.DELETED:
        event = KubeEvent("Normal", "Deleted", f"deleted provider database {seen.known_id}")
        return Plan(Release(), seen, events=(event,), counted=("delete",))
    raise AssertionError(f"no deletion decision after {seen.step}")


def paused_deletion_message(resource: Resource) -> str:
    return (
        f"the deletion waits: the resource is paused ({ANNOTATION_PAUSED}=true) and deletionPolicy Delete needs "
        f"the provider. Unpause to delete the provider database (kubectl annotate {kubectl_target(resource)} "
        f"{ANNOTATION_PAUSED}-), or keep it and let the resource go (kubectl annotate "
        f"{kubectl_target(resource)} {ANNOTATION_FORCE_ORPHAN}=true)"
    )


def deletion_protected_message(resource: Resource) -> str:
    return (
        "the deletion is held: spec.deletionProtection is true, so the resource stays and the provider database is "
        "untouched. To let the deletion proceed (by deletionPolicy), release it: kubectl patch "
        f"{kubectl_target(resource)} --type=merge -p "
        '\'{"spec":{"deletionProtection":false}}\''
    )


def deletion_failure_message(message: str) -> str:
    return (
        f"cannot delete the provider database: {message}. To remove the RedisDatabase without deleting it at the "
        f"provider, annotate it {ANNOTATION_FORCE_ORPHAN}=true"
    )
