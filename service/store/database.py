"""SQLite store: items, events, profiles and drift reports, with named migrations.

WAL mode with ``synchronous=FULL``: a write is acknowledged only after its transaction is on
disk, so an acknowledged batch survives a crash of the process or of the machine.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, astuple, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from service.core.records import (
    DriftReport,
    Event,
    Interest,
    Item,
    Profile,
    WindowDrift,
    WindowInfo,
)

# Append-only: a released migration is never edited, a schema change is a new entry.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_items",
        """
        CREATE TABLE items (
            item_id    TEXT PRIMARY KEY,
            title      TEXT NOT NULL,
            text       TEXT NOT NULL DEFAULT '',
            categories TEXT NOT NULL DEFAULT '[]',
            attributes TEXT NOT NULL DEFAULT '{}',
            updated_at REAL NOT NULL
        );
        """,
    ),
    (
        "0002_events",
        """
        CREATE TABLE events (
            seq         INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id    TEXT NOT NULL,
            user_id     TEXT NOT NULL,
            item_id     TEXT NOT NULL,
            type        TEXT NOT NULL,
            ts          REAL NOT NULL,
            value       REAL,
            received_at REAL NOT NULL
        );
        CREATE UNIQUE INDEX events_by_user_event ON events (user_id, event_id);
        CREATE INDEX events_by_user ON events (user_id, ts, seq);
        CREATE INDEX events_by_item ON events (item_id, user_id);
        """,
    ),
    (
        "0003_profiles",
        """
        CREATE TABLE profiles (
            user_id      TEXT NOT NULL,
            window_index INTEGER NOT NULL,
            window_start REAL NOT NULL,
            window_end   REAL NOT NULL,
            n_events     INTEGER NOT NULL,
            closed       INTEGER NOT NULL,
            summary      TEXT NOT NULL,
            interests    TEXT NOT NULL,
            embedding    BLOB NOT NULL,
            provenance   TEXT NOT NULL,
            source_key   TEXT NOT NULL,
            drift_score  REAL,
            created_at   REAL NOT NULL,
            PRIMARY KEY (user_id, window_index)
        );
        """,
    ),
    (
        "0004_drift_reports",
        """
        CREATE TABLE drift_reports (
            id            INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id       TEXT NOT NULL,
            window_index  INTEGER NOT NULL,
            score         REAL,
            threshold     REAL NOT NULL,
            detected      INTEGER NOT NULL,
            report        TEXT NOT NULL,
            created_at    REAL NOT NULL
        );
        CREATE UNIQUE INDEX drift_by_user_window ON drift_reports (user_id, window_index);
        """,
    ),
    (
        # Each window's full verdict (threshold, detection, gained, lost), for the inspector.
        "0005_profile_drift",
        """
        ALTER TABLE profiles ADD COLUMN drift TEXT;
        CREATE INDEX profiles_by_window_end ON profiles (window_end);
        """,
    ),
    (
        # What a user's stored profiles were last found up to date with, so a read can tell
        # "nothing changed" from a stamp instead of re-cutting and re-hashing every window;
        # and the recommender's candidate lists for the current profile, kept for reuse.
        "0006_read_path",
        """
        CREATE TABLE profile_state (
            user_id     TEXT PRIMARY KEY,
            events      TEXT NOT NULL,
            makers      TEXT NOT NULL,
            valid_until REAL
        );
        CREATE TABLE candidate_lists (
            user_id TEXT PRIMARY KEY,
            key     TEXT NOT NULL,
            lists   BLOB NOT NULL
        );
        """,
    ),
    (
        # Counts the item writes that changed an item: a profile state is stored only if none
        # came between the read of the items it was made from and its own write (a change
        # landing while a window is summarised would otherwise be covered by the new state).
        "0007_item_changes",
        """
        CREATE TABLE item_changes (
            id    INTEGER PRIMARY KEY CHECK (id = 0),
            count INTEGER NOT NULL
        );
        INSERT INTO item_changes VALUES (0, 0);
        """,
    ),
]


@dataclass(frozen=True)
class ProfileState:
    """What a user's profiles were found up to date with: their events (`Store.events_stamp`),
    the summarizer, embedder and window settings (``makers``, a hash), and until when (time
    windows close with time; None: until one of the others changes)."""

    events: str
    makers: str
    valid_until: float | None


@dataclass(frozen=True)
class CurrentRead:
    """One consistent read of what a recommendation needs when nothing changed."""

    state: ProfileState | None
    events: str  # the events stamp now
    newest: Profile | None
    history: list[str]  # item ids, oldest first


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    unknown_items: int


# The columns of the hot reads, in the order of the Item and Event fields they fill.
ITEM_COLUMNS = "item_id, title, text, categories, attributes"
EVENT_COLUMNS = "event_id, user_id, item_id, type, ts, value"
# Every table that holds something of a user: what a deletion empties.
USER_TABLES = ("events", "profiles", "drift_reports", "profile_state", "candidate_lists")
MMAP_BYTES = 1 << 30  # address space, not memory: pages are the OS's cache, shared
PAGE_CACHE_KIB = 65_536


class Store:
    """One connection guarded by a lock: SQLite serialises writers anyway, and this keeps
    "database is locked" away from callers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._deletions = 0
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        # Deleted rows are overwritten with zeros, so a deleted user is gone from the file too.
        self._conn.execute("PRAGMA secure_delete=ON")
        self._conn.execute("PRAGMA busy_timeout=10000")
        # Reads go through a memory map and a larger page cache instead of a read() call per
        # page: a request reads a user's events, items and profiles from all over the file.
        self._conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        self._conn.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
        self.migrate()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows as plain tuples, for the reads of every request: a ``sqlite3.Row`` is read
        by column name, field by field, which cost more than the query itself."""
        with self._lock:
            cursor = self._conn.cursor()
            cursor.row_factory = None
            return cursor.execute(sql, params).fetchall()

    # --- migrations -------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply the migrations not yet recorded; return the names applied now."""
        with self.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)"
            )
            done = {row["name"] for row in conn.execute("SELECT name FROM _migrations")}
            applied = []
            for name, sql in MIGRATIONS:
                if name in done:
                    continue
                for statement in filter(str.strip, sql.split(";")):
                    conn.execute(statement)
                conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
                applied.append(name)
        return applied

    def applied_migrations(self) -> list[str]:
        return [row["name"] for row in self._query("SELECT name FROM _migrations ORDER BY name")]

    # --- items ------------------------------------------------------------------------------

    def upsert_items(self, items: Iterable[Item]) -> int:
        rows = [
            (
                item.item_id,
                item.title,
                item.text,
                json.dumps(list(item.categories)),
                json.dumps(item.attributes),
                time.time(),
            )
            for item in items
        ]
        with self.transaction() as conn:
            changed = _changed_items(conn, rows)
            conn.executemany(
                """INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT (item_id) DO UPDATE SET title=excluded.title, text=excluded.text,
                   categories=excluded.categories, attributes=excluded.attributes,
                   updated_at=excluded.updated_at""",
                rows,
            )
            # A profile summarises its items' text: the users of a new or changed item must
            # have their windows checked again.
            if changed:
                conn.execute("UPDATE item_changes SET count = count + 1")
            for start in range(0, len(changed), 500):
                chunk = changed[start : start + 500]
                conn.execute(
                    "DELETE FROM profile_state WHERE user_id IN (SELECT user_id FROM events"
                    f" WHERE item_id IN ({','.join('?' * len(chunk))}))",
                    chunk,
                )
        return len(rows)

    def item_changes(self) -> int:
        """How many item writes changed an item so far (see ``ProfileWrite.item_changes``)."""
        return int(self._tuples("SELECT count FROM item_changes", ())[0][0])

    def get_items(self, item_ids: Iterable[str]) -> dict[str, Item]:
        ids = list(dict.fromkeys(item_ids))
        found: dict[str, Item] = {}
        for start in range(0, len(ids), 500):  # SQLite caps bound parameters per statement
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT {ITEM_COLUMNS} FROM items WHERE item_id IN ({marks})"
            for row in self._tuples(sql, chunk):
                found[row[0]] = _item_from_tuple(row)
        return found

    def iter_items(self, chunk_size: int = 2_000) -> Iterator[list[Item]]:
        """All items in id order, in chunks, so a large catalog never sits in memory twice."""
        last = ""
        while True:
            rows = self._tuples(
                f"SELECT {ITEM_COLUMNS} FROM items WHERE item_id > ? ORDER BY item_id LIMIT ?",
                (last, chunk_size),
            )
            if not rows:
                return
            yield [_item_from_tuple(row) for row in rows]
            last = rows[-1][0]

    def count_items(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM items")[0][0])

    # --- events -----------------------------------------------------------------------------

    def add_events(self, events: Sequence[Event]) -> IngestResult:
        """Store new events; an event_id seen before for the same user (or twice in the batch)
        is a duplicate. Ids are per user, so two clients numbering events 1, 2, 3 for their own
        users never swallow each other's events."""
        now = time.time()
        with self.transaction() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO events (event_id, user_id, item_id, type, ts, value,"
                " received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(e.event_id, e.user_id, e.item_id, e.type, e.ts, e.value, now) for e in events],
            )
            accepted = conn.total_changes - before
        known = self.get_items(e.item_id for e in events)
        unknown = sum(1 for e in events if e.item_id not in known)
        return IngestResult(accepted, len(events) - accepted, unknown)

    def user_events(self, user_id: str) -> list[Event]:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE user_id = ? ORDER BY ts, seq"
        return [Event(*row) for row in self._tuples(sql, (user_id,))]

    def user_exists(self, user_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM events WHERE user_id = ? LIMIT 1", (user_id,)))

    def user_item_ids(self, user_id: str) -> set[str]:
        rows = self._query("SELECT DISTINCT item_id FROM events WHERE user_id = ?", (user_id,))
        return {row[0] for row in rows}

    def count_events(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM events")[0][0])

    def events_version(self) -> tuple[int, int]:
        """Changes when events are added (the newest sequence number, never reused) or deleted
        through this store; a lookup on the primary key, where COUNT(*) reads every row."""
        newest = self._query("SELECT MAX(seq) FROM events")[0][0]
        return int(newest or 0), self._deletions

    def events_stamp(self, user_id: str) -> str:
        """Changes whenever the user's events do: their count and newest sequence number
        (read from the index alone)."""
        return _events_stamp(self._tuples(_EVENTS_STAMP, (user_id,))[0])

    def user_ids(self) -> list[str]:
        return [row[0] for row in self._query("SELECT DISTINCT user_id FROM events ORDER BY 1")]

    def popularity(self, limit: int) -> list[tuple[str, int]]:
        """Items by number of distinct users, most popular first. It reads every event, so it
        runs on a connection of its own: requests using the shared one are not held up."""
        sql = (
            "SELECT item_id, COUNT(DISTINCT user_id) AS n FROM events"
            " GROUP BY item_id ORDER BY n DESC, item_id LIMIT ?"
        )
        if str(self.path) == ":memory:":
            rows = self._query(sql, (limit,))
        else:
            reader = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                rows = reader.execute(sql, (limit,)).fetchall()
            finally:
                reader.close()
        return [(row[0], int(row[1])) for row in rows]

    def iter_user_items(self, chunk_size: int = 50_000) -> Iterator[tuple[str, str]]:
        """Every (user id, item id) of the events, in chunks along the primary key, so the
        collaborative model reads millions of events without holding the store's lock long."""
        last = 0
        while True:
            rows = self._query(
                "SELECT seq, user_id, item_id FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (last, chunk_size),
            )
            if not rows:
                return
            yield from ((row[1], row[2]) for row in rows)
            last = rows[-1][0]

    # --- profiles ---------------------------------------------------------------------------

    def save_profile(self, profile: Profile) -> None:
        """Store (or replace) a window's profile, unless the user has no events any more: a
        profile generated while another process deleted the user is not written back."""
        with self.transaction() as conn:
            conn.execute(_SAVE_PROFILE, _profile_row(profile))

    def save_profiles(self, writes: Sequence[ProfileWrite]) -> None:
        """Several users' new profiles, and the windows each keeps, in one transaction: one
        commit (one fsync) for a whole batch of a refresh instead of one per window."""
        with self.transaction() as conn:
            for write in writes:
                conn.executemany(_SAVE_PROFILE, [_profile_row(p) for p in write.profiles])
                _keep_only_windows(conn, write.user_id, write.keep_windows)
                if write.state is not None:
                    conn.execute(
                        "INSERT OR REPLACE INTO profile_state SELECT ?, ?, ?, ?"
                        " WHERE EXISTS (SELECT 1 FROM events WHERE user_id = ?)"  # as profiles
                        " AND (SELECT count FROM item_changes) = ?",
                        (write.user_id, *astuple(write.state), write.user_id, write.item_changes),
                    )

    def keep_only_windows(self, user_id: str, window_indexes: Sequence[int]) -> None:
        """Drop profiles and drift reports of windows that no longer exist (events arrived
        that re-cut the user's timeline)."""
        with self.transaction() as conn:
            _keep_only_windows(conn, user_id, window_indexes)

    def profiles(self, user_id: str, limit: int | None = None) -> list[Profile]:
        """The user's profiles, oldest first; with ``limit``, only the newest ``limit``."""
        rows = self._query(
            "SELECT * FROM profiles WHERE user_id = ? ORDER BY window_index DESC LIMIT ?",
            (user_id, -1 if limit is None else limit),
        )
        return [_profile_from_row(row) for row in reversed(rows)]

    def current_read(self, user_id: str) -> CurrentRead:
        """The user's profile state, events stamp, newest profile and history, read in one
        transaction: a request that finds the state matching the stamp needs nothing else."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                state = self._conn.execute(
                    "SELECT events, makers, valid_until FROM profile_state WHERE user_id = ?",
                    (user_id,),
                ).fetchone()
                events = _events_stamp(self._conn.execute(_EVENTS_STAMP, (user_id,)).fetchone())
                newest = self._conn.execute(
                    "SELECT * FROM profiles WHERE user_id = ? ORDER BY window_index DESC LIMIT 1",
                    (user_id,),
                ).fetchone()
                cursor = self._conn.cursor()
                cursor.row_factory = None
                history = cursor.execute(
                    "SELECT item_id FROM events WHERE user_id = ? ORDER BY ts, seq", (user_id,)
                ).fetchall()
            finally:
                self._conn.execute("COMMIT")
        return CurrentRead(
            state=ProfileState(*state) if state else None,
            events=events,
            newest=_profile_from_row(newest) if newest else None,
            history=[row[0] for row in history],
        )

    def candidate_lists(self, user_id: str) -> tuple[str, bytes] | None:
        """The recommender's stored candidate lists for the user and the key they were made
        for, if any."""
        rows = self._tuples("SELECT key, lists FROM candidate_lists WHERE user_id = ?", (user_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    def save_candidate_lists(self, lists: Sequence[tuple[str, str, bytes]]) -> None:
        """(user id, key, lists) rows, one transaction; a user without events any more is
        skipped (deleted meanwhile)."""
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO candidate_lists SELECT ?, ?, ?"
                " WHERE EXISTS (SELECT 1 FROM events WHERE user_id = ?)",
                [(user, key, blob, user) for user, key, blob in lists],
            )

    def recent_drifts(self, limit: int) -> list[Profile]:
        """Each user's latest window with detected drift, the most recent first."""
        rows = self._query(
            """SELECT *, MAX(window_end) FROM profiles
               WHERE json_extract(drift, '$.detected') = 1
               GROUP BY user_id ORDER BY window_end DESC LIMIT ?""",
            (limit,),
        )
        return [_profile_from_row(row) for row in rows]

    def recent_fallbacks(self, limit: int) -> list[Profile]:
        """Profiles whose LLM answer was rejected, the newest first."""
        rows = self._query(
            """SELECT * FROM profiles
               WHERE json_extract(provenance, '$.fallback_reason') IS NOT NULL
               ORDER BY created_at DESC LIMIT ?""",
            (limit,),
        )
        return [_profile_from_row(row) for row in rows]

    def count_users(self) -> int:
        return int(self._query("SELECT COUNT(DISTINCT user_id) FROM events")[0][0])

    # --- drift ------------------------------------------------------------------------------

    def save_drift_report(self, report: DriftReport) -> None:
        window_index = report.current_window.index if report.current_window else -1
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO drift_reports"
                " (user_id, window_index, score, threshold, detected, report, created_at)"
                " SELECT ?, ?, ?, ?, ?, ?, ?"
                " WHERE EXISTS (SELECT 1 FROM events WHERE user_id = ?)",  # see save_profile
                (
                    report.user_id,
                    window_index,
                    report.score,
                    report.threshold,
                    int(report.drift_detected),
                    json.dumps(_drift_to_json(report)),
                    time.time(),
                    report.user_id,
                ),
            )

    def drift_reports(self, user_id: str) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT report FROM drift_reports WHERE user_id = ? ORDER BY window_index", (user_id,)
        )
        return [json.loads(row[0]) for row in rows]

    # --- deletion ---------------------------------------------------------------------------

    def delete_user(self, user_id: str) -> bool:
        """Remove everything kept about a user; False when there was nothing."""
        with self.transaction() as conn:
            removed = 0
            for table in USER_TABLES:
                removed += conn.execute(
                    f"DELETE FROM {table} WHERE user_id = ?", (user_id,)
                ).rowcount
        if removed:
            self._deletions += 1
            # Copy the WAL back into the (zeroing) main file and truncate it: old page images
            # in the log would otherwise keep the user's rows until the next checkpoint.
            with self._lock:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return removed > 0


@dataclass(frozen=True)
class ProfileWrite:
    user_id: str
    profiles: Sequence[Profile]  # new or changed
    keep_windows: Sequence[int]  # every window the user has now
    state: ProfileState | None = None  # what they are all up to date with
    # Store.item_changes() read before the items the profiles were made from: the state is
    # not written if an item changed since (the profiles may hold its old text).
    item_changes: int = -1


_EVENTS_STAMP = "SELECT COUNT(*), MAX(seq) FROM events WHERE user_id = ?"


def _events_stamp(row: Sequence[Any]) -> str:
    return f"{row[0]}:{row[1] or 0}"


def _changed_items(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> list[str]:
    """Ids of the rows (as upserted) that are new or whose text or categories differ."""
    changed = []
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        cursor = conn.cursor()
        cursor.row_factory = None
        stored = {
            row[0]: row[1:]
            for row in cursor.execute(
                "SELECT item_id, title, text, categories FROM items"
                f" WHERE item_id IN ({','.join('?' * len(chunk))})",
                [row[0] for row in chunk],
            )
        }
        changed += [row[0] for row in chunk if stored.get(row[0]) != tuple(row[1:4])]
    return changed


_SAVE_PROFILE = """INSERT OR REPLACE INTO profiles
    SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
    WHERE EXISTS (SELECT 1 FROM events WHERE user_id = ?)"""


def _profile_row(profile: Profile) -> tuple[Any, ...]:
    window = profile.window
    return (
        profile.user_id,
        window.index,
        window.start,
        window.end,
        window.events,
        int(window.closed),
        profile.summary,
        json.dumps([_interest_to_json(i) for i in profile.interests]),
        np.asarray(profile.embedding, dtype=np.float32).tobytes(),
        json.dumps(profile.provenance),
        profile.source_key,
        profile.drift_score,
        profile.created_at,
        json.dumps(asdict(profile.drift)) if profile.drift else None,
        profile.user_id,
    )


def _keep_only_windows(conn: sqlite3.Connection, user_id: str, indexes: Sequence[int]) -> None:
    keep = json.dumps(list(indexes))
    for table in ("profiles", "drift_reports"):
        conn.execute(
            f"DELETE FROM {table} WHERE user_id = ?"
            " AND window_index NOT IN (SELECT value FROM json_each(?))",
            (user_id, keep),
        )


def _item_from_tuple(row: tuple[Any, ...]) -> Item:
    """An item from the columns of ITEM_COLUMNS, in that order."""
    item_id, title, text, categories, attributes = row
    parsed = {} if attributes == "{}" else json.loads(attributes)
    return Item(item_id, title, text, _categories(categories), parsed)


@lru_cache(maxsize=8_192)
def _categories(stored: str) -> tuple[str, ...]:
    """Category lists repeat across a catalog: each distinct one is parsed once (reading
    items is on the path of every request)."""
    return tuple(json.loads(stored))


def _interest_to_json(interest: Interest) -> dict[str, Any]:
    return {"label": interest.label, "weight": interest.weight, "evidence": list(interest.evidence)}


def _profile_from_row(row: sqlite3.Row) -> Profile:
    return Profile(
        user_id=row["user_id"],
        window=WindowInfo(
            index=row["window_index"],
            start=row["window_start"],
            end=row["window_end"],
            events=row["n_events"],
            closed=bool(row["closed"]),
        ),
        summary=row["summary"],
        interests=tuple(
            Interest(i["label"], i["weight"], tuple(i["evidence"]))
            for i in json.loads(row["interests"])
        ),
        embedding=np.frombuffer(row["embedding"], dtype=np.float32),
        provenance=json.loads(row["provenance"]),
        source_key=row["source_key"],
        created_at=row["created_at"],
        drift=_drift_from_json(row["drift"]),
    )


def _drift_from_json(text: str | None) -> WindowDrift | None:
    if text is None:
        return None
    data = json.loads(text)
    return WindowDrift(
        data["score"],
        data["threshold"],
        data["detected"],
        tuple(data["gained"]),
        tuple(data["lost"]),
    )


def _window_to_json(window: WindowInfo | None) -> dict[str, Any] | None:
    if window is None:
        return None
    return {
        "index": window.index,
        "start": window.start,
        "end": window.end,
        "events": window.events,
        "closed": window.closed,
    }


def _drift_to_json(report: DriftReport) -> dict[str, Any]:
    return {
        "user_id": report.user_id,
        "drift_detected": report.drift_detected,
        "score": report.score,
        "threshold": report.threshold,
        "current_window": _window_to_json(report.current_window),
        "reference_window": [_window_to_json(w) for w in report.reference_window],
        "gained": report.gained,
        "lost": report.lost,
    }
