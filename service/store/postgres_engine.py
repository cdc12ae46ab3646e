"""PostgreSQL: a pool of connections to one server that several service instances share.

Used when ``IPROF_DATABASE_URL`` is a ``postgresql://`` URL (the ``postgres`` extra installs
psycopg). The SQL of the table classes is written once: ``?`` placeholders become psycopg's
``%s`` here, and the few dialect differences are the methods below.

Durability: ``synchronous_commit=on`` on every connection, so a write is acknowledged only
after its commit record is flushed to the server's disk (acknowledged = committed).

Outages: a request waits at most ``timeout_s`` for a connection, then gets StoreUnavailable
(503 at the API), and every connection is checked as it leaves the pool, so after the server
is back the next request gets a working one. The outage's two edges are logged once each.

Unlike SQLite, writers run concurrently (READ COMMITTED). What SQLite got from serial writers
is taken explicitly: a transaction-scoped advisory lock per user for the writes that must not
race a deletion of that user, and a share lock on the item-change counter for profile writes.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from service.core.config import DEFAULT_DATABASE_TIMEOUT_S
from service.store.errors import StoreUnavailable

log = logging.getLogger(__name__)
# The pool logs every failed reconnection attempt; the outage's edges are logged here instead.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

# Any constant: the advisory lock two instances starting at once take to migrate one by one.
_MIGRATION_LOCK = 0x1F0F_2022
# SQLSTATE classes of a server that is gone or going: connection exceptions, shutdowns.
_OUTAGE_STATES = ("08", "57P")


class Row(tuple):  # type: ignore[type-arg]
    """A row read by position or by column name, as ``sqlite3.Row`` is."""

    _index: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)


def _named_rows(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    index = {column.name: i for i, column in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> Row:
        row = Row(values)
        row._index = index
        return row

    return make


@lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """The store's SQL with psycopg's placeholders (no statement holds a literal ``?``)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgConnection:
    """A connection inside a transaction, with the ``execute``/``executemany`` of sqlite3."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        cursor = self._conn.cursor(row_factory=_named_rows)
        if params:
            cursor.execute(_pg_sql(sql), params)
        else:
            cursor.execute(sql)
        return cursor

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> psycopg.Cursor[Any]:
        cursor = self._conn.cursor()
        if rows:
            cursor.executemany(_pg_sql(sql), rows)
        return cursor


class PostgresEngine:
    dialect = "postgresql"
    errors: tuple[type[Exception], ...] = (psycopg.Error,)
    float_type = "DOUBLE PRECISION"
    # Taken by a reader that must not miss a concurrent writer of the row it reads.
    for_share = " FOR SHARE"

    def __init__(
        self, url: str, pool_size: int = 10, timeout_s: float = DEFAULT_DATABASE_TIMEOUT_S
    ) -> None:
        self.url = url
        # libpq takes whole seconds, and reads 1 as 2.
        connect_timeout = max(2, math.ceil(timeout_s))
        self._probe(connect_timeout)
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max(pool_size, 1),
            kwargs={
                "autocommit": True,
                "connect_timeout": connect_timeout,
                # Which instance and process a connection is, in pg_stat_activity.
                "application_name": f"iprof {socket.gethostname()} {os.getpid()}"[:63],
            },
            configure=_configure,
            check=ConnectionPool.check_connection,
            timeout=timeout_s,
            # A failed reconnection is given up soon, so the next request starts a fresh
            # attempt at once instead of waiting out the pool's growing backoff (which had the
            # service back ~19 s after the server).
            reconnect_timeout=timeout_s,
            open=False,
            name="iprof-store",
        )
        self._pool.open(wait=False)
        self._down_since: float | None = None
        self._edge = threading.Lock()
        # Requests answered StoreUnavailable, by why: "timeout" (no connection in time) or
        # "connection" (the server went away mid-statement).
        self.unavailable: Counter[str] = Counter()

    def _probe(self, connect_timeout: int) -> None:
        """One connection first, so a wrong URL, database or password is said in one line now
        rather than as a pool timeout later."""
        try:
            psycopg.connect(self.url, connect_timeout=connect_timeout).close()
        except psycopg.Error as error:
            text = str(error).strip()
            reason = text.splitlines()[0] if text else type(error).__name__
            raise StoreUnavailable(
                f"cannot open PostgreSQL at {self.describe()}: {reason}"
            ) from None

    def describe(self) -> str:
        """The URL without its password (for logs and /ready)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{parts.username}@{host}" if parts.username else host
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def close(self) -> None:
        self._pool.close()

    def ping(self) -> None:
        with self._connection() as conn:
            conn.execute("SELECT 1")

    def stats(self) -> dict[str, int]:
        """The pool now (connections open, idle, requests waiting for one) and the requests
        answered StoreUnavailable so far, for /metrics."""
        pool = self._pool.get_stats()
        return {
            "connections": pool.get("pool_size", 0),
            "idle": pool.get("pool_available", 0),
            "waiting": pool.get("requests_waiting", 0),
            "unavailable_timeout": self.unavailable["timeout"],
            "unavailable_connection": self.unavailable["connection"],
        }

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; an outage (no connection within the timeout, or the server
        gone mid-statement) as StoreUnavailable: the write was not acknowledged (a server that
        dies during a commit may still have made it; a retry is idempotent)."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except PoolTimeout:
            self._went_down("timeout", "no connection to the database within the timeout")
            raise StoreUnavailable(f"the database at {self.describe()} is unavailable") from None
        except psycopg.OperationalError as error:
            if not _is_outage(error):
                raise
            text = str(error).strip()
            self._went_down("connection", text.splitlines()[0] if text else type(error).__name__)
            raise StoreUnavailable(f"the database at {self.describe()} is unavailable") from None
        self._came_back()

    def _went_down(self, why: str, reason: str) -> None:
        with self._edge:
            self.unavailable[why] += 1
            if self._down_since is None:
                self._down_since = time.monotonic()
                log.error("store unavailable (%s): %s", self.describe(), reason)

    def _came_back(self) -> None:
        if self._down_since is None:  # the common case: no lock taken
            return
        with self._edge:
            if self._down_since is not None:
                log.warning(
                    "store reachable again after %.1f s", time.monotonic() - self._down_since
                )
                self._down_since = None

    @contextmanager
    def transaction(self) -> Iterator[PgConnection]:
        with self._connection() as conn, conn.transaction():
            yield PgConnection(conn)

    @contextmanager
    def snapshot(self) -> Iterator[PgConnection]:
        """Reads that see one state of the database (a repeatable-read, read-only
        transaction)."""
        with self._connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield PgConnection(conn)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._connection() as conn:
            return PgConnection(conn).execute(sql, params).fetchall()

    def tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            cursor = conn.cursor()
            cursor.execute(_pg_sql(sql), params) if params else cursor.execute(sql)
            return cursor.fetchall()

    def read_apart(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every read has a pooled connection of its own already."""
        return self.tuples(sql, params)

    def lock_users(self, conn: PgConnection, user_ids: Sequence[str]) -> None:
        """Until the transaction ends, no other transaction that locks one of these users
        (a deletion, a profile or candidate-list write) runs alongside. Taken in one order
        (by the lock's key), so two writers of overlapping users cannot deadlock."""
        if user_ids:
            conn.execute(
                "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT"
                " hashtextextended(u, 0) AS k FROM unnest(?::text[]) AS u ORDER BY k) AS keys",
                (sorted(set(user_ids)),),
            )

    def lock_migrations(self, conn: PgConnection) -> None:
        conn.execute(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")

    def after_delete(self) -> None:
        """Nothing to do: see docs/RELIABILITY.md on what a deletion leaves on disk here."""

    def json_flag(self, column: str, key: str) -> str:
        return f"({column})::jsonb ->> '{key}' = 'true'"

    def json_text(self, column: str, key: str) -> str:
        return f"({column})::jsonb ->> '{key}'"

    def json_present(self, column: str, key: str) -> str:
        return f"({column})::jsonb ->> '{key}' IS NOT NULL"


def _is_outage(error: psycopg.OperationalError) -> bool:
    """A server gone or going (or never reached), not a statement's own failure."""
    state = error.sqlstate
    return state is None or state.startswith(_OUTAGE_STATES)


def _configure(conn: psycopg.Connection[Any]) -> None:
    # The server's default, set explicitly: a commit returns once its WAL record is on disk.
    conn.execute("SET synchronous_commit = on")
