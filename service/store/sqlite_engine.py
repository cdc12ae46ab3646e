"""SQLite: one connection behind a lock, in WAL mode, in one file beside the service.

``synchronous=FULL``: a write is acknowledged only after its transaction is on disk, so an
acknowledged batch survives a crash of the process or of the machine.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MMAP_BYTES = 1 << 30  # address space, not memory: pages are the OS's cache, shared
PAGE_CACHE_KIB = 65_536
# How long a starting instance retries switching a new file to WAL while another one does.
WAL_SWITCH_S = 10.0


class SqliteEngine:
    """One connection guarded by a lock: SQLite serialises writers anyway, and this keeps
    "database is locked" away from callers. Every write transaction is ``BEGIN IMMEDIATE``,
    so writes are serial: the per-user and share locks PostgreSQL needs are no-ops here."""

    dialect = "sqlite"
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    float_type = "REAL"
    for_share = ""  # writers are serial already

    def __init__(self, path: Path) -> None:
        self.path = path
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        self._conn.execute("PRAGMA busy_timeout=10000")
        self._use_wal()
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        # Deleted rows are overwritten with zeros, so a deleted user is gone from the file too.
        self._conn.execute("PRAGMA secure_delete=ON")
        # Reads go through a memory map and a larger page cache instead of a read() call per
        # page: a request reads a user's events, items and profiles from all over the file.
        self._conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        self._conn.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")

    def _use_wal(self) -> None:
        """Switch the file to WAL. Switching a new file takes an exclusive lock, and SQLite
        answers "database is locked" at once, without its busy handler, to a second instance
        switching at the same moment (1 start in 40 with three at once): so it tries again."""
        deadline = time.monotonic() + WAL_SWITCH_S
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def ping(self) -> None:
        """A file on this machine: it answers whenever the process runs."""
        self.tuples("SELECT 1")

    def stats(self) -> dict[str, int]:
        return {"connections": 1}  # one connection, shared under a lock

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

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """Reads that see one state of the database (a deferred transaction)."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows as plain tuples, for the reads of every request: a ``sqlite3.Row`` is read
        by column name, field by field, which cost more than the query itself."""
        with self._lock:
            cursor = self._conn.cursor()
            cursor.row_factory = None
            return cursor.execute(sql, params).fetchall()

    def read_apart(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A long read on a connection of its own, so requests on the shared one are not
        held up behind it."""
        if str(self.path) == ":memory:":
            return self.tuples(sql, params)
        reader = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return reader.execute(sql, params).fetchall()
        finally:
            reader.close()

    def lock_users(self, conn: Any, user_ids: Sequence[str]) -> None:
        """Writers are serial (BEGIN IMMEDIATE): nothing to lock."""

    def lock_migrations(self, conn: Any) -> None:
        """Writers are serial: two processes cannot migrate at once."""

    def after_delete(self) -> None:
        # Copy the WAL back into the (zeroing) main file and truncate it: old page images
        # in the log would otherwise keep the user's rows until the next checkpoint.
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def json_flag(self, column: str, key: str) -> str:
        """SQL true where the JSON text in ``column`` has ``key`` set to true."""
        return f"json_extract({column}, '$.{key}') = 1"

    def json_text(self, column: str, key: str) -> str:
        """SQL for the value of ``key`` in the JSON text in ``column``, as text."""
        return f"json_extract({column}, '$.{key}')"

    def json_present(self, column: str, key: str) -> str:
        """SQL true where the JSON text in ``column`` has a non-null ``key``."""
        return f"json_extract({column}, '$.{key}') IS NOT NULL"
