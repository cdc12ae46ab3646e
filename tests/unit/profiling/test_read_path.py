"""The read path of a request: the stored profile state and the stored candidate lists, each used
only while everything it was made from is unchanged."""

import threading
from dataclasses import replace

import numpy as np
import pytest

from service.app.container import build_services
from service.core.config import Settings
from service.core.records import Event, Item
from service.embedding.encoder import HashingEmbedder
from service.profiling.profiler import Profiler
from service.retrieval import candidates as candidates_module
from service.retrieval.candidates import SHARED_K, CandidateLists
from service.retrieval.index.build import build_index
from service.retrieval.new_items import Placed
from service.retrieval.recommender import Recommender
from service.store.candidate_lists import ListsWriter
from service.summarizers.extractive import ExtractiveSummarizer
from tests.conftest import IndexOnDisk, index_store, topic_items


def _events(user, items, start=1_000):
    return [
        Event(f"{user}-{start + n}", user, item, "view", start + n) for n, item in enumerate(items)
    ]


def _seed(store, tmp_path, embedder, users=("me",)):
    store.items.upsert(topic_items())
    for user in users:
        store.events.add(_events(user, [f"baking-{n:02d}" for n in range(8)]))
    store.events.add(_events("other", ["baking-00", "baking-09", "astronomy-01"]))
    index_store(store, embedder, tmp_path / "index")


def _read_path(profiler, store, monkeypatch, user="me"):
    """current_with_history, and whether it took the full check (which reads the events)."""
    full_checks = []
    monkeypatch.setattr(
        store.events,
        "of_user",
        lambda u, read=store.events.of_user: full_checks.append(u) or read(u),
    )
    profile, history = profiler.current_with_history(user)
    monkeypatch.undo()
    return profile, history, bool(full_checks)


@pytest.fixture
def profiler(store, tmp_path):
    embedder = HashingEmbedder()
    _seed(store, tmp_path, embedder)
    made = Profiler(store, ExtractiveSummarizer(), embedder, Settings(window="6e").profiling)
    made.refresh_users(["me"])
    return made


def test_an_unchanged_user_is_read_from_the_stored_state(profiler, store, monkeypatch):
    profile, history, full = _read_path(profiler, store, monkeypatch)
    assert not full
    newest = store.profiles.of_user("me")[-1]
    assert (profile.source_key, profile.created_at) == (newest.source_key, newest.created_at)
    assert np.array_equal(profile.embedding, newest.embedding)
    assert history == [e.item_id for e in store.events.of_user("me")]


def test_new_events_send_the_read_down_the_full_check(profiler, store, monkeypatch):
    assert profiler.current("me").window.index == 0  # the second window is too short yet
    store.events.add(_events("me", ["astronomy-02", "astronomy-03", "astronomy-04"], 5_000))
    profile, history, full = _read_path(profiler, store, monkeypatch)
    assert full and history[-1] == "astronomy-04" and profile.window.index == 1
    assert not _read_path(profiler, store, monkeypatch)[2]  # and the state is stored again


def test_changed_item_text_clears_the_state_of_its_users_only(profiler, store, monkeypatch):
    item = store.items.get(["baking-02"])["baking-02"]  # in the profiled window
    store.items.upsert([item])  # the same text: nothing to redo
    assert not _read_path(profiler, store, monkeypatch)[2]
    before = profiler.current("me")
    store.items.upsert([Item("astronomy-09", "Unrelated", "an item nobody here has")])
    assert not _read_path(profiler, store, monkeypatch)[2]
    store.items.upsert([replace(item, text="now about sourdough starters")])
    profile, _, full = _read_path(profiler, store, monkeypatch)
    assert full and profile.source_key != before.source_key


def test_another_summarizer_sends_the_read_down_the_full_check(profiler, store, monkeypatch):
    class Renamed(ExtractiveSummarizer):
        def describe(self):
            return {**super().describe(), "variant": "renamed"}

    other = Profiler(store, Renamed(), profiler.embedder, profiler.settings)
    profile, _, full = _read_path(other, store, monkeypatch)
    assert full and profile.source_key != profiler.current("me").source_key


