"""The cold-item protocol: how well each method finds items nobody has had yet.

New catalog items are what a content profile is for: the collaborative model and popularity
learn an item only from its interactions. So a fixed share of the items, drawn with a fixed
seed, loses every training interaction (the items stay in the catalog with their text), and
the methods are scored on the held-out events on those items only. Popularity cannot see
them: it is the floor.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from service.core.records import Event
from service.evaluation.protocol import Split

COLD_SHARE = 0.2
COLD_SEED = 21
# Users with this many training events or fewer are reported on their own as well.
FEW_EVENTS = 5


@dataclass(frozen=True)
class ColdSplit:
    cold: frozenset[str]
    train: dict[str, list[Event]]  # the training part without any event on a cold item
    test: dict[str, set[str]]  # per user, the held-out items that are cold (users with any)
    dropped_users: int  # users whose every training event was on a cold item

    def few_event_users(self, at_most: int = FEW_EVENTS) -> list[str]:
        return sorted(user for user in self.test if len(self.train[user]) <= at_most)


def cold_item_split(
    split: Split, item_ids: Sequence[str], share: float = COLD_SHARE, seed: int = COLD_SEED
) -> ColdSplit:
    """``share`` of ``item_ids`` (sorted, then sampled with ``seed``) become cold."""
    ordered = sorted(item_ids)
    cold = frozenset(random.Random(seed).sample(ordered, round(len(ordered) * share)))
    kept = {u: [e for e in events if e.item_id not in cold] for u, events in split.train.items()}
    train = {user: events for user, events in kept.items() if events}
    test = {user: split.test[user] & cold for user in split.test if user in train}
    return ColdSplit(
        cold, train, {u: items for u, items in test.items() if items}, len(kept) - len(train)
    )
