"""Fitting the collaborative model: two closed-form linear item-item models, mixed.

- **EASE** (Steck, 2019) learns which items go together from who consumed what.
- **Next items** (the transition half of SLIST: Choi et al., "Session-aware Linear Item-Item
  Models", WWW 2021) learns what a recency-weighted history is followed by: at every
  ``TRANSITION_STEP``-th event of each user's time-ordered history, the history so far (weighted
  as at request time) is a source row and the next ``TRANSITION_HORIZON`` items its target; the
  model is the ridge regression from sources to targets. It is what the evaluation asks for
  (what comes next), and measured beside recency-weighted EASE on the validation splits of
  both MovieLens sets it adds 12-24% NDCG@10 (docs/EVALUATION.md).

Both are scaled to unit spread of their scores on the training histories and mixed by
``transition_share``; each item keeps its ``neighbours`` strongest weights.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from service.retrieval.collaborative import (
    CollaborativeConfig,
    ItemModel,
    history_weights,
)

# A dense item × item Gram matrix is fitted: 20,000 items need 1.6 GB and about a minute.
MAX_ITEMS = 20_000
# Fixed, not tuned: an uncommitted prototype on the validation parts put step 5 / horizon 10
# ahead of 5 / 20 and 10 / 20 on both MovieLens sets (docs/EVALUATION.md).
TRANSITION_STEP = 5
TRANSITION_HORIZON = 10
# Source rows per user at most (spread evenly over the history), so one user with thousands
# of events does not dominate the fit or its memory.
MAX_SOURCES_PER_USER = 100

# Histories the spread of a model's scores is measured on (see _spread).
SPREAD_USERS = 5_000

History = Sequence[str]  # one user's item ids, oldest first


def ease_weights(gram: np.ndarray, regularization: float) -> np.ndarray:
    """EASE from the item Gram matrix XᵀX: B = I - P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹, diag(B) = 0.

    The Gram matrix plus λI is symmetric positive definite, so P comes from a Cholesky
    factorisation (LAPACK potrf + potri): about six times faster than a general inverse.
    ``gram`` is overwritten."""
    from scipy.linalg import lapack

    gram = np.asarray(gram, dtype=np.float32)
    gram[np.diag_indices_from(gram)] += regularization
    factor, info = lapack.spotrf(gram, lower=True, overwrite_a=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"Gram matrix not positive definite (potrf info {info})")
    inverse, info = lapack.spotri(factor, lower=True, overwrite_c=True)
    inverse = np.tril(inverse) + np.tril(inverse, -1).T  # potri fills one triangle
    weights = inverse / (-np.diag(inverse))
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


class Histories:
    """Users' time-ordered histories over the modelled items, as the matrices the fits need."""

    def __init__(self, histories: Sequence[History], item_ids: list[str]) -> None:
        self.item_ids = item_ids
        position = {item_id: column for column, item_id in enumerate(item_ids)}
        self.rows = [
            np.array([position[i] for i in history if i in position], dtype=np.int64)
            for history in histories
        ]

    def subset(self, positions: Sequence[int]) -> Histories:
        """The histories at these positions only."""
        chosen = Histories([], self.item_ids)
        chosen.rows = [self.rows[position] for position in positions]
        return chosen

    def consumed(self):  # type: ignore[no-untyped-def]
        """The binary user × item matrix (sparse)."""
        return self._matrix([(rows, np.ones(len(rows), np.float32)) for rows in self.rows])

    def weighted(self, config: CollaborativeConfig):  # type: ignore[no-untyped-def]
        """Each history weighted by recency as at request time (sparse)."""
        return self._matrix([_weighted(rows, config) for rows in self.rows])

    def transitions(self, config: CollaborativeConfig):  # type: ignore[no-untyped-def]
        """Source rows (the history up to a cut, weighted) and target rows (what follows)."""
        sources, targets = [], []
        for rows in self.rows:
            cuts = range(TRANSITION_STEP, len(rows), TRANSITION_STEP)
            if len(cuts) > MAX_SOURCES_PER_USER:
                cuts = np.linspace(cuts[0], cuts[-1], MAX_SOURCES_PER_USER).astype(int).tolist()
            for cut in cuts:
                sources.append(_weighted(rows[:cut], config))
                target = rows[cut : cut + TRANSITION_HORIZON]
                targets.append((target, np.ones(len(target), np.float32)))
        return self._matrix(sources), self._matrix(targets)

    def _matrix(self, rows: list[tuple[np.ndarray, np.ndarray]]):  # type: ignore[no-untyped-def]
        from scipy import sparse

        indptr = np.cumsum([0] + [len(columns) for columns, _ in rows])
        columns = np.concatenate([np.zeros(0, np.int64)] + [c for c, _ in rows])
        values = np.concatenate([np.zeros(0, np.float32)] + [v for _, v in rows])
        matrix = sparse.csr_matrix(
            (values, columns, indptr), shape=(len(rows), len(self.item_ids)), dtype=np.float32
        )
        matrix.sum_duplicates()
        return matrix


