import random
from dataclasses import replace

import numpy as np

from service.core.config import Settings
from service.core.records import Event, Interest, Profile, WindowDrift, WindowInfo
from service.embedding.encoder import HashingEmbedder
from service.profiling.profiler import Profiler
from service.retrieval.collaborative import ShortTerm
from service.retrieval.fusion import EXPLAINS_FIRST_LIFT, RRF_K, Recommendation, Source, fuse
from service.retrieval.index.search import _ranks_of
from service.retrieval.new_items import Placed
from service.retrieval.placement import (
    NEW_ITEMS_EVERY,
    NEW_ITEMS_FROM,
    with_new_items,
    with_placed_items,
)
from service.retrieval.recommender import FusionWeights, Recommender
from service.summarizers.extractive import ExtractiveSummarizer
from tests.conftest import IndexOnDisk, index_store, topic_items


def _each(source, catalog):
    return lambda rows: [f"{source}:{catalog.item_ids[row]}" for row in rows]


class _Catalog:
    """Item ids as rows of an index, listed out of id order so ties by id are really tested."""

    def __init__(self, item_ids):
        self.item_ids = list(item_ids)
        self.row = {item_id: row for row, item_id in enumerate(self.item_ids)}
        self.id_order = _ranks_of(self.item_ids)

    def candidates(self, ranked, weight, explain, explains_first=False):
        rows = np.array([self.row[i] for i in ranked], dtype=np.int64)
        return Source(rows, weight, explain, explains_first)

    def fuse(self, sources, seen, k):
        seen_rows = np.array([self.row[i] for i in seen], dtype=np.int64)
        return fuse(sources, seen_rows, k, self.item_ids, self.id_order)


def test_fusion_rewards_agreement_excludes_seen_and_explains():
    catalog = _Catalog(["d", "a", "c", "b"])
    sources = [
        catalog.candidates(["a", "b", "c"], 1.0, _each("interest", catalog)),
        catalog.candidates(["c", "d"], 0.5, _each("co", catalog)),
    ]
    ranked = catalog.fuse(sources, seen={"a"}, k=3)
    assert [r.item_id for r in ranked] == ["c", "b", "d"]
    assert ranked[0].reason == "interest:c"  # rank 2 of weight 1 beats rank 1 of weight 0.5
    assert ranked[2].reason == "co:d"
    assert ranked[0].score > ranked[1].score > ranked[2].score
    # An interest explains an item it found even when another source weighed more.
    sources[1] = catalog.candidates(["c", "d"], 5.0, _each("co", catalog))
    sources[0] = catalog.candidates(
        ["a", "b", "c"], 1.0, _each("interest", catalog), explains_first=True
    )
    ranked = catalog.fuse(sources, seen={"a"}, k=3)
    assert [r.reason for r in ranked] == ["interest:c", "co:d", "interest:b"]


def test_fusion_returns_the_k_best_of_all_candidates_with_ties_by_id_and_their_reasons():
    rng = random.Random(5)
    pool = [f"i{n:03d}" for n in range(200)]
    catalog = _Catalog(rng.sample(pool, len(pool)))
    for _ in range(200):
        sources = [
            catalog.candidates(
                rng.sample(pool, rng.randint(0, 150)),
                rng.choice([1.0, 0.5]),
                _each(s, catalog),
                explains_first=rng.random() < 0.3,
            )
            for s in range(rng.randint(1, 6))
        ]
        seen = set(rng.sample(pool, 20))
        k = rng.randint(1, 15)
        # The same fusion item by item over every candidate, sorted in full: what the array
        # version with its top-k shortcut must return, reasons included.
        total: dict[str, float] = {}
        claim: dict[str, tuple[float, int]] = {}
        for position, source in enumerate(sources):
            unseen = [catalog.item_ids[r] for r in source.rows.tolist()]
            unseen = [i for i in unseen if i not in seen]
            lift = EXPLAINS_FIRST_LIFT if source.explains_first else 0.0
            for rank, item_id in enumerate(unseen, start=RRF_K + 1):
                total[item_id] = total.get(item_id, 0.0) + source.weight / rank
                if source.weight / rank + lift > claim.get(item_id, (-1.0, 0))[0]:
                    claim[item_id] = (source.weight / rank + lift, position)
        expected = sorted(total, key=lambda i: (-total[i], i))[:k]
        ranked = catalog.fuse(sources, seen, k)
        assert [r.item_id for r in ranked] == expected
        assert [r.reason for r in ranked] == [f"{claim[i][1]}:{i}" for i in expected]
        assert [r.score for r in ranked] == [round(total[i] * 1000, 4) for i in expected]


