"""Recommendations: candidates from several sources, fused into one ranking, each with a reason.

Sources: one FAISS search per interest (so a minor interest is served too, not drowned by the
main one), one for the whole profile, the collaborative item-to-item model (what goes with the
user's history, recent items first; fitted with the index), and popularity. Reciprocal-rank
fusion combines them without calibrating their score scales against each other. An interest
that found an item gives its reason; otherwise the source that contributed most does.

The searches and the collaborative scores are made once per profile, history and index build
and stored (`service/retrieval/candidates.py`); popularity and the fusion run per request.

Drift-aware: when the newest window's drift fired, the history before that window counts only
``drift_earlier_weight`` of its recency weight in the collaborative model (the interest searches
follow the current profile anyway); measured in docs/EVALUATION.md ("Downstream value").
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from service.core.records import Interest, Item, Profile
from service.embedding.encoder import Embedder
from service.retrieval.candidates import (
    SHARED_K,
    CandidateLists,
    CandidateSearch,
    lists_key,
    search_depth,
)
from service.retrieval.collaborative import ShortTerm
from service.retrieval.index.search import ItemIndex
from service.retrieval.new_items import Placed
from service.store import Store
from service.store.candidate_lists import ListsWriter

RRF_K = 60
BACKFILL_WEIGHT = 0.001
POPULAR_ITEMS = 10_000  # popularity beyond the top 10,000 says nothing useful


@dataclass(frozen=True)
class FusionWeights:
    """The sources' weights, relative to the collaborative model's (4). The defaults are what
    the validation part of ml-latest-small chose (per-user split, `scripts/evaluate.py`, one
    weight at a time by the one-standard-error rule); ml-100k chose 0 for every content source
    (docs/EVALUATION.md). The interest weight is a setting (``Settings.fusion_interests``),
    so a catalog can take its own validation's choice."""

    interests: float = 0.25  # shared among the interests by their weights
    profile: float = 0.1
    collaborative: float = 4.0
    # Popularity added nothing measurable on either set's validation part; items no other
    # source offered are still ordered by the rest of the profile search (BACKFILL_WEIGHT).
    popularity: float = 0.0
    # New items (no interaction the collaborative model knows of) found by the interest
    # searches may get slots of their own: every NEW_ITEMS_EVERY-th place from NEW_ITEMS_FROM
    # on. Off: on the validation parts the slots cost recall@50 on every set and split
    # (ml-latest-small 0.326 -> 0.285); new items reach a list through IPROF_NEW_ITEM_BOOST.
    new_items: bool = False


# After the first ten places, which stay the fusion's (0-based positions).
NEW_ITEMS_FROM = 10
NEW_ITEMS_EVERY = 3


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    reason: str


@dataclass(frozen=True)
class _Popularity:
    version: tuple[int, int] | None  # Store.events_version() it was computed at
    ranked: list[str]


# The reasons for the items (index rows) a source explains, in their order, None for an item it
# found but cannot vouch for; asked for the returned items only (a reason may need a lookup).
Explain = Callable[[list[int]], list[str | None]]


@dataclass
class _Candidates:
    """A ranked list from one source (rows of the item index, best first), its weight in the
    fusion and how to explain its hits.

    An interest's reason goes first: "matches your interest 'Baking'" is what ties an item to
    the profile a person reads, so it explains an item whenever an interest found it, even
    when the collaborative model contributed more to its rank."""

    rows: np.ndarray
    weight: float
    explain: Explain
    explains_first: bool = False
    # The reason for an item this source found but does not vouch for, when no other source
    # vouches for it either.
    loose: Explain | None = None


def _always(reason: str) -> Explain:
    return lambda items: [reason] * len(items)


def _no_claim(items: list[int]) -> list[str | None]:
    return [None] * len(items)


_PROFILE_REASON = _always("close to your recent profile as a whole")
_POPULAR_REASON = _always("popular with other users")
# The collaborative model's own claim when no single item of the history explains an item: its
# score comes from the whole history (an item the user chose with nobody else's choices).
_SIMILAR_PEOPLE_REASON = _always("chosen by people whose choices are like yours")


