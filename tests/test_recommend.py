import random

from service.config import Settings
from service.embed import HashingEmbedder
from service.extractive import ExtractiveSummarizer
from service.itemindex import build_index, load_index
from service.models import Event
from service.profiles import Profiler
from service.recommend import RRF_K, Recommender, _Candidates, fuse
from tests.conftest import topic_items


def _each(source):
    return lambda items: [f"{source}:{i}" for i in items]


def test_fusion_rewards_agreement_excludes_seen_and_explains():
    sources = [
        _Candidates(["a", "b", "c"], 1.0, _each("interest")),
        _Candidates(["c", "d"], 0.5, _each("co")),
    ]
    ranked = fuse(sources, seen={"a"}, k=3)
    assert [r.item_id for r in ranked] == ["c", "b", "d"]
    assert ranked[0].reason == "interest:c"  # rank 2 of weight 1 beats rank 1 of weight 0.5
    assert ranked[2].reason == "co:d"
    assert ranked[0].score > ranked[1].score > ranked[2].score
    # An interest explains an item it found even when another source weighed more.
    sources[1] = _Candidates(["c", "d"], 5.0, _each("co"))
    sources[0] = _Candidates(["a", "b", "c"], 1.0, _each("interest"), explains_first=True)
    ranked = fuse(sources, seen={"a"}, k=3)
    assert [r.reason for r in ranked] == ["interest:c", "co:d", "interest:b"]


def test_fusion_returns_the_k_best_of_all_candidates_with_ties_by_id():
    rng = random.Random(5)
    pool = [f"i{n:03d}" for n in range(200)]
    for _ in range(200):
        sources = [
            _Candidates(rng.sample(pool, rng.randint(0, 150)), rng.choice([1.0, 0.5]), _each(s))
            for s in range(rng.randint(1, 6))
        ]
        seen = set(rng.sample(pool, 20))
        k = rng.randint(1, 15)
        # The same fusion over every candidate, sorted in full: what the top-k shortcut keeps.
        total: dict[str, float] = {}
        for source in sources:
            unseen = [i for i in source.ranked if i not in seen]
            for rank, item_id in enumerate(unseen, start=RRF_K + 1):
                total[item_id] = total.get(item_id, 0.0) + source.weight / rank
        expected = sorted(total, key=lambda i: (-total[i], i))[:k]
        assert [r.item_id for r in fuse(sources, seen, k)] == expected


def _seed(store, tmp_path, embedder):
    store.upsert_items(topic_items())
    events = [Event(f"me-{n}", "me", f"astronomy-{n:02d}", "view", 1_000 + n) for n in range(3)]
    events += [Event(f"me-b{n}", "me", f"baking-{n:02d}", "like", 2_000 + n) for n in range(6)]
    # Another user links baking-00 with baking-09: the co-consumption source should find it.
    events += [
        Event("o1", "other", "baking-00", "view", 10),
        Event("o2", "other", "baking-09", "view", 11),
    ]
    store.add_events(events)
    build_index(
        store.iter_items(),
        embedder,
        tmp_path / "index",
        progress=False,
        interactions=store.iter_user_items(),
    )


def test_recommendations_follow_current_interests_and_skip_seen_items(store, tmp_path):
    embedder = HashingEmbedder()
    _seed(store, tmp_path, embedder)
    settings = Settings(window="9e", embed_model="hashing")
    profiler = Profiler(store, ExtractiveSummarizer(), embedder, settings)
    profile = profiler.current("me")
    recommender = Recommender(store, embedder, lambda: load_index(tmp_path / "index", embedder))
    picks = recommender.recommend(profile, k=5)
    seen = store.user_item_ids("me")
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
    profiler = Profiler(store, ExtractiveSummarizer(), embedder, Settings(window="9e"))
    profile, history = profiler.current_with_history("me")
    assert history == [e.item_id for e in store.user_events("me")]
    writes = []
    monkeypatch.setattr(store, "save_profiles", lambda batch: writes.append(batch))
    again = profiler.current_with_history("me")[0]
    assert (again.source_key, again.created_at) == (profile.source_key, profile.created_at)
    assert writes == []  # the read path of every request
    recommender = Recommender(store, embedder, lambda: load_index(tmp_path / "index", embedder))
    embedder.encoded.clear()
    first = recommender.recommend(profile, k=5, history=history)
    assert recommender.recommend(profile, k=5, history=history) == first
    assert sorted(embedder.encoded) == sorted(i.label for i in profile.interests)


def test_popularity_is_recounted_in_the_background_after_new_events(store, tmp_path):
    embedder = HashingEmbedder()
    _seed(store, tmp_path, embedder)
    recommender = Recommender(store, embedder, lambda: load_index(tmp_path / "index", embedder))
    recommender.warm_up()
    assert recommender._popularity.ranked[0] == "baking-00"  # two users
    store.add_events([Event(f"x{n}", f"fan{n}", "astronomy-05", "view", 50) for n in range(5)])
    stale = recommender._popularity_snapshot()  # served now, recounted behind it
    assert stale.ranked[0] == "baking-00"
    refresh = recommender._popularity_refresh
    if refresh is not None:
        refresh.join(timeout=10)
    assert recommender._popularity_snapshot().ranked[0] == "astronomy-05"
