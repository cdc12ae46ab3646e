"""Recommendations, in one pass that reads top down: the candidate lists (stored, or searched
now), fused into one ranking with a reason for each item, new items placed.

Sources (`service/retrieval/sources.py`): one FAISS search per interest, one for the whole
profile, the collaborative item-to-item model (what goes with the user's history, recent items
first; fitted with the index) and popularity. The searches and the collaborative scores depend
only on the profile, the history and the index build, so they are made once and stored
(`service/retrieval/candidate_cache.py`); popularity and the fusion run per request.

Drift-aware: when the newest window's drift fired, the history before that window counts only
``drift_earlier_weight`` of its recency weight in the collaborative model (the interest searches
follow the current profile anyway); measured in docs/EVALUATION.md ("Downstream value").
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from service.core.records import Interest, Profile
from service.embedding.encoder import Embedder
from service.retrieval.candidate_cache import CandidateCache
from service.retrieval.candidates import CandidateSearch, search_depth
from service.retrieval.collaborative import ShortTerm
from service.retrieval.fusion import Recommendation, Source, fuse
from service.retrieval.index.search import ItemIndex
from service.retrieval.index.serving import ServedIndex
from service.retrieval.placement import (
    NEW_ITEMS_EVERY,
    NEW_ITEMS_FROM,
    with_new_items,
    with_placed_items,
)
from service.retrieval.popularity import Popularity
from service.retrieval.sources import (
    InterestKinds,
    collaborative_source,
    interest_sources,
    popularity_source,
    profile_sources,
)
from service.store import Store

__all__ = ["FusionWeights", "Recommendation", "Recommender"]


@dataclass(frozen=True)
class FusionWeights:
    """The sources' weights, relative to the collaborative model's (4). The defaults are what
    the validation part of ml-latest-small chose (per-user split, `scripts/eval/evaluate.py`, one
    weight at a time by the one-standard-error rule); ml-100k chose 0 for every content source
    (docs/EVALUATION.md). The interest weight is a setting (``Settings.fusion_interests``),
    so a catalog can take its own validation's choice."""

    interests: float = 0.25  # shared among the interests by their weights
    profile: float = 0.1
    collaborative: float = 4.0
    # Popularity added nothing measurable on either set's validation part; items no other
    # source offered are still ordered by the rest of the profile search (the backfill).
    popularity: float = 0.0
    # New items (no interaction the collaborative model knows of) found by the interest
    # searches may get slots of their own (`service/retrieval/placement.py`). Off: on the
    # validation parts the slots cost recall@50 on every set and split (ml-latest-small
    # 0.326 -> 0.285); new items reach a list through IPROF_NEW_ITEM_BOOST.
    new_items: bool = False


class Recommender:
    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        index: ServedIndex,
        weights: FusionWeights | None = None,
        drift_earlier_weight: float = 1.0,
        new_item_boost: float = 0.0,
    ) -> None:
        self.store = store
        self.index = index
        self.weights = weights or FusionWeights()
        # Settings.drift_earlier_weight (1: drift does not change the ranking).
        self.drift_earlier_weight = drift_earlier_weight
        # Settings.new_item_boost: new items may take one of the first ten places
        # (service/retrieval/new_items.py); 0 keeps them out of the first ten.
        self.candidates = CandidateCache(store, CandidateSearch(embedder, new_item_boost))
        self.popularity = Popularity(store)

    def weighted(self, weights: FusionWeights) -> Recommender:
        """This recommender with other fusion weights, sharing its candidate lists and
        popularity (the lists do not depend on the weights): the evaluation's ablations."""
        other = copy.copy(self)
        other.weights = weights
        return other

    def recommend(
        self, profile: Profile, k: int, history: list[str] | None = None
    ) -> list[Recommendation]:
        """The ``k`` best items for the user; ``history`` (item ids, oldest first) is read
        from the store unless given."""
        index = self.index.get()
        if history is None:
            history = [e.item_id for e in self.store.events.of_user(profile.user_id)]
        short_term = self.short_term(profile, history)
        lists = self.candidates.lists(profile, history, index, k, short_term)
        kinds = InterestKinds(self.store, profile)
        interests = interest_sources(profile, lists.interests, index, kinds, self.weights.interests)
        sources = [
            *(source for _, source in interests),
            *profile_sources(lists, self.weights.profile),
            collaborative_source(lists, index, self.store, self.weights.collaborative),
            popularity_source(self._popular(index, k, len(set(history))), self.weights.popularity),
        ]
        seen = index.rows_of(history)
        fused = fuse(sources, seen, k, index.item_ids, index.id_order)
        fused = with_placed_items(fused, lists.new_first, profile, index.item_ids, k, kinds)
        if self.weights.new_items and k > NEW_ITEMS_FROM:
            slots = len(range(NEW_ITEMS_FROM, k, NEW_ITEMS_EVERY))
            new = fuse(
                _new_items_only(interests, index), seen, slots, index.item_ids, index.id_order
            )
            fused = with_new_items(fused, new, k)
        return fused

    def prepare(self, users: Sequence[tuple[Profile, list[str]]]) -> int:
        """Make and store the candidate lists of these (current profile, history) pairs in one
        write, skipping those stored already; how many were made. What `iprof refresh` runs
        after the profiles, so the first request for each user finds them."""
        weighted = [(p, history, self.short_term(p, history)) for p, history in users]
        return self.candidates.prepare(weighted, self.index.get())

    def short_term(self, profile: Profile, history: Sequence[str]) -> ShortTerm | None:
        """While the newest window's drift fired, that window on is the short-term window:
        what the user chose before it says less about what comes next."""
        if self.drift_earlier_weight >= 1.0 or profile.drift is None or not profile.drift.detected:
            return None
        start = profile.window.first_event
        if start is None:  # a window record made without its position: no short-term part
            return None
        return ShortTerm(min(start, len(history)), self.drift_earlier_weight)

    def warm_up(self) -> None:
        """Count popularity now, so the first requests do not wait for it."""
        self.popularity.snapshot()

    def close(self) -> None:
        self.candidates.close()

    def _popular(self, index: ItemIndex, k: int, seen: int) -> np.ndarray:
        return self.popularity.rows(index)[: search_depth(k, seen, len(index)) + seen]


def _new_items_only(interests: list[tuple[Interest, Source]], index: ItemIndex) -> list[Source]:
    """The interests' new items, ranked among themselves by the interests' own weights: the
    fusion's interest weight (0 on a catalog where the searches do not help the warm ranking)
    must not scramble them."""
    return [
        replace(source, rows=source.rows[index.new_to_model[source.rows]], weight=interest.weight)
        for interest, source in interests
    ]
