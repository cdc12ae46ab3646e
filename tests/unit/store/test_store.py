"""The store's tests, each run on both engines (SQLite, and PostgreSQL where a throwaway
server can start: the ``store_target`` fixture)."""

import sqlite3
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from service.core.records import (
    Event,
    Interest,
    Item,
    Profile,
    WindowDrift,
    WindowInfo,
)
from service.store import ProfileState, ProfileWrite, SchemaMismatch, Store
from service.store.migrations import FOLDERS, migrations_for
from service.store.users import USER_TABLES


def _event(event_id, user="u1", item="a", ts=1.0):
    return Event(event_id, user, item, "view", ts)


def _save(store, profile):
    """One window's profile written as the profiler writes it: in a batch, the user's other
    windows kept."""
    kept = {p.window.index for p in store.profiles.of_user(profile.user_id)} | {
        profile.window.index
    }
    store.profiles.save([ProfileWrite(profile.user_id, [profile], sorted(kept))])


def _has_events(store, user):
    return bool(store.events.of_user(user))


def _applied(store):
    return [row[0] for row in store.engine.tuples("SELECT name FROM _migrations ORDER BY name")]


def _profile(user="u1", index=0, **changes):
    fields = dict(
        user_id=user,
        window=WindowInfo(index, 1.0 + index, 2.0 + index, 3, True),
        summary="likes a",
        interests=(Interest("A things", 1.0, ("a",)),),
        embedding=np.array([0.6, 0.8], dtype=np.float32),
        provenance={"summarizer": "extractive"},
        source_key="h",
        created_at=5.0 + index,
    )
    return Profile(**{**fields, **changes})


@pytest.fixture
def store(store_target) -> Iterator[Store]:
    opened = Store(store_target)
    yield opened
    opened.close()


@pytest.fixture
def second(store, store_target) -> Iterator[Store]:
    """Another instance over the same database (another process, another machine)."""
    opened = Store(store_target)
    yield opened
    opened.close()


def test_both_engines_have_the_same_migrations_in_the_same_order():
    sqlite_names = [name for name, _ in migrations_for("sqlite")]
    assert sqlite_names == [name for name, _ in migrations_for("postgresql")]
    assert sqlite_names == sorted(sqlite_names) and len(sqlite_names) >= 8
    assert set(FOLDERS) == {"sqlite", "postgresql"}


def test_migrations_are_applied_once_and_recorded(store_target):
    first = Store(store_target)
    assert _applied(first) == [name for name, _ in migrations_for(first.dialect)]
    first.close()
    again = Store(store_target)
    assert again.migrate() == []
    again.close()


def test_a_schema_newer_than_the_code_is_refused_naming_both(store_target):
    store = Store(store_target)
    newest = migrations_for(store.dialect)[-1][0]
    with store.transaction() as conn:
        conn.execute("INSERT INTO _migrations VALUES (?, ?)", ("9999_from_a_newer_release", 0.0))
    store.close()
    with pytest.raises(SchemaMismatch, match=f"9999_from_a_newer_release.*{newest}"):
        Store(store_target)


def test_a_process_that_may_not_migrate_refuses_a_schema_behind_it(tmp_path):
    path = tmp_path / "new.sqlite3"
    with pytest.raises(SchemaMismatch, match="run `iprof migrate`"):
        Store(path, migrations="check")
    looked = Store(path, migrations="none")  # what `iprof migrate` opens
    assert looked.pending_migrations() == [name for name, _ in migrations_for("sqlite")]
    assert looked.migrate() and looked.pending_migrations() == []
    looked.close()
    Store(path, migrations="check").close()  # this code's schema now: it opens


def test_a_reading_process_makes_a_new_schema_but_never_changes_one(tmp_path):
    path = tmp_path / "read.sqlite3"
    Store(path, migrations="create").close()  # nothing there yet: made
    store = Store(path)
    last = migrations_for("sqlite")[-1][0]
    with store.transaction() as conn:  # as if made by the release before the last migration
        conn.execute("DELETE FROM _migrations WHERE name = ?", (last,))
    store.close()
    with pytest.raises(SchemaMismatch, match=f"{last}.*iprof migrate"):
        Store(path, migrations="create")


