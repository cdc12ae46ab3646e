"""Recommendations: candidates from several sources, fused into one ranking, each with a reason.

Sources: one FAISS search per interest (so a minor interest is served too, not drowned by the
main one), one for the whole profile, the collaborative item-to-item model (what goes with the
user's history, recent items first; fitted with the index), and popularity. Reciprocal-rank
fusion combines them without calibrating their score scales against each other. An interest
that found an item gives its reason; otherwise the source that contributed most does.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .embed import Embedder, normalize_rows
from .itemindex import ItemIndex
from .models import Profile
from .store import Store

RRF_K = 60
# A search hit counts when its similarity is at least this share of the best hit's.
CLOSE_MATCH = 0.5
BACKFILL_WEIGHT = 0.001
POPULAR_ITEMS = 10_000  # popularity beyond the top 10,000 says nothing useful


@dataclass(frozen=True)
class FusionWeights:
    """Set by the ablation in docs/EVALUATION.md: on MovieLens the collaborative model carries
    the ranking (alone it beats EASE); at this weight the content sources still serve items and
    users it knows little about without moving its ranking (NDCG@10 0.1429 against 0.1431
    alone), where at 0.5 they pulled it down to 0.054."""

    interests: float = 1.0  # shared among the interests by their weights
    profile: float = 0.3
    collaborative: float = 4.0
    popularity: float = 0.15


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    reason: str


@dataclass(frozen=True)
class _Popularity:
    events: int  # the event count it was computed at
    ranked: list[str]
    counts: dict[str, int]


@dataclass
class _Candidates:
    """A ranked list from one source, its weight in the fusion and how to explain a hit.

    An interest's reason goes first: "matches your interest 'Baking'" is what ties an item to
    the profile a person reads, so it explains an item whenever an interest found it, even
    when the collaborative model contributed more to its rank."""

    ranked: list[str]
    weight: float
    reason: Callable[[str], str]
    explains_first: bool = False


class Recommender:
    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        index: Callable[[], ItemIndex],
        weights: FusionWeights | None = None,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.index = index
        self.weights = weights or FusionWeights()
        self._popularity = _Popularity(-1, [], {})
        self._popularity_lock = threading.Lock()

    def recommend(self, profile: Profile, k: int) -> list[Recommendation]:
        index = self.index()
        history = [e.item_id for e in self.store.user_events(profile.user_id)]
        seen = set(history)
        popular = self._popularity_snapshot()  # one look per request, shared by two sources
        depth = min(len(index), k + len(seen) + 50)
        sources = [
            *self._interest_candidates(profile, index, depth),
            *self._profile_candidates(profile, index, depth),
            self._collaborative_candidates(history, index, depth + len(seen)),
            self._popular_candidates(popular, depth + len(seen)),
        ]
        for source in sources:
            # Events may name items not in the catalog (yet); only indexed items are offered.
            source.ranked = [item_id for item_id in source.ranked if item_id in index]
        return fuse(sources, seen, k)

    def _interest_candidates(
        self, profile: Profile, index: ItemIndex, depth: int
    ) -> list[_Candidates]:
        if not profile.interests:
            return []
        labels = self.embedder.encode([i.label for i in profile.interests])
        queries = []
        for interest, label_vector in zip(profile.interests, labels):
            # The label says what, the evidence items say which kind: average both.
            evidence = index.vectors_of(interest.evidence)
            taste = evidence.mean(axis=0) if len(evidence) else label_vector
            queries.append(normalize_rows(label_vector + taste))
        hits = index.search(np.stack(queries), depth)
        return [
            _Candidates(
                ranked=close_matches(ranked),
                weight=self.weights.interests * interest.weight,
                reason=_matches(interest.label),
                explains_first=True,
            )
            for interest, ranked in zip(profile.interests, hits)
        ]

    def _profile_candidates(
        self, profile: Profile, index: ItemIndex, depth: int
    ) -> list[_Candidates]:
        """The close matches of the whole profile, and the rest of that search as a backfill
        that weighs almost nothing: it only decides among items no other source offered, so a
        user always gets ``k`` items when the catalog has them."""
        ranked = index.search(profile.embedding, depth)[0]
        close = close_matches(ranked)
        reason = "close to your recent profile as a whole"
        return [
            _Candidates(close, self.weights.profile, lambda _: reason),
            _Candidates([i for i, _ in ranked[len(close) :]], BACKFILL_WEIGHT, lambda _: reason),
        ]

    def _collaborative_candidates(
        self, history: list[str], index: ItemIndex, depth: int
    ) -> _Candidates:
        model = index.collaborative
        found = model.scores(history, depth) if model else {}
        titles = self.store.get_items({c.because_of for c in found.values()})

        def reason(item_id: str) -> str:
            anchor = found[item_id].because_of
            title = titles[anchor].title if anchor in titles else anchor
            return f"people who chose '{title}' also chose this"

        return _Candidates(list(found), self.weights.collaborative, reason)

    def _popular_candidates(self, popular: _Popularity, depth: int) -> _Candidates:
        ranked = popular.ranked[:depth]
        return _Candidates(ranked, self.weights.popularity, lambda _: "popular with other users")

    def _popularity_snapshot(self) -> _Popularity:
        """The most popular items, recomputed only when events arrived (or were deleted)."""
        events = self.store.count_events()
        with self._popularity_lock:
            if self._popularity.events != events:
                top = self.store.popularity(POPULAR_ITEMS)
                self._popularity = _Popularity(events, [i for i, _ in top], dict(top))
            return self._popularity


def close_matches(ranked: Sequence[tuple[str, float]]) -> list[str]:
    """The hits of one search that are real matches: within reach of the best one. The tail of a
    search is other topics; letting it vote would also give those items a wrong reason."""
    if not ranked:
        return []
    floor = ranked[0][1] * CLOSE_MATCH
    return [item_id for item_id, score in ranked if score >= floor]


def _matches(label: str) -> Callable[[str], str]:
    return lambda _: f"matches your interest '{label}'"


def fuse(sources: Sequence[_Candidates], seen: set[str], k: int) -> list[Recommendation]:
    """Weighted reciprocal-rank fusion; never an item in ``seen``. The reason comes from the
    source that contributed most, among those that explain first if any found the item."""
    score: dict[str, float] = defaultdict(float)
    best: dict[str, tuple[bool, float, int]] = {}
    for position, source in enumerate(sources):
        rank = 0
        for item_id in source.ranked:
            if item_id in seen:
                continue
            rank += 1
            contribution = source.weight / (RRF_K + rank)
            score[item_id] += contribution
            claim = (source.explains_first, contribution, -position)
            if item_id not in best or claim > best[item_id]:
                best[item_id] = claim
    top = sorted(score, key=lambda i: (-score[i], i))[:k]
    # Scores are scaled by 1000 only to make them readable; they are comparable within a list.
    return [
        Recommendation(i, round(score[i] * 1000, 4), sources[-best[i][2]].reason(i)) for i in top
    ]
