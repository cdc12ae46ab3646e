"""The SQLite connection: one connection behind a lock, transactions, named migrations.

WAL mode with ``synchronous=FULL``: a write is acknowledged only after its transaction is on
disk, so an acknowledged batch survives a crash of the process or of the machine.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from service.store.migrations import MIGRATIONS

MMAP_BYTES = 1 << 30  # address space, not memory: pages are the OS's cache, shared
PAGE_CACHE_KIB = 65_536


class Database:
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
