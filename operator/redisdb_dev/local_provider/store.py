"""The registry's durable half: one SQLite row per database, so a restarted provider brings every database back.

The schema is versioned with ``PRAGMA user_version``; each step in ``_MIGRATIONS`` runs once, in order, on a state
directory written by an older provider, so upgrading the provider never loses databases.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from redisdb_operator.providers.base import ProviderType


@dataclass
class DatabaseRecord:
    """Everything needed to recreate a database: identity, owner, settings, secret and last ports.

    ``api`` says which wire API created it, which is also whose region and plan catalog applies.
    ``owner`` is the Upstash account email or the Fly organization slug.
    The REST tokens live in their own columns, not in the JSON body; they are empty for databases whose API
    hands out no REST credentials (Fly) and for rows written before migration 1 (``Registry.restore`` fills those).
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
    rest_token: str = ""
    read_only_rest_token: str = ""

    def to_json(self) -> str:
        body = asdict(self)
        body["api"] = self.api.value
        for column in _TOKEN_COLUMNS:
            del body[column]
        return json.dumps(body)

    @classmethod
    def from_json(cls, text: str, rest_token: str = "", read_only_rest_token: str = "") -> DatabaseRecord:
        body = json.loads(text)
        body["api"] = ProviderType(body["api"])
        for column in _TOKEN_COLUMNS:
            body.pop(column, None)
        return cls(**body, rest_token=rest_token, read_only_rest_token=read_only_rest_token)


_TOKEN_COLUMNS = ("rest_token", "read_only_rest_token")

# Schema steps after the original (databases, issued_passwords); index i brings user_version from i to i + 1.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "ALTER TABLE databases ADD COLUMN rest_token TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE databases ADD COLUMN read_only_rest_token TEXT NOT NULL DEFAULT ''",
        # Test-only, like issued_passwords: every REST token ever issued, for the secret-hygiene scans.
        "CREATE TABLE issued_rest_tokens (database_id TEXT NOT NULL, token TEXT NOT NULL, issued_at REAL NOT NULL)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)


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
        self._migrate()

    def _migrate(self) -> None:
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"the state was written by a newer provider (schema {version}, this one knows {SCHEMA_VERSION}); "
                "upgrade the provider or use another --state-dir"
            )
        for number in range(version, SCHEMA_VERSION):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _MIGRATIONS[number]:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number + 1}")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def load(self) -> list[DatabaseRecord]:
        rows = self._db.execute(
            "SELECT body, rest_token, read_only_rest_token FROM databases ORDER BY rowid"
        ).fetchall()
        return [DatabaseRecord.from_json(body, rest, read_only) for body, rest, read_only in rows]

    def save(self, record: DatabaseRecord) -> None:
        self._db.execute(
            "INSERT INTO databases (id, body, rest_token, read_only_rest_token) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET body = excluded.body, rest_token = excluded.rest_token, "
            "read_only_rest_token = excluded.read_only_rest_token",
            (record.id, record.to_json(), record.rest_token, record.read_only_rest_token),
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

    def record_issued_rest_tokens(self, database_id: str, tokens: tuple[str, ...], issued_at: float) -> None:
        self._db.executemany(
            "INSERT INTO issued_rest_tokens (database_id, token, issued_at) VALUES (?, ?, ?)",
            [(database_id, token, issued_at) for token in tokens],
        )

    def issued_rest_tokens(self) -> list[str]:
        return [str(token) for (token,) in self._db.execute("SELECT token FROM issued_rest_tokens ORDER BY rowid")]

    def close(self) -> None:
        self._db.close()
