"""The item-to-item collaborative model: fitting, scoring by recency, storage with the index."""

from dataclasses import asdict

import numpy as np
import pytest

from service.retrieval.collaborative import (
    MODEL_FILE,
    CollaborativeConfig,
    ItemModel,
    ShortTerm,
    history_weights,
)
from service.retrieval.collaborative_fit import fit_item_model, histories_of
from service.retrieval.collaborative_tuning import tune
from service.retrieval.index.build import build_index
from service.retrieval.index.folders import IndexMismatch
from service.retrieval.index.search import load_index
from tests.conftest import topic_items

# EASE alone, as these tests fit it: the histories are too short for the next-items model.
EASE = CollaborativeConfig(regularization=1.0, transition_share=0.0)
CONFIG = CollaborativeConfig()


def _pairs() -> list[list[str]]:
    """Two tastes: users who take 'a' also take 'b'; users who take 'x' also take 'y'."""
    histories = []
    for _ in range(20):
        histories += [["a", "b"], ["x", "y"]]
    histories.append(["a", "y", "a"])  # a repeat counts once
    return histories


def test_neighbours_follow_co_consumption_and_name_their_anchor():
    model = fit_item_model(_pairs(), EASE)
    assert model is not None and set(model.item_ids) == {"a", "b", "x", "y"}
    found = model.scores(["x", "a"], depth=3)
    assert set(found.ranked) == {"b", "y"}
    anchors = [model.item_ids[row] for row in found.anchors().tolist()]
    assert dict(zip(found.ranked, anchors)) == {"b": "a", "y": "x"}
    assert "a" not in model.scores(["x"], depth=3).ranked  # never seen with 'x'


def test_an_anchor_is_only_an_item_chosen_together_with_the_one_it_explains():
    # h raises t and g lowers it (both were chosen together with t); an anchor must raise the
    # item and have been chosen with it (EASE also gives weights between items never chosen
    # together, through items chosen with both).
    def model(together):
        neighbours = np.array([[1, 2], [0, 2], [1, 0]], dtype=np.int32)  # rows: h, t, g
        weights = np.array([[0.5, 0.0], [0.0, 0.0], [-0.2, 0.0]], dtype=np.float32)
        mask = np.array(together, dtype=bool)
        return ItemModel(["h", "t", "g"], neighbours, weights, EASE, mask)

    chosen = model([[True, False], [False, False], [True, False]])
    found = chosen.scores(["g", "h"], depth=1)
    assert found.ranked == ["t"] and found.anchors().tolist() == [0]  # h, never g
    never = model([[False, False], [False, False], [True, False]])
    assert never.scores(["g", "h"], depth=1).anchors().tolist() == [-1]


def test_the_newest_history_item_leads_the_scores():
    model = fit_item_model(_pairs(), EASE)
    between = [f"unmodelled-{n}" for n in range(15)]  # they age what came before them
    assert model.scores(["a", *between, "x"], depth=2).ranked == ["y", "b"]
    assert model.scores(["x", *between, "a"], depth=2).ranked == ["b", "y"]
    weights = history_weights(30, CONFIG)
    assert weights[-1] == pytest.approx(1.0) and np.all(np.diff(weights) > 0)
    assert weights[0] > 0.1  # old history still counts a little


def test_a_short_term_window_outweighs_the_longer_history_before_it():
    """Four old items of one taste outvote the newest of another by recency alone; with the
    history before the short-term window weighed ten times less, the newest taste leads."""
    histories = []
    for _ in range(20):
        histories += [["a1", "a2", "a3", "a4", "b"], ["x", "y"]]
        histories.append(["x"])  # half of those who take x take y
    model = fit_item_model(histories, EASE)
    history = ["a1", "a2", "a3", "a4", "x"]

    def rank(short_term=None):
        ranked = model.scores(history, depth=10, short_term=short_term).ranked
        return [item for item in ranked if item in {"b", "y"}]

    assert rank() == ["b", "y"]
    assert rank(ShortTerm(start=4, earlier=0.1)) == ["y", "b"]
    weights = history_weights(5, CONFIG, ShortTerm(start=4, earlier=0.1))
    np.testing.assert_allclose(weights[:4], history_weights(5, CONFIG)[:4] * 0.1)
    assert weights[4] == pytest.approx(1.0)
    # The whole history in the short-term window: nothing before it to weigh less.
    assert rank(ShortTerm(start=0, earlier=0.1)) == rank()


def test_every_items_score_orders_as_the_best_items_do():
    model = fit_item_model(_pairs(), EASE)
    scores = model.score_all(["x", "a"])
    assert scores.shape == (len(model.item_ids),)
    best = model.scores(["x", "a"], depth=4)
    assert [model.item_ids[row] for row in np.argsort(-scores)[:2]] == best.ranked
    # An item never votes for itself (EASE's zero diagonal).
    assert model.score_all(["a"])[model.item_ids.index("a")] == 0.0


