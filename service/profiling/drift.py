"""Drift: how far a window's profile moved from its reference, and whether that is unusual.

The reference of window *i* is a decayed mean of the embeddings of the windows before it (the
newest weighs most). The threshold comes from what is normal for this user: the distances of
earlier windows that were not themselves drift, pooled with a population prior given as
pseudo-observations, so a user with little history is judged by the population and a user with
much history by their own habits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.core.config import Settings
from service.core.records import DriftReport, Interest, Profile, WindowDrift
from service.embedding.encoder import normalize_rows

# An interest counts as gained or lost when its weight moved by at least this much.
INTEREST_CHANGE = 0.15


@dataclass(frozen=True)
class DriftPoint:
    """The drift verdict for one window of a user's history."""

    score: float | None
    threshold: float
    detected: bool
    reference: tuple[int, ...]  # positions in the history


def decay_weights(count: int, decay: float) -> np.ndarray:
    """Oldest first: the newest of ``count`` windows weighs 1, each older one ``decay`` times
    less."""
    return np.array([decay ** (count - 1 - i) for i in range(count)], dtype=np.float32)


def reference_embedding(embeddings: Sequence[np.ndarray], decay: float) -> np.ndarray:
    weights = decay_weights(len(embeddings), decay)
    mean = np.tensordot(weights, np.stack(embeddings), axes=1)
    return normalize_rows(mean)


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(1.0 - np.dot(normalize_rows(a), normalize_rows(b)))


def threshold_from(normal_scores: Sequence[float], settings: Settings) -> float:
    prior_weight = settings.drift_prior_weight
    count = prior_weight + len(normal_scores)
    mean = (prior_weight * settings.drift_prior_mean + sum(normal_scores)) / count
    spread = prior_weight * (settings.drift_prior_std**2 + (settings.drift_prior_mean - mean) ** 2)
    spread += sum((score - mean) ** 2 for score in normal_scores)
    return max(settings.drift_min_threshold, mean + settings.drift_z * math.sqrt(spread / count))


def drift_history(profiles: Sequence[Profile], settings: Settings) -> list[DriftPoint]:
    """One point per profile (oldest first); the first has no reference and no score."""
    points: list[DriftPoint] = []
    normal: list[float] = []
    for position, profile in enumerate(profiles):
        threshold = threshold_from(normal, settings)
        start = max(0, position - settings.drift_reference_windows)
        reference = tuple(range(start, position))
        if not reference:
            points.append(DriftPoint(None, threshold, False, ()))
            continue
        anchor = reference_embedding(
            [profiles[i].embedding for i in reference], settings.drift_decay
        )
        score = round(cosine_distance(profile.embedding, anchor), 4)
        detected = score > threshold
        if not detected:
            normal.append(score)
        points.append(DriftPoint(score, round(threshold, 4), detected, reference))
    return points


def label_weights(profiles: Sequence[Profile], decay: float) -> dict[str, tuple[str, float]]:
    """Decay-weighted interest weights over ``profiles``: lowercase label -> (label, weight)."""
    weights = decay_weights(len(profiles), decay)
    weights = weights / weights.sum() if len(weights) else weights
    merged: dict[str, tuple[str, float]] = {}
    for profile, share in zip(profiles, weights):
        for interest in profile.interests:
            key = interest.label.lower()
            label, weight = merged.get(key, (interest.label, 0.0))
            merged[key] = (label, weight + float(share) * interest.weight)
    return merged


def interest_changes(
    current: Sequence[Interest], reference: Sequence[Profile], decay: float
) -> tuple[list[str], list[str]]:
    """Interest labels gained and lost against the reference, biggest change first."""
    if not reference:  # nothing to compare with: nothing was gained or lost
        return [], []
    before = label_weights(reference, decay)
    now = {i.label.lower(): (i.label, i.weight) for i in current}
    changes = {key: (now.get(key) or before[key])[0] for key in before.keys() | now.keys()}
    delta = {key: now.get(key, ("", 0.0))[1] - before.get(key, ("", 0.0))[1] for key in changes}
    gained = [
        changes[k] for k in sorted(delta, key=lambda k: -delta[k]) if delta[k] >= INTEREST_CHANGE
    ]
    lost = [
        changes[k] for k in sorted(delta, key=lambda k: delta[k]) if -delta[k] >= INTEREST_CHANGE
    ]
    return gained, lost


def drift_timeline(profiles: Sequence[Profile], settings: Settings) -> list[WindowDrift]:
    """Every window's verdict (oldest first), with the interests gained and lost."""
    timeline = []
    for profile, point in zip(profiles, drift_history(profiles, settings)):
        reference = [profiles[i] for i in point.reference]
        gained, lost = interest_changes(profile.interests, reference, settings.drift_decay)
        timeline.append(
            WindowDrift(point.score, point.threshold, point.detected, tuple(gained), tuple(lost))
        )
    return timeline


def drift_report(user_id: str, profiles: Sequence[Profile], settings: Settings) -> DriftReport:
    """The verdict for the newest profile of ``profiles`` (oldest first, not empty)."""
    point = drift_history(profiles, settings)[-1]
    current = profiles[-1]
    reference = [profiles[i] for i in point.reference]
    gained, lost = interest_changes(current.interests, reference, settings.drift_decay)
    return DriftReport(
        user_id=user_id,
        drift_detected=point.detected,
        score=point.score,
        threshold=point.threshold,
        current_window=current.window,
        reference_window=[p.window for p in reference],
        gained=gained,
        lost=lost,
    )