def test_sqlite_instances_starting_at_once_on_a_new_file_all_start(tmp_path):
    # Switching a new file to WAL: SQLite answers "database is locked" at once, without its
    # busy handler, to a second instance doing it at the same moment (1 start in 40, before).
    for round_ in range(15):
        path = tmp_path / f"new-{round_}.sqlite"
        opened: list[Store] = []
        threads = [
            threading.Thread(target=lambda p=path, o=opened: o.append(Store(p))) for _ in "abc"
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(opened) == 3, round_
        for one in opened:
            one.close()


def test_two_instances_starting_at_once_migrate_once(store_target):
    opened: list[Store] = []
    threads = [threading.Thread(target=lambda: opened.append(Store(store_target))) for _ in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(opened) == 2
    assert _applied(opened[0]) == [name for name, _ in migrations_for(opened[0].dialect)]
    for one in opened:
        one.close()


def test_sqlite_schema_has_the_expected_tables_and_wal(settings):
    Store(settings.database_path).close()
    conn = sqlite3.connect(settings.database_path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"items", "events", "profiles", "_migrations"} <= tables
    assert "drift_reports" not in tables  # one drift record per window, in profiles.drift
    profile_columns = {row[1] for row in conn.execute("PRAGMA table_info(profiles)")}
    assert "drift" in profile_columns and "drift_score" not in profile_columns
    event_columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    assert {"event_id", "user_id", "item_id", "type", "ts", "value"} <= event_columns
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_postgres_commits_are_durable_and_times_keep_double_precision(pg_url):
    store = Store(pg_url)
    assert store.dialect == "postgresql"
    assert store.engine.tuples("SHOW synchronous_commit") == [("on",)]
    assert "password" not in store.describe() and store.describe().startswith("postgresql://")
    store.events.add([_event("e1", ts=1_700_000_000.123456)])
    assert store.events.of_user("u1")[0].ts == 1_700_000_000.123456  # REAL would keep 7 digits
    store.close()


def test_events_are_idempotent_by_event_id(store):
    store.items.upsert([Item("a", "A")])
    first = store.events.add([_event("e1"), _event("e2", item="zzz"), _event("e1")])
    assert (first.accepted, first.duplicates, first.unknown_items) == (2, 1, 1)
    again = store.events.add([_event("e1"), _event("e2", item="zzz")])
    assert (again.accepted, again.duplicates) == (0, 2)
    assert [e.event_id for e in store.events.of_user("u1")] == ["e1", "e2"]


def test_acknowledged_writes_survive_reopening(store_target):
    store = Store(store_target)
    store.items.upsert([Item("a", "A", categories=("x",))])
    store.events.add([_event("e1")])
    # No close(): a crashed process never gets to close its connection.
    reopened = Store(store_target)
    assert reopened.items.get(["a"])["a"].categories == ("x",)
    assert reopened.events.count() == 1


def test_items_upsert_replaces_fields(store):
    store.items.upsert([Item("a", "Old", "old text", ("x",), {"year": 1})])
    store.items.upsert([Item("a", "New", "new text", ("y", "z"), {"year": 2})])
    assert store.items.get(["a"])["a"] == Item("a", "New", "new text", ("y", "z"), {"year": 2})
    assert store.items.count() == 1


def test_item_chunks_stream_everything_in_chunks(store):
    store.items.upsert(Item(f"i{n:03d}", f"T{n}") for n in range(25))
    chunks = list(store.items.chunks(chunk_size=10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert len({i.item_id for c in chunks for i in c}) == 25


def test_profile_round_trip_and_user_deletion(store):
    profile = _profile()
    store.events.add([_event("e1")])
    _save(store, profile)
    (loaded,) = store.profiles.of_user("u1")
    assert loaded.interests == profile.interests
    np.testing.assert_allclose(loaded.embedding, profile.embedding)
    assert store.delete_user("u1") is True
    assert store.profiles.of_user("u1") == [] and not _has_events(store, "u1")
    assert store.delete_user("u1") is False


def test_popularity_counts_distinct_users_and_all_events_are_streamed(store):
    store.events.add(
        [
            _event("1", "u1", "a"),
            _event("2", "u1", "b"),
            _event("3", "u2", "a"),
            _event("4", "u2", "b"),
            _event("5", "u2", "c"),
            _event("6", "u3", "c"),
        ]
    )
    assert store.events.popularity(2) == [("a", 2), ("b", 2)]
    triples = list(store.events.user_items(chunk_size=4))  # two chunks: the paging must not skip
    assert all(isinstance(ts, float) for _, _, ts in triples)
    assert [(user, item) for user, item, _ in triples] == [
        ("u1", "a"),
        ("u1", "b"),
        ("u2", "a"),
        ("u2", "b"),
        ("u2", "c"),
        ("u3", "c"),
    ]


def test_a_profile_of_a_user_deleted_meanwhile_is_not_written_back(store):
    # Another process may delete the user while this one generates: the store refuses the
    # late write instead of resurrecting the user.
    profile = _profile("gone")
    _save(store, profile)
    assert store.profiles.of_user("gone") == []
    store.events.add([_event("e1", user="gone")])
    _save(store, profile)
    assert len(store.profiles.of_user("gone")) == 1


def test_a_batch_sent_to_two_instances_at_once_is_counted_once(store, second):
    batch = [_event(f"e{n}", user=f"u{n % 7}") for n in range(300)]
    results = []
    barrier = threading.Barrier(2)

    def send(instance: Store) -> None:
        barrier.wait()
        results.append(instance.events.add(batch))

    threads = [threading.Thread(target=send, args=(one,)) for one in (store, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(r.accepted for r in results) == 300
    assert sum(r.duplicates for r in results) == 300
    assert store.events.count() == second.events.count() == 300


def test_what_one_instance_writes_the_other_reads(store, second):
    store.items.upsert([Item("a", "A")])
    store.events.add([_event("e1")])
    _save(store, _profile())
    assert second.items.get(["a"])["a"].title == "A"
    assert [p.summary for p in second.profiles.of_user("u1")] == ["likes a"]
    version = second.events.version()
    assert store.delete_user("u1")
    assert second.events.version() != version  # a deletion elsewhere changes the version
    assert second.profiles.of_user("u1") == [] and not _has_events(second, "u1")


def test_a_profile_write_racing_a_deletion_elsewhere_is_not_written(store, second):
    store.events.add([_event("e1")])
    writer = threading.Thread(target=_save, args=(second, _profile()))
    with store.transaction() as conn:  # the deletion of delete_user, held open
        store.engine.lock_users(conn, ["u1"])
        for table in USER_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE user_id = ?", ("u1",))
        writer.start()
        writer.join(0.5)
        assert writer.is_alive()  # the write waits for the deletion to commit...
    writer.join(30)
    assert store.profiles.of_user("u1") == []  # ...and then finds no events: nothing written back


def test_deletion_leaves_no_row_of_the_user_in_any_table(store):
    store.items.upsert([Item("a", "A")])
    store.events.add([_event("e1"), _event("e2", user="keep")])
    store.profiles.save(
        [
            ProfileWrite(
                "u1", [_profile()], [0], ProfileState("1:1", "m", None), store.items.changes()
            )
        ]
    )
    store.lists.save([("u1", "key", b"lists")])
    counts = [
        store.engine.tuples(f"SELECT COUNT(*) FROM {t} WHERE user_id = ?", ("u1",))[0][0]
        for t in USER_TABLES
    ]
    assert all(counts)
    assert store.delete_user("u1")
    for table in _tables_with_user_id(store):
        assert table in USER_TABLES
        assert store.engine.tuples(f"SELECT COUNT(*) FROM {table} WHERE user_id = ?", ("u1",)) == [
            (0,)
        ]
    assert _has_events(store, "keep")


def _tables_with_user_id(store: Store) -> set[str]:
    if store.dialect == "sqlite":
        names = [
            row[0]
            for row in store.engine.tuples("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        return {
            n
            for n in names
            if any(c[1] == "user_id" for c in store.engine.tuples(f"PRAGMA table_info({n})"))
        }
    rows = store.engine.tuples(
        "SELECT table_name FROM information_schema.columns"
        " WHERE column_name = 'user_id' AND table_schema = 'public'"
    )
    return {row[0] for row in rows}


def test_profile_state_is_written_only_if_no_item_changed_since(store):
    store.items.upsert([Item("a", "A")])
    store.events.add([_event("e1")])
    before = store.items.changes()
    store.items.upsert([Item("a", "A changed")])
    state = ProfileState("1:1", "m", None)
    store.profiles.save([ProfileWrite("u1", [_profile()], [0], state, before)])
    assert store.profiles.current_read("u1").state is None
    store.profiles.save([ProfileWrite("u1", [], [0], state, store.items.changes())])
    read = store.profiles.current_read("u1")
    assert read.state == state and read.events == store.events.stamp("u1")
    assert read.newest is not None and read.newest.summary == "likes a" and read.history == ["a"]
    store.items.upsert([Item("a", "A changed again")])  # clears the state of its users
    assert store.profiles.current_read("u1").state is None


def test_windows_no_longer_cut_are_dropped_and_a_profile_is_replaced(store):
    store.events.add([_event("e1")])
    store.profiles.save([ProfileWrite("u1", [_profile(index=i) for i in range(3)], [0, 1, 2])])
    store.profiles.save([ProfileWrite("u1", [_profile(index=1, summary="new")], [0, 1])])
    assert [(p.window.index, p.summary) for p in store.profiles.of_user("u1")] == [
        (0, "likes a"),
        (1, "new"),
    ]
    assert [p.window.index for p in store.profiles.of_user("u1", limit=1)] == [1]
    store.profiles.save([ProfileWrite("u1", [], [])])  # no window left: none kept
    assert store.profiles.of_user("u1") == []


def test_the_inspector_reads_drifts_and_fallbacks_on_either_engine(store):
    drift = WindowDrift(0.9, 0.3, True, ("new",), ())
    store.events.add([_event("e1"), _event("e2", user="u2")])
    store.profiles.save(
        [
            ProfileWrite(
                "u1", [_profile(index=0, drift=drift), _profile(index=1, drift=drift)], [0, 1]
            ),
            ProfileWrite("u2", [_profile("u2", drift=WindowDrift(0.1, 0.3, False, (), ()))], [0]),
        ]
    )
    _save(store, _profile("u2", index=1, provenance={"fallback_reason": "bad json"}))
    checked = {"fallback_reason": "summary rejected, markup: ...", "fallback_check": "markup"}
    _save(store, _profile("u1", index=2, provenance=checked))
    assert [(p.user_id, p.window.index) for p in store.profiles.recent_drifts(10)] == [("u1", 1)]
    fell_back = {(p.user_id, p.window.index) for p in store.profiles.recent_fallbacks(10)}
    assert fell_back == {("u2", 1), ("u1", 2)}
    assert store.profiles.fallback_checks() == {"other": 1, "markup": 1}  # "other": no check named


def test_candidate_lists_round_trip(store):
    store.events.add([_event("e1")])
    store.lists.save([("u1", "k1", b"one"), ("nobody", "k", b"x")])
    store.lists.save([("u1", "k2", b"\x00two")])
    assert store.lists.get("u1") == ("k2", b"\x00two")
    assert store.lists.get("nobody") is None  # no events: not written


def test_a_window_drift_record_round_trips_with_its_reference_and_basis(store):
    store.events.add([_event("e1")])
    drift = WindowDrift(40.0, 36.0, True, ("Baking",), ("Space",), (1, 2, 3), "capped")
    store.profiles.save([ProfileWrite("u1", [_profile(drift=drift)], [0])])
    (stored,) = store.profiles.of_user("u1")
    assert stored.drift == drift
