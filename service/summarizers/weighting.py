"""How much each event of a window says about the user's interests: the action's strength
(a purchase says more than a view, a 5-star rating more than a 1-star one) times its recency."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from service.core.recency import recency_weight
from service.core.records import Window, WindowEvent

ACTION_WEIGHTS = {
    "view": 1.0,
    "click": 1.5,
    "share": 2.0,
    "add_to_cart": 2.0,
    "like": 2.5,
    "purchase": 3.0,
    "buy": 3.0,
    "dislike": 0.1,
}
DEFAULT_ACTION_WEIGHT = 1.0


def action_weight(event_type: str, value: float | None) -> float:
    """How much one event says about interest; ratings above the middle of 0-5 count more."""
    if event_type == "rate":
        return 1.5 if value is None else 0.5 + max(0.0, value - 2.5)
    return ACTION_WEIGHTS.get(event_type, DEFAULT_ACTION_WEIGHT)


def window_recency(count: int) -> list[float]:
    """A window's events, oldest first: the newest weighs 1 and the weight halves every half
    window."""
    half_life = max(1.0, count / 2)
    return [recency_weight(count - 1 - position, half_life) for position in range(count)]


def activity_shares(
    window: Window, labels_of: Callable[[WindowEvent], Iterable[str]] | None = None
) -> dict[str, float]:
    """Each label's share of the window's activity: the weight of the events on items that
    carry it over the weight of all events on known items (an all-X window: X 1.0). The labels
    are the items' categories unless ``labels_of`` says otherwise. An item's several labels
    each count it whole, so the shares need not sum to 1."""
    labels_of = labels_of or _categories
    carried: dict[str, float] = {}
    total = 0.0
    for joined, recency in zip(window.events, window_recency(len(window.events))):
        if joined.item is None:
            continue
        weight = action_weight(joined.event.type, joined.event.value) * recency
        total += weight
        for label in dict.fromkeys(labels_of(joined)):
            carried[label] = carried.get(label, 0.0) + weight
    return {label: weight / total for label, weight in carried.items()} if total else {}


def _categories(joined: WindowEvent) -> list[str]:
    item = joined.item
    return [c.strip() for c in item.categories if c.strip()] if item else []
