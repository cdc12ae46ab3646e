"""The extractive summarizer: interests from item categories and keywords, no model needed.

Each event counts by how strong its action is (a purchase says more than a view, a 5-star
rating more than a 1-star one) and how recent it is within the window. Item categories carry
the interest labels; items without categories contribute their most telling title words.
"""

from __future__ import annotations

import math
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from service.core.records import Interest, Summary, Window, WindowEvent
from service.summarizers.base import MAX_INTERESTS, normalize_weights
from service.summarizers.weighting import action_weight, activity_shares, window_recency
from service.summarizers.words import TITLE_STOP_WORDS

EVIDENCE_PER_INTEREST = 5
# An interest below this share of the window's weight is noise, not an interest.
MIN_SHARE = 0.06

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")


def item_labels(joined: WindowEvent) -> list[str]:
    item = joined.item
    if item is None:
        return []
    if item.categories:
        return [c.strip() for c in item.categories if c.strip()]
    words = [w.lower() for w in _WORD.findall(item.title) if w.lower() not in TITLE_STOP_WORDS]
    return list(dict.fromkeys(words))[:3]


class ExtractiveSummarizer:
    name = "extractive"
    problem: str | None = None  # it always works

    def __init__(self, max_interests: int = MAX_INTERESTS) -> None:
        self.max_interests = max_interests

    def describe(self) -> dict[str, Any]:
        return {"summarizer": self.name, "model": None, "quantization": None}

    def summarize(self, windows: Sequence[Window]) -> list[Summary]:
        return [self.summarize_one(window) for window in windows]

    def summarize_one(self, window: Window, fallback_reason: str | None = None) -> Summary:
        started = time.perf_counter()
        interests = self.interests(window)
        provenance = {
            **self.describe(),
            "prompt_hash": None,
            "fallback_reason": fallback_reason,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        return Summary(describe_interests(interests, window), interests, provenance)

    def interests(self, window: Window) -> tuple[Interest, ...]:
        label_weight: dict[str, float] = defaultdict(float)
        label_items: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for joined, recency in zip(window.events, window_recency(len(window.events))):
            labels = item_labels(joined)
            if not labels:
                continue
            share = action_weight(joined.event.type, joined.event.value) * recency
            share /= math.sqrt(len(labels))  # many-genre items should not dominate
            for label in labels:
                label_weight[label] += share
                label_items[label][joined.event.item_id] += share
        total = sum(label_weight.values())
        if total <= 0:
            return ()
        strongest = sorted(label_weight, key=lambda label: -label_weight[label])
        chosen = [
            (label, label_weight[label], _top(label_items[label], EVIDENCE_PER_INTEREST))
            for label in strongest[: self.max_interests]
            if label_weight[label] / total >= MIN_SHARE
        ]
        return normalize_weights(chosen)


def _top(scores: dict[str, float], count: int) -> tuple[str, ...]:
    return tuple(sorted(scores, key=lambda key: -scores[key])[:count])


def describe_interests(interests: Sequence[Interest], window: Window) -> str:
    """One readable sentence: the main interests with their shares of the window's activity
    (an interest's weight is its share of the profile; a window of X items says X 100%), and
    the latest item."""
    if not interests:
        return "Not enough known items in this window to tell what this person is into."
    shares = activity_shares(window, item_labels)
    parts = [f"{i.label} ({round(shares.get(i.label, 0.0) * 100)}%)" for i in interests[:3]]
    if len(parts) == 1:
        sentence = f"Focused on {parts[0]}"
    else:
        sentence = f"Mostly {parts[0]}, also {' and '.join(parts[1:])}"
    latest = next((we.item for we in reversed(window.events) if we.item is not None), None)
    if latest is not None:
        sentence += f"; most recently \u201c{latest.title}\u201d"
    return sentence + "."
