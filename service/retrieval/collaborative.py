"""Item-to-item collaborative model: which items go with which, and what comes next, learnt
from everyone's events; scoring a user's history with it.

The model is two closed-form linear item-item models mixed (fitted in
``service/retrieval/collaborative_fit.py``, its settings chosen per catalog on a validation split
of the stored events by ``service/retrieval/collaborative_tuning.py``). Each item keeps only its
``neighbours`` strongest weights, so the model stays small on disk and a user's scores cost one
sparse sum over their history. It is fitted with the item index (`iprof build-index`) and
stored in the same build folder, with the settings it was fitted for.

A user's history is weighted by recency: on time-ordered data what someone consumed last
predicts what comes next far better than what they consumed a year ago (docs/EVALUATION.md).
While the user's interests are drifting, the history before the change weighs less still
(``ShortTerm``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from service.core.recency import recency_weights

MODEL_FILE = "collaborative.npz"


@dataclass(frozen=True)
class CollaborativeConfig:
    """How the model is fitted and how a history is weighted when it scores.

    The defaults are what the validation split of ml-latest-small chose (docs/EVALUATION.md);
    an index build chooses its own on the stored events when there are enough of them."""

    regularization: float = 300.0  # EASE's ridge strength λ
    # History weight of the k-th newest event: floor + (1 - floor) * 0.5 ** (k / half_life).
    half_life: float = 3.0
    floor: float = 0.1
    transition_regularization: float = 100.0  # the next-items model's λ
    transition_share: float = 0.5  # 0: EASE alone; 1: the next-items model alone
    # Weights kept per item, the largest in magnitude: negative weights matter (an item that
    # people who chose X did not go on to choose).
    neighbours: int = 1000


@dataclass(frozen=True)
class ShortTerm:
    """The history from position ``start`` on is the short-term window (what the user chose
    since their drift was detected); each event before it weighs ``earlier`` times its
    recency weight."""

    start: int
    earlier: float


def history_weights(
    count: int, config: CollaborativeConfig, short_term: ShortTerm | None = None
) -> np.ndarray:
    """Weights of ``count`` events, oldest first: the newest weighs 1 (the model's half-life
    and floor), and a drifting user's earlier events less."""
    weights = recency_weights(count, config.half_life, config.floor, np.float32)
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
        """For each of ``rows``, the history item (a model row) that raised its score most
        among those someone chose together with it; -1 where there is none."""
        if not len(self.rows) or not len(self.history_rows):
            return np.full(len(self.rows), -1, dtype=np.int64)
        model = self._model
        raising = self._contributions > 0
        if model.together is not None:  # and chosen together with it by someone
            raising &= model.together[self.history_rows]
        neighbours = model.neighbours[self.history_rows]
        sources = _strongest_source(neighbours, self._contributions, self.rows, raising)
        return np.where(sources >= 0, self.history_rows[np.maximum(sources, 0)], -1)


class ItemModel:
    """Each modelled item's strongest neighbours (row indices), their weights and whether some
    user chose both (``together``; None for builds made before it was kept: then any raising
    neighbour may explain)."""

    def __init__(
        self,
        item_ids: list[str],
        neighbours: np.ndarray,
        weights: np.ndarray,
        config: CollaborativeConfig,
        together: np.ndarray | None = None,
    ) -> None:
        self.item_ids = item_ids
        self.neighbours = neighbours
        self.weights = weights
        self.config = config
        self.together = together
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
        for item_id, weight in zip(
            history, history_weights(len(history), self.config, short_term).tolist()
        ):
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
        arrays = {
            "item_ids": np.array(json.dumps(self.item_ids)),
            "neighbours": self.neighbours,
            "weights": self.weights,
            "config": np.array(json.dumps(asdict(self.config))),
        }
        if self.together is not None:
            arrays["together"] = self.together
        np.savez(folder / MODEL_FILE, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, folder: Path) -> ItemModel | None:
        """The model of an index build, or None when the build has none (no events yet)."""
        path = folder / MODEL_FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as stored:
            item_ids = json.loads(str(stored["item_ids"]))
            neighbours, weights = stored["neighbours"], stored["weights"]
            together = stored.get("together")
            # Older builds were fitted as EASE alone, scored with half-life 10 and floor 0.1.
            config = (
                CollaborativeConfig(**json.loads(str(stored["config"])))
                if "config" in stored
                else CollaborativeConfig(half_life=10.0, transition_share=0.0, neighbours=500)
            )
        if neighbours.shape != weights.shape or neighbours.shape[0] != len(item_ids):
            raise ValueError(f"{path}: its arrays disagree in shape")
        if together is not None and together.shape != neighbours.shape:
            raise ValueError(f"{path}: its arrays disagree in shape")
        return cls(item_ids, neighbours, weights, config, together)


def _strongest_source(
    targets: np.ndarray, contributions: np.ndarray, wanted: np.ndarray, eligible: np.ndarray
) -> np.ndarray:
    """For each wanted target, the ``eligible`` history position that contributed most to it
    (-1: none)."""
    # A mask over the model's rows picks the few wanted entries out of the history's
    # neighbour lists (tens of thousands): cheaper than np.isin, which sorts them all.
    is_wanted = np.zeros(max(int(targets.max(initial=0)), int(wanted.max())) + 1, dtype=bool)
    is_wanted[wanted] = True
    # Only a history item that pushed the target up, and that someone chose together with it,
    # explains it: "people who chose X also chose this" is false of any other X.
    history, column = np.nonzero(is_wanted[targets] & eligible)
    hits, strength = targets[history, column], contributions[history, column]
    order = np.lexsort((-strength, hits))  # by target, largest contribution first (stable)
    first = np.unique(hits[order], return_index=True)
    source = dict(zip(first[0].tolist(), history[order][first[1]].tolist()))
    # -1: no history item points at that target (it was not among the scored items)
    return np.array([source.get(target, -1) for target in wanted.tolist()], dtype=np.int64)
