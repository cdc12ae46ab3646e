"""Drift: how far a window's profile moved from its reference, and whether that is unusual.

The reference of window *i* is the windows before it, decayed (the newest weighs most). The
distance (``Settings.drift_signal``) is between the interest distributions (each profile is a
distribution over interest labels: the cosine distance of the decay-weighted label weights),
between the profile embeddings, or the mean of the two. The threshold comes from what is normal
for this user: the distances of earlier windows that were not themselves drift, pooled with a
population prior given as pseudo-observations, so a user with little history is judged by the
population and a user with much history by their own habits.

One switch is one detection: consecutive windows above the threshold are one change, detected
at its first window. A user counts as drifting from that detection until the reference of the
newest window no longer reaches back before it (the new interests have become the reference).
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


def interest_distance(current: Profile, reference: Sequence[Profile], decay: float) -> float:
    """Cosine distance between the current interest weights and the reference's decayed ones,
    labels matched case-insensitively: 1 when no label is shared."""
    before = label_weights(reference, decay)
    now = label_weights([current], decay)
    labels = sorted(before.keys() | now.keys())
    if not labels:
        return 0.0
    a = np.array([now.get(label, ("", 0.0))[1] for label in labels])
    b = np.array([before.get(label, ("", 0.0))[1] for label in labels])
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return 1.0 - float(a @ b) / norms if norms > 0 else 1.0


def window_distance(
    profile: Profile, reference: Sequence[Profile], decay: float, signal: str
) -> float:
    """The drift score of ``profile`` against its ``reference`` windows, by ``signal``."""
    interests = interest_distance(profile, reference, decay)
    if signal == "interests":
        return interests
    anchor = reference_embedding([p.embedding for p in reference], decay)
    embedding = cosine_distance(profile.embedding, anchor)
    return embedding if signal == "embedding" else (embedding + interests) / 2


def drift_history(
    profiles: Sequence[Profile], settings: Settings, signal: str | None = None
) -> list[DriftPoint]:
    """One point per profile (oldest first); the first has no reference and no score. A window
    above the threshold right after one that was above it too is the same change: not a new
    detection."""
    signal = signal or settings.drift_signal
    points: list[DriftPoint] = []
    normal: list[float] = []
    above_before = False
    for position, profile in enumerate(profiles):
        threshold = threshold_from(normal, settings)
        start = max(0, position - settings.drift_reference_windows)
        reference = tuple(range(start, position))
        if not reference:
            points.append(DriftPoint(None, threshold, False, ()))
            continue
        score = round(
            window_distance(
                profile, [profiles[i] for i in reference], settings.drift_decay, signal
            ),
            4,
        )
        above = score > threshold
        if not above:
            normal.append(score)
        points.append(DriftPoint(score, round(threshold, 4), above and not above_before, reference))
        above_before = above
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
    """Whether the user's interests moved recently, for the newest profile of ``profiles``
    (oldest first, not empty). Drifting: the newest detection is recent enough that the newest
    window's reference still reaches back before it; then the score and threshold are the
    detection's, and gained / lost compare the newest profile with the windows before the
    change. Not drifting: the newest window's score, and nothing gained or lost (a verdict never
    contradicts its lists)."""
    points = drift_history(profiles, settings)
    newest = len(profiles) - 1
    detections = [i for i, point in enumerate(points) if point.detected]
    recent = (
        detections[-1]
        if detections and newest - detections[-1] < settings.drift_reference_windows
        else None
    )
    point = points[newest] if recent is None else points[recent]
    reference = [profiles[i] for i in point.reference]
    gained: list[str] = []
    lost: list[str] = []
    if recent is not None:
        gained, lost = interest_changes(profiles[newest].interests, reference, settings.drift_decay)
    return DriftReport(
        user_id=user_id,
        drift_detected=recent is not None,
        score=point.score,
        threshold=point.threshold,
        current_window=profiles[newest].window,
        reference_window=[p.window for p in reference],
        gained=gained,
        lost=lost,
        detected_window=profiles[recent].window if recent is not None else None,
    )
