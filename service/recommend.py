"""Recommendations: candidates from several sources, fused into one ranking, each with a reason.

Sources: one FAISS search per interest (so a minor interest is served too, not drowned by the
main one), one for the whole profile, the collaborative item-to-item model (what goes with the
user's history, recent items first; fitted with the index), and popularity. Reciprocal-rank
fusion combines them without calibrating their score scales against each other. An interest
that found an item gives its reason; otherwise the source that contributed most does.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
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
LABEL_CACHE = 50_000


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
    version: tuple[int, int] | None  # Store.events_version() it was computed at
    ranked: list[str]


class LabelVectors:
    """Embeddings of interest labels, remembered: labels repeat across users and requests, and
    encoding them is the costliest step of a request otherwise (a model forward pass)."""

    def __init__(self, embedder: Embedder, size: int = LABEL_CACHE) -> None:
        self.embedder = embedder
        self.size = size
        self._known: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, labels: Sequence[str]) -> np.ndarray:
        if not labels:
            return np.zeros((0, self.embedder.dimension), dtype=np.float32)
        with self._lock:
            missing = list(dict.fromkeys(label for label in labels if label not in self._known))
        if missing:  # encoded outside the lock: other requests go on meanwhile
            fresh = dict(zip(missing, self.embedder.encode(missing)))
            with self._lock:
                self._known.update(fresh)
                while len(self._known) > self.size:
                    self._known.popitem(last=False)
        with self._lock:
            rows = []
            for label in labels:
                vector = self._known.get(label)
                if vector is None:  # pushed out by a burst of new labels just now
                    vector = self.embedder.encode([label])[0]
                else:
                    self._known.move_to_end(label)
                rows.append(vector)
        return np.stack(rows)


# The reasons for the items a source explains, in their order; asked once per request, for the
# returned items only (a reason may need a lookup).
Explain = Callable[[list[str]], list[str]]


@dataclass
class _Candidates:
    """A ranked list from one source, its weight in the fusion and how to explain its hits.

    An interest's reason goes first: "matches your interest 'Baking'" is what ties an item to
    the profile a person reads, so it explains an item whenever an interest found it, even
    when the collaborative model contributed more to its rank."""

    ranked: list[str]
    weight: float
    explain: Explain
    explains_first: bool = False


def _always(reason: str) -> Explain:
    return lambda items: [reason] * len(items)


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
        self.label_vectors = LabelVectors(embedder)
        self._popularity = _Popularity(None, [])
        self._popularity_lock = threading.Lock()
        self._popularity_refresh: threading.Thread | None = None

    def recommend(
        self, profile: Profile, k: int, history: list[str] | None = None
    ) -> list[Recommendation]:
        """The ``k`` best items for the user; ``history`` (item ids, oldest first) is read
        from the store unless given."""
        index = self.index()
        if history is None:
            history = [e.item_id for e in self.store.user_events(profile.user_id)]
        seen = set(history)
        popular = self._popularity_snapshot()  # one look per request, shared by two sources
        depth = min(len(index), k + len(seen) + 50)
        # One search for the interests and the whole profile: one pass over the index's lists.
        queries = np.vstack([self._interest_queries(profile, index), profile.embedding[None]])
        *interest_hits, profile_hits = index.search(queries, depth)
        sources = [
            *self._interest_candidates(profile, interest_hits),
            *self._profile_candidates(profile_hits),
            self._collaborative_candidates(history, index, depth + len(seen)),
            self._popular_candidates(popular, depth + len(seen)),
        ]
        for source in sources[-2:]:
            # Events may name items not in the catalog (yet); only indexed items are offered.
            source.ranked = index.known(source.ranked)
        return fuse(sources, seen, k)

    def _interest_queries(self, profile: Profile, index: ItemIndex) -> np.ndarray:
        """One search vector per interest: the label says what, the evidence items say which
        kind, so both are averaged."""
        queries = np.zeros((len(profile.interests), index.manifest.dimension), dtype=np.float32)
        labels = self.label_vectors([i.label for i in profile.interests])
        for row, (interest, label_vector) in enumerate(zip(profile.interests, labels)):
            evidence = index.vectors_of(interest.evidence)
            taste = evidence.mean(axis=0) if len(evidence) else label_vector
            queries[row] = label_vector + taste
        return normalize_rows(queries)

    def _interest_candidates(
        self, profile: Profile, hits: list[list[tuple[str, float]]]
    ) -> list[_Candidates]:
        return [
            _Candidates(
                ranked=close_matches(ranked),
                weight=self.weights.interests * interest.weight,
                explain=_always(f"matches your interest '{interest.label}'"),
                explains_first=True,
            )
            for interest, ranked in zip(profile.interests, hits)
        ]

    def _profile_candidates(self, ranked: list[tuple[str, float]]) -> list[_Candidates]:
        """The close matches of the whole profile, and the rest of that search as a backfill
        that weighs almost nothing: it only decides among items no other source offered, so a
        user always gets ``k`` items when the catalog has them."""
        close = close_matches(ranked)
        explain = _always("close to your recent profile as a whole")
        return [
            _Candidates(close, self.weights.profile, explain),
            _Candidates([i for i, _ in ranked[len(close) :]], BACKFILL_WEIGHT, explain),
        ]

    def _collaborative_candidates(
        self, history: list[str], index: ItemIndex, depth: int
    ) -> _Candidates:
        model = index.collaborative
        if model is None:
            return _Candidates([], self.weights.collaborative, _always(""))
        found = model.scores(history, depth)

        def explain(items: list[str]) -> list[str]:
            anchors = found.because_of(items)
            titles = self.store.get_items(anchors.values())
            return [
                f"people who chose '{titles[a].title if a in titles else a}' also chose this"
                for a in (anchors.get(i, "") for i in items)
            ]

        return _Candidates(found.ranked, self.weights.collaborative, explain)

    def _popular_candidates(self, popular: _Popularity, depth: int) -> _Candidates:
        ranked = popular.ranked[:depth]
        return _Candidates(ranked, self.weights.popularity, _always("popular with other users"))

    def warm_up(self) -> None:
        """Count popularity now, so the first requests do not wait for it."""
        self._popularity_snapshot()

    def _popularity_snapshot(self) -> _Popularity:
        """The most popular items. Counting them reads every event, so once there is a ranking,
        a change of the events recounts in the background and requests serve the previous
        ranking meanwhile (popularity a few seconds old ranks the same)."""
        version = self.store.events_version()
        with self._popularity_lock:
            current = self._popularity
            if current.version is None:
                current = self._popularity = self._count_popularity(version)
            elif current.version != version and not self._popularity_refresh:
                self._popularity_refresh = threading.Thread(
                    target=self._recount, args=(version,), name="popularity", daemon=True
                )
                self._popularity_refresh.start()
            return current

    def _recount(self, version: tuple[int, int]) -> None:
        fresh = None
        try:
            fresh = self._count_popularity(version)
        finally:  # a failed recount is tried again by the next request
            with self._popularity_lock:
                if fresh is not None:
                    self._popularity = fresh
                self._popularity_refresh = None

    def _count_popularity(self, version: tuple[int, int]) -> _Popularity:
        return _Popularity(version, [item for item, _ in self.store.popularity(POPULAR_ITEMS)])


def close_matches(ranked: Sequence[tuple[str, float]]) -> list[str]:
    """The hits of one search that are real matches: within reach of the best one. The tail of a
    search is other topics; letting it vote would also give those items a wrong reason."""
    if not ranked:
        return []
    floor = ranked[0][1] * CLOSE_MATCH
    return [item_id for item_id, score in ranked if score >= floor]


def fuse(sources: Sequence[_Candidates], seen: set[str], k: int) -> list[Recommendation]:
    """Weighted reciprocal-rank fusion; never an item in ``seen``. The reason comes from the
    source that contributed most, among those that explain first if any found the item (the
    first such source on a tie)."""
    # About a thousand candidates a request: the loops are kept to the fewest dictionary
    # operations per candidate, and the reasons are settled for the returned items only.
    unseen = [[item_id for item_id in source.ranked if item_id not in seen] for source in sources]
    score: dict[str, float] = {}
    get = score.get
    for source, ranked in zip(sources, unseen):
        for item_id, contribution in zip(ranked, _reciprocal_ranks(source.weight, len(ranked))):
            score[item_id] = get(item_id, 0.0) + contribution
    top = _best(score, k)
    explained_by: dict[int, list[str]] = defaultdict(list)
    for item_id, position in zip(top, _explainers(sources, unseen, top)):
        explained_by[position].append(item_id)
    reasons: dict[str, str] = {}
    for position, items in explained_by.items():
        reasons.update(zip(items, sources[position].explain(items)))
    # Scores are scaled by 1000 only to make them readable; they are comparable within a list.
    return [Recommendation(i, round(score[i] * 1000, 4), reasons[i]) for i in top]


def _reciprocal_ranks(weight: float, count: int) -> list[float]:
    return [weight / rank for rank in range(RRF_K + 1, RRF_K + 1 + count)]


def _best(score: dict[str, float], k: int) -> list[str]:
    """The ``k`` best-scored items, best first, ties by id. Only the items at or above the
    ``k``-th best score are sorted, not all of them."""
    if len(score) > k:
        values = np.fromiter(score.values(), dtype=np.float64, count=len(score))
        floor = np.partition(values, len(values) - k)[len(values) - k]
        candidates = [(item_id, value) for item_id, value in score.items() if value >= floor]
    else:
        candidates = list(score.items())
    candidates.sort(key=lambda pair: (-pair[1], pair[0]))
    return [item_id for item_id, _ in candidates[:k]]


def _explainers(
    sources: Sequence[_Candidates], unseen: list[list[str]], items: list[str]
) -> list[int]:
    """For each item, the position of the source that contributed most to it, lifted for
    sources that explain first (the first such source on a tie)."""
    best: dict[str, tuple[float, int]] = {}
    for position, (source, ranked) in enumerate(zip(sources, unseen)):
        rank_of = dict(zip(ranked, range(RRF_K + 1, RRF_K + 1 + len(ranked))))
        lift = EXPLAINS_FIRST_LIFT if source.explains_first else 0.0
        for item_id in items:
            rank = rank_of.get(item_id)
            if rank is None:
                continue
            claim = source.weight / rank + lift
            if claim > best.get(item_id, (-1.0, 0))[0]:
                best[item_id] = (claim, position)
    return [best[item_id][1] for item_id in items]


# Larger than any contribution (a weight over RRF_K + 1): an explaining source always wins.
EXPLAINS_FIRST_LIFT = 1_000.0
