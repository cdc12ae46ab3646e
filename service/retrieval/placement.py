"""New items put into a fused ranking: those that take a place among the first ten (by the
score they borrow from their neighbours, `service/retrieval/new_items.py`), and, where the
slots are on (``FusionWeights.new_items``), every NEW_ITEMS_EVERY-th place from NEW_ITEMS_FROM
on."""

from __future__ import annotations

from collections.abc import Sequence

from service.core.records import Profile
from service.retrieval.fusion import Recommendation
from service.retrieval.new_items import Placed
from service.retrieval.sources import InterestKinds, new_item_reason

# After the first ten places, which stay the fusion's (0-based positions).
NEW_ITEMS_FROM = 10
NEW_ITEMS_EVERY = 3


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
        reason = new_item_reason(profile, interest, of_kind)
        result.insert(position, Recommendation(item_ids[row], score, reason))
    # A placed item the fusion listed too keeps its first (placed) place only.
    listed: set[str] = set()
    unique = []
    for recommendation in result:
        if recommendation.item_id not in listed:
            listed.add(recommendation.item_id)
            unique.append(recommendation)
    return unique[:k]


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
