"""The drift evaluation's pieces on toy data (streams, detectors, scoring, the protocol), and a
small run of scripts/eval/eval_drift.py on the real MovieLens (skipped without it)."""

import json
from collections import Counter

import numpy as np
import pytest

from scripts.eval import eval_drift
from service.core.records import Event, Item
from service.evaluation import drift_scoring as ds
from service.evaluation import drift_streams as de
from service.evaluation.drift_detectors import (
    Candidate,
    Catalog,
    Option,
    StreamData,
    adwin_flags,
    cusum_flags,
    debounced,
    threshold_flags,
)
from tests.conftest import MOVIELENS

WINDOW = 4


def _history(user: str, genre: str) -> list[Event]:
    count = de.STREAM_WINDOWS * WINDOW
    return [Event(f"{user}-{n}", user, f"{genre}-{n}", "rate", float(n), 4.0) for n in range(count)]


def _world(genres: dict[str, str]):
    histories = {user: _history(user, genre) for user, genre in genres.items()}
    items = {
        e.item_id: Item(e.item_id, e.item_id, "", (e.item_id.split("-")[0],))
        for events in histories.values()
        for e in events
    }
    return histories, items


def _genre(event: Event) -> str:
    return event.item_id.split("-")[0]


def _windows(stream: de.Stream) -> list[list[Event]]:
    return [stream.events[i : i + WINDOW] for i in range(0, len(stream.events), WINDOW)]


def test_each_user_gets_negative_streams_and_every_change_kind_with_every_partner():
    histories, items = _world({"u1": "drama", "u2": "drama", "u3": "horror", "u4": "horror"})
    likeness = de.Likeness.of(histories, items)
    streams = de.build_streams(histories, sorted(histories), likeness, WINDOW, seed=1)
    per_user = len(de.NEGATIVE_KINDS) + len(de.CHANGE_KINDS) * len(de.PARTNERS)
    assert Counter(s.user for s in streams) == {user: per_user for user in histories}
    pairs = Counter((s.kind, s.partner) for s in streams)
    assert all(pairs[(kind, p)] == 4 for kind in de.CHANGE_KINDS for p in de.PARTNERS)
    for stream in streams:
        windows = _windows(stream)
        assert len(windows) == de.STREAM_WINDOWS and all(len(w) == WINDOW for w in windows)
        assert [e.ts for e in stream.events] == sorted(e.ts for e in stream.events)
        own = _genre(histories[stream.user][0])
        assert {_genre(e) for e in windows[0]} == {own}
        if stream.kind in de.NEGATIVE_KINDS:
            assert stream.changes == () and {_genre(e) for e in stream.events} == {own}
        if stream.partner == "genre" and stream.kind in ("spliced", "a_b_a"):
            (change, *_) = stream.changes  # the least alike by genre has the other taste
            assert {_genre(e) for e in windows[change]} == {"drama", "horror"} - {own}


def test_a_change_inside_a_window_leaves_that_window_mixed():
    histories, items = _world({"u1": "drama", "u2": "horror", "u3": "horror"})
    likeness = de.Likeness.of(histories, items)
    streams = de.build_streams(histories, sorted(histories), likeness, WINDOW, seed=3)
    inside = [s for s in streams if s.kind == "spliced_inside" and s.user == "u1"]
    assert inside
    for stream in inside:
        (change,) = stream.changes
        windows = _windows(stream)
        assert {_genre(e) for e in windows[change - 1]} == {"drama"}
        assert {_genre(e) for e in windows[change]} == {"drama", "horror"}  # mixed
        assert {_genre(e) for e in windows[change + 1]} == {"horror"}


def test_a_partner_least_alike_by_coratings_shares_no_items():
    events = {
        "a": ["x1", "x2", "x3", "x4"],
        "b": ["x1", "x2", "x3", "y1"],  # nearly A's items
        "c": ["z1", "z2", "z3", "z4"],  # none of them
        "d": ["x1", "x2", "x3", "x4"],
    }
    histories = {
        u: [Event(f"{u}{n}", u, i, "rate", float(n), 4.0) for n, i in enumerate(items)]
        for u, items in events.items()
    }
    likeness = de.Likeness.of(histories, {})
    import random

    assert {
        likeness.partner("a", sorted(events), "coratings", random.Random(s)) for s in range(20)
    } == {"c"}


