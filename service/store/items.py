"""The item catalog: upserts that count real changes, reads by id and in chunks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any

from service.core.records import Item
from service.store.connection import Table

# The columns of the hot reads, in the order of the Item fields they fill.
ITEM_COLUMNS = "item_id, title, text, categories, attributes"


class ItemTable(Table):
    def upsert(self, items: Iterable[Item]) -> int:
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
        # In id order (a stable sort: of a repeated id the last still wins): two instances
        # upserting overlapping batches lock the rows in one order and never deadlock.
        rows.sort(key=lambda row: row[0])
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

    def changes(self) -> int:
        """How many item writes changed an item so far (see ``ProfileWrite.item_changes``)."""
        return int(self._tuples("SELECT count FROM item_changes", ())[0][0])

    def get(self, item_ids: Iterable[str]) -> dict[str, Item]:
        ids = list(dict.fromkeys(item_ids))
        found: dict[str, Item] = {}
        for start in range(0, len(ids), 500):  # SQLite caps bound parameters per statement
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT {ITEM_COLUMNS} FROM items WHERE item_id IN ({marks})"
            for row in self._tuples(sql, chunk):
                found[row[0]] = _item_from_tuple(row)
        return found

    def chunks(self, chunk_size: int = 2_000) -> Iterator[list[Item]]:
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

    def count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM items")[0][0])


def _changed_items(conn: Any, rows: Sequence[tuple[Any, ...]]) -> list[str]:
    """Ids of the rows (as upserted) that are new or whose text or categories differ."""
    changed = []
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        stored = {
            row[0]: tuple(row)[1:]
            for row in conn.execute(
                "SELECT item_id, title, text, categories FROM items"
                f" WHERE item_id IN ({','.join('?' * len(chunk))})",
                [row[0] for row in chunk],
            ).fetchall()
        }
        changed += [row[0] for row in chunk if stored.get(row[0]) != tuple(row[1:4])]
    return changed


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
