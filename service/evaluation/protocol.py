"""Offline evaluation of recommendations: loading MovieLens, the temporal split, the metrics and
the baselines every method is compared with in the same run.

Protocol: each user's events sorted by time; the last 20% are held out; every method ranks all
items except those the user already has in the training part; Recall@10, Recall@50 and NDCG@10
are averaged over users. Recall@K divides the hits by min(K, held-out count), so a perfect
ranking scores 1 whatever the user's history length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from service.core.records import Event

HELD_OUT_SHARE = 0.2


@dataclass(frozen=True)
class Split:
    train: dict[str, list[Event]]  # user -> events, oldest first
    test: dict[str, set[str]]  # user -> held-out item ids


def temporal_split(events: Iterable[Event], held_out: float = HELD_OUT_SHARE) -> Split:
    """Per user, the last ``held_out`` share of events (at least one) is the test part."""
    by_user: dict[str, list[Event]] = {}
    for event in events:
        by_user.setdefault(event.user_id, []).append(event)
    train, test = {}, {}
    for user, history in by_user.items():
        history.sort(key=lambda e: e.ts)
        cut = len(history) - max(1, round(len(history) * held_out))
        if cut < 1:
            continue
        train[user] = history[:cut]
        test[user] = {e.item_id for e in history[cut:]} - {e.item_id for e in history[:cut]}
    return Split(train, {u: t for u, t in test.items() if t})


def recall_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    return sum(item in relevant for item in ranked[:k]) / min(k, len(relevant))


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    gain = sum(1 / math.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return gain / ideal


Ranker = Callable[[str], list[str]]  # user -> top items (training items excluded)


def score(
    ranker: Ranker, test: dict[str, set[str]], on_user: Callable[[], None] | None = None
) -> dict[str, float]:
    """Each metric's mean over the users of ``test``."""
    return {
        metric: round(float(np.mean(values)), 4)
        for metric, values in per_user(ranker, test, on_user).items()
    }


def per_user(
    ranker: Ranker, test: dict[str, set[str]], on_user: Callable[[], None] | None = None
) -> dict[str, np.ndarray]:
    """Each metric for each user of ``test``, in its order."""
    recall10, recall50, ndcg10 = [], [], []
    for user, relevant in test.items():
        ranked = ranker(user)
        recall10.append(recall_at(ranked, relevant, 10))
        recall50.append(recall_at(ranked, relevant, 50))
        ndcg10.append(ndcg_at(ranked, relevant, 10))
        if on_user:
            on_user()
    return {
        "recall@10": np.array(recall10),
        "recall@50": np.array(recall50),
        "ndcg@10": np.array(ndcg10),
    }


def one_standard_error_choice(scores: dict[float, np.ndarray]) -> float:
    """The smallest setting whose per-user scores are within one standard error of the best
    setting's (the standard error of their paired per-user difference): among settings the
    data cannot tell apart, the one that changes the ranking least."""
    best = max(scores, key=lambda setting: (float(np.mean(scores[setting])), -setting))
    for setting in sorted(scores):
        difference = scores[best] - scores[setting]
        error = (
            float(np.std(difference, ddof=1) / np.sqrt(len(difference)))
            if len(difference) > 1
            else 0.0
        )
        if float(np.mean(difference)) <= error:
            return setting
    return best


class Interactions:
    """The training part as a binary user × item matrix, with id maps."""

    def __init__(self, train: dict[str, list[Event]], item_ids: Sequence[str]) -> None:
        self.item_ids = list(item_ids)
        self.item_index = {item: i for i, item in enumerate(self.item_ids)}
        self.users = list(train)
        self.user_index = {user: u for u, user in enumerate(self.users)}
        self.matrix = np.zeros((len(self.users), len(self.item_ids)), dtype=np.float32)
        for user, history in train.items():
            for event in history:
                if event.item_id in self.item_index:
                    self.matrix[self.user_index[user], self.item_index[event.item_id]] = 1.0

    def top(self, user: str, scores: np.ndarray, k: int = 50) -> list[str]:
        scores = scores.astype(np.float64, copy=True)
        scores[self.matrix[self.user_index[user]] > 0] = -np.inf  # never what the user has
        k = min(k, int(np.isfinite(scores).sum()))
        best = np.argpartition(-scores, k - 1)[:k] if k else np.array([], dtype=int)
        return [self.item_ids[i] for i in best[np.argsort(-scores[best])]]
