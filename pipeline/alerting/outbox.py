"""The notifier's SQLite file (``<notify.state_dir>/notify.sqlite3``): groups, the newest version
seen of each incident, and the outbox of notifications waiting for a 2xx.

:meth:`Store.save` writes a batch's groups, versions and new notifications in one transaction (a
notification's ``Idempotency-Key`` is never stored without the group revision it belongs to);
:meth:`Store.prune` forgets delivered or failed notifications and incident versions after
seven days. WAL, fsync on every commit, so a crash loses nothing that was acknowledged.
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Collection, Iterable, Iterator, Mapping, Sequence

from pipeline import codec
from pipeline.alerting.grouping import Group

DB_NAME = "notify.sqlite3"
INCIDENT_MEMORY = 7 * 86400.0           # how long the newest version of an incident is remembered
OUTBOX_RETENTION = 7 * 86400.0          # delivered and failed notifications are kept this long

SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (receiver TEXT NOT NULL, key TEXT NOT NULL, data BLOB NOT NULL,
                                   PRIMARY KEY (receiver, key));
CREATE TABLE IF NOT EXISTS incidents (id TEXT PRIMARY KEY, version BLOB NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    receiver TEXT NOT NULL, group_key TEXT NOT NULL, revision INTEGER NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'pending',          -- pending | delivered | failed
    body BLOB NOT NULL, created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_attempt REAL, last_error TEXT, done REAL);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (status, receiver, id);
"""


class Store:
    """The SQLite file: groups, incident versions, outbox. WAL, fsync on every commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # reading at start -------------------------------------------------------------------------

    def groups(self) -> Iterator[Group]:
        for _receiver, _key, data in self.db.execute("SELECT receiver, key, data FROM groups"):
            yield Group(**codec.loads(data))

    def drop_groups_except(self, receivers: Collection[str]) -> None:
        """Forget the groups of receivers no longer configured."""
        self.db.execute("DELETE FROM groups WHERE receiver NOT IN (%s)"
                        % ",".join("?" * len(receivers)), tuple(receivers))

    def versions(self) -> dict[str, tuple]:
        return {iid: tuple(codec.loads(v)) for iid, v in self.db.execute("SELECT id, version FROM incidents")}

    def pending_per_receiver(self) -> list[tuple[str, int]]:
        return self.db.execute(
            "SELECT receiver, COUNT(*) FROM outbox WHERE status = 'pending' GROUP BY receiver").fetchall()

    # writing --------------------------------------------------------------------------------------

    def save(self, groups: Iterable[tuple[str, str, Group | None]], versions: Mapping[str, tuple],
             now: float, rows: Sequence[tuple]) -> None:
        """In one transaction: each (receiver, key, group) stored (None: deleted), the incident
        versions, and the new outbox rows (receiver, group_key, revision, idempotency_key, body,
        created)."""
        with self.tx() as db:
            for receiver, key, g in groups:
                if g is None:
                    db.execute("DELETE FROM groups WHERE receiver = ? AND key = ?", (receiver, key))
                else:
                    db.execute("INSERT OR REPLACE INTO groups VALUES (?, ?, ?)",
                               (receiver, key, codec.dumps(asdict(g))))
            db.executemany("INSERT OR REPLACE INTO incidents VALUES (?, ?, ?)",
                           [(iid, codec.dumps(list(v)), now) for iid, v in versions.items()])
            db.executemany("INSERT INTO outbox (receiver, group_key, revision, idempotency_key, body, "
                           "created) VALUES (?, ?, ?, ?, ?, ?)", rows)

    # the outbox -----------------------------------------------------------------------------------

    def pending(self, receiver: str, limit: int = 100) -> list[tuple]:
        return self.db.execute(
            "SELECT id, idempotency_key, body, attempts FROM outbox WHERE status = 'pending' "
            "AND receiver = ? ORDER BY id LIMIT ?", (receiver, limit)).fetchall()

    def finish(self, oid: int, status: str, now: float, attempts: int, error: str | None) -> None:
        done = now if status != "pending" else None
        self.db.execute("UPDATE outbox SET status = ?, attempts = ?, last_attempt = ?, last_error = ?, "
                        "done = ? WHERE id = ?", (status, attempts, now, error, done, oid))

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())

    def prune(self, now: float, held: Collection[str]) -> list[str]:
        """Drop finished notifications older than OUTBOX_RETENTION and the versions of incidents
        not updated for INCIDENT_MEMORY (except those ``held`` in a group); returns the ids of the
        incidents forgotten."""
        old = [iid for iid, in self.db.execute(
            "SELECT id FROM incidents WHERE updated < ?", (now - INCIDENT_MEMORY,)) if iid not in held]
        with self.tx() as db:
            db.execute("DELETE FROM outbox WHERE status != 'pending' AND done < ?",
                       (now - OUTBOX_RETENTION,))
            db.executemany("DELETE FROM incidents WHERE id = ?", [(i,) for i in old])
        return old

    def close(self) -> None:
        self.db.close()
