import numpy as np
import pytest

from service.core.config import Settings
from service.core.records import Interest, Profile, WindowInfo
from service.profiling.drift import cosine_distance, drift_history, drift_report, threshold_from

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
    points = drift_history(profiles, Settings())
    assert points[0].score is None
    assert not any(p.detected for p in points)
    assert all(p.score < p.threshold for p in points[1:])


def test_a_switch_is_detected_and_explained():
    profiles = [_profile(i, TOPIC_A, "Astronomy") for i in range(4)]
    profiles += [_profile(i, TOPIC_B, "Baking") for i in range(4, 6)]
    points = drift_history(profiles, Settings())
    assert [p.detected for p in points] == [False, False, False, False, True, True]
    report = drift_report("u", profiles[:5], Settings())
    assert report.drift_detected and report.score > report.threshold
    assert report.gained == ["Baking"] and report.lost == ["Astronomy"]
    assert [w.index for w in report.reference_window] == [1, 2, 3]
    assert report.current_window.index == 4


def test_the_threshold_mixes_the_prior_with_the_users_own_distances():
    settings = Settings()
    prior_only = threshold_from([], settings)
    assert prior_only == pytest.approx(
        max(
            settings.drift_min_threshold,
            settings.drift_prior_mean + settings.drift_z * settings.drift_prior_std,
        )
    )
    assert threshold_from([0.4] * 30, settings) > prior_only  # a restless user needs more to alarm


def test_cosine_distance_is_zero_for_equal_and_one_for_orthogonal():
    assert cosine_distance(TOPIC_A, TOPIC_A) == pytest.approx(0.0, abs=1e-6)
    assert cosine_distance(TOPIC_A, TOPIC_B) == pytest.approx(1.0)