def test_time_windows_leave_the_stored_state_when_a_window_closes(store, tmp_path, monkeypatch):
    embedder = HashingEmbedder()
    _seed(store, tmp_path, embedder)
    now = [1_500.0]  # the events are at 1000-1007: the first hour's window is still open
    profiler = Profiler(
        store,
        ExtractiveSummarizer(),
        embedder,
        Settings(window="1h").profiling,
        clock=lambda: now[0],
    )
    profiler.refresh_users(["me"])
    assert not _read_path(profiler, store, monkeypatch)[2]
    now[0] = 3_600.0  # the window's end: the windows must be cut again
    assert _read_path(profiler, store, monkeypatch)[2]
    assert not _read_path(profiler, store, monkeypatch)[2]  # and the state is stored again


def test_a_missing_state_is_stored_by_the_next_read(profiler, store, monkeypatch):
    # As after the upgrade that added the state, or an item change that did not touch the
    # user's windows: the profiles need nothing, the state is written back.
    with store.transaction() as conn:
        conn.execute("DELETE FROM profile_state")
    assert _read_path(profiler, store, monkeypatch)[2]
    assert not _read_path(profiler, store, monkeypatch)[2]


def test_other_window_settings_send_the_read_down_the_full_check(profiler, store, monkeypatch):
    store.events.add(_events("me", ["astronomy-02", "astronomy-03", "astronomy-04"], 5_000))
    profiler.refresh_users(["me"])
    assert profiler.current("me").window.index == 1  # 11 events in windows of 6
    wider = Profiler(
        store, profiler.summarizer, profiler.embedder, Settings(window="12e").profiling
    )
    profile, _, full = _read_path(wider, store, monkeypatch)
    assert full and profile.window.index == 0  # all 11 events in one window


def test_an_item_changed_while_its_window_is_summarised_is_not_hidden(store, tmp_path):
    class ChangesAnItemMeanwhile(ExtractiveSummarizer):
        def summarize(self, windows):
            summaries = super().summarize(windows)  # made from the items as they were read
            item = store.items.get(["baking-02"])["baking-02"]
            store.items.upsert([replace(item, text="now about sourdough starters")])
            return summaries

    embedder = HashingEmbedder()
    _seed(store, tmp_path, embedder)
    settings = Settings(window="6e")
    Profiler(store, ChangesAnItemMeanwhile(), embedder, settings.profiling).refresh_users(["me"])
    profiler = Profiler(store, ExtractiveSummarizer(), embedder, settings.profiling)
    served = profiler.current("me")
    assert served.source_key == profiler.update("me")[-1].source_key  # the new text's
    assert "sourdough" in store.items.get(["baking-02"])["baking-02"].text


def test_a_passing_failure_is_always_checked_again(store, tmp_path, monkeypatch):
    class Failing(ExtractiveSummarizer):
        def summarize(self, windows):
            summaries = super().summarize(windows)
            return [
                replace(s, provenance={**s.provenance, "transient": "timeout"}) for s in summaries
            ]

    embedder = HashingEmbedder()
    _seed(store, tmp_path, embedder)
    profiler = Profiler(store, Failing(), embedder, Settings(window="6e").profiling)
    profiler.refresh_users(["me"])
    assert _read_path(profiler, store, monkeypatch)[2]
    assert _read_path(profiler, store, monkeypatch)[2]  # no state that would skip the retry


def test_a_flush_waits_for_the_batch_the_writer_is_storing():
    # At shutdown: the store must not close under a batch the writer thread is storing.
    storing, release, stored = threading.Event(), threading.Event(), []

    class SlowTable:
        def save(self, rows):
            storing.set()
            release.wait(5)
            stored.extend(rows)

    writer = ListsWriter(SlowTable(), delay=0)
    writer.put("me", "key", b"lists")
    assert storing.wait(5)  # the writer thread took the batch
    closing = threading.Thread(target=writer.flush)
    closing.start()
    closing.join(0.2)
    assert closing.is_alive()  # the flush waits for it
    release.set()
    closing.join(5)
    assert not closing.is_alive() and stored == [("me", "key", b"lists")]


