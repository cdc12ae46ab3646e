"""The drift evaluation's pieces on toy data, and a small, fast run of scripts/eval_drift.py on
the real MovieLens (skipped without it) so that a regression shows."""

import json
from collections import Counter

import numpy as np
import pytest

from scripts import eval_drift
from service.core.records import Event, Item
from service.evaluation import drift_streams as de
from tests.conftest import MOVIELENS

WINDOW = 4


def _history(user: str, genre: str) -> list[Event]:
    count = de.STREAM_WINDOWS * WINDOW
    return [Event(f"{user}-{n}", user, f"{genre}-{n}", "rate", float(n), 4.0) for n in range(count)]


def _world():
    genres = {"u1": "drama", "u2": "drama", "u3": "horror", "u4": "horror"}
    histories = {user: _history(user, genre) for user, genre in genres.items()}
    items = {
        e.item_id: Item(e.item_id, e.item_id, "", (e.item_id.split("-")[0],))
        for events in histories.values()
        for e in events
    }
    return histories, items


def test_streams_splice_users_of_different_taste_at_their_change_points():
    histories, items = _world()
    tastes = de.taste_vectors(histories, items)
    streams = de.build_streams(histories, sorted(histories), tastes, WINDOW, seed=1)
    assert Counter(s.kind for s in streams) == {kind: 4 for kind in de.KINDS}
    for stream in streams:
        windows = [stream.events[i : i + WINDOW] for i in range(0, len(stream.events), WINDOW)]
        assert len(windows) == de.STREAM_WINDOWS and all(len(w) == WINDOW for w in windows)
        assert [e.ts for e in stream.events] == sorted(e.ts for e in stream.events)
        genre_of = [
            Counter(e.item_id.split("-")[0] for e in w).most_common(1)[0][0] for w in windows
        ]
        own = stream.stream_id.split("-")[1]
        if stream.kind in ("stable", "shuffled"):
            assert stream.changes == () and set(genre_of) == {
                histories[own][0].item_id.split("-")[0]
            }
        if stream.kind == "spliced":
            (cut,) = stream.changes
            assert genre_of[cut - 1] != genre_of[cut]  # the partner has the other taste
            assert len(set(genre_of[:cut])) == len(set(genre_of[cut:])) == 1
        if stream.kind == "a_b_a":
            first, back = stream.changes
            assert genre_of[first - 1] == genre_of[back] != genre_of[first]


def test_eligible_users_start_after_their_first_day_and_keep_six_windows():
    day = 86_400.0
    onboarding = [Event(f"a-{n}", "a", f"x-{n}", "rate", float(n), 4.0) for n in range(50)]
    settled = [Event(f"b-{n}", "a", f"y-{n}", "rate", day + n, 4.0) for n in range(6 * WINDOW)]
    short = [Event(f"c-{n}", "c", f"y-{n}", "rate", day + n, 4.0) for n in range(40)]
    short += [Event(f"d-{n}", "c", f"z-{n}", "rate", 2 * day + n, 4.0) for n in range(5)]
    eligible = de.eligible_users(onboarding + settled + short, WINDOW)
    assert list(eligible) == ["a"] and eligible["a"] == settled


def test_match_counts_hits_within_tolerance_and_everything_else_as_false_alarms():
    assert de.match([5], [4]) == ([1], 0, 0)
    assert de.match([4, 5], [4]) == ([0], 1, 0)  # a second alarm for one change is false
    assert de.match([9], [4]) == ([], 1, 1)  # too late: a false alarm and a miss
    assert de.match([3, 7], [3, 7]) == ([0, 0], 0, 0)


def _data(stream: de.Stream, distances) -> de.StreamData:
    means = [np.array([1.0, 0.0])]
    for distance in distances:  # each window that far (cosine) from the one before
        angle = np.arccos(1 - distance)
        previous = np.arctan2(means[-1][1], means[-1][0])
        means.append(np.array([np.cos(previous + angle), np.sin(previous + angle)]))
    return de.StreamData(stream, [], np.stack(means))


def test_calibration_keeps_the_most_sensitive_setting_within_the_alarm_budget():
    quiet = de.Stream("stable-x", "stable", [], ())
    changed = de.Stream("spliced-y", "spliced", [], (3,))
    tuning = [_data(quiet, [0.05, 0.1, 0.3, 0.05] + [0.05] * 95), _data(changed, [0.05, 0.05, 0.6])]
    # Below 0.3 the quiet stream raises one false alarm in 104 windows, within the budget;
    # below 0.1 it raises two, over it.
    chosen = de.calibrate(de.mean_embedding_test, [0.5, 0.25, 0.08, 0.01], tuning)
    assert chosen == 0.25
    score = de.evaluate_detector(de.mean_embedding_test, chosen, tuning)
    assert (score.hits, score.false_alarms, score.misses) == (1, 1, 0)
    assert score.f1 == pytest.approx(2 / 3, abs=1e-4)


def test_cross_fitting_scores_each_half_at_the_setting_calibrated_on_the_other():
    quiet = de.Stream("stable-x", "stable", [], ())
    changed = de.Stream("spliced-y", "spliced", [], (3,))
    # The first half tolerates 0.25 (its quiet stream has one 0.3 step); the second, whose quiet
    # stream is calm, goes down to 0.08 and then catches a weak change of the first half too.
    first = [_data(quiet, [0.05, 0.1, 0.3, 0.05] + [0.05] * 95), _data(changed, [0.05, 0.05, 0.2])]
    second = [_data(quiet, [0.05] * 99), _data(changed, [0.05, 0.05, 0.6])]
    grid = [0.5, 0.25, 0.08, 0.01]
    score, settings = de.cross_fitted(de.mean_embedding_test, grid, first, second)
    assert settings == (0.25, 0.08)
    # second at 0.25: its change caught; first at 0.08: its change caught, the 0.3 and 0.1
    # steps of its quiet stream are two false alarms.
    assert (score.hits, score.false_alarms, score.misses) == (2, 2, 0)


@pytest.mark.slow
@pytest.mark.skipif(
    not (MOVIELENS / "ratings.csv").is_file(), reason=f"no MovieLens at {MOVIELENS}"
)
def test_eval_drift_script_on_a_movielens_sample(tmp_path):
    out, picture = tmp_path / "drift.json", tmp_path / "drift.png"
    args = ["--data", str(MOVIELENS), "--users", "12", "--embedder", "hashing"]
    assert eval_drift.main([*args, "--out", str(out), "--plot", str(picture)]) == 0
    report = json.loads(out.read_text())
    assert set(report["detectors"]) == set(report["detectors_cross_fitted"]) == {
        "service",
        "service: profile embedding",
        "adwin",
        "page_hinkley",
        "mean_embedding",
        "periodic",
    }
    (counts,) = report["users"].values()
    assert counts["tuning"] == counts["test"] == 6
    assert report["changes_test"] == 6 * 4  # spliced, gradual: one each; A-B-A: two
    streams = 6 * len(de.KINDS)
    assert streams * de.MIN_WINDOWS <= report["windows_test"] <= streams * de.STREAM_WINDOWS
    assert counts["eligible"] >= 12
    for score in [*report["detectors"].values(), *report["detectors_cross_fitted"].values()]:
        assert 0.0 <= score["f1"] <= 1.0 and 0.0 <= score["miss_rate"] <= 1.0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
