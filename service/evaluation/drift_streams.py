"""Streams with known change points for the drift evaluation, built from real histories.

Each user's history after onboarding (the first 24 hours of events dropped), ``MIN_WINDOWS`` to
``STREAM_WINDOWS`` windows of the service's window size, gives these streams:

- ``stable``: the user's own windows, in order; no injected change (false alarms are counted
  here, ``scoring.py``).
- ``shuffled``: the same events shuffled across those windows; no change at all (an easy
  negative, reported on its own).
- and, with a partner B drawn three ways (``PARTNERS``: at random, among the quarter least like
  the user by genre mix, among the quarter least like the user by co-ratings), one each of
  - ``spliced``: the user A, then from window *c* on B: the change on a window boundary;
  - ``spliced_inside``: A, then B from an event inside window *c*: that window is mixed;
  - ``gradual``: from window *c* B's share grows by a quarter per window until B is all;
  - ``a_b_a``: A, then B for up to four windows, then A again: two changes.

Users are split three ways (``three_way_split``): design, calibration and test, and partners are
drawn from the user's own part, so a test stream holds test users' events only.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.core.records import Event, Item, WindowSpec
from service.embedding.encoder import normalize_rows
from service.profiling.windows import cut_windows

NEGATIVE_KINDS = ("stable", "shuffled")
CHANGE_KINDS = ("spliced", "spliced_inside", "gradual", "a_b_a")
PARTNERS = ("random", "genre", "coratings")
STREAM_WINDOWS = 10
MIN_WINDOWS = 6
ONBOARDING_SECONDS = 86_400.0
# A least-alike partner is drawn from this share of the part's users, least alike first.
DIFFERENT_TASTE = 0.25
B_WINDOWS_IN_A_B_A = 4
PARTS = ("design", "calibration", "test")


@dataclass(frozen=True)
class Stream:
    stream_id: str
    user: str  # the user A whose history the stream starts with (bootstrap unit)
    kind: str
    partner: str | None  # how B was drawn; None for the negative kinds
    events: list[Event]  # ready to store: the stream's own user id, increasing times
    changes: tuple[int, ...]  # windows where an injected change starts


def eligible_users(events: Sequence[Event], window: int) -> dict[str, list[Event]]:
    """Users with at least ``MIN_WINDOWS`` windows of history after onboarding (their first
    ``ONBOARDING_SECONDS`` of events dropped: a MovieLens user's first session rates the films
    the sign-up pages show, not a taste), those events by time, at most ``STREAM_WINDOWS``
    windows of them."""
    by_user: dict[str, list[Event]] = {}
    for event in events:
        by_user.setdefault(event.user_id, []).append(event)
    eligible = {}
    for user, history in sorted(by_user.items()):
        history = sorted(history, key=lambda e: e.ts)
        settled = [e for e in history if e.ts >= history[0].ts + ONBOARDING_SECONDS]
        if len(settled) >= MIN_WINDOWS * window:
            eligible[user] = settled[: STREAM_WINDOWS * window]
    return eligible


def three_way_split(users: Sequence[str], seed: int) -> dict[str, list[str]]:
    """The users shuffled by ``seed`` and cut in thirds: design, calibration, test."""
    shuffled = sorted(users)
    random.Random(seed).shuffle(shuffled)
    third = len(shuffled) // 3
    cuts = (0, third, 2 * third, len(shuffled))
    return {part: shuffled[cuts[n] : cuts[n + 1]] for n, part in enumerate(PARTS)}


def taste_vectors(
    histories: dict[str, list[Event]], items: dict[str, Item]
) -> dict[str, np.ndarray]:
    """Each user's genre mix (normalised), to pair users of different taste."""
    genres = sorted({g for item in items.values() for g in item.categories})
    column = {g: i for i, g in enumerate(genres)}
    vectors = {}
    for user, history in histories.items():
        counts = np.zeros(len(genres), dtype=np.float32)
        for event in history:
            for genre in items[event.item_id].categories if event.item_id in items else ():
                counts[column[genre]] += 1
        vectors[user] = normalize_rows(counts + 1e-6)
    return vectors


def corating_similarity(histories: dict[str, list[Event]]) -> dict[tuple[str, str], float]:
    """The cosine of every pair of users' sets of items (over the stream histories)."""
    sets = {user: {e.item_id for e in history} for user, history in histories.items()}
    users = sorted(sets)
    similarity = {}
    for n, a in enumerate(users):
        for b in users[n + 1 :]:
            shared = len(sets[a] & sets[b])
            value = shared / float(np.sqrt(len(sets[a]) * len(sets[b])) or 1.0)
            similarity[(a, b)] = similarity[(b, a)] = value
    return similarity


