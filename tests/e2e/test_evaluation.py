"""The evaluation's pieces on toy data, and a small, fast run of scripts/eval/evaluate.py on the
real MovieLens (skipped without it) so that a regression shows."""

import json

import numpy as np
import pytest

from scripts.eval import evaluate
from service.core.records import Event
from service.evaluation import baselines, sequential
from service.evaluation.cold import cold_item_split
from service.evaluation.protocol import (
    Interactions,
    TestPartRefused,
    global_protocol,
    ndcg_at,
    one_standard_error_choice,
    paired_interval,
    per_user_protocol,
    recall_at,
    temporal_split,
    tuning_phase,
    verdict,
)
from service.ingest.movielens import movielens_items
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


def _timed(user, items, start):
    return [
        Event(f"{user}-{n}", user, item, "rate", float(start + n), 4.0)
        for n, item in enumerate(items)
    ]


def test_the_test_part_cannot_be_read_while_choosing_and_is_read_once():
    protocol = per_user_protocol(_events("u", list("abcdefghij")))
    with tuning_phase(), pytest.raises(TestPartRefused, match="while choices"):
        protocol.test.read()
    assert protocol.test.read() == {"u": {"i", "j"}}
    with pytest.raises(TestPartRefused, match="read once"):
        protocol.test.read()


def test_tuning_code_sees_only_the_training_part_and_validation():
    """The baselines' tuning gets the protocol's tuning split: every validation item lies
    before the test part, and a ranker asked during tuning cannot open the test part."""
    events = [
        e for n in range(12) for e in _timed(f"u{n}", [f"i{(n + k) % 15}" for k in range(10)], n)
    ]
    protocol = per_user_protocol(events)
    test = dict(protocol.test._items)  # a look from outside the protocol, for the assertion
    for user, held in protocol.tuning.test.items():
        assert not held & test[user]
        assert len(protocol.tuning.train[user]) < len(protocol.train[user])
    with tuning_phase():
        chosen = baselines.tune_all(protocol.tuning, [f"i{n}" for n in range(15)])
        with pytest.raises(TestPartRefused):
            protocol.test.read()
    assert set(chosen) == {"recent_popularity", "item_knn", "ease", "recency_ease"}
    for tuned in chosen.values():
        assert (
            tuned.tried and max(tuned.tried.values()) == tuned.tried[baselines._name(tuned.setting)]
        )


def test_the_global_split_learns_nothing_after_its_cuts():
    # Everyone active throughout: user n's k-th event at time 10k + n.
    events = [
        Event(f"u{n}-{k}", f"u{n}", f"i{(n + k) % 12}", "rate", float(10 * k + n), 4.0)
        for n in range(10)
        for k in range(10)
    ]
    protocol = global_protocol(events)
    cut = protocol.cut_of("u0")
    assert all(e.ts < cut for history in protocol.train.values() for e in history)
    tuning_cut = max(e.ts for history in protocol.tuning.train.values() for e in history)
    assert tuning_cut < cut
    test = protocol.test.read()
    assert test and set(test) <= set(protocol.train)
    later = {(e.user_id, e.item_id) for e in events if e.ts >= cut}
    assert all((user, item) in later for user, items in test.items() for item in items)


def test_item_text_holds_no_tag_applied_after_the_cut(tmp_path):
    (tmp_path / "movies.csv").write_text("movieId,title,genres\n1,Alien (1979),Horror|Sci-Fi\n")
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n7,1,4.0,100\n")
    (tmp_path / "tags.csv").write_text(
        "userId,movieId,tag,timestamp\n7,1,space,50\n7,1,future tag,150\n8,1,other,90\n"
    )
    items = movielens_items(tmp_path, keep_tag=lambda user, ts: ts < 100)
    assert items[0].text == "space, other"
    assert "future tag" in movielens_items(tmp_path)[0].text


