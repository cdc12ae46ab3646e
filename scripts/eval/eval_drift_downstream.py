"""Does drift help recommendations? Next-window NDCG@10 with and without drift-aware weighting.

Usage:
    python scripts/eval/eval_drift_downstream.py --data ../shared/data/ml-latest-small
        [--users N] [--embedder hashing] [--seed 0] [--weights 0.01,0.03,0.1,0.3,0.6]
        [--signal interests|embedding] [--sensitivities 55,43,30,20,15] [--out FILE.json]

Real chronological histories, nothing injected: each user's events after onboarding (the first
24 h dropped, ``service/evaluation/drift_streams.eligible_users``), cut into full windows of the
service's window size. The users are split at random (``--seed``) into a tuning and a test
half; each half is served by its own store and index, whose collaborative model is fitted on
everyone else's events, so no evaluated user's next window is ever learnt from. A half's
windows go in one at a time: after window *i* the service brings the user's profiles (and drift)
up to date, and from *i* = 2 on the recommender is asked for 10 items for the profile and
history the request path reads (``Profiler.current_with_history``), scored by NDCG@10 (binary)
against the items of window *i* + 1 the user had not had.

Recommenders, the same code in the same run, on the same profiles:
- ignoring drift (``drift_earlier_weight`` = 1);
- ``fired`` (the service's rule): when the newest window's drift fired, the history before that
  window counts *w* of its weight in the collaborative model;
- ``since detection``: while the drift report says drifting (``DriftReport.drift_detected``),
  the history before its detected window counts *w* of its weight.
Each variant's *w* is chosen on the tuning half (the best mean NDCG@10 on the windows where it
applies; a tie goes to the larger, milder *w*) and reported on the test half, on the windows
where it applies and on all windows; then the halves swapped, and both halves pooled, each
scored with the *w* chosen on the other (the table's "w" column: tuning-chosen/test-chosen).
The service's own *w* (``Settings.drift_earlier_weight``) was chosen on the tuning half of
seed 0, so it is scored on the test half only. Each row carries the two-sided sign test of its
paired wins and losses; the report says how many comparisons were made at the service's *w*.

At the service's default sensitivity drift seldom fires on real histories, so the same is done
at more sensitive settings too (``--sensitivities``): the newest profile then carries the drift
the service's own code finds there. ``--signal`` picks the drift signal: ``interests`` (the
default, the service's chi-square interest test; a sensitivity is its threshold,
``drift_interest_threshold``) or ``embedding`` (the profile-embedding signal; a sensitivity is
``EmbeddingThreshold.z``, the threshold's floor moving with it).
``--users`` caps the eligible users (CI smoke runs).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from scripts.eval.evaluate import RememberingEmbedder
from service.app.container import Services, build_services
from service.core.config import DriftSettings, Settings
from service.core.records import DriftReport, Event, Profile
from service.embedding.encoder import Embedder, load_embedder
from service.evaluation import drift_streams as de
from service.evaluation.protocol import ndcg_at
from service.ingest.movielens import load_movielens
from service.profiling.drift import (
    EMBEDDING_THRESHOLD,
    EmbeddingThreshold,
    drift_report,
    with_drift,
)
from service.retrieval.collaborative import ShortTerm
from service.retrieval.recommender import Recommender

K = 10
FIRST_EVALUATED_WINDOW = 2  # the drift of window i needs windows before it as a reference
WEIGHTS = (0.01, 0.03, 0.1, 0.3, 0.6)
# Each signal's default setting first; lower is more sensitive (it fires more often).
SENSITIVITIES = {"interests": (55.0, 43.0, 30.0, 20.0, 15.0), "embedding": (3.0, 2.0, 1.5, 1.0)}
IGNORING = "ignoring drift"
VARIANTS = ("fired", "since detection")


class SinceDetection(Recommender):
    """The variant: the short-term window starts at the drift report's detected window, for as
    long as the report says drifting (``reports``: each user's current report)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.reports: dict[str, DriftReport] = {}

    def short_term(self, profile: Profile, history: Sequence[str]) -> ShortTerm | None:
        report = self.reports.get(profile.user_id)
        if report is None or not report.drift_detected or report.detected_window is None:
            return None
        start = report.detected_window.first_event
        if start is None:
            return None
        return ShortTerm(min(start, len(history)), self.drift_earlier_weight)


@dataclass
class Row:
    """One evaluated window position of one user: at each drift sensitivity,
    whether the newest window's drift fired and whether the drift report says drifting, and
    each recommender's NDCG@10 there."""

    user: str
    window: int
    fired: dict[float, bool] = field(default_factory=dict)
    drifting: dict[float, bool] = field(default_factory=dict)
    ndcg: dict[tuple[float, str], float] = field(default_factory=dict)  # (z, recommender)

    def applies(self, variant: str, z: float) -> bool:
        return self.fired[z] if variant == "fired" else self.drifting[z]


def name(variant: str, weight: float) -> str:
    return IGNORING if weight == 1.0 else f"{variant} w={weight:g}"


def full_windows(events: Sequence[Event], size: int) -> list[list[Event]]:
    return [list(events[i : i + size]) for i in range(0, len(events) - size + 1, size)]


# The drift settings and the embedding signal's threshold rule at one sensitivity.
Sensitivity = tuple[DriftSettings, EmbeddingThreshold]


def at_sensitivity(drift: DriftSettings, signal: str, value: float) -> Sensitivity:
    """Drift signal ``signal`` at sensitivity ``value``: the interest test's threshold, or the
    embedding signal's ``z`` with the threshold's floor moving with it."""
    if signal == "interests":
        return replace(drift, signal="interests", interest_threshold=value), EMBEDDING_THRESHOLD
    rule = EMBEDDING_THRESHOLD
    floor = rule.floor / rule.z * value
    return replace(drift, signal="embedding"), replace(rule, z=value, floor=floor)


def serve_half(
    folder: Path,
    dataset,  # type: ignore[no-untyped-def]
    streams: dict[str, list[list[Event]]],
    embedder: Embedder,
    weights: Sequence[float],
    sensitivities: dict[float, Sensitivity],
) -> list[Row]:
    """The half's users, window by window, through a service trained on everyone else."""
    settings = Settings(data_dir=folder / "data", index_dir=folder / "index")
    services = build_services(settings, embedder=embedder, load_item_index=False)
    services.store.items.upsert(dataset.items)
    services.store.events.add([e for e in dataset.events if e.user_id not in streams])
    services.index.rebuild(services.store, progress=False)
    recommenders = _recommenders(services, weights)
    rows: list[Row] = []
    for position in range(max(len(w) for w in streams.values())):
        present = [user for user, windows in streams.items() if len(windows) > position]
        services.store.events.add([e for user in present for e in streams[user][position]])
        services.profiler.refresh_users(present)
        if position < FIRST_EVALUATED_WINDOW:
            continue
        for user in present:
            if len(streams[user]) > position + 1:
                row = _evaluate(services, recommenders, user, streams[user], sensitivities)
                rows.append(row)
    for recommender in recommenders.values():
        recommender.close()
    services.close()
    return rows


def _recommenders(services: Services, weights: Sequence[float]) -> dict[str, Recommender]:
    def make(cls: type[Recommender], weight: float) -> Recommender:
        args = (services.store, services.embedder, services.index)
        return cls(*args, drift_earlier_weight=weight)

    recommenders = {IGNORING: make(Recommender, 1.0)}
    for weight in weights:
        recommenders[name("fired", weight)] = make(Recommender, weight)
        recommenders[name("since detection", weight)] = make(SinceDetection, weight)
    return recommenders


def _evaluate(
    services: Services,
    recommenders: dict[str, Recommender],
    user: str,
    windows: list[list[Event]],
    sensitivities: dict[float, Sensitivity],
) -> Row:
    """The user's state after their newest window, as the request path reads it; at each
    sensitivity the newest profile carries the drift the service's code finds there."""
    profile, history = services.profiler.current_with_history(user)
    profiles = services.profiler.history(user)
    position = profile.window.index
    if position != profiles[-1].window.index or len(history) != (position + 1) * len(windows[0]):
        raise RuntimeError(f"{user}: the profiles do not end at the history's newest window")
    row = Row(user, position)
    target = {e.item_id for e in windows[position + 1]} - set(history)
    made: dict[tuple[str, ShortTerm | None], float] = {}  # the same weighting, the same list
    for z, (tuned, rule) in sensitivities.items():
        scored = with_drift(profiles, tuned, rule)
        report = drift_report(user, scored, tuned)
        drifted = scored[-1]  # the newest profile, its drift scored at this sensitivity
        assert drifted.drift is not None
        row.fired[z], row.drifting[z] = drifted.drift.detected, report.drift_detected
        for label, recommender in recommenders.items():
            if isinstance(recommender, SinceDetection):
                recommender.reports[user] = report
            key = (label, recommender.short_term(drifted, history))
            if key not in made:
                ranked = [r.item_id for r in recommender.recommend(drifted, K, history)]
                made[key] = ndcg_at(ranked, target, K) if target else 0.0
            row.ndcg[z, label] = made[key]
    return row


def summary(scored: Sequence[tuple[Row, str]], z: float, variant: str | None) -> dict:
    """Mean NDCG@10 of each row's recommender against ignoring drift at sensitivity ``z``, on
    the rows ``variant`` applies to (all rows when None), with the paired wins and losses."""
    picked = [(row, label) for row, label in scored if variant is None or row.applies(variant, z)]
    if not picked:
        return {"windows": 0, "users": 0}
    aware = np.array([row.ndcg[z, label] for row, label in picked])
    plain = np.array([row.ndcg[z, IGNORING] for row, _ in picked])
    return {
        "windows": len(picked),
        "users": len({row.user for row, _ in picked}),
        "ndcg@10": round(float(aware.mean()), 4),
        "ndcg@10 ignoring drift": round(float(plain.mean()), 4),
        "better": int((aware > plain).sum()),
        "worse": int((aware < plain).sum()),
        "sign_test_p": sign_test(int((aware > plain).sum()), int((aware < plain).sum())),
    }


def sign_test(better: int, worse: int) -> float | None:
    """Two-sided exact sign test of the paired wins and losses (ties dropped)."""
    if better + worse == 0:
        return None
    from scipy.stats import binomtest

    return round(float(binomtest(better, better + worse, 0.5).pvalue), 4)


def by(rows: Sequence[Row], label: str) -> list[tuple[Row, str]]:
    return [(row, label) for row in rows]


def grid(rows: Sequence[Row], z: float, weights: Sequence[float]) -> dict:
    """Each variant's mean NDCG@10 where it applies, per weight (1: ignoring drift)."""
    return {
        variant: {
            f"{w:g}": summary(by(rows, name(variant, w)), z, variant).get("ndcg@10")
            for w in [*weights, 1.0]
        }
        for variant in VARIANTS
    }


def choose(rows: Sequence[Row], z: float, variant: str, weights: Sequence[float]) -> float:
    """The weight with the best mean on the windows where the variant applies; ties to the
    larger (milder) weight; 1 (off) unless some weight beats ignoring drift."""
    best, best_mean = 1.0, summary(by(rows, IGNORING), z, variant).get("ndcg@10", 0.0)
    for weight in sorted(weights, reverse=True):
        mean = summary(by(rows, name(variant, weight)), z, variant).get("ndcg@10", 0.0)
        if mean > best_mean:
            best, best_mean = weight, mean
    return best


def evaluate(
    data_dir: Path,
    users: int | None,
    embedder_name: str | None,
    seed: int,
    weights: list[float],
    signal: str,
    sensitivities: list[float],
) -> dict:
    dataset = load_movielens(data_dir)
    size = Settings().window_spec.size
    service_weight = Settings().drift_earlier_weight  # always run, reported on the test half
    weights = sorted({*weights, service_weight})
    histories = de.eligible_users(dataset.events, size)
    chosen = sorted(histories)
    random.Random(seed).shuffle(chosen)
    chosen = chosen[:users] if users else chosen
    half = len(chosen) // 2
    halves = {"tuning": chosen[:half], "test": chosen[half:]}
    embedder = RememberingEmbedder(load_embedder(embedder_name))
    settings = {z: at_sensitivity(Settings().drift, signal, z) for z in sensitivities}
    rows = {}
    with tempfile.TemporaryDirectory(prefix="iprof-downstream-") as folder:
        for part, members in halves.items():
            streams = {user: full_windows(histories[user], size) for user in members}
            rows[part] = serve_half(
                Path(folder) / part, dataset, streams, embedder, weights, settings
            )
    report: dict = {
        "dataset": dataset.name,
        "window": f"{size}e",
        "signal": signal,
        "service_drift_signal": Settings().drift_signal,
        "service_drift_interest_threshold": Settings().drift_interest_threshold,
        "service_drift_z": EMBEDDING_THRESHOLD.z,
        "users_eligible": len(histories),
        "users": {part: len(members) for part, members in halves.items()},
        "windows_evaluated": {part: len(r) for part, r in rows.items()},
        # Every p-value below is one of this many comparisons at the service's weight (one per
        # sensitivity and variant): read them with that in mind.
        "comparisons_at_service_weight": len(sensitivities) * len(VARIANTS),
        "service_weight_chosen_on": "the tuning half of --seed 0",
        "sensitivities": {},
    }
    for z in sensitivities:
        result: dict = {"tuning_grid": grid(rows["tuning"], z, weights)}
        for variant in VARIANTS:
            weight = choose(rows["tuning"], z, variant, weights)
            swapped = choose(rows["test"], z, variant, weights)
            test = by(rows["test"], name(variant, weight))
            tuning = by(rows["tuning"], name(variant, swapped))
            result[variant] = {
                "chosen_weight": weight,
                "test": summary(test, z, variant),
                "test_all_windows": summary(test, z, None),
                # What each weight would have given on the test half (not used to choose).
                "test_grid": grid(rows["test"], z, weights)[variant],
                # The halves swapped: chosen on the test half, scored on the tuning half; and
                # both halves, each scored with the weight chosen on the other.
                "swapped_weight": swapped,
                "tuning_swapped": summary(tuning, z, variant),
                "both_halves": summary(test + tuning, z, variant),
                "both_halves_all_windows": summary(test + tuning, z, None),
                # The service's own weight (Settings.drift_earlier_weight) was chosen on the
                # tuning half of seed 0: scored on the test half only.
                "test_service_weight": summary(
                    by(rows["test"], name(variant, service_weight)), z, variant
                ),
            }
        report["sensitivities"][f"{z:g}"] = result
    return report


def print_table(report: dict) -> None:
    print(f"\n{report['dataset']}: {report['users']} users, windows {report['windows_evaluated']}")
    header = f"{'setting':>7} {'variant':16} {'w':>9} {'where':28} {'windows':>7}"
    print(
        f"\n{header} {'users':>5} {'aware':>7} {'ignoring':>8} {'better':>6} {'worse':>5} "
        f"{'p':>6}   (p: sign test; {report['comparisons_at_service_weight']} comparisons "
        "at the service's w)"
    )
    for z, result in report["sensitivities"].items():
        for variant in VARIANTS:
            chosen = result[variant]
            weights = f"{chosen['chosen_weight']:g}/{chosen['swapped_weight']:g}"
            for where, key in (
                ("test half, where it applies", "test"),
                ("test half, all windows", "test_all_windows"),
                ("both halves, where it applies", "both_halves"),
                ("both halves, all windows", "both_halves_all_windows"),
                ("test half, the service's w", "test_service_weight"),
            ):
                s = chosen[key]
                line = f"{z:>7} {variant:16} {weights:>9} {where:28} "
                if not s["windows"]:
                    print(line + f"{0:7d}")
                    continue
                p = "-" if s["sign_test_p"] is None else f"{s['sign_test_p']:.3f}"
                print(
                    line + f"{s['windows']:7d} {s['users']:5d} {s['ndcg@10']:7.4f} "
                    f"{s['ndcg@10 ignoring drift']:8.4f} {s['better']:6d} {s['worse']:5d} {p:>6}"
                )
        print(f"{z:>7} tuning grid: {result['tuning_grid']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Next-window NDCG@10, drift-aware or not.")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--users", type=int, help="use at most this many eligible users")
    parser.add_argument("--embedder", help="default: the bundled MiniLM; 'hashing' for smoke runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--signal",
        choices=sorted(SENSITIVITIES),
        default=Settings().drift_signal,
        help="the drift signal (default: the service's)",
    )
    parser.add_argument(
        "--sensitivities",
        "--drift-z",
        help="comma-separated settings of the signal, the service's default first (interests: "
        "the chi-square threshold, default 55,43,30,20,15; embedding: its z, default 3,2,1.5,1)",
    )
    parser.add_argument(
        "--weights",
        default=",".join(f"{w:g}" for w in WEIGHTS),
        help="comma-separated weights of the history before the change, tried on the tuning half",
    )
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"--data {args.data}: no such directory")
    try:
        weights = [float(w) for w in args.weights.split(",") if w.strip()]
        given = args.sensitivities
        sensitivities = (
            [float(z) for z in given.split(",") if z.strip()]
            if given is not None
            else list(SENSITIVITIES[args.signal])
        )
    except ValueError:
        parser.error("--weights, --sensitivities: comma-separated numbers")
    if not sensitivities or not all(z > 0 for z in sensitivities):
        parser.error("--sensitivities: each must be above 0")
    if not weights or not all(0 < w < 1 for w in weights):
        parser.error("--weights: each weight must be in (0, 1)")
    try:
        report = evaluate(
            args.data, args.users, args.embedder, args.seed, weights, args.signal, sensitivities
        )
    except FileNotFoundError as error:  # a directory that is not MovieLens
        parser.error(str(error))
    print_table(report)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