class Recommender:
    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        index: Callable[[], ItemIndex],
        weights: FusionWeights | None = None,
        drift_earlier_weight: float = 1.0,
        new_item_boost: float = 0.0,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.index = index
        self.weights = weights or FusionWeights()
        # Settings.drift_earlier_weight (1: drift does not change the ranking).
        self.drift_earlier_weight = drift_earlier_weight
        # Settings.new_item_boost: new items may take one of the first ten places
        # (service/retrieval/new_items.py); 0 keeps them to their slots from the 11th on.
        self.search = CandidateSearch(embedder, new_item_boost)
        self.lists_writer = ListsWriter(store)
        self._popularity = _Popularity(None, [])
        self._popularity_lock = threading.Lock()
        self._popularity_refresh: threading.Thread | None = None
        self._popular_in_index: tuple[object, np.ndarray] = (None, np.zeros(0, dtype=np.int64))

    def recommend(
        self, profile: Profile, k: int, history: list[str] | None = None
    ) -> list[Recommendation]:
        """The ``k`` best items for the user; ``history`` (item ids, oldest first) is read
        from the store unless given."""
        index = self.index()
        if history is None:
            history = [e.item_id for e in self.store.user_events(profile.user_id)]
        lists = self._lists(profile, history, index, k, self.short_term(profile, history))
        seen = len(set(history))
        popular = self._popular_rows(index)[: search_depth(k, seen, len(index)) + seen]
        by_interest = self._interest_candidates(profile, lists.interests, index)
        sources = [
            *(candidates for _, candidates in by_interest),
            _Candidates(lists.profile_close, self.weights.profile, _PROFILE_REASON),
            # The rest of the profile's search weighs almost nothing: it only decides among
            # items no other source offered, so a user always gets k items when there are any.
            # It orders them, it does not vouch for them: "close to your profile" is said of an
            # item only it offered (its loose reason), not of every item it ranked.
            _Candidates(lists.profile_rest, BACKFILL_WEIGHT, _no_claim, loose=_PROFILE_REASON),
            self._collaborative_candidates(lists, index),
            # Events may name items not in the catalog (yet); only indexed items are offered.
            _Candidates(popular[popular >= 0], self.weights.popularity, _POPULAR_REASON),
        ]
        seen_rows = index.rows_of(history)
        fused = fuse(sources, seen_rows, k, index.item_ids, index.id_order)
        kinds = InterestKinds(self.store, profile)
        fused = with_placed_items(fused, lists.new_first, profile, index.item_ids, k, kinds)
        if not self.weights.new_items or k <= NEW_ITEMS_FROM:
            return fused
        # Ranked among themselves by the interests' own weights: the fusion's interest weight
        # (0 on a catalog where the searches do not help the warm ranking) must not scramble them.
        new = []
        for interest, source in by_interest:
            rows = source.rows[index.new_to_model[source.rows]]
            new.append(replace(source, rows=rows, weight=interest.weight))
        slots = len(range(NEW_ITEMS_FROM, k, NEW_ITEMS_EVERY))
        found = fuse(new, seen_rows, slots, index.item_ids, index.id_order)
        return with_new_items(fused, found, k)

    def prepare(self, users: Sequence[tuple[Profile, list[str]]]) -> int:
        """Make and store the candidate lists of these (current profile, history) pairs in one
        write, skipping those stored already; how many were made. What `iprof refresh` runs
        after the profiles, so the first request for each user finds them."""
        index = self.index()
        stored = {}
        for profile, history in users:
            short_term = self.short_term(profile, history)
            key = self._key(profile, history, index, short_term)
            if self._stored(profile.user_id, key) is None:
                lists = self.search.find(profile, history, index, SHARED_K, short_term)
                stored[profile.user_id] = (profile.user_id, key, lists.to_bytes())
        if stored:
            self.store.save_candidate_lists(list(stored.values()))
        return len(stored)

    def short_term(self, profile: Profile, history: Sequence[str]) -> ShortTerm | None:
        """While the newest window's drift fired, that window on is the short-term window:
        what the user chose before it says less about what comes next."""
        if self.drift_earlier_weight >= 1.0 or profile.drift is None or not profile.drift.detected:
            return None
        start = profile.window.first_event
        if start is None:  # a window record made without its position: no short-term part
            return None
        return ShortTerm(min(start, len(history)), self.drift_earlier_weight)

    def _lists(
        self,
        profile: Profile,
        history: list[str],
        index: ItemIndex,
        k: int,
        short_term: ShortTerm | None,
    ) -> CandidateLists:
        """The stored lists when they were made from this profile, history, weighting and
        index; otherwise made now, and stored for the next requests (once per change)."""
        if k > SHARED_K:
            return self.search.find(profile, history, index, k, short_term)
        key = self._key(profile, history, index, short_term)
        lists = self._stored(profile.user_id, key)
        if lists is None:
            lists = self.search.find(profile, history, index, k, short_term)
            self.lists_writer.put(profile.user_id, key, lists.to_bytes())
        return lists

    def _key(
        self,
        profile: Profile,
        history: Sequence[str],
        index: ItemIndex,
        short_term: ShortTerm | None,
    ) -> str:
        build = index.manifest.build_id
        return lists_key(profile, history, build, short_term, self.search.new_item_boost)

    def _stored(self, user_id: str, key: str) -> CandidateLists | None:
        stored = self.lists_writer.pending(user_id) or self.store.candidate_lists(user_id)
        return CandidateLists.from_bytes(stored[1]) if stored and stored[0] == key else None

    def close(self) -> None:
        self.lists_writer.flush()

    def _interest_candidates(
        self, profile: Profile, found: list[np.ndarray], index: ItemIndex
    ) -> list[tuple[Interest, _Candidates]]:
        """Each interest with the candidates its search found (``found``: in the profile's
        order of interests)."""
        kinds = InterestKinds(self.store, profile)
        return [
            (
                interest,
                _Candidates(
                    rows=rows,
                    weight=self.weights.interests * interest.weight,
                    explain=kinds.explainer(number, index.item_ids),
                    explains_first=True,
                    loose=_always(f"near your interest '{interest.label}', though not of its kind"),
                ),
            )
            for number, (interest, rows) in enumerate(zip(profile.interests, found))
        ]

    def _collaborative_candidates(self, lists: CandidateLists, index: ItemIndex) -> _Candidates:
        anchor_of = dict(zip(lists.collaborative.tolist(), lists.anchors.tolist()))
        model_ids = index.collaborative.item_ids if index.collaborative else []

        def explain(rows: list[int]) -> list[str | None]:
            anchors = [anchor_of.get(row, -1) for row in rows]
            names = [model_ids[anchor] if anchor >= 0 else "" for anchor in anchors]
            titles = self.store.get_items(name for name in names if name)
            return [
                f"people who chose '{titles[n].title if n in titles else n}' also chose this"
                if n
                else None  # no item of the history raised it: the model did not find it
                for n in names
            ]

        return _Candidates(
            lists.collaborative, self.weights.collaborative, explain, loose=_SIMILAR_PEOPLE_REASON
        )

    def warm_up(self) -> None:
        """Count popularity now, so the first requests do not wait for it."""
        self._popularity_snapshot()

    def _popular_rows(self, index: ItemIndex) -> np.ndarray:
        """The popular items as rows of ``index`` (-1 for one it does not have), translated
        once per ranking and index."""
        popular = self._popularity_snapshot()
        key = (popular.version, index.manifest.build_id)
        cached = self._popular_in_index
        if cached[0] != key:
            cached = self._popular_in_index = (key, index.rows_of(popular.ranked, missing=-1))
        return cached[1]

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


