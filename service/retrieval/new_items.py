"""New items in the first ten places: where an item nobody has had yet would rank for a user.

The collaborative model cannot score an item without interactions, so on its own it never
lists one, and as extra weight in the fusion the content searches' new items displaced the
model's best items (docs/EVALUATION.md). Instead a new item that the profile's interest
searches found borrows a score on the model's own scale: the mean of the model's scores for
its NEIGHBOURS most similar modelled items (by the index's vectors, each weighted by its
similarity ** SHARPNESS), times a boost. Where that borrowed score beats the model's score at
one of the first FIRST_PLACES places, the new item takes that place; elsewhere the list is
unchanged.

Neighbours 10 and sharpness 4 come from ``scripts/eval/sweep_cold_imputation.py``, which scored
them on a test part of ml-latest-small, with "cold" items whose tags were written after the
cut: that evidence is withdrawn (docs/EVALUATION.md) and they are to be chosen again on
validation with items that are cold in time. The boost (``Settings.new_item_boost``) sets the
trade and is off by default, so none of this acts unless an operator sets it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.retrieval.collaborative import Scored
from service.retrieval.index.search import ItemIndex

NEIGHBOURS = 10
SHARPNESS = 4.0
FIRST_PLACES = 10
# New items compared with the modelled ones per matrix product: bounds the memory it takes
# (a chunk × the modelled items, float32) on a large catalog.
CHUNK = 2048


@dataclass(frozen=True)
class Neighbourhoods:
    """For each new item (``rows``, index rows), its modelled neighbours (model rows) and their
    weights (summing to 1)."""

    rows: np.ndarray
    neighbours: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True)
class Placed:
    """New items that take a place among the first ten: index rows, the place each takes
    (0-based, in the model's ranking) and the profile interest whose search found it (-1:
    none)."""

    rows: np.ndarray
    places: np.ndarray
    interests: np.ndarray

    @classmethod
    def none(cls) -> Placed:
        empty = np.zeros(0, dtype=np.int64)
        return cls(empty, empty, empty)


_NEIGHBOURHOODS: dict[str, Neighbourhoods] = {}


def neighbourhoods(index: ItemIndex) -> Neighbourhoods:
    """The new items' neighbourhoods of ``index``, computed once per build, by the first request
    that needs them: a matrix product of the new items' vectors with the modelled items'
    (about 2 s for 3,000 new and 6,000 modelled items on two busy cores)."""
    build = index.manifest.build_id
    found = _NEIGHBOURHOODS.get(build)
    if found is None:
        found = compute_neighbourhoods(index)
        _NEIGHBOURHOODS.clear()  # only the current build is asked for
        _NEIGHBOURHOODS[build] = found
    return found


def compute_neighbourhoods(
    index: ItemIndex, neighbours: int = NEIGHBOURS, sharpness: float = SHARPNESS
) -> Neighbourhoods:
    """Each new item's ``neighbours`` most similar modelled items, weighted by similarity **
    ``sharpness`` (scripts/eval/sweep_cold_imputation.py tries other values)."""
    indexed = np.flatnonzero(index.collaborative_rows >= 0)  # model rows the index holds
    new = np.flatnonzero(index.new_to_model)
    depth = min(neighbours, len(indexed))
    if not depth or not len(new):
        empty = np.zeros((0, depth), dtype=np.int64)
        return Neighbourhoods(new[:0], empty, empty.astype(np.float32))
    modelled = np.asarray(index.vectors[index.collaborative_rows[indexed]], dtype=np.float32)
    nearest, weights = [], []
    for start in range(0, len(new), CHUNK):
        chunk = np.asarray(index.vectors[new[start : start + CHUNK]], dtype=np.float32)
        similarity = chunk @ modelled.T
        best = np.argpartition(-similarity, depth - 1, axis=1)[:, :depth]
        closeness = np.maximum(np.take_along_axis(similarity, best, axis=1), 0) ** sharpness
        nearest.append(indexed[best])
        weights.append(closeness / np.maximum(closeness.sum(axis=1, keepdims=True), 1e-9))
    return Neighbourhoods(new, np.concatenate(nearest), np.concatenate(weights))


def place_new_items(
    index: ItemIndex,
    scored: Scored,
    seen: np.ndarray,
    boost: float,
    interest_hits: Sequence[np.ndarray],
) -> Placed:
    """The new items whose borrowed score beats the model's at one of the first places.

    ``scored``: the model's scores for this history; ``seen``: index rows of the user's own
    items (never offered); ``interest_hits``: each profile interest's close matches (index
    rows): the candidates, and the interest a placed item is said to match."""
    if boost <= 0:
        return Placed.none()
    # The profile chooses which new items may go up (those its interest searches found), the
    # borrowed score where: on ml-100k that cost 0.0095 of the warm NDCG@10 where any new
    # item cost 0.0151, for 0.027 of the cold items' NDCG@10 against 0.034.
    hits = np.unique(np.concatenate([np.zeros(0, dtype=np.int64), *interest_hits]))
    candidates = hits[index.new_to_model[hits] & ~np.isin(hits, seen)]
    near = neighbourhoods(index)
    if not len(candidates) or not len(near.rows):
        return Placed.none()
    at = np.searchsorted(near.rows, candidates)  # every new item has a neighbourhood
    borrowed = boost * (scored.totals[near.neighbours[at]] * near.weights[at]).sum(axis=1)
    first = _first_places(index, scored)
    # With fewer than FIRST_PLACES modelled items left, a positive borrowed score suffices.
    bar = first[-1] if len(first) == FIRST_PLACES else 0.0
    chosen = np.flatnonzero(borrowed > max(bar, 0.0))
    chosen = chosen[np.argsort(-borrowed[chosen], kind="stable")]
    rows = candidates[chosen]
    places = (first[None, :] >= borrowed[chosen, None]).sum(axis=1)
    return Placed(rows, places, _matching_interest(rows, interest_hits))


def _first_places(index: ItemIndex, scored: Scored) -> np.ndarray:
    """The model's best FIRST_PLACES scores (best first) among the indexed items the user has
    not had: the places a new item can take."""
    offered = scored.totals.astype(np.float64, copy=True)
    offered[index.collaborative_rows < 0] = -np.inf
    offered[scored.history_rows] = -np.inf
    count = min(FIRST_PLACES, len(offered))
    best = np.partition(offered, len(offered) - count)[len(offered) - count :]
    best = np.sort(best)[::-1]
    return best[np.isfinite(best)]


def _matching_interest(rows: np.ndarray, interest_hits: Sequence[np.ndarray]) -> np.ndarray:
    """For each row, the first interest whose search found it among its close matches (-1:
    none); an interest is named only where its own search agrees."""
    matching = np.full(len(rows), -1, dtype=np.int64)
    for position, hits in reversed(list(enumerate(interest_hits))):
        matching[np.isin(rows, hits)] = position
    return matching
