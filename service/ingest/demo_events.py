"""The demo users' events, made from their plans (``service.ingest.demo``) with a fixed seed.

Events come in short engagements: a user views an item, may click it, and may then like,
rate or purchase it, minutes apart. All events of one user on one item form one engagement;
a user never comes back to an item later. A user sees at most 20 of a topic's 28 items where
the plan allows, so every interest keeps unseen items to recommend.
"""

from __future__ import annotations

import math
import random
from itertools import groupby
from typing import NamedTuple

from service.core.records import Event, Item
from service.ingest.demo import UserPlan, demo_catalog, demo_data, topics

MINUTE = 60.0
HOUR = 3600.0
BURST_PROBABILITY = 0.15  # chance that the next engagement follows within minutes
# One engagement: always a view, maybe a click, then maybe like / rate / purchase.
_FUNNEL_EXTRAS = ("like", "rate", "purchase")
MAX_EVENTS_PER_ITEM = 2 + len(_FUNNEL_EXTRAS)
MEAN_EVENTS_PER_ITEM = 1.8  # preferred; heavier users engage more deeply instead of seeing more
UNSEEN_RESERVE = 8  # items of each topic a user never sees, left for recommendations


class _Slot(NamedTuple):
    """What one event position of a user's timeline is about."""

    segment: int
    topic: str
    on_topic: bool  # False for noise events


class _Run(NamedTuple):
    """Consecutive slots of one segment on one topic."""

    topic: str
    on_topic: bool
    length: int


class _Engagement(NamedTuple):
    item_id: str
    on_topic: bool
    events: int


def demo_events(seed: int = 7, start_ts: float = 1_735_689_600.0) -> list[Event]:
    """Every demo user's events, sorted by time. Each user has its own random stream, so one
    user's events do not depend on the others'."""
    pools = _items_by_topic(demo_catalog(seed))
    events: list[Event] = []
    for number, spec in enumerate(demo_data().users, start=1):
        rng = random.Random(f"demo-events:{seed}:{spec.user_id}")
        events.extend(_user_events(number, spec, pools, rng, start_ts))
    return sorted(events, key=lambda event: (event.ts, event.event_id))


def _items_by_topic(catalog: list[Item]) -> dict[str, list[str]]:
    pools: dict[str, list[str]] = {topic: [] for topic in topics()}
    for item in catalog:
        pools[item.categories[0]].append(item.item_id)
    return pools


def _user_events(
    number: int,
    spec: UserPlan,
    pools: dict[str, list[str]],
    rng: random.Random,
    start_ts: float,
) -> list[Event]:
    runs = _runs(_slots(spec, rng))
    items_per_run = _items_per_run(runs, pools, rng)
    engagements = _engagements(runs, items_per_run, pools, rng)
    return _timed_events(number, spec.user_id, engagements, rng, start_ts)


def _slots(spec: UserPlan, rng: random.Random) -> list[_Slot]:
    total = sum(count for _, count in spec.segments)
    slots: list[_Slot] = []
    for segment, (topic, count) in enumerate(spec.segments):
        for _ in range(count):
            slot_topic, on_topic = _slot_topic(spec, topic, len(slots) / (total - 1), rng)
            slots.append(_Slot(segment, slot_topic, on_topic))
    return slots


def _slot_topic(
    spec: UserPlan, topic: str, progress: float, rng: random.Random
) -> tuple[str, bool]:
    """The topic of one event; ``progress`` runs from 0 (first event) to 1 (last)."""
    if spec.gradual:
        start, end = spec.segments[0][0], spec.segments[-1][0]
        return (end if rng.random() < progress else start), True
    if spec.noise_topic and rng.random() < demo_data().noise_rate:
        return spec.noise_topic, False
    return topic, True


def _runs(slots: list[_Slot]) -> list[_Run]:
    return [
        _Run(topic, on_topic, sum(1 for _ in group))
        for (_, topic, on_topic), group in groupby(slots)
    ]


def _items_per_run(runs: list[_Run], pools: dict[str, list[str]], rng: random.Random) -> list[int]:
    """How many distinct items each run's events are spread over."""
    counts = [0] * len(runs)
    for topic in dict.fromkeys(run.topic for run in runs):
        indexes = [i for i, run in enumerate(runs) if run.topic == topic]
        lengths = [runs[i].length for i in indexes]
        budget = _item_budget(lengths, len(pools[topic]))
        for i, count in zip(indexes, _allocate(budget, lengths, rng), strict=True):
            counts[i] = count
    return counts