class InterestKinds:
    """What is of an interest's kind: an item that carries the interest's label or a category
    that at least half of the interest's evidence items carry (for items without categories,
    their title words). "Matches your interest 'Chess'" is said only of those: the interest's
    search ranks every item by closeness, and once the chess items run out it reaches football."""

    def __init__(self, store: Store, profile: Profile) -> None:
        self.store, self.profile = store, profile
        self._kinds: list[set[str]] | None = None

    def explainer(self, interest: int, item_ids: Sequence[str]) -> Explain:
        reason = f"matches your interest '{self.profile.interests[interest].label}'"

        def explain(rows: list[int]) -> list[str | None]:
            kinds = self.kinds()[interest]
            items = self.store.get_items(item_ids[row] for row in rows)
            return [reason if kinds & kinds_of(items.get(item_ids[row])) else None for row in rows]

        return explain

    def kinds(self) -> list[set[str]]:
        if self._kinds is None:
            interests = self.profile.interests
            items = self.store.get_items(i for interest in interests for i in interest.evidence)
            self._kinds = []
            for interest in interests:
                counted = Counter(
                    kind for i in interest.evidence for kind in kinds_of(items.get(i))
                )
                common = {kind for kind, n in counted.items() if 2 * n >= len(interest.evidence)}
                self._kinds.append(common | {interest.label.strip().lower()})
        return self._kinds


