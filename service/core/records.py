"""Domain records shared by the store, the profiler and the recommender (not wire types)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class Item:
    item_id: str
    title: str
    text: str = ""
    categories: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)

    def embedding_text(self) -> str:
        """What the item index embeds: title, categories, then the description."""
        parts = [self.title]
        if self.categories:
            parts.append(", ".join(self.categories))
        if self.text:
            parts.append(self.text)
        return ". ".join(parts)


@dataclass(frozen=True)
class Event:
    event_id: str
    user_id: str
    item_id: str
    type: str
    ts: float
    value: float | None = None


@dataclass(frozen=True)
class WindowEvent:
    """An event joined with its item (None when the item is not in the catalog yet)."""

    event: Event
    item: Item | None


_WINDOW_PATTERN = re.compile(r"^\s*(\d+)\s*([edh])\s*$")
_SECONDS_PER_UNIT = {"d": 86_400, "h": 3_600}


@dataclass(frozen=True)
class WindowSpec:
    """How a user's timeline is cut: every ``size`` events, or every ``seconds`` of time."""

    kind: Literal["count", "time"]
    size: int = 0
    seconds: float = 0.0

    @classmethod
    def parse(cls, text: str) -> WindowSpec:
        match = _WINDOW_PATTERN.match(text)
        if not match or int(match.group(1)) <= 0:
            raise ValueError(
                f"window must look like '20e' (events), '7d' (days) or '12h' (hours), got {text!r}"
            )
        number, unit = int(match.group(1)), match.group(2)
        if unit == "e":
            return cls(kind="count", size=number)
        return cls(kind="time", seconds=float(number * _SECONDS_PER_UNIT[unit]))

    def __str__(self) -> str:
        if self.kind == "count":
            return f"{self.size}e"
        days, rest = divmod(int(self.seconds), 86_400)
        return f"{days}d" if rest == 0 else f"{int(self.seconds) // 3_600}h"


@dataclass(frozen=True)
class Window:
    index: int
    start: float
    end: float
    closed: bool
    events: tuple[WindowEvent, ...]
    first: int = 0  # the position of its first event in the user's history

    @property
    def item_ids(self) -> list[str]:
        return list(dict.fromkeys(we.event.item_id for we in self.events))

    @property
    def info(self) -> WindowInfo:
        return WindowInfo(
            self.index, self.start, self.end, len(self.events), self.closed, self.first
        )


@dataclass(frozen=True)
class Interest:
    label: str
    weight: float
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class Summary:
    """What a summarizer produces for one window, with how it was made."""

    summary: str
    interests: tuple[Interest, ...]
    provenance: dict[str, Any]


@dataclass(frozen=True)
class WindowInfo:
    """Where a stored profile's window lies, without its events."""

    index: int
    start: float
    end: float
    events: int
    closed: bool
    # The position of its first event in the user's history (where the window begins, for
    # the drift-aware recommendations); None only in a record made without one.
    first_event: int | None = None


# Why a drift threshold is what it is: the configured one, capped below it where no shared
# interest can reach it, or the embedding signal's per-user one.
ThresholdBasis = Literal["fixed", "capped", "per-user"]


@dataclass(frozen=True)
class WindowDrift:
    """A window's drift verdict: its score against the windows it was compared with (their
    window indices, ``reference``), the threshold and why it is that (``threshold_basis``:
    ``fixed``, ``capped`` where no shared interest can reach the fixed one, ``per-user`` for
    the embedding signal), whether a change was detected here, and what was gained and lost.
    The one drift record: stored with the window's profile, computed when the history
    changes, read by everything else."""

    score: float | None
    threshold: float
    detected: bool
    gained: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()
    reference: tuple[int, ...] = ()
    threshold_basis: ThresholdBasis = "fixed"


@dataclass(frozen=True)
class Profile:
    user_id: str
    window: WindowInfo
    summary: str
    interests: tuple[Interest, ...]
    embedding: np.ndarray
    provenance: dict[str, Any]
    source_key: str
    created_at: float
    drift: WindowDrift | None = None


@dataclass(frozen=True)
class DriftReport:
    """The answer of ``/drift``: whether the user is drifting, and the verdict it rests on:
    the score and threshold of ``scored_window`` against ``reference_window`` (the detection's
    when drifting, the newest window's otherwise)."""

    user_id: str
    drift_detected: bool
    score: float | None
    threshold: float
    threshold_basis: ThresholdBasis
    scored_window: WindowInfo
    reference_window: list[WindowInfo]
    newest_window: WindowInfo
    gained: list[str]
    lost: list[str]
    # Where the change being reported began (None when the user is not drifting).
    detected_window: WindowInfo | None = None
