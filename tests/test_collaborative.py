"""The item-to-item collaborative model: fitting, scoring by recency, storage with the index."""

import numpy as np
import pytest

from service.retrieval.builds import IndexMismatch
from service.retrieval.collaborative import (
    MODEL_FILE,
    ItemModel,
    ShortTerm,
    fit_item_model,
    recency_weights,
)
from service.retrieval.index import load_index
from service.retrieval.index_build import build_index
from tests.conftest import topic_items


def _pairs() -> list[tuple[str, str]]:
    """Two tastes: users who take 'a' also take 'b'; users who take 'x' also take 'y'."""
    pairs = []
    for user in range(20):
        pairs += [(f"ab{user}", "a"), (f"ab{user}", "b")]
        pairs += [(f"xy{user}", "x"), (f"xy{user}", "y")]
    pairs += [("mixed", "a"), ("mixed", "y"), ("mixed", "a")]  # a repeat counts once
    return pairs


def test_neighbours_follow_co_consumption_and_name_their_anchor():
    model = fit_item_model(_pairs(), regularization=1.0)
    assert model is not None and set(model.item_ids) == {"a", "b", "x", "y"}
    found = model.scores(["x", "a"], depth=3)
    assert set(found.ranked) == {"b", "y"}
    anchors = [model.item_ids[row] for row in found.anchors().tolist()]
    assert dict(zip(found.ranked, anchors)) == {"b": "a", "y": "x"}
    assert "a" not in model.scores(["x"], depth=3).ranked  # never seen with 'x'


def test_the_newest_history_item_leads_the_scores():
    model = fit_item_model(_pairs(), regularization=1.0)
    between = [f"unmodelled-{n}" for n in range(15)]  # they age what came before them
    assert model.scores(["a", *between, "x"], depth=2).ranked == ["y", "b"]
    assert model.scores(["x", *between, "a"], depth=2).ranked == ["b", "y"]
    weights = recency_weights(30)
    assert weights[-1] == pytest.approx(1.0) and np.all(np.diff(weights) > 0)
    assert weights[0] > 0.1  # old history still counts a little


def test_a_short_term_window_outweighs_the_longer_history_before_it():
    """Four old items of one taste outvote the newest of another by recency alone; with the
    history before the short-term window weighed ten times less, the newest taste leads."""
    pairs = []
    for user in range(20):
        pairs += [(f"old{user}", item) for item in ("a1", "a2", "a3", "a4", "b")]
        pairs += [(f"new{user}", item) for item in ("x", "y")]
        pairs.append((f"x-only{user}", "x"))  # half of those who take x take y
    model = fit_item_model(pairs, regularization=1.0)
    history = ["a1", "a2", "a3", "a4", "x"]

    def rank(short_term=None):
        ranked = model.scores(history, depth=10, short_term=short_term).ranked
        return [item for item in ranked if item in {"b", "y"}]

    assert rank() == ["b", "y"]
    assert rank(ShortTerm(start=4, earlier=0.1)) == ["y", "b"]
    weights = recency_weights(5, ShortTerm(start=4, earlier=0.1))
    np.testing.assert_allclose(weights[:4], recency_weights(5)[:4] * 0.1)
    assert weights[4] == pytest.approx(1.0)
    # The whole history in the short-term window: nothing before it to weigh less.
    assert rank(ShortTerm(start=0, earlier=0.1)) == rank()


def test_every_items_score_orders_as_the_best_items_do():
    model = fit_item_model(_pairs(), regularization=1.0)
    scores = model.score_all(["x", "a"])
    assert scores.shape == (len(model.item_ids),)
    best = model.scores(["x", "a"], depth=4)
    assert [model.item_ids[row] for row in np.argsort(-scores)[:2]] == best.ranked
    assert scores[model.item_ids.index("a")] == 0.0 == scores[model.item_ids.index("x")]


def test_too_little_data_gives_no_model_and_unknown_history_no_scores():
    assert fit_item_model([("u", "a"), ("v", "a")]) is None
    model = fit_item_model(_pairs(), regularization=1.0)
    assert model.scores(["not-in-the-model"], depth=5).ranked == []
    assert model.scores([], depth=5).anchors().tolist() == []


def test_model_is_stored_with_the_index_and_checked_on_load(tmp_path, embedder):
    items = topic_items()
    pairs = [(f"u{n}", items[n % 5].item_id) for n in range(40)]
    pairs += [(f"u{n}", items[10 + n % 5].item_id) for n in range(40)]
    manifest = build_index([items], embedder, tmp_path, progress=False, interactions=pairs)
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