def _seed(store, tmp_path, embedder):
    store.items.upsert(topic_items())
    events = [Event(f"me-{n}", "me", f"astronomy-{n:02d}", "view", 1_000 + n) for n in range(3)]
    events += [Event(f"me-b{n}", "me", f"baking-{n:02d}", "like", 2_000 + n) for n in range(6)]
    # Another user links baking-00 with baking-09: the co-consumption source should find it.
    events += [
        Event("o1", "other", "baking-00", "view", 10),
        Event("o2", "other", "baking-09", "view", 11),
    ]
    store.events.add(events)
    index_store(store, embedder, tmp_path / "index")


def test_recommendations_follow_current_interests_and_skip_seen_items(store, tmp_path):
    embedder = HashingEmbedder()
    _seed(store, tmp_path, embedder)
    settings = Settings(window="9e", embed_model="hashing")
    profiler = Profiler(store, ExtractiveSummarizer(), embedder, settings.profiling)
    profile = profiler.current("me")
    recommender = Recommender(store, embedder, IndexOnDisk(tmp_path / "index", embedder))
    picks = recommender.recommend(profile, k=5)
    seen = {e.item_id for e in store.events.of_user("me")}
    assert len(picks) == 5
    assert not {p.item_id for p in picks} & seen
    assert sum(p.item_id.startswith("baking") for p in picks) >= 4
    assert all(p.reason for p in picks)
    by_id = {p.item_id: p.reason for p in picks}
    assert "baking-09" in by_id


class _CountingEmbedder(HashingEmbedder):
    def __init__(self):
        super().__init__()
        self.encoded: list[str] = []

    def encode(self, texts, *, progress=False):
        self.encoded.extend(texts)
        return super().encode(texts)


def test_reading_an_unchanged_profile_writes_nothing_and_labels_are_encoded_once(
    store, tmp_path, monkeypatch
):
    embedder = _CountingEmbedder()
    _seed(store, tmp_path, embedder)
    profiler = Profiler(store, ExtractiveSummarizer(), embedder, Settings(window="9e").profiling)
    profile, history = profiler.current_with_history("me")
    assert history == [e.item_id for e in store.events.of_user("me")]
    writes = []
    monkeypatch.setattr(store.profiles, "save", lambda batch: writes.append(batch))
    again = profiler.current_with_history("me")[0]
    assert (again.source_key, again.created_at) == (profile.source_key, profile.created_at)
    assert writes == []  # the read path of every request
    recommender = Recommender(store, embedder, IndexOnDisk(tmp_path / "index", embedder))
    embedder.encoded.clear()
    first = recommender.recommend(profile, k=5, history=history)
    assert recommender.recommend(profile, k=5, history=history) == first
    # Every interest has evidence in the index: its search is the evidence items' mean.
    assert embedder.encoded == []
    # An interest without indexed evidence is searched by its label, encoded once.
    interest = replace(profile.interests[0], evidence=("gone",))
    bare = replace(profile, interests=(interest,), created_at=profile.created_at + 1)
    recommender.recommend(bare, k=5, history=history)
    recommender.recommend(bare, k=5, history=history)
    assert embedder.encoded == [profile.interests[0].label]


