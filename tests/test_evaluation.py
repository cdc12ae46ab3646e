"""The evaluation's pieces on toy data, and a small, fast run of scripts/evaluate.py on the real
MovieLens (skipped without it) so that a regression shows."""

import json

import numpy as np
import pytest

from scripts import evaluate
from service.core.records import Event
from service.evaluation import baselines
from service.evaluation.cold import cold_item_split
from service.evaluation.protocol import (
    Interactions,
    ndcg_at,
    one_standard_error_choice,
    recall_at,
    temporal_split,
)
from tests.conftest import MOVIELENS


def _events(user, items):
    return [Event(f"{user}-{n}", user, item, "rate", float(n), 4.0) for n, item in enumerate(items)]


def test_the_one_standard_error_rule_keeps_the_smallest_setting_the_data_cannot_tell_apart():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 0.3, size=400)
    noisy = base + rng.normal(0, 0.05, size=400)  # as good as the base, per user noise only
    clearly = base + 0.05 + rng.normal(0, 0.01, size=400)
    assert one_standard_error_choice({0.0: base, 1.0: noisy}) == 0.0
    assert one_standard_error_choice({0.0: base, 1.0: noisy, 2.0: clearly}) == 2.0
    # The same small gain for every user is no noise: it is told apart.
    assert one_standard_error_choice({0.5: clearly, 1.0: clearly + 1e-3}) == 1.0


def test_split_holds_out_the_latest_fifth_of_each_user():
    split = temporal_split(_events("u", list("abcdefghij")) + _events("v", list("abcde")))
    assert [e.item_id for e in split.train["u"]] == list("abcdefgh")
    assert split.test == {"u": {"i", "j"}, "v": {"e"}}


def test_metrics_reward_relevant_items_ranked_first():
    assert recall_at(["a", "b", "c"], {"a", "z"}, 10) == 0.5
    assert recall_at(["a"] + ["x"] * 60, {"a", "b"}, 50) == 0.5  # divided by min(K, |relevant|)
    assert ndcg_at(["a", "b"], {"a"}, 10) == 1.0
    assert ndcg_at(["b", "a"], {"a"}, 10) == pytest.approx(1 / np.log2(3))


def test_baselines_exclude_training_items_and_follow_co_occurrence():
    train = {
        "u1": _events("u1", ["a", "b"]),
        "u2": _events("u2", ["a", "b", "c"]),
        "u3": _events("u3", ["a", "b", "c"]),
        "me": _events("me", ["a"]),
    }
    data = Interactions(train, ["a", "b", "c", "d"])
    for ranker in (baselines.popularity(data), baselines.item_knn(data), baselines.ease(data, 1.0)):
        ranked = ranker("me")
        assert "a" not in ranked and ranked[0] == "b"


def test_cold_items_lose_their_training_events_and_are_the_only_test_items():
    events = [
        e for n in range(20) for e in _events(f"u{n}", [f"i{(n + k) % 30}" for k in range(10)])
    ]
    split = temporal_split(events)
    items = [f"i{n}" for n in range(30)]
    cold = cold_item_split(split, items, share=0.2, seed=3)
    assert len(cold.cold) == 6 and cold.cold == cold_item_split(split, items, 0.2, 3).cold
    assert all(e.item_id not in cold.cold for events in cold.train.values() for e in events)
    assert cold.test and all(held <= cold.cold for held in cold.test.values())
    assert all(held == split.test[user] & cold.cold for user, held in cold.test.items())
    few = cold.few_event_users(at_most=6)
    assert all(len(cold.train[user]) <= 6 for user in few)


@pytest.mark.slow
@pytest.mark.skipif(
    not (MOVIELENS / "ratings.csv").is_file(), reason=f"no MovieLens at {MOVIELENS}"
)
def test_evaluate_script_on_a_movielens_sample(tmp_path):
    out = tmp_path / "eval.json"
    args = ["--data", str(MOVIELENS), "--users", "40", "--embedder", "hashing", "--out", str(out)]
    assert evaluate.main(args) == 0
    report = json.loads(out.read_text())
    assert set(report["methods"]) == {"popularity", "item_knn", "ease", "centroid", "service"}
    for metrics in report["methods"].values():
        assert set(metrics) == {"recall@10", "recall@50", "ndcg@10"}
    # Sanity, not a target: collaborative baselines beat chance by far on MovieLens.
    assert report["methods"]["ease"]["ndcg@10"] > 0.05
    assert report["methods"]["service"]["ndcg@10"] > 0.01
    # The interest weight and the new-item boost are chosen among those tried on the
    # validation split.
    tried = report["validation"]
    assert set(tried["interests"]) == {f"{weight:g}" for weight in evaluate.INTEREST_WEIGHTS}
    assert set(tried["new_item_boost"]) == {f"{boost:g}" for boost in evaluate.NEW_ITEM_BOOSTS}
    assert f"{report['fusion_interests']:g}" in tried["interests"]
    assert f"{report['new_item_boost']:g}" in tried["new_item_boost"]
    assert set(report["cold_items"]) >= {"service", "centroid", "popularity"}
    assert report["cold_items_protocol"]["users"] > 0
    # Popularity has never seen a cold item: it cannot rank one.
    assert report["cold_items"]["popularity"]["recall@50"] == 0.0
