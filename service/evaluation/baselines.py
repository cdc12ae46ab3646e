"""Baseline recommenders the service is measured against: what a team could build in an
afternoon. Each returns a ranker: user id -> top items, training items excluded."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.embedding.encoder import normalize_rows
from service.evaluation.protocol import Interactions, Ranker, Split, score, temporal_split
from service.retrieval.collaborative import ease_weights

EASE_LAMBDAS = (100.0, 300.0, 1_000.0)


def popularity(data: Interactions) -> Ranker:
    counts = data.matrix.sum(axis=0)
    return lambda user: data.top(user, counts)


def item_knn(data: Interactions) -> Ranker:
    """Cosine similarity between item columns; a user's score is the sum over their items."""
    columns = normalize_rows(data.matrix.T)
    similarity = columns @ columns.T
    np.fill_diagonal(similarity, 0.0)
    return lambda user: data.top(user, data.matrix[data.user_index[user]] @ similarity)


def ease(data: Interactions, regularization: float) -> Ranker:
    weights = ease_weights(data.matrix.T @ data.matrix, regularization)
    return lambda user: data.top(user, data.matrix[data.user_index[user]] @ weights)


def tune_ease(split: Split, item_ids: Sequence[str]) -> float:
    """λ with the best NDCG@10 on a validation split carved from the training part (each
    user's last 20% of training events): the test part is never looked at."""
    inner = temporal_split(e for events in split.train.values() for e in events)
    data = Interactions(inner.train, item_ids)
    results = {lam: score(ease(data, lam), inner.test)["ndcg@10"] for lam in EASE_LAMBDAS}
    return max(results, key=results.__getitem__)


def embedding_centroid(
    data: Interactions, train: dict, item_vectors: np.ndarray, recent: int = 20
) -> Ranker:
    """Cosine to the mean embedding of the user's last ``recent`` training items."""
    vectors = normalize_rows(item_vectors)

    def rank(user: str) -> list[str]:
        rows = [
            data.item_index[e.item_id]
            for e in train[user][-recent:]
            if e.item_id in data.item_index
        ]
        centroid = normalize_rows(vectors[rows].mean(axis=0))
        return data.top(user, vectors @ centroid)

    return rank
