from dataclasses import replace

import numpy as np
import pytest

from service.core.config import Settings
from service.core.records import Interest, Profile, WindowInfo
from service.profiling.drift import (
    EMBEDDING_THRESHOLD,
    cosine_distance,
    drift_history,
    drift_report,
    interest_chi_square,
    interest_test,
    threshold_from,
    with_drift,
)

RNG = np.random.default_rng(0)
TOPIC_A, TOPIC_B = np.eye(64, dtype=np.float32)[0], np.eye(64, dtype=np.float32)[1]


def _profile(index, direction, label):
    noisy = direction + RNG.normal(0, 0.05, size=64).astype(np.float32)
    return Profile(
        user_id="u",
        window=WindowInfo(index, index, index + 1, 20, True),
        summary=label,
        interests=(Interest(label, 1.0, ("x",)),),
        embedding=noisy / np.linalg.norm(noisy),
        provenance={},
        source_key=str(index),
        created_at=0.0,
    )


def test_a_stable_user_never_drifts():
    profiles = [_profile(i, TOPIC_A, "Astronomy") for i in range(8)]
    points = drift_history(profiles, Settings().drift)
    assert points[0].score is None
    assert not any(p.detected for p in points)
    assert all(p.score < p.threshold for p in points[1:])


def test_a_switch_is_detected_and_explained():
    profiles = [_profile(i, TOPIC_A, "Astronomy") for i in range(4)]
    profiles += [_profile(i, TOPIC_B, "Baking") for i in range(4, 6)]
    points = drift_history(profiles, Settings().drift)
    # The second new window is above the threshold too, but it is the same switch.
    assert [p.detected for p in points] == [False, False, False, False, True, False]
    assert points[5].score > points[5].threshold
    report = drift_report("u", with_drift(profiles[:5], Settings().drift), Settings().drift)
    assert report.drift_detected and report.score > report.threshold
    assert report.gained == ["Baking"] and report.lost == ["Astronomy"]
    assert [w.index for w in report.reference_window] == [1, 2, 3]
    assert report.scored_window.index == report.detected_window.index == 4
    assert report.newest_window.index == 4 and report.threshold_basis == "fixed"


def test_drifting_lasts_until_the_new_interests_are_the_reference():
    profiles = [_profile(i, TOPIC_A, "Astronomy") for i in range(4)]
    profiles += [_profile(i, TOPIC_B, "Baking") for i in range(4, 10)]
    settings = Settings().drift
    for newest in range(4, 4 + settings.reference_windows):
        report = drift_report("u", with_drift(profiles[: newest + 1], settings), settings)
        # The detection's verdict and the windows before the change: never contradicted by
        # the lists, whatever the newest window scores on its own.
        assert report.drift_detected and report.detected_window.index == 4
        assert report.gained == ["Baking"] and report.lost == ["Astronomy"]
        assert report.newest_window.index == newest and report.scored_window.index == 4
        assert [w.index for w in report.reference_window] == [1, 2, 3]
    settled_history = with_drift(profiles[: 5 + settings.reference_windows], settings)
    settled = drift_report("u", settled_history, settings)
    assert not settled.drift_detected and settled.detected_window is None
    assert settled.gained == [] and settled.lost == []


@pytest.mark.parametrize("signal", ["interests", "embedding"])
def test_every_signal_flags_a_disjoint_switch_once_and_a_stable_user_never(signal):
    stable = [_profile(i, TOPIC_A, "Astronomy") for i in range(8)]
    switch = stable[:4] + [_profile(i, TOPIC_B, "Baking") for i in range(4, 8)]
    settings = Settings().drift
    assert not any(p.detected for p in drift_history(stable, settings, signal))
    assert [i for i, p in enumerate(drift_history(switch, settings, signal)) if p.detected] == [4]