def test_a_paired_interval_calls_a_tie_a_tie():
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 0.3, 300)
    assert verdict(paired_interval(base + 0.02, base)) == "better"
    assert verdict(paired_interval(base, base + 0.02)) == "worse"
    noisy = paired_interval(base + rng.normal(0, 0.1, 300), base)
    assert noisy["low"] < 0 < noisy["high"] and verdict(noisy) == "tie"


def test_recency_weighted_ease_with_floor_one_is_plain_ease():
    train = {
        "u1": _events("u1", ["a", "b", "c"]),
        "u2": _events("u2", ["a", "b"]),
        "u3": _events("u3", ["b", "c", "d"]),
        "me": _events("me", ["a", "c"]),
    }
    data = Interactions(train, ["a", "b", "c", "d"])
    weights = baselines.ease_weights(data.matrix.T @ data.matrix, 1.0)
    plain = baselines.recency_ease(data, train, weights, 3.0, 1.0, ["me"])
    assert plain("me") == baselines.ease(data, 1.0)("me")


def test_the_sequential_baseline_learns_what_comes_next():
    """Every user walks the same cycle of items from a different start: what follows a user's
    last item is always the next one on the cycle, which SASRec learns."""
    cycle = [f"i{n}" for n in range(12)]
    train = {f"u{n}": _events(f"u{n}", [cycle[(n + k) % 12] for k in range(8)]) for n in range(48)}
    setting = sequential.Setting(length=8, hidden=16, dropout=0.0, epochs=150)
    ranker = sequential.sasrec(train, cycle, setting, ["u0", "u5"])()
    assert ranker("u0")[0] == "i8" and ranker("u5")[0] == "i1"
    assert not set(ranker("u0")) & {e.item_id for e in train["u0"]}


# The regression guards of the 40-user run (hashing embedder, per-user split): the service must
# beat popularity clearly and stay near its own collaborative model.
BEATS_POPULARITY_BY = 0.03
WITHIN_COLLABORATIVE_ONLY = 0.04


@pytest.mark.slow
@pytest.mark.skipif(
    not (MOVIELENS / "ratings.csv").is_file(), reason=f"no MovieLens at {MOVIELENS}"
)
def test_evaluate_script_on_a_movielens_sample(tmp_path):
    out = tmp_path / "eval.json"
    args = ["--data", str(MOVIELENS), "--users", "40", "--embedder", "hashing", "--out", str(out)]
    assert evaluate.main([*args, "--protocol", "per-user", "--ablation"]) == 0
    report = json.loads(out.read_text())["protocols"]["per-user"]
    without_sasrec = set(evaluate.BASELINES) - {"sasrec"}
    assert set(report["methods"]) >= {*without_sasrec, "service"}
    for metrics in report["methods"].values():
        assert set(metrics) == {"recall@10", "recall@50", "ndcg@10", "coverage@10"}
    ndcg = {name: metrics["ndcg@10"] for name, metrics in report["methods"].items()}
    assert ndcg["service"] >= ndcg["popularity"] + BEATS_POPULARITY_BY
    assert ndcg["service"] >= ndcg["service: collaborative only"] - WITHIN_COLLABORATIVE_ONLY
    # Every choice is written down with what it was chosen among.
    choices = report["choices"]
    tried = choices["fusion_tried"]
    for name, settings in evaluate.FUSION_GRID:
        assert set(tried[name]) == {f"{value:g}" for value in settings}
        assert f"{choices['fusion'][name]:g}" in tried[name]
    assert set(tried["new_items (recall@50)"]) == {"0", "1"}
    assert choices["service_collaborative"]["tuning"]["tried"]["transition_share"]
    for name in without_sasrec - {"popularity"}:  # popularity has nothing to tune
        assert choices["baselines"][name]["tried"]
    best = report["intervals"]["best_baseline"]
    interval = report["intervals"]["service_minus"][best]["ndcg@10"]
    assert interval["low"] <= interval["difference"] <= interval["high"]
