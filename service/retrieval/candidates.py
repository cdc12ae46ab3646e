"""Candidate lists: what a recommendation searches for, made once per profile and index build.

The costly part of a recommendation (one FAISS search per interest and one for the whole
profile, the collaborative model's scores over the history and the history item behind each)
depends on the current profile, the user's history and the index build, and on nothing a
request says. So it is made once, stored under a key of exactly those (`Store.lists`)
and reused by every request until one of them changes. What moves with everyone's events
(popularity) and the fusion run per request (`service/retrieval/recommender.py`).

The lists are searched deep enough for SHARED_K items, so every request for up to that many
shares them; a request for more searches for itself and stores nothing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from service.core.hashing import content_hash
from service.core.records import Profile
from service.embedding.encoder import Embedder, normalize_rows
from service.retrieval.collaborative import ShortTerm
from service.retrieval.index.search import ItemIndex
from service.retrieval.new_items import Placed, place_new_items

# Requests for up to this many items share one set of lists (the evaluation asks for 50).
SHARED_K = 50
# A search hit counts when its similarity is at least this share of the best hit's.
CLOSE_MATCH = 0.5
LABEL_CACHE = 50_000
# Part of every key: stored lists of another format (or search rule) are never read.
FORMAT = 3


def search_depth(k: int, seen: int, catalog: int) -> int:
    """How deep each source looks: past the user's own items (filtered out later) with room
    to spare; at least as deep as SHARED_K items need, so every request up to that many ranks
    the same lists."""
    return min(catalog, max(k, SHARED_K) + seen + 50)


@dataclass(frozen=True)
class CandidateLists:
    """Rows of the item index, best first, per source; ``anchors`` gives for each
    collaborative row the history item behind it (a row of the collaborative model; -1:
    none); ``new_first``, the new items that take a place among the first ten
    (`service/retrieval/new_items.py`)."""

    interests: list[np.ndarray]  # one per interest of the profile: its close matches
    profile_close: np.ndarray
    profile_rest: np.ndarray
    collaborative: np.ndarray
    anchors: np.ndarray
    new_first: Placed = field(default_factory=Placed.none)

    def to_bytes(self) -> bytes:
        arrays = [*self._tail(), *self.interests]
        header = [len(arrays), *(len(a) for a in arrays)]
        return np.concatenate([header, *arrays]).astype(np.int32).tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> CandidateLists:
        values = np.frombuffer(blob, dtype=np.int32).astype(np.int64)
        count = int(values[0])
        lengths = values[1 : 1 + count]
        arrays = np.split(values[1 + count :], np.cumsum(lengths)[:-1])
        close, rest, collaborative, anchors, new, places, closest, *interests = arrays
        return cls(interests, close, rest, collaborative, anchors, Placed(new, places, closest))

    def _tail(self) -> list[np.ndarray]:
        new = self.new_first
        return [
            self.profile_close,
            self.profile_rest,
            self.collaborative,
            self.anchors,
            new.rows,
            new.places,
            new.interests,
        ]


def lists_key(
    profile: Profile,
    history: Sequence[str],
    build_id: str,
    short_term: ShortTerm | None = None,
    new_item_boost: float = 0.0,
) -> str:
    """Everything the lists depend on: the profile (its window, what made it, when), the
    history in order, the index build, the new items' boost, and the short-term weighting of
    a drifting user (a verdict can change while the profile does not, when an earlier window
    is re-scored)."""
    made = f"{profile.window.index}|{profile.source_key}|{profile.created_at!r}"
    key = f"{FORMAT}|{build_id}|{made}|{content_hash(chr(10).join(history))}|{new_item_boost!r}"
    return key if short_term is None else f"{key}|{short_term.start}|{short_term.earlier!r}"


class LabelVectors:
    """Embeddings of interest labels, remembered: labels repeat across users and requests, and
    encoding them is the costliest step of a search otherwise (a model forward pass)."""

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


class CandidateSearch:
    """Makes the lists: the searches, the collaborative scores and the new items placed by
    them (``new_item_boost``, ``Settings.new_item_boost``; 0: none)."""

    def __init__(self, embedder: Embedder, new_item_boost: float = 0.0) -> None:
        self.label_vectors = LabelVectors(embedder)
        self.new_item_boost = new_item_boost

    def find(
        self,
        profile: Profile,
        history: Sequence[str],
        index: ItemIndex,
        k: int,
        short_term: ShortTerm | None = None,
    ) -> CandidateLists:
        seen = len(set(history))
        depth = search_depth(k, seen, len(index))
        # One search for the interests and the whole profile: one pass over the index's lists.
        queries = np.vstack([self._interest_queries(profile, index), profile.embedding[None]])
        scores, rows = index.search_rows(queries, depth)
        interests = [
            found[close_matches(similarity, found)]
            for similarity, found in zip(scores[:-1], rows[:-1])
        ]
        # The close matches of the whole profile, and the rest of that search as a backfill.
        close = close_matches(scores[-1], rows[-1])
        model = index.collaborative
        if model is None:
            return CandidateLists(interests, rows[-1][close], _indexed(rows[-1][~close]), *_NONE)
        found = model.scores(history, depth + seen, short_term)
        # As index rows: the model may know items the index does not (events for items not in
        # the catalog); only indexed ones are offered.
        collaborative = index.collaborative_rows[found.rows]
        indexed = collaborative >= 0
        placed = place_new_items(
            index, found, index.rows_of(history), self.new_item_boost, interests
        )
        return CandidateLists(
            interests,
            rows[-1][close],
            _indexed(rows[-1][~close]),
            collaborative[indexed],
            found.anchors()[indexed],
            placed,
        )

    def _interest_queries(self, profile: Profile, index: ItemIndex) -> np.ndarray:
        """One search vector per interest: the mean of its evidence items, the items the user
        chose under that label. The label's own embedding is only the fallback for an interest
        whose evidence the index does not have: a bare label ("Drama") sits closer to titles
        that contain the word than to the films the user meant. (Measured on a test part, with a
        script since removed for that reason; to be re-measured on validation.)"""
        queries = np.zeros((len(profile.interests), index.manifest.dimension), dtype=np.float32)
        missing = []
        for row, interest in enumerate(profile.interests):
            evidence = index.vectors_of(interest.evidence)
            if len(evidence):
                queries[row] = evidence.mean(axis=0)
            else:
                missing.append(row)
        if missing:
            labels = self.label_vectors([profile.interests[row].label for row in missing])
            queries[missing] = labels
        return normalize_rows(queries)


# The collaborative lists of an index without a model: nothing (and no new item placed).
_NONE = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))


def close_matches(scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Which hits of one search (similarities and rows, best first) are real matches: within
    reach of the best one. The tail of a search is other topics; letting it vote would also
    give those items a wrong reason. Unfilled places (row -1) never match."""
    found = rows >= 0
    if not found.any():
        return found
    return found & (scores >= scores[0] * CLOSE_MATCH)


def _indexed(rows: np.ndarray) -> np.ndarray:
    return rows[rows >= 0]
