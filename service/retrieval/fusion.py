"""Weighted reciprocal-rank fusion: ranked lists from several sources made into one ranking,
each item with the reason of the source that vouches for it.

Reciprocal ranks combine the sources without calibrating their score scales against each
other. A source is a ranked list of index rows, its weight, and how to explain what it found;
an interest's reason goes first (`Source.explains_first`), because "matches your interest
'Baking'" is what ties an item to the profile a person reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

RRF_K = 60
# Larger than any contribution (a weight over RRF_K + 1): an explaining source always wins.
EXPLAINS_FIRST_LIFT = 1_000.0


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    reason: str


# The reasons for the items (index rows) a source explains, in their order, None for an item it
# found but cannot vouch for; asked for the returned items only (a reason may need a lookup).
Explain = Callable[[list[int]], list[str | None]]


@dataclass
class Source:
    """A ranked list from one source (rows of the item index, best first), its weight in the
    fusion and how to explain its hits. A source that ``explains_first`` gives its reason
    whenever it found an item, even when another source contributed more to its rank."""

    rows: np.ndarray
    weight: float
    explain: Explain
    explains_first: bool = False
    # The reason for an item this source found but does not vouch for, when no other source
    # vouches for it either.
    loose: Explain | None = None


def always(reason: str) -> Explain:
    return lambda items: [reason] * len(items)


def no_claim(items: list[int]) -> list[str | None]:
    return [None] * len(items)


# What an item no source vouches for, and no source has a loose reason for, is said to be.
FALLBACK_REASON = always("close to your recent profile as a whole")


def fuse(
    sources: Sequence[Source],
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


def _reciprocal_ranks(weight: float, count: int) -> np.ndarray:
    return weight / np.arange(RRF_K + 1, RRF_K + 1 + count, dtype=np.float64)


def _lift(source: Source) -> float:
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
    sources: Sequence[Source], explainers: dict[int, list[int]], candidates: np.ndarray
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
                    reasons[at] = (first.loose or FALLBACK_REASON)([int(candidates[at])])[0] or ""
                    del tried[at]
    return reasons
