"""The registry's durable half: one SQLite row per database, so a restarted provider brings every database back."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..providers.base import ProviderType


@dataclass
class DatabaseRecord:
    """Everything needed to recreate a database: identity, owner, settings, secret and last ports.

    ``api`` says which wire API created it, which is also whose region and plan catalog applies.
    ``owner`` is the Upstash account email or the Fly organization slug.
    """

    id: str
    api: ProviderType
    owner: str
    name: str
    primary_region: str
    plan: str
    password: str
    creation_time: int
    read_regions: list[str] = field(default_factory=list)
    eviction: bool = False
    budget: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    port: int = 0
    replica_ports: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        body = asdict(self)
        body["api"] = self.api.value
        return json.dumps(body)

    @classmethod
    def from_json(cls, text: str) -> DatabaseRecord:
        body = json.loads(text)
        body["api"] = ProviderType(body["api"])
        return cls(**body)


class Store:
    """Writes are synchronous and small: one row per change, committed before the API answers."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        os.chmod(path, 0o600)  # it holds database passwords
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS databases (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
        # Test-only bookkeeping: every password ever issued, so tests can prove none leaked anywhere.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS issued_passwords "
            "(database_id TEXT NOT NULL, name TEXT NOT NULL, password TEXT NOT NULL, issued_at REAL NOT NULL)"
        )

    def load(self) -> list[DatabaseRecord]:
        rows = self._db.execute("SELECT body FROM databases ORDER BY rowid").fetchall()
        return [DatabaseRecord.from_json(body) for (body,) in rows]

    def save(self, record: DatabaseRecord) -> None:
        self._db.execute(
            "INSERT INTO databases (id, body) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET body = excluded.body",
            (record.id, record.to_json()),
        )

    def delete(self, database_id: str) -> None:
        self._db.execute("DELETE FROM databases WHERE id = ?", (database_id,))

    def record_issued(self, database_id: str, name: str, password: str, issued_at: float) -> None:
        self._db.execute(
            "INSERT INTO issued_passwords (database_id, name, password, issued_at) VALUES (?, ?, ?, ?)",
            (database_id, name, password, issued_at),
        )

    def issued(self) -> list[tuple[str, str, str, float]]:
        rows = self._db.execute(
            "SELECT database_id, name, password, issued_at FROM issued_passwords ORDER BY rowid"
        ).fetchall()
        return [(str(a), str(b), str(c), float(d)) for a, b, c, d in rows]

    def close(self) -> None:
        self._db.close()
