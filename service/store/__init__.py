"""The store: one table object per thing kept (``store.items``, ``store.events``,
``store.profiles``, ``store.lists``) over one database, SQLite (a file, the default) or
PostgreSQL (``IPROF_DATABASE_URL``; see ``connection.py``).

``Store`` is what the rest of the service uses; each table's module says where its queries live.
"""

from __future__ import annotations

from pathlib import Path

from service.core.config import DEFAULT_DATABASE_TIMEOUT_S
from service.store.candidate_lists import CandidateListTable
from service.store.connection import Database, Migrations
from service.store.errors import SchemaMismatch, StoreUnavailable
from service.store.events import EventTable, IngestResult
from service.store.items import ItemTable
from service.store.profiles import CurrentRead, ProfileState, ProfileTable, ProfileWrite
from service.store.users import delete_user

__all__ = [
    "CurrentRead",
    "IngestResult",
    "ProfileState",
    "ProfileWrite",
    "SchemaMismatch",
    "Store",
    "StoreUnavailable",
]


class Store(Database):
    """Items, events, profiles (with their drift) and their state, candidate lists."""

    def __init__(
        self,
        target: Path | str,
        pool_size: int = 10,
        timeout_s: float = DEFAULT_DATABASE_TIMEOUT_S,
        migrations: Migrations = "apply",
    ) -> None:
        super().__init__(target, pool_size, timeout_s, migrations)
        self.items = ItemTable(self)
        self.events = EventTable(self, self.items)
        self.profiles = ProfileTable(self)
        self.lists = CandidateListTable(self)

    def delete_user(self, user_id: str) -> bool:
        """Remove everything kept about a user (every table); False when there was nothing."""
        return delete_user(self, user_id)