def test_the_three_parts_are_disjoint_and_cover_the_users():
    users = [f"u{n}" for n in range(31)]
    parts = de.three_way_split(users, seed=5)
    assert list(parts) == list(de.PARTS)
    assert sorted(sum(parts.values(), [])) == sorted(users)
    assert [len(p) for p in parts.values()] == [10, 10, 11]
    assert de.three_way_split(users, seed=6) != parts


def test_match_counts_hits_within_tolerance_and_everything_else_as_false_alarms():
    assert ds.match([5], [4]) == ([1], 0, 0)
    assert ds.match([4, 5], [4]) == ([0], 1, 0)  # a second alarm for one change is false
    assert ds.match([9], [4]) == ([], 1, 1)  # too late: a false alarm and a miss
    assert ds.match([3, 7], [3, 7]) == ([0, 0], 0, 0)


# --- detectors on a one-dimensional toy signal -----------------------------------------------


def _data(kind: str, distances, changes=(), user="x") -> StreamData:
    """A stream whose item-embedding signal moves ``distances[i]`` (cosine) at window i + 1."""
    return _at_angles(kind, np.cumsum([0.0, *(np.arccos(1 - d) for d in distances)]), changes, user)


def _at_angles(kind: str, angles, changes=(), user="x") -> StreamData:
    """A stream whose window i has one item, a unit vector at ``angles[i]``."""
    vectors = {f"i{n}": np.array([np.cos(a), np.sin(a)]) for n, a in enumerate(angles)}
    stream = de.Stream(f"{kind}-{user}", user, kind, None, [], tuple(changes))
    windows = [[f"i{n}"] for n in range(len(angles))]
    return StreamData(stream, [], windows, Catalog({}, vectors))


def test_debouncing_keeps_the_first_window_of_each_run():
    assert debounced([False, True, True, False, True, True]) == [1, 4]


def test_a_confirmed_reference_ignores_a_burst_the_next_window_reverses():
    # Window 4 strays and window 5 comes back: one window alone alarms, confirmed does not.
    # From window 7 on the stream moves away for good: confirmed alarms at 8, a window late.
    burst = _at_angles("spliced", [0, 0, 0, 0, 1.0, 0, 0, 1.2, 1.2, 1.2], changes=(7,))
    alone = threshold_flags(burst, "item_embedding", Option("3"), 0.15, 1.0)
    confirmed = threshold_flags(burst, "item_embedding", Option("3, confirmed"), 0.15, 1.0)
    assert alone == [4, 7]
    assert confirmed == [8]


def test_cusum_adds_up_a_change_that_no_single_window_shows():
    # Windows 5-7 each 0.12 from the one before: below a threshold of 0.2, but 0.07 a window
    # above the 0.05 the CUSUM tolerates, past 0.15 at window 7 (two windows late: a hit).
    creeping = _data("spliced", [0.02] * 4 + [0.12, 0.12, 0.12] + [0.02] * 3, changes=(5,))
    assert threshold_flags(creeping, "item_embedding", Option("1"), 0.2, 1.0) == []
    assert cusum_flags(creeping, "item_embedding", Option("1", 0.05), 0.15, 1.0) == [7]


def test_adwin_on_events_fires_where_the_genres_switch():
    genres = {f"d{n}": ("Drama",) for n in range(120)} | {f"h{n}": ("Horror",) for n in range(80)}
    windows = [[f"d{n}" for n in range(w * 20, w * 20 + 20)] for w in range(6)]
    windows += [[f"h{n}" for n in range(w * 20, w * 20 + 20)] for w in range(4)]
    stream = de.Stream("spliced-x", "x", "spliced", "random", [], (6,))
    data = StreamData(stream, [], windows, Catalog(genres, {}))
    flagged = adwin_flags(data, "genres", Option("1", 5), 0.01, 1.0)
    assert flagged and 6 <= flagged[0] <= 6 + ds.TOLERANCE


