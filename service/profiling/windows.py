"""Cutting one user's timeline into windows, by event count or by time."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from service.core.records import Event, Item, Window, WindowEvent, WindowSpec


def cut_windows(
    events: Sequence[Event], items: Mapping[str, Item], spec: WindowSpec, now: float
) -> list[Window]:
    """Windows over ``events`` (sorted by time), oldest first; the last may be open.

    Count windows close at every ``spec.size`` events. Time windows are aligned on the Unix
    epoch (so ``1d`` windows are UTC days) and close when their end has passed ``now``; empty
    ones are skipped. A time window's index is its slot number since the epoch, so it never
    changes, even when an event older than all others arrives later.
    """
    joined = [WindowEvent(event, items.get(event.item_id)) for event in events]
    if spec.kind == "count":
        return _count_windows(joined, spec.size)
    return _time_windows(joined, spec.seconds, now)


def _count_windows(events: list[WindowEvent], size: int) -> list[Window]:
    windows = []
    for index, start in enumerate(range(0, len(events), size)):
        chunk = tuple(events[start : start + size])
        windows.append(
            Window(
                index=index,
                start=chunk[0].event.ts,
                end=chunk[-1].event.ts,
                closed=len(chunk) == size,
                events=chunk,
                first=start,
            )
        )
    return windows


def _time_windows(events: list[WindowEvent], seconds: float, now: float) -> list[Window]:
    slots: dict[int, list[WindowEvent]] = {}
    for event in events:
        slots.setdefault(int(event.event.ts // seconds), []).append(event)
    windows, first = [], 0
    for slot, chunk in sorted(slots.items()):
        windows.append(
            Window(
                index=slot,
                start=slot * seconds,
                end=(slot + 1) * seconds,
                closed=(slot + 1) * seconds <= now,
                events=tuple(chunk),
                first=first,
            )
        )
        first += len(chunk)
    return windows


def events_hash(window: Window) -> str:
    """Changes when the window's events or their items' text change, so a profile is
    regenerated exactly when what it summarises changed."""
    digest = hashlib.sha256()
    for joined in window.events:
        event, item = joined.event, joined.item
        digest.update(f"{event.event_id}|{event.type}|{event.ts}|{event.value}\n".encode())
        if item is not None:
            digest.update(f"{item.title}|{item.text}|{item.categories}\n".encode())
    return digest.hexdigest()[:16]
