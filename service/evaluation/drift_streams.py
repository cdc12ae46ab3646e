"""Offline evaluation of drift detection: streams with known change points built from real
histories, the detectors compared, their calibration at one false-alarm rate, and the scores.

Streams (``MIN_WINDOWS`` to ``STREAM_WINDOWS`` windows of the service's window size, from each
user's history after onboarding: the first 24 hours of events dropped):

- ``stable``: a user's own first windows, in order; no injected change.
- ``shuffled``: the same events shuffled across those windows; no change at all.
- ``spliced``: user A, then from window *c* on user B, of a clearly different taste.
- ``gradual``: from window *c* B's share grows by a quarter per window until B is all.
- ``a_b_a``: A, then B for four windows, then A again: two changes.

Scoring: a detection within ``TOLERANCE`` windows at or after an unmatched change point is a
hit (its delay is the distance); every other detection is a false alarm. F1 over hits, false
alarms and missed changes; false alarms per 100 windows over all streams.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.core.config import WindowSpec
from service.core.records import Event, Item, Profile
from service.embedding.encoder import normalize_rows
from service.profiling.windows import cut_windows

KINDS = ("stable", "shuffled", "spliced", "gradual", "a_b_a")
STREAM_WINDOWS = 10
MIN_WINDOWS = 6
ONBOARDING_SECONDS = 86_400.0
TOLERANCE = 3
# Calibration target: at most this many false alarms per 100 windows on the tuning users.
TARGET_FALSE_ALARMS = 1.0
# B is drawn from the users whose genre mix is least like A's (this share of them).
DIFFERENT_TASTE = 0.25
B_WINDOWS_IN_A_B_A = 4


@dataclass(frozen=True)
class Stream:
    stream_id: str
    kind: str
    events: list[Event]  # ready to store: the stream's own user id, increasing times
    changes: tuple[int, ...]  # windows where an injected change starts


@dataclass
class StreamData:
    """What the detectors look at, per window of one stream."""

    stream: Stream
    profiles: list[Profile]  # the service's profile of each window, oldest first
    item_means: np.ndarray  # the mean embedding of each window's items

    @property
    def profile_embeddings(self) -> np.ndarray:
        return np.stack([p.embedding for p in self.profiles])


Detector = Callable[[StreamData, float], list[int]]  # (stream, setting) -> flagged windows


# --- streams ---------------------------------------------------------------------------------


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


def build_streams(
    histories: dict[str, list[Event]],
    users: Sequence[str],
    tastes: dict[str, np.ndarray],
    window: int,
    seed: int,
) -> list[Stream]:
    """Five streams per user of ``users``; partners are drawn from ``users`` too."""
    rng = random.Random(seed)
    streams: list[Stream] = []
    for user in users:
        mine = _windows(histories[user], window)
        other = _windows(histories[_partner(user, users, tastes, rng)], window)
        count = len(mine)  # MIN_WINDOWS to STREAM_WINDOWS
        shuffled = [e for w in mine for e in w]
        rng.shuffle(shuffled)
        cut = rng.randint(3, min(6, count - 1))
        gradual = rng.randint(3, min(5, count - 1))
        first = rng.randint(2, 3)
        back = min(first + B_WINDOWS_IN_A_B_A, count - 1)
        # B's windows from its own first one on: every history starts after onboarding.
        plans = {
            "stable": (mine, ()),
            "shuffled": (_windows(shuffled, window), ()),
            "spliced": (mine[:cut] + other[: count - cut], (cut,)),
            "gradual": (mine[:gradual] + _mixed(mine, other, gradual, rng), (gradual,)),
            "a_b_a": (mine[:first] + other[: back - first] + mine[first:], (first, back)),
        }
        for kind, (windows, changes) in plans.items():
            windows = windows[:count]
            changes = tuple(c for c in changes if c < len(windows))
            stream_id = f"{kind}-{user}"
            streams.append(Stream(stream_id, kind, _restamp(stream_id, windows), changes))
    return streams


def _windows(events: Sequence[Event], size: int) -> list[list[Event]]:
    """The first ``STREAM_WINDOWS`` windows, cut as the service cuts a history (count windows;
    the items do not matter here, only which events fall in which window)."""
    windows = cut_windows(events, {}, WindowSpec(kind="count", size=size), now=0.0)
    return [[joined.event for joined in window.events] for window in windows[:STREAM_WINDOWS]]


def _partner(
    user: str, users: Sequence[str], tastes: dict[str, np.ndarray], rng: random.Random
) -> str:
    others = [u for u in users if u != user]
    others.sort(key=lambda u: float(tastes[user] @ tastes[u]))  # least alike first
    return rng.choice(others[: max(1, round(len(others) * DIFFERENT_TASTE))])


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


# --- peer detectors --------------------------------------------------------------------------


def consecutive_distances(embeddings: np.ndarray) -> list[float]:
    """Cosine distance of each window to the one before (the first has none)."""
    unit = normalize_rows(embeddings)
    return [float(1.0 - unit[i] @ unit[i - 1]) for i in range(1, len(unit))]


def adwin(data: StreamData, delta: float) -> list[int]:
    from river import drift

    detector = drift.ADWIN(delta=delta, clock=1, grace_period=2, min_window_length=1)
    return _river(detector, consecutive_distances(data.profile_embeddings))


def page_hinkley(data: StreamData, threshold: float) -> list[int]:
    from river import drift

    detector = drift.PageHinkley(min_instances=2, delta=0.005, threshold=threshold, mode="up")
    return _river(detector, consecutive_distances(data.profile_embeddings))


def _river(detector: Any, distances: Sequence[float]) -> list[int]:
    flagged = []
    for position, distance in enumerate(distances, start=1):
        detector.update(distance)
        if detector.drift_detected:
            flagged.append(position)
    return flagged


def mean_embedding_test(data: StreamData, threshold: float) -> list[int]:
    """In the manner of Evidently's embedding drift ("distance" method): the cosine distance
    between the mean item embedding of the current window and of the reference (the previous
    window), against a fixed threshold."""
    means = data.item_means
    return [
        i
        for i in range(1, len(means))
        if 1.0 - float(normalize_rows(means[i]) @ normalize_rows(means[i - 1])) > threshold
    ]


def periodic(data: StreamData, period: float) -> list[int]:
    """Fires every ``period`` windows counted over all streams: the floor any detector must beat."""
    offset = sum(map(ord, data.stream.stream_id))  # spread the phase over streams
    return [i for i in range(1, len(data.item_means)) if (offset + i) % max(1, int(period)) == 0]


# --- scoring and calibration -----------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    f1: float
    mean_delay: float | None
    miss_rate: float
    false_alarms_per_100: float
    hits: int
    false_alarms: int
    misses: int

    def as_dict(self) -> dict[str, float | None]:
        return {
            "f1": self.f1,
            "mean_delay": self.mean_delay,
            "miss_rate": self.miss_rate,
            "false_alarms_per_100": self.false_alarms_per_100,
        }


def match(flagged: Sequence[int], changes: Sequence[int]) -> tuple[list[int], int, int]:
    """(delays of the hits, false alarms, missed changes) for one stream."""
    open_changes = sorted(changes)
    delays, false_alarms = [], 0
    for window in sorted(flagged):
        candidates = [c for c in open_changes if c <= window <= c + TOLERANCE]
        if candidates:
            change = candidates[-1]  # the nearest change before the detection
            open_changes.remove(change)
            delays.append(window - change)
        else:
            false_alarms += 1
    return delays, false_alarms, len(open_changes)


def evaluate_detector(detector: Detector, setting: float, streams: Sequence[StreamData]) -> Score:
    return score_flags([(detector(data, setting), data) for data in streams])


def score_flags(flagged_streams: Sequence[tuple[Sequence[int], StreamData]]) -> Score:
    """The score of the windows flagged on each stream, pooled over the streams."""
    delays: list[int] = []
    false_alarms = misses = windows = 0
    for flagged, data in flagged_streams:
        hit_delays, false, missed = match(flagged, data.stream.changes)
        delays += hit_delays
        false_alarms += false
        misses += missed
        windows += len(data.item_means)
    hits = len(delays)
    f1 = 2 * hits / (2 * hits + false_alarms + misses) if hits + false_alarms + misses else 0.0
    changes = hits + misses
    return Score(
        f1=round(f1, 4),
        mean_delay=round(float(np.mean(delays)), 3) if delays else None,
        miss_rate=round(misses / changes, 4) if changes else 0.0,
        false_alarms_per_100=round(100 * false_alarms / max(1, windows), 3),
        hits=hits,
        false_alarms=false_alarms,
        misses=misses,
    )


def cross_fitted(
    detector: Detector,
    settings: Sequence[float],
    first: Sequence[StreamData],
    second: Sequence[StreamData],
) -> tuple[Score, tuple[float, float]]:
    """Calibrated on each half and scored on the other, pooled: every user is held out once
    (half the noise of one split), with the two calibrated settings."""
    on_first = calibrate(detector, settings, first)
    on_second = calibrate(detector, settings, second)
    flagged = [(detector(data, on_first), data) for data in second]
    flagged += [(detector(data, on_second), data) for data in first]
    return score_flags(flagged), (on_first, on_second)


def calibrate(detector: Detector, settings: Sequence[float], tuning: Sequence[StreamData]) -> float:
    """The most sensitive setting (``settings`` run from least to most sensitive) whose false
    alarms on the tuning streams stay within the target rate."""
    chosen = settings[0]
    for setting in settings:
        if evaluate_detector(detector, setting, tuning).false_alarms_per_100 > TARGET_FALSE_ALARMS:
            break
        chosen = setting
    return chosen