@dataclass(frozen=True)
class Likeness:
    """How alike two users are, each way a partner can be drawn."""

    tastes: dict[str, np.ndarray]
    coratings: dict[tuple[str, str], float]

    @classmethod
    def of(cls, histories: dict[str, list[Event]], items: dict[str, Item]) -> Likeness:
        return cls(taste_vectors(histories, items), corating_similarity(histories))

    def partner(self, user: str, users: Sequence[str], how: str, rng: random.Random) -> str:
        others = [u for u in users if u != user]
        if how == "random":
            return rng.choice(others)
        if how == "genre":
            alike = {u: float(self.tastes[user] @ self.tastes[u]) for u in others}
        else:
            alike = {u: self.coratings[(user, u)] for u in others}
        # Ties (many pairs share no item at all) broken at random, not by id.
        tiebreak = {u: rng.random() for u in others}
        others.sort(key=lambda u: (alike[u], tiebreak[u]))  # least alike first
        return rng.choice(others[: max(1, round(len(others) * DIFFERENT_TASTE))])


def build_streams(
    histories: dict[str, list[Event]],
    users: Sequence[str],
    likeness: Likeness,
    window: int,
    seed: int,
) -> list[Stream]:
    """The two negative streams of each user of ``users``, and the four change kinds with a
    partner drawn each of the ``PARTNERS`` ways from ``users`` too."""
    rng = random.Random(seed)
    streams: list[Stream] = []
    for user in users:
        mine = _windows(histories[user], window)
        shuffled = [e for w in mine for e in w]
        rng.shuffle(shuffled)
        plans: list[tuple[str, str | None, list[list[Event]], tuple[int, ...]]] = [
            ("stable", None, mine, ()),
            ("shuffled", None, _windows(shuffled, window), ()),
        ]
        for partner in PARTNERS:
            other = _windows(histories[likeness.partner(user, users, partner, rng)], window)
            plans += [(kind, partner, *plan) for kind, plan in _changes(mine, other, rng).items()]
        for kind, how, windows, changes in plans:
            windows = windows[: len(mine)]
            changes = tuple(c for c in changes if c < len(windows))
            stream_id = f"{kind}-{how}-{user}" if how else f"{kind}-{user}"
            events = _restamp(stream_id, windows)
            streams.append(Stream(stream_id, user, kind, how, events, changes))
    return streams


def _changes(
    mine: list[list[Event]], other: list[list[Event]], rng: random.Random
) -> dict[str, tuple[list[list[Event]], tuple[int, ...]]]:
    """The windows and change points of the four change kinds, A's windows ``mine`` and B's
    ``other`` (both from their first window after onboarding on)."""
    count, size = len(mine), len(mine[0])
    cut = rng.randint(3, min(6, count - 1))
    inside = rng.randint(3, min(6, count - 1))
    offset = rng.randint(size // 4, 3 * size // 4)  # B's first event inside window ``inside``
    gradual = rng.randint(3, min(5, count - 1))
    first = rng.randint(2, 3)
    back = min(first + B_WINDOWS_IN_A_B_A, count - 1)
    flat_a, flat_b = [e for w in mine for e in w], [e for w in other for e in w]
    start = inside * size + offset
    mixed = flat_a[:start] + flat_b[: count * size - start]
    return {
        "spliced": (mine[:cut] + other[: count - cut], (cut,)),
        "spliced_inside": (_full_windows(mixed, size), (inside,)),
        "gradual": (mine[:gradual] + _mixed(mine, other, gradual, rng), (gradual,)),
        "a_b_a": (mine[:first] + other[: back - first] + mine[first:], (first, back)),
    }


def _full_windows(events: list[Event], size: int) -> list[list[Event]]:
    return [events[i : i + size] for i in range(0, len(events) - size + 1, size)]


def _windows(events: Sequence[Event], size: int) -> list[list[Event]]:
    """The first ``STREAM_WINDOWS`` full windows, cut as the service cuts a history (count
    windows; the items do not matter here, only which events fall in which window)."""
    windows = cut_windows(events, {}, WindowSpec(kind="count", size=size), now=0.0)
    full = [[joined.event for joined in w.events] for w in windows if len(w.events) == size]
    return full[:STREAM_WINDOWS]


def _mixed(
    mine: list[list[Event]], other: list[list[Event]], start: int, rng: random.Random
) -> list[list[Event]]:
    """Windows from ``start`` on: B's share 1/4, 2/4, 3/4, then all B."""
    windows = []
    for position in range(start, len(mine)):
        theirs = other[min(position - start, len(other) - 1)]
        share = min(1.0, (position - start + 1) / 4)
        take = round(share * len(theirs))
        window = theirs[:take] + mine[position][take:]
        rng.shuffle(window)
        windows.append(window)
    return windows


def _restamp(stream_id: str, windows: Sequence[Sequence[Event]]) -> list[Event]:
    """The stream's events under its own user id, one second apart, in window order."""
    return [
        Event(f"{stream_id}-{n}", stream_id, e.item_id, e.type, float(n), e.value)
        for n, e in enumerate(e for window in windows for e in window)
    ]
