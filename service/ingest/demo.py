"""Deterministic demo data: an item catalog, demo users and their event histories.

What the demo is about lives in a data file, ``demo_data.json``: 12 clearly distinct topics
(subjects by sub-category, title formats, text clauses) and the users' plans. This module turns
it into items and users with a fixed seed, so every run sees the same data;
``service.ingest.demo_events`` makes the users' events.

* Each topic gives ``items_per_topic`` items. Titles and texts combine the topic's subjects
  with format templates ("documentary", "podcast episode", "course", ...) and use topic
  vocabulary, so a sentence embedding model groups items by topic. Every item is tagged with
  its topic label and a finer sub-category.
* The users exercise profiles, drift detection and recommendations: some keep one interest
  (optionally with ~10% noise from a second topic), some switch topic once, one goes A -> B
  -> A and one drifts gradually from A to B. Each ``DemoUser`` records where its interest
  shifts (``shift_at``, event indexes), so drift detection can be checked against it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import cache
from itertools import cycle, islice
from pathlib import Path
from typing import Any, NamedTuple

from service.core.records import Item

DATA_FILE = Path(__file__).with_name("demo_data.json")
# Title case keeps these small inside a phrase ("The Story of Black Holes").
SMALL_WORDS = frozenset({"a", "alla", "an", "and", "for", "from", "in", "of", "on", "the", "to"})


@dataclass(frozen=True)
class DemoUser:
    user_id: str
    description: str
    segments: list[tuple[str, int]]  # (topic label, number of events), in time order
    shift_at: list[int]  # 0-based indexes into the user's time-sorted events; [] if stable


class Format(NamedTuple):
    title: str  # "{s}" is the subject; the result is title-cased
    lead: str  # opens the item text; followed by a topic detail clause


class Topic(NamedTuple):
    label: str
    slug: str
    subjects: tuple[tuple[str, str], ...]  # (subject, sub-category)
    formats: tuple[Format, ...]  # topic-specific, used on top of the generic ones
    details: tuple[str, ...]  # clauses that finish the first sentence
    audiences: tuple[str, ...]  # second sentences


@dataclass(frozen=True)
class UserPlan:
    user_id: str
    segments: tuple[tuple[str, int], ...]
    noise_topic: str | None = None  # ~noise_rate of the events come from this topic
    gradual: bool = False  # the mix drifts linearly from the first topic to the last


@dataclass(frozen=True)
class DemoData:
    items_per_topic: int
    generic_formats: tuple[Format, ...]
    topics: tuple[Topic, ...]
    noise_rate: float
    users: tuple[UserPlan, ...]


@cache
def demo_data() -> DemoData:
    raw = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    return DemoData(
        items_per_topic=raw["items_per_topic"],
        generic_formats=tuple(Format(**f) for f in raw["generic_formats"]),
        topics=tuple(_topic(t) for t in raw["topics"]),
        noise_rate=raw["noise_rate"],
        users=tuple(_plan(u) for u in raw["users"]),
    )


def _topic(raw: dict[str, Any]) -> Topic:
    return Topic(
        label=raw["label"],
        slug=raw["slug"],
        subjects=tuple((name, sub) for sub, names in raw["subjects"].items() for name in names),
        formats=tuple(Format(**f) for f in raw["formats"]),
        details=tuple(raw["details"]),
        audiences=tuple(raw["audiences"]),
    )


def _plan(raw: dict[str, Any]) -> UserPlan:
    segments = tuple((topic, int(count)) for topic, count in raw["segments"])
    return UserPlan(raw["user_id"], segments, raw.get("noise_topic"), raw.get("gradual", False))


def topics() -> list[str]:
    return [topic.label for topic in demo_data().topics]


# --- the catalog -----------------------------------------------------------------------------


def demo_catalog(seed: int = 7) -> list[Item]:
    """All demo items, topic by topic; the same seed always gives the same catalog."""
    rng = random.Random(seed)
    return [item for topic in demo_data().topics for item in _topic_items(topic, rng)]


def _topic_items(topic: Topic, rng: random.Random) -> list[Item]:
    pairs = _subject_format_pairs(topic, rng)
    return [
        _make_item(topic, number, subject, fmt, rng)
        for number, (subject, fmt) in enumerate(pairs, start=1)
    ]


def _subject_format_pairs(topic: Topic, rng: random.Random) -> list[tuple[tuple[str, str], Format]]:
    """items_per_topic distinct (subject, format) pairs, spreading items evenly over subjects."""
    formats = demo_data().generic_formats + topic.formats
    subjects = rng.sample(topic.subjects, len(topic.subjects))
    unused_formats = {subject: rng.sample(formats, len(formats)) for subject in subjects}
    return [
        (subject, unused_formats[subject].pop())
        for subject in islice(cycle(subjects), demo_data().items_per_topic)
    ]


def _make_item(
    topic: Topic, number: int, subject: tuple[str, str], fmt: Format, rng: random.Random
) -> Item:
    name, subcategory = subject
    detail = rng.choice(topic.details)
    audience = rng.choice(topic.audiences)
    return Item(
        item_id=f"{topic.slug}-{number:03d}",
        title=_title_case(fmt.title.format(s=name)),
        text=f"{fmt.lead.format(s=name)}, {detail}. {audience}",
        categories=(topic.label, subcategory),
    )


def _title_case(text: str) -> str:
    """Capitalise each word except small ones inside a phrase; keeps inner capitals (MLOps)."""
    words: list[str] = []
    for word in text.split(" "):
        starts_phrase = not words or words[-1].endswith(":")
        keep_small = word in SMALL_WORDS and not starts_phrase
        words.append(word if keep_small else word[:1].upper() + word[1:])
    return " ".join(words)


# --- the users -------------------------------------------------------------------------------


def demo_users() -> list[DemoUser]:
    """The demo users, with their planned segments and the event indexes where interest shifts."""
    return [_to_user(plan) for plan in demo_data().users]


def _to_user(plan: UserPlan) -> DemoUser:
    return DemoUser(
        user_id=plan.user_id,
        description=_describe(plan),
        segments=list(plan.segments),
        shift_at=segment_starts(plan)[1:],
    )


def segment_starts(plan: UserPlan) -> list[int]:
    starts = [0]
    for _, count in plan.segments[:-1]:
        starts.append(starts[-1] + count)
    return starts


def _describe(plan: UserPlan) -> str:
    total = sum(count for _, count in plan.segments)
    first_topic, first_count = plan.segments[0]
    if plan.gradual:
        last_topic = plan.segments[-1][0]
        middle = segment_starts(plan)[-1]
        return (
            f"gradual drift from {first_topic} to {last_topic} over {total} events "
            f"(the share of {last_topic} rises steadily; half-way at event {middle})"
        )
    if len(plan.segments) == 1:
        text = f"stable: {first_topic} for all {total} events"
    else:
        text = f"{first_topic} for {first_count} events"
        seen = {first_topic}
        starts = segment_starts(plan)[1:]
        for (topic, count), start in zip(plan.segments[1:], starts, strict=True):
            verb = "back to" if topic in seen else "switches to"
            text += f", then {verb} {topic} at event {start} ({count} events)"
            seen.add(topic)
    if plan.noise_topic:
        text += f", with ~{demo_data().noise_rate:.0%} {plan.noise_topic} noise"
    return text
