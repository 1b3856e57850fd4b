"""Duplicates of our own database on a provider whose names are not unique (Upstash): which one to keep and which
to delete. Pure, as the rest of the core; `reconcile.decide` asks it whenever a lookup met several namesakes.
"""

from __future__ import annotations

import dataclasses
import datetime

from .decision import (
    DeleteDuplicates,
    Facts,
    KubeEvent,
    Observation,
    Plan,
    made_after_resource,
)
from .providers.base import Database


def _oldest_first(database: Database) -> tuple[datetime.datetime, str]:
    assert database.created_at is not None
    return (database.created_at, database.id)


def duplicates_to_delete(facts: Facts, seen: Observation) -> tuple[Database | None, tuple[Database, ...]]:
    """Of several databases of one name, the one to keep and the duplicates of ours to delete.

    The one kept: the one recorded in status.databaseId when it is among them: the Secret was written from it by
    the reconcile that recorded it, so clients already use its password. With none recorded among them, the oldest
    one of ours: a duplicate is a create released late (held or timed out at the provider while the operator that
    sent it crashed or gave up), so it lands after the create whose answer was seen and published; the oldest is
    the likeliest to be the one a Secret already points at, and it is the same choice at every resync and in every
    replica. Deleted: only the others proven ours by time (`made_after_resource`); a database older than the
    RedisDatabase, or of unknown age, is someone else's (or cannot be told) and is never touched; so is every
    duplicate of a custom spec.name. Observe never deletes anything.

    Where it applies: the shell fills `namesakes` from the shared snapshot (every resync reads it). A fresh lookup
    by name is one adapter call that answers one database (Upstash: the newest of the name); the one it takes
    over is recorded, and from then on the recorded one is kept here at the next resync.
    """
    resource = facts.resource
    if resource.observe_only or (resource.adopt and seen.known_id is None):
        # An adoption asked by annotation with nothing recorded yet: which one the person meant is theirs to say.
        return None, ()
    if resource.desired().name != f"{resource.namespace}-{resource.name}":
        # A custom spec.name: another RedisDatabase may claim it too (the webhook refuses that, but it may have
        # been down), and its database is as new as ours; only the default name (namespace-name, unique in the
        # cluster) proves a duplicate is this resource's own.
        return None, ()
    created = facts.resource.created
    mine = sorted((d for d in seen.namesakes if made_after_resource(d, created)), key=_oldest_first)
    recorded = next((d for d in seen.namesakes if d.id == seen.known_id), None)
    if seen.known_id is not None and recorded is None:
        return None, ()  # the recorded one is missing: the confirm-then-recreate path decides, not this one
    keep = recorded if recorded is not None else (mine[0] if mine else None)
    if keep is None:
        return None, ()
    return keep, tuple(d for d in mine if d.id != keep.id)


def delete_duplicates_plan(facts: Facts, seen: Observation) -> Plan | None:
    """Delete the duplicates of ours a lookup by name met (see `duplicates_to_delete`), then go on with the kept one
    as the observation's database; None when there is nothing to delete."""
    keep, extra = duplicates_to_delete(facts, seen)
    if keep is None or not extra:
        return None
    ids = tuple(d.id for d in extra)
    done = KubeEvent(
        "Warning",
        "DuplicateDeleted",
        f"deleted {len(ids)} duplicate provider database(s) named {keep.name} made by this RedisDatabase "
        f"(a create that landed late): {', '.join(ids)}; kept {keep.id}",
    )
    progress = dataclasses.replace(seen, database=keep, namesakes=())
    return Plan(DeleteDuplicates(ids, keep.id, done), progress)