def test_popularity_is_recounted_in_the_background_after_new_events(store, tmp_path):
    embedder = HashingEmbedder()
    _seed(store, tmp_path, embedder)
    recommender = Recommender(store, embedder, IndexOnDisk(tmp_path / "index", embedder))
    recommender.warm_up()
    assert recommender.popularity._ranking.ranked[0] == "baking-00"  # two users
    store.events.add([Event(f"x{n}", f"fan{n}", "astronomy-05", "view", 50) for n in range(5)])
    stale = recommender.popularity.snapshot()  # served now, recounted behind it
    assert stale.ranked[0] == "baking-00"
    refresh = recommender.popularity._refresh
    if refresh is not None:
        refresh.join(timeout=10)
    assert recommender.popularity.snapshot().ranked[0] == "astronomy-05"


def test_new_items_take_their_slots_after_the_first_ten_places():
    fused = [Recommendation(f"old{n:02d}", 100.0 - n, "people who chose") for n in range(30)]
    new = [Recommendation(f"new{n}", 1.0 - n / 10, "matches your interest 'X'") for n in range(3)]
    ranked = [r.item_id for r in with_new_items(fused, new, 20)]
    slots = [NEW_ITEMS_FROM + n * NEW_ITEMS_EVERY for n in range(3)]
    assert [ranked[at] for at in slots] == ["new0", "new1", "new2"]
    others = [item for at, item in enumerate(ranked) if at not in slots]
    assert others == [f"old{n:02d}" for n in range(17)]
    # A new item the fusion ranks early keeps its place; nothing is listed twice; fewer
    # fused items than places: the new ones fill the rest.
    short = [r.item_id for r in with_new_items(fused[:3] + [new[1]] + fused[3:11], new, 20)]
    assert short[:4] == ["old00", "old01", "old02", "new1"]
    assert short[4:] == [f"old{n:02d}" for n in range(3, 9)] + ["new0", "old09", "old10", "new2"]


def _drifting_user(store, tmp_path, embedder):
    """'me' had six astronomy items, then two baking ones (the window from position 6 on);
    other users tie astronomy-00..05 to astronomy-09 and baking-00..05 to baking-09."""
    store.items.upsert(topic_items())
    events = []
    for user in range(10):
        for topic in ("astronomy", "baking"):
            for n in (*range(6), 9):
                events.append(
                    Event(f"{topic}{user}-{n}", f"{topic}{user}", f"{topic}-{n:02d}", "view", n)
                )
    mine = [f"astronomy-{n:02d}" for n in range(6)] + ["baking-00", "baking-01"]
    events += [Event(f"me-{n}", "me", item, "view", 100 + n) for n, item in enumerate(mine)]
    store.events.add(events)
    index_store(store, embedder, tmp_path / "index")
    profiler = Profiler(
        store,
        ExtractiveSummarizer(),
        embedder,
        Settings(window="6e", min_window_events=2).profiling,
    )
    return profiler.current_with_history("me")


def test_a_drifting_user_is_recommended_from_the_short_term_window(store, tmp_path):
    embedder = HashingEmbedder()
    profile, history = _drifting_user(store, tmp_path, embedder)
    assert profile.window.index == 1 and len(history) == 8
    fired = replace(profile, drift=WindowDrift(0.6, 0.3, True))
    calm = replace(profile, drift=WindowDrift(0.1, 0.3, False))
    # The collaborative model alone, so the test sees its ranking only.
    only = FusionWeights(interests=0.0, profile=0.0, popularity=0.0, new_items=False)
    index = IndexOnDisk(tmp_path / "index", embedder)
    aware = Recommender(store, embedder, index, only, drift_earlier_weight=0.1)
    assert profile.window.first_event == 6  # the window records where it begins
    assert aware.short_term(fired, history) == ShortTerm(start=6, earlier=0.1)
    assert aware.short_term(calm, history) is None
    assert aware.short_term(replace(profile, drift=None), history) is None

    def top(recommender, profile):
        return recommender.recommend(profile, k=3, history=history)[0].item_id

    # Six old astronomy items outvote two baking ones, unless drift says the baking is new.
    assert top(aware, calm) == "astronomy-09"
    assert top(aware, fired).startswith("baking")  # not the calm profile's stored lists
    assert top(aware, calm) == "astronomy-09"  # nor the other way round
    off = Recommender(store, embedder, index, only, drift_earlier_weight=1.0)
    assert off.short_term(fired, history) is None and top(off, fired) == "astronomy-09"
    aware.close()
    off.close()


