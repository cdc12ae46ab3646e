"""Baseline recommenders the service is measured against, each tuned on the validation part
with a budget at least the service's. Each returns a ranker: user id -> top items, training
items excluded.

Written here on numpy rather than taken from RecBole, RecPack, Cornac or implicit: these are
closed-form models of a few lines each, and a library would bring its own split, candidate set
and seen-item handling, which must be exactly the service's for the comparison to mean
anything. The EASE and recency code is independent of the service's (only ``ease_weights``, the
textbook closed form, is shared).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from service.core.recency import recency_weight
from service.core.records import Event
from service.embedding.encoder import normalize_rows
from service.evaluation import sequential
from service.evaluation.protocol import Interactions, Ranker, Split, per_user
from service.retrieval.collaborative_fit import ease_weights

EASE_LAMBDAS = (100.0, 300.0, 1_000.0, 3_000.0)
# The service's own recency grid (service/retrieval/collaborative_tuning.py), tried jointly
# with λ here: more than the service's step-by-step search.
HALF_LIVES = (1.0, 2.0, 3.0, 5.0, 10.0, 20.0)
FLOORS = (0.0, 0.1, 0.3)
KNN_NEIGHBOURS = (20, 50, 100, 200, 0)  # 0: every neighbour
RECENT_HALF_LIVES_DAYS = (7.0, 30.0, 90.0, 365.0, 1825.0)
CENTROID_RECENT = (5, 10, 20, 50)
DAY = 86_400.0


@dataclass
class Tuned:
    """A baseline's chosen setting and every setting's mean NDCG@10 on validation."""

    setting: object
    tried: dict[str, float] = field(default_factory=dict)


def popularity(data: Interactions) -> Ranker:
    counts = data.matrix.sum(axis=0)
    return lambda user: data.top(user, counts)


def recent_popularity(
    data: Interactions, train: dict[str, list[Event]], half_life_days: float
) -> Ranker:
    """Popularity with each event weighted by how recent it is (half-life in days, counted back
    from the newest training event)."""
    newest = max(e.ts for history in train.values() for e in history)
    counts = np.zeros(len(data.item_ids))
    for history in train.values():
        for event in history:
            if event.item_id in data.item_index:
                age = (newest - event.ts) / DAY
                counts[data.item_index[event.item_id]] += 0.5 ** (age / half_life_days)
    return lambda user: data.top(user, counts)


def item_knn(data: Interactions, neighbours: int = 0) -> Ranker:
    """Cosine similarity between item columns, each item keeping its ``neighbours`` most
    similar (0: all); a user's score is the sum over their items."""
    columns = normalize_rows(data.matrix.T)
    similarity = columns @ columns.T
    np.fill_diagonal(similarity, 0.0)
    if 0 < neighbours < len(similarity) - 1:
        weakest = np.argpartition(-similarity, neighbours, axis=1)[:, neighbours:]
        np.put_along_axis(similarity, weakest, 0.0, axis=1)
    return lambda user: data.top(user, data.matrix[data.user_index[user]] @ similarity)


def ease(data: Interactions, regularization: float, users: Sequence[str] | None = None) -> Ranker:
    weights = ease_weights(data.matrix.T @ data.matrix, regularization)
    if users is None:
        return lambda user: data.top(user, data.matrix[data.user_index[user]] @ weights)
    rows = [data.user_index[user] for user in users]
    scores = data.matrix[rows] @ weights
    position = {user: row for row, user in enumerate(users)}
    return lambda user: data.top(user, scores[position[user]])


def recency_ease(
    data: Interactions,
    train: dict[str, list[Event]],
    weights: np.ndarray,
    half_life: float,
    floor: float,
    users: Sequence[str],
) -> Ranker:
    """EASE scored on the history weighted by recency: the k-th newest event weighs
    floor + (1 - floor) · 0.5^(k / half_life) (floor 1: plain EASE); an item seen twice at its
    newest weight. The
    scores of ``users`` are computed at once (one matrix product)."""
    histories = np.zeros((len(users), len(data.item_ids)), dtype=np.float32)
    for row, user in enumerate(users):
        items = [e.item_id for e in train[user] if e.item_id in data.item_index]
        for age, item in enumerate(reversed(items)):
            column = data.item_index[item]
            if histories[row, column] == 0:  # the newest occurrence comes first here
                histories[row, column] = recency_weight(age, half_life, floor)
    scores = histories @ weights
    position = {user: row for row, user in enumerate(users)}
    return lambda user: data.top(user, scores[position[user]])


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


