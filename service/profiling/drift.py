"""Drift: how far a window's profile moved from its reference, and whether that is unusual.

The reference of window *i* is the windows before it (up to ``Settings.drift_reference_windows``). A
profile is a distribution over interests, each backed by evidence, so the default score
(``Settings.drift_signal = "interests"``) is a test between two samples of interest counts:
Pearson's chi-square statistic of the table (this window's counts, the reference windows'
pooled counts), a count being an interest's share of the profile times the window's events. It
grows with how unlike the two distributions are and with how many events show it, so a
two-event window cannot alarm as loudly as a full one, and a user whose taste spreads over many
interests is not judged by the spread of someone narrow. It is compared with one fixed threshold
(``drift_interest_threshold``, calibrated by scripts/eval/eval_drift.py; a per-user threshold was
measured and lost, see docs/EVALUATION.md).

The other signal, ``"embedding"``, is the cosine distance between the profile embedding and the
decayed mean of the reference's, against a threshold from what is normal for this user: the
distances of earlier windows that were not themselves drift, pooled with a population prior given
as pseudo-observations.

One switch is one detection: consecutive windows above the threshold are one change, detected
at its first window. A user counts as drifting from that detection until the reference of the
newest window no longer reaches back before it (the new interests have become the reference).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from service.core.config import DriftSettings
from service.core.records import DriftReport, Interest, Profile, ThresholdBasis, WindowDrift
from service.embedding.encoder import normalize_rows

# An interest counts as gained or lost when its weight moved by at least this much.
INTEREST_CHANGE = 0.15
# The share of the interest test's maximum (no interest shared) that alarms whatever the
# threshold: a short reference cannot otherwise reach it.
DISJOINT_SHARE = 0.9


@dataclass(frozen=True)
class EmbeddingThreshold:
    """The embedding signal's per-user threshold: a population prior for the distance between
    two windows of an unchanged user (``prior_mean``, ``prior_std``, as ``prior_weight``
    pseudo-observations mixed with the user's own past distances), ``z`` spreads above their
    mean, never below ``floor``. Constants of that signal, not settings: the service's default
    signal is the interest test; scripts/eval/eval_drift.py varies ``z`` and ``floor`` on it."""

    prior_mean: float = 0.12  # MiniLM on the demo data and MovieLens: stable users 0.05-0.20
    prior_std: float = 0.06
    prior_weight: float = 5.0
    z: float = 3.0
    floor: float = 0.25


EMBEDDING_THRESHOLD = EmbeddingThreshold()


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


def threshold_from(
    normal_scores: Sequence[float], rule: EmbeddingThreshold = EMBEDDING_THRESHOLD
) -> float:
    prior_weight = rule.prior_weight
    count = prior_weight + len(normal_scores)
    mean = (prior_weight * rule.prior_mean + sum(normal_scores)) / count
    spread = prior_weight * (rule.prior_std**2 + (rule.prior_mean - mean) ** 2)
    spread += sum((score - mean) ** 2 for score in normal_scores)
    return max(rule.floor, mean + rule.z * math.sqrt(spread / count))


def interest_counts(profile: Profile) -> dict[str, float]:
    """The profile's interests as counts: each one's share of the profile's weight times the
    window's events; labels matched case-insensitively."""
    total = sum(i.weight for i in profile.interests)
    if total <= 0:
        return {}
    counts: dict[str, float] = {}
    for interest in profile.interests:
        key = interest.label.lower()
        counts[key] = counts.get(key, 0.0) + interest.weight / total * profile.window.events
    return counts


def interest_chi_square(current: Profile, reference: Sequence[Profile]) -> float:
    """Pearson's chi-square statistic between the current window's interest counts and the
    reference windows' pooled counts: 0 for the same distribution, the number of events of both
    samples when no interest is shared."""
    return chi_square(interest_counts(current), pooled_counts(map(interest_counts, reference)))


def pooled_counts(samples: Iterable[dict[str, float]]) -> dict[str, float]:
    """Several samples of counts as one: each label's counts summed."""
    pooled: dict[str, float] = {}
    for sample in samples:
        for label, count in sample.items():
            pooled[label] = pooled.get(label, 0.0) + count
    return pooled


def chi_square(now: dict[str, float], before: dict[str, float]) -> float:
    """Pearson's chi-square statistic of the 2 x labels table of two samples of counts."""
    labels = sorted(k for k in before.keys() | now.keys() if now.get(k, 0.0) + before.get(k, 0.0))
    table = np.array([[now.get(k, 0.0) for k in labels], [before.get(k, 0.0) for k in labels]])
    if not labels or min(table.sum(axis=1)) <= 0:
        return 0.0  # one side has no interests: nothing to compare
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


def interest_test(
    profile: Profile, reference: Sequence[Profile], drift: DriftSettings
) -> tuple[float, float, int, ThresholdBasis]:
    """(score, threshold, how many of the reference windows it compared with, threshold basis)
    of the interest test, against the reference and against the reference without its newest
    window (which may straddle a change, half old and half new, and hide it), whichever is
    further past its threshold. The threshold is the fixed one, or lower where the statistic
    cannot reach it (its maximum is the events of both samples, when no interest is shared):
    a nearly disjoint window always alarms ("capped")."""
    candidates = [reference, reference[:-1]] if len(reference) > 1 else [reference]
    verdicts = []
    for windows in candidates:
        events = sum(p.window.events for p in (profile, *windows) if p.interests)
        cap = DISJOINT_SHARE * events
        fixed = drift.interest_threshold
        basis: ThresholdBasis = "fixed" if fixed <= cap else "capped"
        threshold = min(fixed, cap)
        score = interest_chi_square(profile, windows)
        verdicts.append((score, max(threshold, 1e-9), len(windows), basis))
    return max(verdicts, key=lambda verdict: verdict[0] / verdict[1])


def embedding_test(
    profile: Profile,
    reference: Sequence[Profile],
    normal: Sequence[float],
    drift: DriftSettings,
    rule: EmbeddingThreshold = EMBEDDING_THRESHOLD,
) -> tuple[float, float, int, ThresholdBasis]:
    """The embedding test, shaped like ``interest_test``: the cosine distance to the
    reference's decayed mean embedding, against what is normal for this user."""
    anchor = reference_embedding([p.embedding for p in reference], drift.decay)
    distance = cosine_distance(profile.embedding, anchor)
    return distance, threshold_from(normal, rule), len(reference), "per-user"


def drift_history(
    profiles: Sequence[Profile],
    drift: DriftSettings,
    signal: str | None = None,
    rule: EmbeddingThreshold = EMBEDDING_THRESHOLD,
) -> list[WindowDrift]:
    """Every window's verdict (oldest first), without the interests gained and lost; the
    first has no reference and no score. A window above the threshold right after one that
    was above it too is the same change: not a new detection."""
    signal = signal or drift.signal
    verdicts: list[WindowDrift] = []
    normal: list[float] = []
    above_before = False
    for position, profile in enumerate(profiles):
        windows = list(profiles[max(0, position - drift.reference_windows) : position])
        if not windows:
            first = drift.interest_threshold if signal == "interests" else None
            threshold = first if first is not None else threshold_from(normal, rule)
            basis: ThresholdBasis = "fixed" if signal == "interests" else "per-user"
            verdicts.append(WindowDrift(None, round(threshold, 4), False, threshold_basis=basis))
            continue
        if signal == "interests":
            score, threshold, kept, basis = interest_test(profile, windows, drift)
        else:
            score, threshold, kept, basis = embedding_test(profile, windows, normal, drift, rule)
        score, threshold = round(score, 4), round(threshold, 4)
        above = score > threshold
        if not above:
            normal.append(score)
        reference = tuple(p.window.index for p in windows[:kept])
        verdicts.append(
            WindowDrift(
                score,
                threshold,
                above and not above_before,
                reference=reference,
                threshold_basis=basis,
            )
        )
        above_before = above
    return verdicts


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


def drift_timeline(
    profiles: Sequence[Profile],
    drift: DriftSettings,
    rule: EmbeddingThreshold = EMBEDDING_THRESHOLD,
) -> list[WindowDrift]:
    """Every window's verdict (oldest first), with the interests gained and lost against the
    windows it was compared with."""
    timeline = []
    for profile, verdict in zip(profiles, drift_history(profiles, drift, rule=rule)):
        reference = _profiles_at(profiles, verdict.reference)
        gained, lost = interest_changes(profile.interests, reference, drift.decay)
        timeline.append(replace(verdict, gained=tuple(gained), lost=tuple(lost)))
    return timeline


def with_drift(
    profiles: Sequence[Profile],
    drift: DriftSettings,
    rule: EmbeddingThreshold = EMBEDDING_THRESHOLD,
) -> list[Profile]:
    """The profiles with their drift timeline scored under ``drift``."""
    timeline = drift_timeline(profiles, drift, rule)
    return [replace(p, drift=drift) for p, drift in zip(profiles, timeline)]


def _profiles_at(profiles: Sequence[Profile], indices: Sequence[int]) -> list[Profile]:
    by_index = {p.window.index: p for p in profiles}
    return [by_index[i] for i in indices if i in by_index]


def drift_report(user_id: str, profiles: Sequence[Profile], drift: DriftSettings) -> DriftReport:
    """Whether the user's interests moved recently, read from the timeline the profiles carry
    (oldest first, not empty, each with its ``drift``; see ``with_drift``): no drift is scored
    here. Drifting: the newest detection is recent enough that the newest window's reference
    still reaches back before it; then the verdict is the detection's, and gained / lost
    compare the newest profile with the windows the detection was compared with. Not drifting:
    the newest window's verdict, and nothing gained or lost (a verdict never contradicts its
    lists)."""
    timeline = [p.drift for p in profiles]
    if any(verdict is None for verdict in timeline):
        raise ValueError(f"{user_id}: profiles without their drift timeline")
    newest = len(profiles) - 1
    detections = [i for i, verdict in enumerate(timeline) if verdict and verdict.detected]
    recent = (
        detections[-1] if detections and newest - detections[-1] < drift.reference_windows else None
    )
    scored = newest if recent is None else recent
    verdict = timeline[scored]
    assert verdict is not None
    reference = _profiles_at(profiles, verdict.reference)
    gained: list[str] = []
    lost: list[str] = []
    if recent is not None:
        gained, lost = interest_changes(profiles[newest].interests, reference, drift.decay)
    return DriftReport(
        user_id=user_id,
        drift_detected=recent is not None,
        score=verdict.score,
        threshold=verdict.threshold,
        threshold_basis=verdict.threshold_basis,
        scored_window=profiles[scored].window,
        reference_window=[p.window for p in reference],
        newest_window=profiles[newest].window,
        gained=gained,
        lost=lost,
        detected_window=profiles[recent].window if recent is not None else None,
    )