def test_candidate_lists_round_trip_through_bytes():
    lists = CandidateLists(
        interests=[np.array([3, 1]), np.array([], dtype=np.int64), np.array([7])],
        profile_close=np.array([2]),
        profile_rest=np.array([9, 8, 5]),
        collaborative=np.array([4, 6]),
        anchors=np.array([0, -1]),
        new_first=Placed(np.array([11, 12]), np.array([0, 4]), np.array([2, -1])),
    )
    again = CandidateLists.from_bytes(lists.to_bytes())
    assert [a.tolist() for a in again.interests] == [[3, 1], [], [7]]
    for name in ("profile_close", "profile_rest", "collaborative", "anchors"):
        assert getattr(again, name).tolist() == getattr(lists, name).tolist()
    placed = again.new_first
    assert (placed.rows.tolist(), placed.places.tolist(), placed.interests.tolist()) == (
        [11, 12],
        [0, 4],
        [2, -1],
    )


@pytest.fixture
def counted_searches(monkeypatch):
    searches = []
    real = candidates_module.CandidateSearch.find

    def find(self, profile, history, index, k, short_term=None):
        searches.append(profile.user_id)
        return real(self, profile, history, index, k, short_term)

    monkeypatch.setattr(candidates_module.CandidateSearch, "find", find)
    return searches


def test_a_request_stores_its_lists_and_the_next_ones_reuse_them(
    profiler, store, tmp_path, counted_searches
):
    embedder = profiler.embedder
    recommender = Recommender(store, embedder, IndexOnDisk(tmp_path / "index", embedder))
    profile, history = profiler.current_with_history("me")
    first = recommender.recommend(profile, 5, history)
    assert counted_searches == ["me"] and store.lists.get("me") is None  # not yet...
    assert recommender.recommend(profile, 5, history) == first  # ...but known to the writer
    recommender.close()  # written behind the requests; close writes what waits
    assert store.lists.get("me") is not None
    assert recommender.recommend(profile, 5, history) == first  # from the stored lists
    assert recommender.recommend(profile, SHARED_K, history)[:5] == first
    assert counted_searches == ["me"]
    recommender.recommend(profile, SHARED_K + 1, history)  # deeper than the lists: its own
    assert counted_searches == ["me", "me"]
    # A fresh recommender (another worker) finds them too; the live lists give the same.
    fresh = Recommender(store, embedder, IndexOnDisk(tmp_path / "index", embedder))
    assert fresh.recommend(profile, 5, history) == first
    assert counted_searches == ["me", "me"]


def test_lists_are_made_again_for_new_events_or_a_new_index_build(
    profiler, store, tmp_path, counted_searches
):
    embedder = profiler.embedder
    recommender = Recommender(store, embedder, IndexOnDisk(tmp_path / "index", embedder))
    recommender.recommend(*profiler.current_with_history("me")[:1], 5)
    store.events.add(_events("me", ["astronomy-03"], start=9_000))
    profile, history = profiler.current_with_history("me")
    picks = recommender.recommend(profile, 5, history)
    assert counted_searches == ["me", "me"] and "astronomy-03" not in {p.item_id for p in picks}
    build_index(store.items.chunks(), embedder, tmp_path / "index", progress=False)
    recommender.recommend(profile, 5, history)
    assert counted_searches == ["me", "me", "me"]


def test_refresh_prepares_the_lists_of_every_user(settings, tmp_path, counted_searches):
    services = build_services(settings)
    _seed(services.store, tmp_path, services.embedder, users=("me", "you"))
    services.index.load()
    services.refresh_users(["me", "you", "other"])
    assert sorted(counted_searches) == ["me", "other", "you"]
    assert all(services.store.lists.get(u) for u in ("me", "you", "other"))
    services.refresh_users(["me", "you", "other"])  # nothing changed: nothing searched again
    profile, history = services.profiler.current_with_history("you")
    services.recommender.recommend(profile, 10, history)
    assert len(counted_searches) == 3
    services.close()