def kinds_of(item: Item | None) -> set[str]:
    """An item's categories (lower case), or where it has none its title's longer words."""
    if item is None:
        return set()
    if item.categories:
        return {c.strip().lower() for c in item.categories if c.strip()}
    return {w.lower() for w in _TITLE_WORD.findall(item.title)}


_TITLE_WORD = re.compile(r"[^\W\d_]{4,}")


def fuse(
    sources: Sequence[_Candidates],
    seen: np.ndarray,
    k: int,
    item_ids: Sequence[str],
    id_order: np.ndarray,
) -> list[Recommendation]:
    """Weighted reciprocal-rank fusion over rows of the index; never a row in ``seen``. Ties
    go to the smaller id (``id_order``: each row's place in id order). The reason comes from
    the source that contributed most, among those that explain first if any found the item
    (the first such source on a tie)."""
    # About a thousand candidates a request: all of it in a few array operations, and the
    # reasons settled for the returned items only.
    # Masks, not np.isin: a lookup per candidate where isin sorts every list each time.
    seen_mask = np.zeros(len(item_ids), dtype=bool)
    seen_mask[seen] = True
    unseen = [source.rows[~seen_mask[source.rows]] for source in sources]
    rows = np.concatenate([np.zeros(0, dtype=np.int64), *unseen])
    if not len(rows):
        return []
    contributions = np.concatenate(
        [_reciprocal_ranks(source.weight, len(r)) for source, r in zip(sources, unseen)]
    )
    candidates, slot = np.unique(rows, return_inverse=True)
    # Summed in source order, as a running total per item would be: the same floats.
    totals = np.bincount(slot, weights=contributions)
    top = _best(totals, id_order[candidates], k)
    claims = contributions + np.concatenate(
        [np.full(len(r), _lift(source)) for source, r in zip(sources, unseen)]
    )
    by_source = np.repeat(np.arange(len(sources)), [len(r) for r in unseen])
    reasons = _reasons(sources, _explainers(slot, claims, by_source, top), candidates)
    # Scores are scaled by 1000 only to make them readable; they are comparable within a list.
    return [
        Recommendation(item_ids[row], round(total * 1000, 4), reasons[at])
        for at, row, total in zip(top.tolist(), candidates[top].tolist(), totals[top].tolist())
    ]


def with_placed_items(
    fused: list[Recommendation],
    placed: Placed,
    profile: Profile,
    item_ids: Sequence[str],
    k: int,
    kinds: InterestKinds | None = None,
) -> list[Recommendation]:
    """``fused`` with the new items that take a place among the first ten
    (`service/retrieval/new_items.py`): each at its place in the model's ranking, below the
    new items placed before it, at the score of the item it moves down. With ``kinds``, a
    placed item "matches your interest" only when it is of the interest's kind."""
    result = list(fused)
    for order, (row, place, interest) in enumerate(
        zip(placed.rows.tolist(), placed.places.tolist(), placed.interests.tolist())
    ):
        position = min(place + order, len(result))
        if position >= k:
            break
        score = result[position].score if position < len(result) else 0.0
        of_kind = kinds is None or kinds.explainer(interest, item_ids)([row])[0] is not None
        reason = _new_reason(profile, interest, of_kind)
        result.insert(position, Recommendation(item_ids[row], score, reason))
    # A placed item the fusion listed too keeps its first (placed) place only.
    listed: set[str] = set()
    unique = []
    for recommendation in result:
        if recommendation.item_id not in listed:
            listed.add(recommendation.item_id)
            unique.append(recommendation)
    return unique[:k]