def test_too_little_data_gives_no_model_and_unknown_history_no_scores():
    assert fit_item_model([["a"], ["a"]]) is None
    model = fit_item_model(_pairs(), EASE)
    assert model.scores(["not-in-the-model"], depth=5).ranked == []
    assert model.scores([], depth=5).anchors().tolist() == []


def test_model_is_stored_with_the_index_and_checked_on_load(tmp_path, embedder):
    items = topic_items()
    triples = [(f"u{n}", items[n % 5].item_id, 1.0) for n in range(40)]
    triples += [(f"u{n}", items[10 + n % 5].item_id, 2.0) for n in range(40)]
    manifest = build_index([items], embedder, tmp_path, progress=False, interactions=triples)
    index = load_index(tmp_path, embedder)
    assert manifest.collaborative_items == len(index.collaborative) == 10
    folder = tmp_path / "builds" / manifest.build_id
    reloaded = ItemModel.load(folder)
    np.testing.assert_array_equal(reloaded.weights, index.collaborative.weights)
    (folder / MODEL_FILE).unlink()  # the manifest promises a model the build no longer has
    with pytest.raises(IndexMismatch, match="collaborative model disagrees"):
        load_index(tmp_path, embedder)


def test_an_index_built_without_events_has_no_model(tmp_path, embedder):
    manifest = build_index([topic_items()], embedder, tmp_path, progress=False)
    assert manifest.collaborative_items == 0
    assert load_index(tmp_path, embedder).collaborative is None


def _ordered_histories() -> list[list[str]]:
    """Half the users take the p's and then the q's, half the r's and then the p's: p goes with
    q and r alike, but only q follows p."""
    p, q, r = ([f"{name}{n}" for n in range(5)] for name in "pqr")
    return [p + q for _ in range(30)] + [r + p for _ in range(30)]


def test_the_next_items_model_learns_what_follows_not_only_what_goes_with():
    history = [f"p{n}" for n in range(5)]
    ease = fit_item_model(_ordered_histories(), EASE)
    after = fit_item_model(_ordered_histories(), CollaborativeConfig(transition_share=1.0))
    assert after is not None and ease is not None
    assert after.config.transition_share == 1.0
    ranked = after.scores(history, depth=10).ranked
    assert set(ranked[:5]) == {f"q{n}" for n in range(5)}
    # EASE alone has no sense of order: a q and an r score alike.
    ease_scores = ease.score_all(history)
    q0, r0 = ease.item_ids.index("q0"), ease.item_ids.index("r0")
    assert ease_scores[q0] == pytest.approx(ease_scores[r0], rel=1e-4)
    after_scores = after.score_all(history)
    assert after_scores[after.item_ids.index("q0")] > after_scores[after.item_ids.index("r0")]


def test_a_history_is_scored_with_the_recency_the_model_was_fitted_for(tmp_path):
    config = CollaborativeConfig(half_life=1.0, floor=0.0, transition_share=0.0)
    model = fit_item_model(_pairs(), config)
    np.testing.assert_allclose(history_weights(3, model.config), [0.25, 0.5, 1.0])
    model.save(tmp_path)
    assert ItemModel.load(tmp_path).config == config


def test_settings_are_chosen_on_held_out_events_when_there_are_enough():
    few = tune(_ordered_histories()[:20])
    assert few.config == CollaborativeConfig() and few.tried == {}
    tuned = tune(_ordered_histories() * 2)
    assert tuned.held_out_users >= 50
    assert set(tuned.tried) == {
        "regularization",
        "half_life, floor",
        "transition_regularization",
        "transition_share",
    }
    chosen = tuned.config
    assert f"{chosen.regularization:g}" in tuned.tried["regularization"]
    assert f"{chosen.half_life:g}, {chosen.floor:g}" in tuned.tried["half_life, floor"]
    # Each step keeps its best setting.
    for step, value in (
        ("regularization", chosen.regularization),
        ("transition_share", chosen.transition_share),
    ):
        assert tuned.tried[step][f"{value:g}"] == max(tuned.tried[step].values())


def test_an_index_build_records_the_collaborative_settings_it_chose(tmp_path, embedder):
    items = topic_items()
    triples = [
        (f"u{user}", items[(user + step) % len(items)].item_id, float(step))
        for user in range(60)
        for step in range(8)
    ]
    manifest = build_index([items], embedder, tmp_path, progress=False, interactions=triples)
    assert manifest.collaborative_tuning["held_out_users"] == 60
    assert manifest.collaborative_config == asdict(
        load_index(tmp_path, embedder).collaborative.config
    )
    given = CollaborativeConfig(half_life=7.0)
    manifest = build_index(
        [items], embedder, tmp_path, False, interactions=triples, collaborative_config=given
    )
    assert manifest.collaborative_tuning is None
    assert manifest.collaborative_config["half_life"] == 7.0


def test_histories_are_ordered_by_time_whatever_order_the_events_come_in():
    triples = [("u", "b", 2.0), ("v", "x", 1.0), ("u", "a", 1.0), ("u", "c", 2.0)]
    assert histories_of(triples) == [["a", "b", "c"], ["x"]]
