"""Offline evaluation of recommendations: the splits, the locked test part, the metrics and
their paired intervals.

Two splits (``Protocol``), each with a validation part for every tuned choice and a test part
that is read once, at the end (``LockedTest``):

- **per-user**: each user's events sorted by time, the last 20% held out (test); validation is
  the last 20% of each user's training events. Every model also learns from other users'
  events that came later in time than a test user's held-out ones.
- **global**: two cuts in time, T1 and T2 at the 80% and 90% quantiles of all events: training
  before T1 and validation T1-T2 for tuning; the final models learn everything before T2 and
  are scored on what each user chose after T2. Nobody's future is learnt from.

Every method ranks all items except those the user already has in its training part; Recall@10,
Recall@50 and NDCG@10 are averaged over users. Recall@K divides the hits by min(K, held-out
count), so a perfect ranking scores 1 whatever the user's history length.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from service.core.records import Event

HELD_OUT_SHARE = 0.2
# The global split's cuts, as quantiles of all events' times.
GLOBAL_CUTS = (0.8, 0.9)
PROTOCOLS = ("per-user", "global")


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


class TestPartRefused(RuntimeError):
    """The test part was asked for while choices are being made, or a second time."""

    __test__ = False  # not a pytest test class, whatever its name


_TUNING = contextvars.ContextVar("tuning", default=False)


@contextlib.contextmanager
def tuning_phase() -> Iterator[None]:
    """Everything chosen inside runs with the test part locked: reading it raises."""
    token = _TUNING.set(True)
    try:
        yield
    finally:
        _TUNING.reset(token)


@dataclass
class LockedTest:
    """The held-out items per user, readable once and never during the tuning phase."""

    _items: dict[str, set[str]] = field(repr=False)
    _read: bool = False

    def read(self) -> dict[str, set[str]]:
        if _TUNING.get():
            raise TestPartRefused("the test part cannot be read while choices are being made")
        if self._read:
            raise TestPartRefused("the test part was read already: it is read once, at the end")
        self._read = True
        return self._items

    @property
    def users(self) -> list[str]:
        """The users the test part scores: who they are, never what they chose."""
        return sorted(self._items)


@dataclass
class Protocol:
    """One split: ``train`` is what the final models learn; ``tuning`` the split every choice
    is made on (its own training part and validation part, both inside ``train`` or, for the
    global split, before T2); ``test`` the locked test part; ``cut_of`` each user's time from
    which nothing may be known (item text included)."""

    name: str
    train: dict[str, list[Event]]
    tuning: Split
    test: LockedTest
    cut_of: Callable[[str], float]

    @property
    def users(self) -> list[str]:
        """The users the test part scores: a sample is drawn from them."""
        return self.test.users


def make_protocol(events: Sequence[Event], name: str) -> Protocol:
    if name == "per-user":
        return per_user_protocol(events)
    if name == "global":
        return global_protocol(events)
    raise ValueError(f"unknown protocol {name!r}: one of {', '.join(PROTOCOLS)}")


def per_user_protocol(events: Sequence[Event]) -> Protocol:
    split = temporal_split(events)
    tuning = temporal_split(e for history in split.train.values() for e in history)
    first_held_out = _first_held_out(events, split.train)
    return Protocol(
        "per-user",
        split.train,
        tuning,
        LockedTest(split.test),
        lambda user: first_held_out.get(user, -math.inf),
    )


def _first_held_out(events: Sequence[Event], train: dict[str, list[Event]]) -> dict[str, float]:
    """Each user's time of their first held-out event (the event after their training part)."""
    by_user: dict[str, list[float]] = {}
    for event in events:
        by_user.setdefault(event.user_id, []).append(event.ts)
    return {
        user: sorted(by_user[user])[len(history)]
        for user, history in train.items()
        if len(by_user[user]) > len(history)
    }