def test_the_interest_test_compares_label_counts():
    space = _profile(0, TOPIC_A, "Astronomy")
    also_space = replace(space, interests=(Interest("astronomy", 1.0, ("y",)),))
    cooking = _profile(1, TOPIC_B, "Baking")
    half = replace(space, interests=(Interest("Astronomy", 0.5, ()), Interest("Baking", 0.5, ())))
    assert interest_chi_square(also_space, [space]) == pytest.approx(0.0)  # case-insensitive
    # No interest shared: the statistic is the number of events of both samples (20 + 20).
    assert interest_chi_square(cooking, [space]) == pytest.approx(40.0)
    # Half of a window moved, against two reference windows: 60 * (10*40)^2 / (20*40*50*10).
    assert interest_chi_square(half, [space, space]) == pytest.approx(24.0)


def test_the_interest_test_weighs_how_many_events_show_the_change():
    space = _profile(0, TOPIC_A, "Astronomy")
    half = replace(space, interests=(Interest("Astronomy", 0.5, ()), Interest("Baking", 0.5, ())))
    small = replace(half, window=replace(half.window, events=5))
    assert interest_chi_square(small, [space]) < interest_chi_square(half, [space])


def test_a_disjoint_window_alarms_even_against_a_short_reference():
    settings = Settings().drift
    space = _profile(0, TOPIC_A, "Astronomy")
    cooking = _profile(1, TOPIC_B, "Baking")
    # One 20-event reference window: the statistic's maximum (40) is below the fixed threshold.
    assert settings.interest_threshold > 40
    score, threshold, compared, basis = interest_test(cooking, [space], settings)
    assert score == pytest.approx(40.0) and score > threshold
    assert (compared, basis) == (1, "capped")
    # A half-changed window against the same reference stays below its threshold.
    half = replace(space, interests=(Interest("Astronomy", 0.5, ()), Interest("Baking", 0.5, ())))
    score, threshold, _, _ = interest_test(half, [space], settings)
    assert score < threshold


def test_a_window_straddling_a_switch_does_not_hide_the_next_one():
    settings = Settings().drift
    space = _profile(0, TOPIC_A, "Astronomy")
    half = replace(space, interests=(Interest("Astronomy", 0.5, ()), Interest("Baking", 0.5, ())))
    cooking = _profile(2, TOPIC_B, "Baking")
    # Against both windows the change looks partial; against the one before the straddling
    # window it is complete, and that comparison decides.
    assert interest_chi_square(cooking, [space, half]) < 0.9 * 60
    score, threshold, compared, _ = interest_test(cooking, [space, half], settings)
    assert score == pytest.approx(interest_chi_square(cooking, [space])) and score > threshold
    assert compared == 1  # the verdict names the window it was compared with


def test_the_threshold_mixes_the_prior_with_the_users_own_distances():
    prior_only = threshold_from([])
    assert prior_only == pytest.approx(
        max(
            EMBEDDING_THRESHOLD.floor,
            EMBEDDING_THRESHOLD.prior_mean + EMBEDDING_THRESHOLD.z * EMBEDDING_THRESHOLD.prior_std,
        )
    )
    assert threshold_from([0.4] * 30) > prior_only  # a restless user needs more to alarm


def test_cosine_distance_is_zero_for_equal_and_one_for_orthogonal():
    assert cosine_distance(TOPIC_A, TOPIC_A) == pytest.approx(0.0, abs=1e-6)
    assert cosine_distance(TOPIC_A, TOPIC_B) == pytest.approx(1.0)


def test_a_report_is_read_from_the_timeline_and_refuses_profiles_without_one():
    profiles = [_profile(i, TOPIC_A, "Astronomy") for i in range(4)]
    profiles += [_profile(4, TOPIC_B, "Baking")]
    timeline = with_drift(profiles, Settings().drift)
    assert timeline[4].drift.detected and timeline[4].drift.reference == (1, 2, 3)
    # A timeline stored under other settings is what the report says: it scores nothing.
    quiet = [replace(p, drift=replace(p.drift, detected=False)) for p in timeline]
    assert not drift_report("u", quiet, Settings().drift).drift_detected
    with pytest.raises(ValueError, match="without their drift timeline"):
        drift_report("u", profiles, Settings().drift)