def test_the_short_term_window_begins_where_the_window_record_says(store, tmp_path):
    embedder = HashingEmbedder()
    profile, history = _drifting_user(store, tmp_path, embedder)
    index = IndexOnDisk(tmp_path / "index", embedder)
    aware = Recommender(store, embedder, index, drift_earlier_weight=0.2)
    elsewhere = replace(profile.window, first_event=3)
    fired = replace(profile, window=elsewhere, drift=WindowDrift(0.6, 0.3, True))
    assert aware.short_term(fired, history) == ShortTerm(start=3, earlier=0.2)
    unplaced = replace(fired, window=replace(elsewhere, first_event=None))
    assert aware.short_term(unplaced, history) is None
    aware.close()


def test_new_items_close_to_what_the_model_scores_high_take_a_place_in_the_first_ten(
    store, tmp_path
):
    embedder = HashingEmbedder()
    profile, history = _drifting_user(store, tmp_path, embedder)
    index = IndexOnDisk(tmp_path / "index", embedder)
    new_items = {f"{topic}-0{n}" for topic in ("astronomy", "baking") for n in (6, 7, 8)}
    # The collaborative model's weight alone: the six modelled items 'me' has not had come
    # first; astronomy-06..08 and baking-06..08, which nobody has had, only in the backfill.
    only = FusionWeights(interests=0.0, profile=0.0, popularity=0.0, new_items=False)
    unplaced = Recommender(store, embedder, index, only, new_item_boost=0.0)
    modelled = [p.item_id for p in unplaced.recommend(profile, k=10, history=history)][:6]
    assert not set(modelled) & new_items
    placing = Recommender(store, embedder, index, only, new_item_boost=1.6)
    picks = placing.recommend(profile, k=9, history=history)
    ids = [p.item_id for p in picks]
    # The profile (the newest window) is all baking: its searches find the new baking items,
    # which borrow the scores of the baking items the model ranks and take places among them;
    # the new astronomy items stay out, though their neighbours score higher.
    new_baking = {f"baking-0{n}" for n in (6, 7, 8)}
    assert set(ids) == set(modelled) | new_baking
    assert [item for item in ids if item not in new_baking] == modelled
    assert {p.reason for p in picks if p.item_id in new_baking} == {
        "new here; matches your interest 'Baking'"
    }
    assert max(ids.index(item) for item in new_baking) < len(ids) - 1  # not only at the end
    unplaced.close()
    placing.close()


def test_a_new_item_takes_the_place_its_borrowed_score_earns():
    old = [Recommendation(f"old{n}", 10.0 - n, "people who chose") for n in range(10)]
    profile = Profile(
        user_id="u",
        window=WindowInfo(0, 0.0, 1.0, 20, True),
        summary="Astronomy",
        interests=(Interest("Astronomy", 1.0, ("x",)),),
        embedding=np.ones(4, dtype=np.float32) / 2,
        provenance={},
        source_key="0",
        created_at=0.0,
    )
    placed = Placed(np.array([1, 0]), np.array([0, 3]), np.array([0, -1]))
    ranked = with_placed_items(old, placed, profile, ["n0", "n1"], k=10)
    assert [r.item_id for r in ranked][:6] == ["n1", "old0", "old1", "old2", "n0", "old3"]
    assert len(ranked) == 10 and ranked[-1].item_id == "old7"
    assert ranked[0].reason == "new here; matches your interest 'Astronomy'"
    assert ranked[4].reason == "new here; like what you chose"
    assert ranked[4].score == old[3].score  # the score of the item it moved down