# ---- tuning, on the validation part only --------------------------------------------------


def _best(found: dict) -> Tuned:  # type: ignore[type-arg]
    """The best mean NDCG@10 (the first on a tie): the rule every baseline is tuned by."""
    tried = {_name(setting): round(float(np.mean(v)), 4) for setting, v in found.items()}
    return Tuned(max(found, key=lambda s: float(np.mean(found[s]))), tried)


def _name(setting: object) -> str:
    if isinstance(setting, tuple):
        return ", ".join(f"{part:g}" for part in setting)
    return f"{setting:g}"


def _validation(tuning: Split, users: set[str] | None) -> dict[str, set[str]]:
    chosen = (
        tuning.test if users is None else {u: tuning.test[u] for u in users if u in tuning.test}
    )
    return dict(sorted(chosen.items()))


def tune_all(
    tuning: Split,
    item_ids: Sequence[str],
    users: set[str] | None = None,
    item_vectors: Callable[[], np.ndarray] | None = None,
    sequential_model: bool = False,
) -> dict[str, Tuned]:
    """Every baseline's setting, chosen on the validation part of ``tuning`` (over ``users``
    where given); the test part is never passed in. ``sequential_model`` adds SASRec (minutes
    of training: ``service/evaluation/sequential.py``)."""
    data = Interactions(tuning.train, item_ids)
    test = _validation(tuning, users)
    ndcg = lambda ranker: per_user(ranker, test)["ndcg@10"]  # noqa: E731
    chosen = {
        "recent_popularity": _best(
            {d: ndcg(recent_popularity(data, tuning.train, d)) for d in RECENT_HALF_LIVES_DAYS}
        ),
        "item_knn": _best({k: ndcg(item_knn(data, k)) for k in KNN_NEIGHBOURS}),
    }
    ease_found, recency_found = {}, {}
    for lam in EASE_LAMBDAS:
        weights = ease_weights(data.matrix.T @ data.matrix, lam)
        ease_found[lam] = ndcg(recency_ease(data, tuning.train, weights, 1.0, 1.0, list(test)))
        for half_life in HALF_LIVES:
            for floor in FLOORS:
                ranker = recency_ease(data, tuning.train, weights, half_life, floor, list(test))
                recency_found[(lam, half_life, floor)] = ndcg(ranker)
    chosen["ease"] = _best(ease_found)
    chosen["recency_ease"] = _best(recency_found)
    if item_vectors is not None:
        vectors = item_vectors()
        chosen["centroid"] = _best(
            {r: ndcg(embedding_centroid(data, tuning.train, vectors, r)) for r in CENTROID_RECENT}
        )
    if sequential_model:
        chosen["sasrec"] = Tuned(*sequential.tune(tuning, item_ids, test))
    return chosen


def rankers(
    chosen: dict[str, Tuned],
    train: dict[str, list[Event]],
    item_ids: Sequence[str],
    users: Sequence[str],
    item_vectors: np.ndarray | None = None,
) -> dict[str, Callable[[], Ranker]]:
    """Each baseline at its chosen setting, fitted on the final training part (made lazily)."""
    data = Interactions(train, item_ids)
    made: dict[str, Callable[[], Ranker]] = {
        "popularity": lambda: popularity(data),
        "recent_popularity": lambda: recent_popularity(
            data,
            train,
            float(chosen["recent_popularity"].setting),  # type: ignore[arg-type]
        ),
        "item_knn": lambda: item_knn(data, int(chosen["item_knn"].setting)),  # type: ignore[call-overload]
        "ease": lambda: ease(data, float(chosen["ease"].setting), users),  # type: ignore[arg-type]
    }

    def recency() -> Ranker:
        setting = chosen["recency_ease"].setting
        assert isinstance(setting, tuple)
        lam, half_life, floor = setting
        weights = ease_weights(data.matrix.T @ data.matrix, lam)
        return recency_ease(data, train, weights, half_life, floor, users)

    made["recency_ease"] = recency
    if item_vectors is not None and "centroid" in chosen:
        recent = int(chosen["centroid"].setting)  # type: ignore[call-overload]
        made["centroid"] = lambda: embedding_centroid(data, train, item_vectors, recent)
    if "sasrec" in chosen:
        setting = chosen["sasrec"].setting
        assert isinstance(setting, sequential.Setting)
        made["sasrec"] = sequential.sasrec(train, item_ids, setting, users)
    return made
