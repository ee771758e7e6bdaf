"""The notifier's SQLite file (``<notify.state_dir>/notify.sqlite3``): groups, the newest version
seen of each incident, and the outbox of notifications waiting for a 2xx.

:meth:`Store.save` writes a batch's groups, versions and new notifications in one transaction (a
notification's ``Idempotency-Key`` is never stored without the group revision it belongs to);
:meth:`Store.prune` forgets delivered or failed notifications and incident versions after
seven days. WAL, fsync on every commit, so a crash loses nothing that was acknowledged.

With a ``journal`` (``osloscope notify``: the state topic of pipeline/streaming/notify_state.py),
the file is a local copy and the journal is what survives a move to another machine: every
transaction's changes are written to it as records (:func:`group_record`, :func:`version_record`,
:func:`outbox_record`; None deletes) before the transaction commits, a journal failure rolls it
back, and a notification that got its 2xx or failed for good is deleted there at once. A new
active notifier rebuilds the file from the journal's records (:meth:`Store.replace`).
"""
from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Collection, Iterable, Iterator, Mapping, Protocol, Sequence

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


class Journal(Protocol):
    def write(self, records: Iterable[tuple[bytes, bytes | None]]) -> None: ...


def group_record(receiver: str, key: str, g: Group | None) -> tuple[bytes, bytes | None]:
    return codec.dumps(["group", receiver, key]), None if g is None else codec.dumps(asdict(g))


def version_record(iid: str, version: Sequence | None, updated: float = 0.0) -> tuple[bytes, bytes | None]:
    return codec.dumps(["incident", iid]), None if version is None else codec.dumps([list(version), updated])


def outbox_record(idempotency_key: str, row: Mapping | None) -> tuple[bytes, bytes | None]:
    return codec.dumps(["outbox", idempotency_key]), None if row is None else codec.dumps(row)


JOURNAL_FORMAT = 1


def meta_record() -> tuple[bytes, bytes]:
    """Written when a journal is seeded, so that a journal that was ever used is never empty."""
    return codec.dumps(["meta"]), codec.dumps({"format": JOURNAL_FORMAT})


class Store:
    """The SQLite file: groups, incident versions, outbox. WAL, fsync on every commit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.journal: Journal | None = None
        self.db = sqlite3.connect(path, isolation_level=None)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
        except BaseException:                   # a full disk: the caller may try again later
            self.db.close()
            raise

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            # a failed COMMIT (disk full) may leave the transaction open, and SQLite may already
            # have rolled it back: either way the next transaction must find none
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

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
        records: list[tuple[bytes, bytes | None]] = []
        with self.tx() as db:
            for receiver, key, g in groups:
                if g is None:
                    db.execute("DELETE FROM groups WHERE receiver = ? AND key = ?", (receiver, key))
                else:
                    db.execute("INSERT OR REPLACE INTO groups VALUES (?, ?, ?)",
                               (receiver, key, codec.dumps(asdict(g))))
                records.append(group_record(receiver, key, g))
            db.executemany("INSERT OR REPLACE INTO incidents VALUES (?, ?, ?)",
                           [(iid, codec.dumps(list(v)), now) for iid, v in versions.items()])
            records += [version_record(iid, v, now) for iid, v in versions.items()]
            for row in rows:
                seq = db.execute("INSERT INTO outbox (receiver, group_key, revision, idempotency_key, "
                                 "body, created) VALUES (?, ?, ?, ?, ?, ?)", row).lastrowid
                receiver, group_key, revision, idem, body, created = row
                records.append(outbox_record(idem, {
                    "seq": seq, "receiver": receiver, "group_key": group_key, "revision": revision,
                    "body": bytes(body).decode(), "created": created}))
            if self.journal is not None and records:
                self.journal.write(records)          # raises: the transaction is rolled back

    # the outbox -----------------------------------------------------------------------------------

    def pending(self, receiver: str, limit: int = 100) -> list[tuple]:
        return self.db.execute(
            "SELECT id, idempotency_key, body, attempts FROM outbox WHERE status = 'pending' "
            "AND receiver = ? ORDER BY id LIMIT ?", (receiver, limit)).fetchall()

    def finish(self, oid: int, status: str, now: float, attempts: int, error: str | None) -> None:
        """Record an attempt; a notification delivered or failed for good leaves the journal
        (attempt counts of pending ones stay local: a new active starts them afresh)."""
        done = now if status != "pending" else None
        self.db.execute("UPDATE outbox SET status = ?, attempts = ?, last_attempt = ?, last_error = ?, "
                        "done = ? WHERE id = ?", (status, attempts, now, error, done, oid))
        if self.journal is not None and status != "pending":
            [(idem,)] = self.db.execute("SELECT idempotency_key FROM outbox WHERE id = ?", (oid,)).fetchall()
            self.journal.write([outbox_record(idem, None)])

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
            if self.journal is not None and old:
                self.journal.write([version_record(i, None) for i in old])
        return old

    # the journal ----------------------------------------------------------------------------------

    def records(self) -> list[tuple[bytes, bytes]]:
        """Everything a journal must hold to rebuild this state: groups, incident versions and
        pending notifications (an older version's file, written to an empty journal once)."""
        out = [meta_record()]
        out += [group_record(receiver, key, Group(**codec.loads(data)))
                for receiver, key, data in self.db.execute("SELECT receiver, key, data FROM groups")]
        out += [version_record(iid, codec.loads(v), updated)
                for iid, v, updated in self.db.execute("SELECT id, version, updated FROM incidents")]
        out += [outbox_record(idem, {"seq": seq, "receiver": receiver, "group_key": group_key,
                                     "revision": revision, "body": bytes(body).decode(), "created": created})
                for seq, receiver, group_key, revision, idem, body, created in self.db.execute(
                    "SELECT id, receiver, group_key, revision, idempotency_key, body, created FROM outbox "
                    "WHERE status = 'pending' ORDER BY id")]
        return out

    def replace(self, records: Mapping[bytes, bytes]) -> None:
        """Make the file hold exactly the state of a journal's ``records`` ({key: value});
        notifications come back pending, in their original order."""
        groups, versions, rows = [], [], []
        for key, value in records.items():
            kind, *ident = codec.loads(key)
            data = codec.loads(value)
            if kind == "meta":
                if data.get("format") != JOURNAL_FORMAT:
                    raise ValueError(f"notifier state of format {data.get('format')!r}; this "
                                     f"osloscope reads format {JOURNAL_FORMAT}")
            elif kind == "group":
                groups.append((ident[0], ident[1], codec.dumps(data)))
            elif kind == "incident":
                versions.append((ident[0], codec.dumps(data[0]), data[1]))
            elif kind == "outbox":
                rows.append((data["seq"], data["receiver"], data["group_key"], data["revision"],
                             ident[0], data["body"].encode(), data["created"]))
            else:
                raise ValueError(f"unknown notifier state record {key!r}")
        with self.tx() as db:
            db.execute("DELETE FROM groups")
            db.execute("DELETE FROM incidents")
            db.execute("DELETE FROM outbox")
            db.executemany("INSERT INTO groups VALUES (?, ?, ?)", groups)
            db.executemany("INSERT INTO incidents VALUES (?, ?, ?)", versions)
            db.executemany("INSERT INTO outbox (id, receiver, group_key, revision, idempotency_key, "
                           "body, created) VALUES (?, ?, ?, ?, ?, ?, ?)", sorted(rows))

    def close(self) -> None:
        self.db.close()
