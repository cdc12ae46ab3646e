"""The database under the store: SQLite (a file, the default) or PostgreSQL (a URL), and the
named migrations, recorded in ``_migrations`` on either.

The table classes write their SQL once, with ``?`` placeholders and what both dialects accept
(``INSERT ... ON CONFLICT``, window functions); the engine runs it and supplies the few parts
that differ (``json_flag``, ``for_share``, ``lock_users``, the migration files).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal, Protocol

from service.core.config import DEFAULT_DATABASE_TIMEOUT_S
from service.store.errors import SchemaMismatch, StoreUnavailable
from service.store.migrations import migrations_for
from service.store.sqlite_engine import SqliteEngine

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# What opening the database does with its schema: bring it up to this code's ("apply"); make
# it only where there is none yet, else refuse to go on unless it is this code's ("create": a
# reading command, which never changes an existing schema); refuse unless it is this code's
# already ("check"); or nothing (`iprof migrate` looks itself).
Migrations = Literal["apply", "create", "check", "none"]


class Engine(Protocol):
    dialect: str
    errors: tuple[type[Exception], ...]
    float_type: str
    for_share: str

    def describe(self) -> str: ...
    def ping(self) -> None: ...
    def stats(self) -> dict[str, int]: ...
    def close(self) -> None: ...
    def transaction(self) -> AbstractContextManager[Any]: ...
    def snapshot(self) -> AbstractContextManager[Any]: ...
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...
    def tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def read_apart(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def lock_users(self, conn: Any, user_ids: Sequence[str]) -> None: ...
    def lock_migrations(self, conn: Any) -> None: ...
    def after_delete(self) -> None: ...
    def json_flag(self, column: str, key: str) -> str: ...
    def json_present(self, column: str, key: str) -> str: ...
    def json_text(self, column: str, key: str) -> str: ...


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def open_engine(
    target: Path | str, pool_size: int = 10, timeout_s: float = DEFAULT_DATABASE_TIMEOUT_S
) -> Engine:
    """A PostgreSQL engine for a ``postgresql://`` URL, else SQLite on the file at ``target``."""
    if is_postgres_url(target):
        try:
            from service.store.postgres_engine import PostgresEngine
        except ImportError as error:  # the optional extra
            raise RuntimeError(
                "IPROF_DATABASE_URL is a PostgreSQL URL but psycopg is not installed:"
                " pip install 'interest-profiler[postgres]'"
            ) from error
        return PostgresEngine(str(target), pool_size, timeout_s)
    return SqliteEngine(Path(target))


class Database:
    """The engine the tables run their SQL on, its schema checked (and by default migrated)
    on opening."""

    def __init__(
        self,
        target: Path | str,
        pool_size: int = 10,
        timeout_s: float = DEFAULT_DATABASE_TIMEOUT_S,
        migrations: Migrations = "apply",
    ) -> None:
        self.engine = open_engine(target, pool_size, timeout_s)
        self._checked: tuple[float, str | None] = (-1.0, None)
        self.dialect = self.engine.dialect
        self.errors = self.engine.errors
        if migrations != "none":
            try:
                self._check_schema(migrations)
            except BaseException:  # refused: the pool is not left for the collector to close
                self.engine.close()
                raise

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None on PostgreSQL."""
        return self.engine.path if isinstance(self.engine, SqliteEngine) else None

    def describe(self) -> str:
        return self.engine.describe()

    def problem(self, max_age_s: float = 1.0) -> str | None:
        """Why the database cannot be used now (None: it answers a query), looked at no more
        than once every ``max_age_s`` (readiness probes come often)."""
        checked_at, problem = self._checked
        if time.monotonic() - checked_at < max_age_s:
            return problem
        failures: tuple[type[Exception], ...] = (StoreUnavailable, *self.errors)
        try:
            self.engine.ping()
            problem = None
        except failures as error:
            problem = str(error) or type(error).__name__
        self._checked = (time.monotonic(), problem)
        return problem

    def close(self) -> None:
        self.engine.close()

    def transaction(self) -> AbstractContextManager[Any]:
        """A write transaction: committed when the block ends (and only then acknowledged),
        rolled back if it raises."""
        return self.engine.transaction()

    def snapshot(self) -> AbstractContextManager[Any]:
        return self.engine.snapshot()

    # --- migrations -------------------------------------------------------------------------

    def pending_migrations(self) -> list[str]:
        """This code's migrations the database has not had, in order. A database that has
        migrations this code does not know (a newer version migrated it) is refused."""
        known = self._known()
        applied = set(self._applied())
        unknown = sorted(applied - set(known))
        if unknown:
            raise SchemaMismatch(
                f"the database's schema is newer than this code: it has {', '.join(unknown)},"
                f" this code knows migrations up to {known[-1]}; run a newer interest-profiler"
            )
        return [name for name in known if name not in applied]

    def _check_schema(self, migrations: Migrations) -> None:
        pending = self.pending_migrations()
        new = len(pending) == len(self._known())  # no schema at all yet
        apply = migrations == "apply" or (migrations == "create" and new)
        if pending and not apply:
            raise SchemaMismatch(
                f"the database's schema is older than this code ({len(pending)} migration(s)"
                f" to apply, {pending[0]} to {pending[-1]}): run `iprof migrate`"
            )
        if pending:
            self.migrate()

    def _known(self) -> list[str]:
        return [name for name, _ in migrations_for(self.dialect)]

    def _applied(self) -> list[str]:
        try:
            return [row[0] for row in self.engine.tuples("SELECT name FROM _migrations")]
        except self.errors:  # no _migrations table yet: a new database
            return []

    def migrate(self) -> list[str]:
        """Apply the migrations not yet recorded, in one transaction; return the names
        applied now. Two instances starting at once migrate one after the other."""
        with self.transaction() as conn:
            self.engine.lock_migrations(conn)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS _migrations"
                f" (name TEXT PRIMARY KEY, applied_at {self.engine.float_type})"
            )
            done = {row[0] for row in conn.execute("SELECT name FROM _migrations").fetchall()}
            applied = []
            for name, sql in migrations_for(self.dialect):
                if name in done:
                    continue
                for statement in filter(str.strip, sql.split(";")):
                    conn.execute(statement)
                conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
                applied.append(name)
        return applied


class Table:
    """One table's queries, run on the store's database (each table class says where its
    queries live; the store holds one of each)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.engine = database.engine
        self.errors = database.errors

    def transaction(self) -> AbstractContextManager[Any]:
        return self.database.transaction()

    def snapshot(self) -> AbstractContextManager[Any]:
        return self.database.snapshot()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows readable by position and by column name."""
        return self.engine.query(sql, params)

    def _tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows as plain tuples, for the hot reads."""
        return self.engine.tuples(sql, params)
