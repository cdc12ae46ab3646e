"""The fusion's sources for one profile, and the reasons each gives for what it found.

One source per interest (so a minor interest is served too, not drowned by the main one), the
whole profile's close matches, the rest of that search as a backfill, the collaborative model
and popularity. What a person reads beside an item is decided here: "matches your interest
'Chess'" only for an item of the interest's kind, "people who chose 'X' also chose this" only
when an item of the history raised it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from service.core.records import Interest, Item, Profile
from service.retrieval.candidates import CandidateLists
from service.retrieval.fusion import Explain, Source, always, no_claim
from service.retrieval.index.search import ItemIndex
from service.store import Store

# The rest of the profile's search weighs almost nothing: it only decides among items no other
# source offered, so a user always gets k items when there are any.
BACKFILL_WEIGHT = 0.001

PROFILE_REASON = always("close to your recent profile as a whole")
POPULAR_REASON = always("popular with other users")
# The collaborative model's own claim when no single item of the history explains an item: its
# score comes from the whole history (an item the user chose with nobody else's choices).
SIMILAR_PEOPLE_REASON = always("chosen by people whose choices are like yours")


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
            items = self.store.items.get(item_ids[row] for row in rows)
            return [reason if kinds & kinds_of(items.get(item_ids[row])) else None for row in rows]

        return explain

    def kinds(self) -> list[set[str]]:
        if self._kinds is None:
            interests = self.profile.interests
            items = self.store.items.get(i for interest in interests for i in interest.evidence)
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


def interest_sources(
    profile: Profile,
    found: list[np.ndarray],
    index: ItemIndex,
    kinds: InterestKinds,
    weight: float,
) -> list[tuple[Interest, Source]]:
    """Each interest with the candidates its search found (``found``: one list per interest,
    in the profile's order), weighted by its share of the interests' ``weight``."""
    return [
        (
            interest,
            Source(
                rows=rows,
                weight=weight * interest.weight,
                explain=kinds.explainer(number, index.item_ids),
                explains_first=True,
                loose=always(f"near your interest '{interest.label}', though not of its kind"),
            ),
        )
        for number, (interest, rows) in enumerate(zip(profile.interests, found))
    ]


def profile_sources(lists: CandidateLists, weight: float) -> list[Source]:
    """The whole profile's close matches, and the rest of its search as the backfill: that one
    orders the items no other source offered, it does not vouch for them ("close to your
    profile" is said of an item only it offered, its loose reason)."""
    return [
        Source(lists.profile_close, weight, PROFILE_REASON),
        Source(lists.profile_rest, BACKFILL_WEIGHT, no_claim, loose=PROFILE_REASON),
    ]


def collaborative_source(
    lists: CandidateLists, index: ItemIndex, store: Store, weight: float
) -> Source:
    """The model's candidates, each explained by the history item that raised it most."""
    anchor_of = dict(zip(lists.collaborative.tolist(), lists.anchors.tolist()))
    model_ids = index.collaborative.item_ids if index.collaborative else []

    def explain(rows: list[int]) -> list[str | None]:
        anchors = [anchor_of.get(row, -1) for row in rows]
        names = [model_ids[anchor] if anchor >= 0 else "" for anchor in anchors]
        titles = store.items.get(name for name in names if name)
        return [
            f"people who chose '{titles[n].title if n in titles else n}' also chose this"
            if n
            else None  # no item of the history raised it: the model did not find it
            for n in names
        ]

    return Source(lists.collaborative, weight, explain, loose=SIMILAR_PEOPLE_REASON)


def popularity_source(popular: np.ndarray, weight: float) -> Source:
    """``popular``: index rows, most popular first (-1 for an item not in the catalog, yet:
    events may name one; only indexed items are offered)."""
    return Source(popular[popular >= 0], weight, POPULAR_REASON)


def new_item_reason(profile: Profile, interest: int, of_kind: bool = True) -> str:
    if not 0 <= interest < len(profile.interests):
        return "new here; like what you chose"
    label = profile.interests[interest].label
    if of_kind:
        return f"new here; matches your interest '{label}'"
    return f"new here; near your interest '{label}', though not of its kind"