def _new_reason(profile: Profile, interest: int, of_kind: bool = True) -> str:
    if not 0 <= interest < len(profile.interests):
        return "new here; like what you chose"
    label = profile.interests[interest].label
    if of_kind:
        return f"new here; matches your interest '{label}'"
    return f"new here; near your interest '{label}', though not of its kind"


def with_new_items(
    fused: list[Recommendation], new: list[Recommendation], k: int
) -> list[Recommendation]:
    """``fused`` with the ``new`` items in their slots (every NEW_ITEMS_EVERY-th place from
    NEW_ITEMS_FROM on); every other place, and a slot without a new item left, takes the next
    fused item. An item is listed once, at its first place (so the first NEW_ITEMS_FROM places
    are the fusion's). A new item in a slot has the score it had among the new items."""
    queues = {False: iter(fused), True: iter(new)}
    listed: set[str] = set()
    result: list[Recommendation] = []

    def take(from_new: bool) -> Recommendation | None:
        for pick in queues[from_new]:
            if pick.item_id not in listed:
                return pick
        return None

    for position in range(k):
        slot = position >= NEW_ITEMS_FROM and (position - NEW_ITEMS_FROM) % NEW_ITEMS_EVERY == 0
        pick = take(slot) or take(not slot)
        if pick is None:
            break
        listed.add(pick.item_id)
        result.append(pick)
    return result


def _reciprocal_ranks(weight: float, count: int) -> np.ndarray:
    return weight / np.arange(RRF_K + 1, RRF_K + 1 + count, dtype=np.float64)


def _lift(source: _Candidates) -> float:
    return EXPLAINS_FIRST_LIFT if source.explains_first else 0.0


def _best(totals: np.ndarray, id_order: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best totals, best first, ties by id. Only the totals at or
    above the ``k``-th best are sorted, not all of them."""
    if len(totals) > k:
        floor = np.partition(totals, len(totals) - k)[len(totals) - k]
        picked = np.flatnonzero(totals >= floor)
    else:
        picked = np.arange(len(totals))
    order = np.lexsort((id_order[picked], -totals[picked]))  # the last key sorts first
    return picked[order[:k]]


def _explainers(
    slot: np.ndarray, claims: np.ndarray, by_source: np.ndarray, top: np.ndarray
) -> dict[int, list[int]]:
    """For each of the ``top`` candidates, the positions of the sources that found it, largest
    claim first (its contribution, lifted for sources that explain first; the first on a tie)."""
    is_top = np.zeros(slot.max() + 1, dtype=bool)
    is_top[top] = True
    wanted = is_top[slot]
    slot, claims, by_source = slot[wanted], claims[wanted], by_source[wanted]
    order = np.lexsort((by_source, -claims, slot))
    found: dict[int, list[int]] = {at: [] for at in top.tolist()}
    for at, source in zip(slot[order].tolist(), by_source[order].tolist()):
        found[at].append(source)
    return found


def _reasons(
    sources: Sequence[_Candidates], explainers: dict[int, list[int]], candidates: np.ndarray
) -> dict[int, str]:
    """Each candidate's reason: its first explainer's, unless that source does not vouch for
    it (an interest whose search reached an item of other categories), then the next one's; a
    candidate no source vouches for gets its first explainer's loose reason ("near ...")."""
    reasons: dict[int, str] = {}
    tried = dict.fromkeys(explainers, 0)
    while tried:
        asked: dict[int, list[int]] = {}
        for at, step in tried.items():
            asked.setdefault(explainers[at][step], []).append(at)
        for position, ats in asked.items():
            told = sources[position].explain(candidates[ats].tolist())
            for at, reason in zip(ats, told):
                if reason is not None:
                    reasons[at] = reason
                    del tried[at]
                elif tried[at] + 1 < len(explainers[at]):
                    tried[at] += 1
                else:
                    first = sources[explainers[at][0]]
                    reasons[at] = (first.loose or _PROFILE_REASON)([int(candidates[at])])[0] or ""
                    del tried[at]
    return reasons


# Larger than any contribution (a weight over RRF_K + 1): an explaining source always wins.
EXPLAINS_FIRST_LIFT = 1_000.0
