"""Item-to-item collaborative model: which items go with which, learnt from everyone's events.

Fitted with EASE (Steck, 2019), a closed-form linear item-item model that is among the best
collaborative recommenders on MovieLens-like data, on the most consumed ``max_items`` items.
Only each item's strongest ``neighbours`` weights are kept, so the model stays small on disk
and a user's scores cost one sparse sum over their history. It is fitted with the item index
(`iprof build-index`) and stored in the same build folder.

A user's history is weighted by recency: on time-ordered data what someone consumed last
predicts what comes next far better than what they consumed a year ago (+15% NDCG@10 on
ml-latest-small, +25% on ml-100k over unweighted EASE; see docs/EVALUATION.md). While the
user's interests are drifting, the history before the change weighs less still (``ShortTerm``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Ridge strength of EASE; chosen on a validation split of both ml-latest-small and ml-100k
# (the same value won on each), not on their test parts.
EASE_LAMBDA = 300.0
# A dense item × item Gram matrix is fitted: 20,000 items need 1.6 GB and about a minute.
MAX_ITEMS = 20_000
NEIGHBOURS = 500
# History weight of the k-th newest event: FLOOR + (1 - FLOOR) * 0.5 ** (k / HALF_LIFE).
RECENCY_HALF_LIFE = 10.0
RECENCY_FLOOR = 0.1

MODEL_FILE = "collaborative.npz"


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


@dataclass(frozen=True)
class ShortTerm:
    """The history from position ``start`` on is the short-term window (what the user chose
    since their drift was detected); each event before it weighs ``earlier`` times its
    recency weight."""

    start: int
    earlier: float


def recency_weights(count: int, short_term: ShortTerm | None = None) -> np.ndarray:
    """Weights of ``count`` events, oldest first: the newest weighs 1."""
    age = np.arange(count - 1, -1, -1, dtype=np.float32)
    weights = RECENCY_FLOOR + (1.0 - RECENCY_FLOOR) * 0.5 ** (age / RECENCY_HALF_LIFE)
    if short_term is not None:
        weights[: short_term.start] *= short_term.earlier
    return weights


class Scored:
    """A history's best items (``rows`` of the model, best first; ``ranked``, their ids), every
    modelled item's score (``totals``, model order), the history's own model rows
    (``history_rows``) and, on demand, the history item behind each of the best."""

    def __init__(
        self,
        model: ItemModel,
        rows: np.ndarray,
        history_rows: np.ndarray,
        contributions: np.ndarray,
        totals: np.ndarray,
    ) -> None:
        self._model = model
        self.history_rows = history_rows
        self._contributions = contributions
        self.rows = rows
        self.totals = totals

    @property
    def ranked(self) -> list[str]:
        names = self._model.item_ids
        return [names[row] for row in self.rows.tolist()]

    def anchors(self) -> np.ndarray:
        """For each of ``rows``, the history item (a model row) that contributed most to its
        score; -1 where none did."""
        if not len(self.rows) or not len(self.history_rows):
            return np.full(len(self.rows), -1, dtype=np.int64)
        sources = _strongest_source(
            self._model.neighbours[self.history_rows], self._contributions, self.rows
        )
        return np.where(sources >= 0, self.history_rows[np.maximum(sources, 0)], -1)


class ItemModel:
    """Each modelled item's strongest neighbours (row indices) and their weights."""

    def __init__(self, item_ids: list[str], neighbours: np.ndarray, weights: np.ndarray) -> None:
        self.item_ids = item_ids
        self.neighbours = neighbours
        self.weights = weights
        self._rows = {item_id: row for row, item_id in enumerate(item_ids)}

    def __len__(self) -> int:
        return len(self.item_ids)

    def scores(
        self, history: Sequence[str], depth: int, short_term: ShortTerm | None = None
    ) -> Scored:
        """The ``depth`` best items for a history (oldest first)."""
        rows, contributions, totals = self._score(history, short_term)
        # Only the best ``depth`` are sorted: a full sort of every modelled item per request
        # would cost more than the scoring itself.
        depth = min(depth, len(totals)) if len(rows) else 0
        best = np.argpartition(-totals, depth - 1)[:depth] if depth else np.array([], dtype=int)
        best = best[np.argsort(-totals[best], kind="stable")]
        return Scored(self, best[totals[best] > 0], rows, contributions, totals)

    def score_all(self, history: Sequence[str], short_term: ShortTerm | None = None) -> np.ndarray:
        """Every modelled item's score for a history (oldest first), in model row order."""
        return self._score(history, short_term)[2]

    def _score(
        self, history: Sequence[str], short_term: ShortTerm | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The history's model rows, their weighted neighbour contributions and the totals."""
        weights: dict[int, float] = {}
        for item_id, weight in zip(history, recency_weights(len(history), short_term).tolist()):
            row = self._rows.get(item_id)
            if row is not None:  # an item seen again counts at its newest weight
                weights[row] = weight
        rows = np.fromiter(weights, dtype=np.int64, count=len(weights))
        contributions = self.weights[rows] * np.fromiter(weights.values(), np.float32)[:, None]
        # bincount, not np.add.at: the same sums, an order of magnitude faster.
        totals = np.bincount(
            self.neighbours[rows].ravel(),
            weights=contributions.ravel(),
            minlength=len(self.item_ids),
        )
        return rows, contributions, totals

    def save(self, folder: Path) -> None:
        np.savez(
            folder / MODEL_FILE,
            item_ids=np.array(json.dumps(self.item_ids)),
            neighbours=self.neighbours,
            weights=self.weights,
        )

    @classmethod
    def load(cls, folder: Path) -> ItemModel | None:
        """The model of an index build, or None when the build has none (no events yet)."""
        path = folder / MODEL_FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as stored:
            item_ids = json.loads(str(stored["item_ids"]))
            neighbours, weights = stored["neighbours"], stored["weights"]
        if neighbours.shape != weights.shape or neighbours.shape[0] != len(item_ids):
            raise ValueError(f"{path}: its arrays disagree in shape")
        return cls(item_ids, neighbours, weights)


def fit_item_model(
    pairs: Iterable[tuple[str, str]],
    max_items: int = MAX_ITEMS,
    neighbours: int = NEIGHBOURS,
    regularization: float = EASE_LAMBDA,
) -> ItemModel | None:
    """Fit on (user id, item id) pairs (repeats count once); None when they are too few to say
    anything."""
    from scipy import sparse

    by_user: dict[str, int] = {}
    counts: dict[str, int] = {}
    rows, columns = [], []
    for user_id, item_id in pairs:
        rows.append(by_user.setdefault(user_id, len(by_user)))
        columns.append(item_id)
        counts[item_id] = counts.get(item_id, 0) + 1
    # The most consumed items; ties broken by id so a refit on the same data is the same model.
    item_ids = sorted(counts, key=lambda i: (-counts[i], i))[:max_items]
    if len(item_ids) < 2:
        return None
    position = {item_id: column for column, item_id in enumerate(item_ids)}
    kept = [(r, position[c]) for r, c in zip(rows, columns) if c in position]
    users, items = np.array(kept, dtype=np.int64).T
    matrix = sparse.csr_matrix(
        (np.ones(len(kept), dtype=np.float32), (users, items)),
        shape=(len(by_user), len(item_ids)),
    )
    matrix.data[:] = 1.0  # duplicates were summed; a pair seen twice still means "consumed"
    weights = ease_weights((matrix.T @ matrix).toarray(), regularization)
    return _strongest(item_ids, weights, min(neighbours, len(item_ids) - 1))


def _strongest_source(
    targets: np.ndarray, contributions: np.ndarray, wanted: np.ndarray
) -> np.ndarray:
    """For each wanted target, the history position that contributed most to it."""
    # A mask over the model's rows picks the few wanted entries out of the history's
    # neighbour lists (tens of thousands): cheaper than np.isin, which sorts them all.
    is_wanted = np.zeros(max(int(targets.max(initial=0)), int(wanted.max())) + 1, dtype=bool)
    is_wanted[wanted] = True
    history, column = np.nonzero(is_wanted[targets])  # history positions in ascending order
    hits, strength = targets[history, column], contributions[history, column]
    order = np.lexsort((-strength, hits))  # by target, largest contribution first (stable)
    first = np.unique(hits[order], return_index=True)
    source = dict(zip(first[0].tolist(), history[order][first[1]].tolist()))
    # -1: no history item points at that target (it was not among the scored items)
    return np.array([source.get(target, -1) for target in wanted.tolist()], dtype=np.int64)


def _strongest(item_ids: list[str], weights: np.ndarray, keep: int) -> ItemModel:
    """Keep each row's ``keep`` largest weights (a negative weight never recommends)."""
    best = np.argpartition(-weights, keep - 1, axis=1)[:, :keep]
    values = np.take_along_axis(weights, best, axis=1)
    values = np.where(values > 0, values, 0.0).astype(np.float32)
    return ItemModel(item_ids, best.astype(np.int32), values)