def global_protocol(events: Sequence[Event], cuts: tuple[float, float] = GLOBAL_CUTS) -> Protocol:
    times = np.array([event.ts for event in events])
    first_cut, second_cut = (float(t) for t in np.quantile(times, cuts))
    tuning = time_split(events, first_cut, second_cut)
    final = time_split(events, second_cut, math.inf)
    return Protocol("global", final.train, tuning, LockedTest(final.test), lambda user: second_cut)


def time_split(events: Iterable[Event], cut: float, until: float) -> Split:
    """Events before ``cut`` train; each training user's new items in [cut, until) are held
    out."""
    train: dict[str, list[Event]] = {}
    later: dict[str, set[str]] = {}
    for event in sorted(events, key=lambda e: e.ts):
        if event.ts < cut:
            train.setdefault(event.user_id, []).append(event)
        elif event.ts < until:
            later.setdefault(event.user_id, set()).add(event.item_id)
    test = {}
    for user, items in later.items():
        if user in train:
            new = items - {e.item_id for e in train[user]}
            if new:
                test[user] = new
    return Split(train, test)


def recall_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    return sum(item in relevant for item in ranked[:k]) / min(k, len(relevant))


def ndcg_at(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    gain = sum(1 / math.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return gain / ideal


Ranker = Callable[[str], list[str]]  # user -> top items (training items excluded)
METRICS = ("recall@10", "recall@50", "ndcg@10")


def score(
    ranker: Ranker, test: dict[str, set[str]], on_user: Callable[[], None] | None = None
) -> dict[str, float]:
    """Each metric's mean over the users of ``test``."""
    return means(per_user(ranker, test, on_user))


def means(results: dict[str, np.ndarray]) -> dict[str, float]:
    return {metric: round(float(np.mean(values)), 4) for metric, values in results.items()}


@dataclass
class Ranked:
    """Per-user metrics of one method, in the users' order, and the distinct items its top
    tens hold (catalog coverage)."""

    metrics: dict[str, np.ndarray]
    top_ten_items: set[str]

    def summary(self, catalog_size: int) -> dict[str, float]:
        coverage = round(len(self.top_ten_items) / max(1, catalog_size), 4)
        return {**means(self.metrics), "coverage@10": coverage}


def rank_users(
    ranker: Ranker, test: dict[str, set[str]], on_user: Callable[[], None] | None = None
) -> Ranked:
    """Each metric for each user of ``test``, in its order, and the items shown."""
    values: dict[str, list[float]] = {metric: [] for metric in METRICS}
    shown: set[str] = set()
    for user, relevant in test.items():
        ranked = ranker(user)
        shown.update(ranked[:10])
        values["recall@10"].append(recall_at(ranked, relevant, 10))
        values["recall@50"].append(recall_at(ranked, relevant, 50))
        values["ndcg@10"].append(ndcg_at(ranked, relevant, 10))
        if on_user:
            on_user()
    return Ranked({metric: np.array(v) for metric, v in values.items()}, shown)


def per_user(
    ranker: Ranker, test: dict[str, set[str]], on_user: Callable[[], None] | None = None
) -> dict[str, np.ndarray]:
    """Each metric for each user of ``test``, in its order."""
    return rank_users(ranker, test, on_user).metrics


BOOTSTRAP_RESAMPLES = 2_000


def paired_interval(
    a: np.ndarray, b: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> dict[str, float]:
    """Mean of a - b over users and its 95% paired bootstrap interval (users resampled)."""
    difference = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(difference), size=(resamples, len(difference)))
    boot = difference[draws].mean(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return {
        "difference": round(float(difference.mean()), 4),
        "low": round(float(low), 4),
        "high": round(float(high), 4),
    }


def verdict(interval: dict[str, float]) -> str:
    """'better' or 'worse' only where the interval excludes zero; else 'tie'."""
    if interval["low"] > 0:
        return "better"
    if interval["high"] < 0:
        return "worse"
    return "tie"


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
