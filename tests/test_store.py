import sqlite3

import numpy as np

from service.core.records import Event, Interest, Item, Profile, WindowInfo
from service.store import Store
from service.store.migrations import MIGRATIONS


def _event(event_id, user="u1", item="a", ts=1.0):
    return Event(event_id, user, item, "view", ts)


def test_migrations_are_applied_once_and_recorded(settings):
    first = Store(settings.database_path)
    assert first.applied_migrations() == [name for name, _ in MIGRATIONS]
    first.close()
    again = Store(settings.database_path)
    assert again.migrate() == []
    again.close()


def test_schema_has_the_expected_tables_and_wal(settings):
    Store(settings.database_path).close()
    conn = sqlite3.connect(settings.database_path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"items", "events", "profiles", "drift_reports", "_migrations"} <= tables
    event_columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    assert {"event_id", "user_id", "item_id", "type", "ts", "value"} <= event_columns
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_events_are_idempotent_by_event_id(store):
    store.upsert_items([Item("a", "A")])
    first = store.add_events([_event("e1"), _event("e2", item="zzz"), _event("e1")])
    assert (first.accepted, first.duplicates, first.unknown_items) == (2, 1, 1)
    again = store.add_events([_event("e1"), _event("e2", item="zzz")])
    assert (again.accepted, again.duplicates) == (0, 2)
    assert [e.event_id for e in store.user_events("u1")] == ["e1", "e2"]


def test_acknowledged_writes_survive_reopening(settings):
    store = Store(settings.database_path)
    store.upsert_items([Item("a", "A", categories=("x",))])
    store.add_events([_event("e1")])
    # No close(): a crashed process never gets to close its connection.
    reopened = Store(settings.database_path)
    assert reopened.get_items(["a"])["a"].categories == ("x",)
    assert reopened.count_events() == 1


def test_items_upsert_replaces_fields(store):
    store.upsert_items([Item("a", "Old", "old text", ("x",), {"year": 1})])
    store.upsert_items([Item("a", "New", "new text", ("y", "z"), {"year": 2})])
    assert store.get_items(["a"])["a"] == Item("a", "New", "new text", ("y", "z"), {"year": 2})
    assert store.count_items() == 1


def test_iter_items_streams_everything_in_chunks(store):
    store.upsert_items(Item(f"i{n:03d}", f"T{n}") for n in range(25))
    chunks = list(store.iter_items(chunk_size=10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert len({i.item_id for c in chunks for i in c}) == 25


def test_profile_round_trip_and_user_deletion(store):
    profile = Profile(
        user_id="u1",
        window=WindowInfo(0, 1.0, 2.0, 3, True),
        summary="likes a",
        interests=(Interest("A things", 1.0, ("a",)),),
        embedding=np.array([0.6, 0.8], dtype=np.float32),
        provenance={"summarizer": "extractive"},
        source_key="h",
        created_at=5.0,
    )
    store.add_events([_event("e1")])
    store.save_profile(profile)
    (loaded,) = store.profiles("u1")
    assert loaded.interests == profile.interests
    np.testing.assert_allclose(loaded.embedding, profile.embedding)
    assert store.delete_user("u1") is True
    assert store.profiles("u1") == [] and not store.user_exists("u1")
    assert store.delete_user("u1") is False


def test_popularity_counts_distinct_users_and_all_events_are_streamed(store):
    store.add_events(
        [
            _event("1", "u1", "a"),
            _event("2", "u1", "b"),
            _event("3", "u2", "a"),
            _event("4", "u2", "b"),
            _event("5", "u2", "c"),
            _event("6", "u3", "c"),
        ]
    )
    assert store.popularity(2) == [("a", 2), ("b", 2)]
    pairs = list(store.iter_user_items(chunk_size=4))  # two chunks: the paging must not skip
    assert pairs == [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u2", "c"), ("u3", "c")]


def test_a_profile_of_a_user_deleted_meanwhile_is_not_written_back(store):
    # Another process may delete the user while this one generates: the store refuses the
    # late write instead of resurrecting the user.
    profile = Profile(
        user_id="gone",
        window=WindowInfo(0, 1.0, 2.0, 3, True),
        summary="x",
        interests=(),
        embedding=np.zeros(2, dtype=np.float32),
        provenance={},
        source_key="k",
        created_at=1.0,
    )
    store.save_profile(profile)
    assert store.profiles("gone") == []
    store.add_events([_event("e1", user="gone")])
    store.save_profile(profile)
    assert len(store.profiles("gone")) == 1