def _item_budget(run_lengths: list[int], pool_size: int) -> int:
    """Distinct items one user sees of one topic: about one per MEAN_EVENTS_PER_ITEM events,
    keeping UNSEEN_RESERVE items unseen where the runs allow it."""
    events = sum(run_lengths)
    least = sum(math.ceil(length / MAX_EVENTS_PER_ITEM) for length in run_lengths)
    if least > pool_size:
        raise ValueError(f"{events} events in {len(run_lengths)} runs need over {pool_size} items")
    most = max(least, min(events, pool_size - UNSEEN_RESERVE))
    return min(max(round(events / MEAN_EVENTS_PER_ITEM), least), most)


def _allocate(total: int, lengths: list[int], rng: random.Random) -> list[int]:
    """Split ``total`` items over runs: each run between ceil(length / max) and length items."""
    counts = [math.ceil(length / MAX_EVENTS_PER_ITEM) for length in lengths]
    for _ in range(total - sum(counts)):
        open_runs = [
            i for i, (count, n) in enumerate(zip(counts, lengths, strict=True)) if count < n
        ]
        room = [lengths[i] - counts[i] for i in open_runs]
        counts[rng.choices(open_runs, weights=room)[0]] += 1
    return counts


def _engagements(
    runs: list[_Run], items_per_run: list[int], pools: dict[str, list[str]], rng: random.Random
) -> list[_Engagement]:
    unseen: dict[str, list[str]] = {}
    engagements = []
    for run, item_count in zip(runs, items_per_run, strict=True):
        if run.topic not in unseen:
            unseen[run.topic] = rng.sample(pools[run.topic], len(pools[run.topic]))
        for size in _split(run.length, item_count, rng):
            engagements.append(_Engagement(unseen[run.topic].pop(), run.on_topic, size))
    return engagements


def _split(total: int, parts: int, rng: random.Random) -> list[int]:
    """``total`` events as ``parts`` engagement sizes, each 1..MAX_EVENTS_PER_ITEM."""
    sizes = [1] * parts
    for _ in range(total - parts):
        open_parts = [i for i, size in enumerate(sizes) if size < MAX_EVENTS_PER_ITEM]
        sizes[rng.choice(open_parts)] += 1
    return sizes


def _timed_events(
    number: int,
    user_id: str,
    engagements: list[_Engagement],
    rng: random.Random,
    start_ts: float,
) -> list[Event]:
    clock = start_ts + rng.uniform(0.0, 12 * HOUR)
    events: list[Event] = []
    for position, engagement in enumerate(engagements):
        if position:
            clock += _gap_between_engagements(rng)
        for step, event_type in enumerate(_funnel(engagement.events, rng)):
            if step:
                clock += rng.uniform(0.5, 8.0) * MINUTE
            value = _rating(engagement.on_topic, rng) if event_type == "rate" else None
            events.append(
                Event(
                    event_id=f"demo-u{number:02d}-{len(events):04d}",
                    user_id=user_id,
                    item_id=engagement.item_id,
                    type=event_type,
                    ts=float(round(clock)),
                    value=value,
                )
            )
    return events


def _gap_between_engagements(rng: random.Random) -> float:
    if rng.random() < BURST_PROBABILITY:
        return rng.uniform(2.0, 20.0) * MINUTE
    return rng.uniform(2.0, 24.0) * HOUR


def _funnel(size: int, rng: random.Random) -> list[str]:
    """The event types of one engagement, in the order they happen."""
    extras = rng.sample(_FUNNEL_EXTRAS, max(0, size - 2))
    return ["view", "click"][:size] + sorted(extras, key=_FUNNEL_EXTRAS.index)


def _rating(on_topic: bool, rng: random.Random) -> float:
    """A 1..5 rating: high for the user's current interest, lower for noise."""
    weights = (0, 1, 2, 4, 5) if on_topic else (3, 3, 2, 1, 1)
    return float(rng.choices((1, 2, 3, 4, 5), weights=weights)[0])
