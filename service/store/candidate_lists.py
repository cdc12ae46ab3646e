"""The recommender's candidate lists, stored per user under the key they were made for, and
the writer that stores them behind the requests that made them."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from service.store.connection import Table

log = logging.getLogger(__name__)

# How long the writer lets lists made by requests gather before storing them in one go.
WRITE_DELAY = 0.2


class CandidateListTable(Table):
    def get(self, user_id: str) -> tuple[str, bytes] | None:
        """The recommender's stored candidate lists for the user and the key they were made
        for, if any."""
        rows = self._tuples("SELECT key, lists FROM candidate_lists WHERE user_id = ?", (user_id,))
        return (rows[0][0], rows[0][1]) if rows else None

    def save(self, lists: Sequence[tuple[str, str, bytes]]) -> None:
        """(user id, key, lists) rows, one transaction; a user without events any more is
        skipped (deleted meanwhile)."""
        with self.transaction() as conn:
            self.engine.lock_users(conn, [user for user, _, _ in lists])
            conn.executemany(
                "INSERT INTO candidate_lists (user_id, key, lists) SELECT ?, ?, ?"
                " WHERE EXISTS (SELECT 1 FROM events WHERE user_id = ?)"
                " ON CONFLICT (user_id) DO UPDATE SET key = excluded.key, lists = excluded.lists",
                [(user, key, blob, user) for user, key, blob in lists],
            )


class ListsWriter:
    """Stores the lists that requests made, behind them: one transaction (one fsync) a batch,
    and no request waits for the disk. After an index rebuild every user's first request
    makes new lists, and written one by one inside the requests their fsyncs held the store's
    lock (p99 under load: docs/PERFORMANCE.md, "What changed"). Lost on a crash: they are only
    a cache."""

    def __init__(self, table: CandidateListTable, delay: float = WRITE_DELAY) -> None:
        self.table = table
        self.delay = delay
        self._pending: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()
        # Held from taking a batch until it is stored: a flush at shutdown waits for the
        # writer's batch in flight instead of closing the store under it.
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def put(self, user_id: str, key: str, lists: bytes) -> None:
        with self._lock:
            self._pending[user_id] = (key, lists)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lists-writer", daemon=True)
                self._thread.start()
        self._wake.set()

    def pending(self, user_id: str) -> tuple[str, bytes] | None:
        """What is waiting to be written for the user: read before the store, so a second
        request does not make the same lists again."""
        with self._lock:
            return self._pending.get(user_id)

    def flush(self) -> None:
        with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return
            try:
                self.table.save([(u, key, b) for u, (key, b) in batch.items()])
            except self.table.errors as error:  # a cache: the next request makes them again
                log.warning("candidate lists not stored: %s", error)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            time.sleep(self.delay)  # let a batch gather
            self.flush()