def test_calibration_keeps_the_most_sensitive_setting_within_the_alarm_budget():
    candidate = Candidate(
        "threshold", "item_embedding", (Option("1"),), (0.5, 0.25, 0.08, 0.01), threshold_flags
    )
    quiet = _data("stable", [0.05, 0.1, 0.05, 0.3] + [0.05] * 96)
    changed = _data("spliced", [0.05, 0.05, 0.6], changes=(3,))
    # Below 0.3 the quiet stream raises one false alarm in 100 windows, within the budget;
    # below 0.1 it raises two, over it. The change stream does not count for the budget.
    assert ds.calibrate(candidate, Option("1"), 1.0, [quiet, changed]) == 0.25
    fitted = ds.Fitted(candidate, Option("1"), 0.25, 1.0, {})
    score = ds.score(fitted, [quiet, changed])
    assert (score.hits, score.false_alarms, score.misses) == (1, 1, 0)
    assert score.false_alarms_per_100 == pytest.approx(1.0)
    assert score.f1 == pytest.approx(2 / 3, abs=1e-4)


def test_fit_chooses_the_option_on_design_and_the_setting_on_calibration():
    settings = tuple(float(x) for x in np.geomspace(2.0, 0.01, 60))
    candidate = Candidate(
        "threshold", "item_embedding", (Option("1"), Option("3")), settings, threshold_flags
    )
    design = [_data("stable", [0.02] * 30), _data("spliced", [0.02, 0.02, 0.5, 0.02], (3,))]
    calibration = [_data("stable", [0.02] * 20 + [0.3] + [0.02] * 9)]
    fitted = ds.fit(candidate, {}, design, calibration)
    assert set(fitted.design_f1) == {"1", "3"}
    # The calibration part's quiet stream has one 0.3 step in 30 windows: the budget (1 per
    # 100) keeps the setting above it, whatever the design part would have allowed.
    assert fitted.setting >= 0.3 - 1e-9
    assert ds.calibrate(candidate, fitted.option, 1.0, design) < 0.3


def test_bootstrap_intervals_are_paired_over_users():
    candidate = Candidate("threshold", "item_embedding", (Option("1"),), (0.2,), threshold_flags)
    never = Candidate("threshold", "item_embedding", (Option("1"),), (5.0,), threshold_flags)
    streams = [_data("spliced", [0.02, 0.02, 0.5, 0.02], (3,), user=f"u{n}") for n in range(10)] + [
        _data("stable", [0.02] * 9, user=f"u{n}") for n in range(10)
    ]
    users = [f"u{n}" for n in range(10)]
    tables = {
        "fires": ds.per_user(ds.Fitted(candidate, Option("1"), 0.2, 1.0, {}), streams, users),
        "never": ds.per_user(ds.Fitted(never, Option("1"), 5.0, 1.0, {}), streams, users),
    }
    intervals = ds.bootstrap(tables, "fires", resamples=200)
    assert intervals["fires"]["f1"] == [1.0, 1.0]
    assert intervals["never"]["f1"] == [0.0, 0.0]
    assert intervals["never"]["reference_f1_minus_this"] == [1.0, 1.0]
    assert intervals["never"]["mean_delay"] is None


@pytest.mark.slow
@pytest.mark.skipif(
    not (MOVIELENS / "ratings.csv").is_file(), reason=f"no MovieLens at {MOVIELENS}"
)
def test_eval_drift_script_on_a_movielens_sample(tmp_path):
    out, picture = tmp_path / "drift.json", tmp_path / "drift.png"
    args = ["--data", str(MOVIELENS), "--users", "30", "--embedder", "hashing", "--seeds", "0"]
    assert eval_drift.main([*args, "--out", str(out), "--plot", str(picture)]) == 0
    report = json.loads(out.read_text())
    run = report["seeds"]["0"]
    (counts,) = run["users"].values()
    assert (counts["design"], counts["calibration"], counts["test"]) == (10, 10, 10)
    per_user = len(de.NEGATIVE_KINDS) + len(de.CHANGE_KINDS) * len(de.PARTNERS)
    assert run["streams"] == {part: 10 * per_user for part in de.PARTS}
    detectors = run["detectors"]
    assert {"service × interests", "adwin × genres", "cusum × item_embedding"} <= set(detectors)
    for name, d in detectors.items():
        assert 0.0 <= d["f1"] <= 1.0, name
        low, high = d["intervals"]["f1"]
        assert low <= d["f1"] <= high, name
        assert set(d["design_f1_by_option"]) >= {d["option"]}
    # The service must find changes on users it was not tuned on: a detector that never
    # fires fails here.
    service = detectors["service × interests"]
    assert service["hits"] > 0 and service["f1"] > detectors["periodic × none"]["f1"]
    assert set(service["by_kind"]) == {*de.CHANGE_KINDS, *(f"partner: {p}" for p in de.PARTNERS)}
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
