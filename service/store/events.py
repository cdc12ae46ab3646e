"""Events: idempotent ingestion (a retried batch is never counted twice) and per-user reads."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from service.core.records import Event
from service.store.connection import Database, Table
from service.store.items import ItemTable


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    unknown_items: int


# The columns of the hot reads, in the order of the Event fields they fill.
EVENT_COLUMNS = "event_id, user_id, item_id, type, ts, value"


class EventTable(Table):
    def __init__(self, database: Database, items: ItemTable) -> None:
        super().__init__(database)
        self.items = items  # an ingest reports the events whose items are not in the catalog

    def add(self, events: Sequence[Event]) -> IngestResult:
        """Store new events; an event_id seen before for the same user (or twice in the batch)
        is a duplicate. Ids are per user, so two clients numbering events 1, 2, 3 for their own
        users never swallow each other's events."""
        now = time.time()
        # ON CONFLICT DO NOTHING on the unique (user, event id): on PostgreSQL, a second
        # instance inserting the same event at the same moment waits for the first one's
        # transaction and then skips the row, so a batch retried at two instances counts once.
        with self.transaction() as conn:
            accepted = conn.executemany(
                "INSERT INTO events (event_id, user_id, item_id, type, ts, value, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, event_id) DO NOTHING",
                [(e.event_id, e.user_id, e.item_id, e.type, e.ts, e.value, now) for e in events],
            ).rowcount
        known = self.items.get(e.item_id for e in events)
        unknown = sum(1 for e in events if e.item_id not in known)
        return IngestResult(accepted, len(events) - accepted, unknown)

    def of_user(self, user_id: str) -> list[Event]:
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE user_id = ? ORDER BY ts, seq"
        return [Event(*row) for row in self._tuples(sql, (user_id,))]

    def count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM events")[0][0])

    def version(self) -> tuple[int, int]:
        """Changes when events are added (the newest sequence number, never reused) or a user
        is deleted, by any instance over the store; lookups on primary keys, where COUNT(*)
        reads every row."""
        newest, deletions = self._tuples(
            "SELECT (SELECT MAX(seq) FROM events), (SELECT count FROM deletions)"
        )[0]
        return int(newest or 0), int(deletions)

    def stamp(self, user_id: str) -> str:
        """Changes whenever the user's events do: their count and newest sequence number
        (read from the index alone)."""
        return stamp_of(self._tuples(EVENTS_STAMP, (user_id,))[0])

    def user_ids(self) -> list[str]:
        return [row[0] for row in self._query("SELECT DISTINCT user_id FROM events ORDER BY 1")]

    def count_users(self) -> int:
        return int(self._query("SELECT COUNT(DISTINCT user_id) FROM events")[0][0])

    def popularity(self, limit: int) -> list[tuple[str, int]]:
        """Items by number of distinct users, most popular first. It reads every event, so it
        runs on a connection of its own: requests using the shared one are not held up."""
        rows = self.engine.read_apart(
            "SELECT item_id, COUNT(DISTINCT user_id) AS n FROM events"
            " GROUP BY item_id ORDER BY n DESC, item_id LIMIT ?",
            (limit,),
        )
        return [(row[0], int(row[1])) for row in rows]

    def user_items(self, chunk_size: int = 50_000) -> Iterator[tuple[str, str, float]]:
        """Every (user id, item id, time) of the events, in chunks along the primary key, so
        the collaborative model reads millions of events without holding the store's lock
        long."""
        last = 0
        while True:
            rows = self._query(
                "SELECT seq, user_id, item_id, ts FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (last, chunk_size),
            )
            if not rows:
                return
            yield from ((row[1], row[2], float(row[3])) for row in rows)
            last = rows[-1][0]


# A user's events stamp: read here and inside the profiles' one-transaction read.
EVENTS_STAMP = "SELECT COUNT(*), MAX(seq) FROM events WHERE user_id = ?"


def stamp_of(row: Sequence[Any]) -> str:
    return f"{row[0]}:{row[1] or 0}"