def _weighted(rows: np.ndarray, config: CollaborativeConfig) -> tuple[np.ndarray, np.ndarray]:
    """An item seen again counts once, at its newest weight (as ItemModel scores it)."""
    weights = history_weights(len(rows), config)
    newest: dict[int, float] = dict(zip(rows.tolist(), weights.tolist()))
    return np.fromiter(newest, np.int64, len(newest)), np.fromiter(
        newest.values(), np.float32, len(newest)
    )


def transition_weights(histories: Histories, config: CollaborativeConfig) -> np.ndarray:
    """The next-items model: W = (SᵀS + λI)⁻¹ SᵀT (a Cholesky solve)."""
    from scipy.linalg import cho_factor, cho_solve

    sources, targets = histories.transitions(config)
    gram = (sources.T @ sources).toarray()
    gram[np.diag_indices_from(gram)] += config.transition_regularization
    return cho_solve(cho_factor(gram, overwrite_a=True), (sources.T @ targets).toarray()).astype(
        np.float32
    )


def mixed_weights(
    histories: Histories,
    config: CollaborativeConfig,
    ease: np.ndarray | None = None,
    transitions: np.ndarray | None = None,
) -> np.ndarray:
    """EASE and next-items weights, each over the spread of the scores it gives the training
    histories, mixed by ``transition_share``. Either fit may be passed in (tuning reuses them)."""
    share = config.transition_share
    mixed = np.zeros((len(histories.item_ids),) * 2, dtype=np.float32)
    weighted = histories.weighted(config)
    if share < 1.0:
        if ease is None:
            ease = ease_weights(gram(histories), config.regularization)
        mixed += (1.0 - share) * ease / _spread(weighted, ease)
    if share > 0.0:
        if transitions is None:
            transitions = transition_weights(histories, config)
        mixed += share * transitions / _spread(weighted, transitions)
    return mixed


def gram(histories: Histories) -> np.ndarray:
    """XᵀX of the binary user × item matrix."""
    consumed = histories.consumed()
    consumed.data[:] = 1.0  # an item consumed twice still means "consumed"
    return (consumed.T @ consumed).toarray()


def _spread(weighted, weights: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """The spread of the scores ``weights`` give the histories: on the first SPREAD_USERS
    only, since the scores of all users at once (users × items) would not fit in memory on a
    large deployment; a spread needs no more."""
    spread = float(np.std(weighted[:SPREAD_USERS] @ weights))
    return spread if spread > 0 else 1.0


def modelled_items(histories: Iterable[History], max_items: int = MAX_ITEMS) -> list[str]:
    """The most consumed items; ties broken by id so a refit on the same data is the same
    model."""
    counts: dict[str, int] = {}
    for history in histories:
        for item_id in set(history):
            counts[item_id] = counts.get(item_id, 0) + 1
    return sorted(counts, key=lambda i: (-counts[i], i))[:max_items]


def fit_item_model(
    histories: Sequence[History],
    config: CollaborativeConfig | None = None,
    max_items: int = MAX_ITEMS,
) -> ItemModel | None:
    """Fit on users' time-ordered histories; None when they are too few to say anything."""
    config = config or CollaborativeConfig()
    item_ids = modelled_items(histories, max_items)
    if len(item_ids) < 2:
        return None
    prepared = Histories(histories, item_ids)
    if not any(len(rows) > TRANSITION_STEP for rows in prepared.rows):
        config = replace(config, transition_share=0.0)  # nothing follows anything yet
    counts = gram(prepared)
    together = counts > 0  # before the EASE solve overwrites the counts
    ease = ease_weights(counts, config.regularization) if config.transition_share < 1 else None
    weights = mixed_weights(prepared, config, ease=ease)
    return strongest(item_ids, weights, config, together)


def strongest(
    item_ids: list[str],
    weights: np.ndarray,
    config: CollaborativeConfig,
    together: np.ndarray | None = None,
) -> ItemModel:
    """Keep each row's ``neighbours`` weights largest in magnitude, with their signs, and
    whether some user chose both items of each (``together``: item × item, True where the
    Gram matrix is not 0), which a reason "people who chose X also chose this" needs."""
    keep = min(config.neighbours, len(item_ids) - 1)
    best = np.argpartition(-np.abs(weights), keep - 1, axis=1)[:, :keep]
    values = np.take_along_axis(weights, best, axis=1).astype(np.float32)
    chosen_together = None if together is None else np.take_along_axis(together, best, axis=1)
    return ItemModel(item_ids, best.astype(np.int32), values, config, chosen_together)


def histories_of(triples: Iterable[tuple[str, str, float]]) -> list[list[str]]:
    """(user id, item id, time) triples, in any order, as each user's items oldest first (a
    stable sort: events at the same time keep the order they came in)."""
    by_user: dict[str, list[tuple[float, str]]] = {}
    for user_id, item_id, ts in triples:
        by_user.setdefault(user_id, []).append((ts, item_id))
    return [
        [item for _, item in sorted(events, key=lambda pair: pair[0])]
        for events in by_user.values()
    ]
