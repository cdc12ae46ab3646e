"""Drift detection on real histories: the service against peer detectors, side by side, one run.

Usage:
    python scripts/eval_drift.py --data ../shared/data/ml-latest-small [--data DIR ...]
        [--out FILE.json] [--plot FILE.png] [--users N] [--embedder hashing] [--seed 0]

Streams with injected change points (two users of different taste spliced at a known window, a
gradual mix, A→B→A) and without (a user's own history, and the same shuffled), built by
``service/evaluation/drift_streams.py``. The service profiles every window through its own store,
summarizer and embedder, and its own drift code judges them. Peers on the same windows: river's
ADWIN (clock=1) and Page-Hinkley on the distances between consecutive profile embeddings, a
mean-embedding distance test in the manner of Evidently's, and a dummy that fires periodically.
Every detector is calibrated to the same false-alarm rate (≤ 1 per 100 windows) on half of the
users, then scored on the other half. With several ``--data`` folders, each is split in halves
and its streams are spliced within it (item and user ids are prefixed with the folder's name),
then the halves are pooled. ``--users`` caps the eligible users of each (CI smoke runs).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from service.app.container import Services, build_services
from service.core.config import Settings
from service.evaluation import drift_streams as de
from service.ingest.movielens import MovieLens, load_movielens
from service.profiling.drift import drift_history

# Settings from least to most sensitive; calibration keeps the last within the alarm budget.
GRIDS = {
    "service": list(np.round(np.arange(80.0, 2.0, -0.5), 1)),
    "service: profile embedding": list(np.round(np.arange(8.0, 0.4, -0.25), 2)),
    "adwin": [1e-6, 1e-5, 1e-4, 1e-3, 0.002, 0.01, 0.05, 0.1, 0.2, 0.5, 0.9],
    "page_hinkley": list(np.round(np.arange(2.0, 0.0, -0.02), 2)),
    "mean_embedding": list(np.round(np.arange(0.6, 0.0, -0.005), 3)),
    "periodic": [1000, 500, 200, 100, 50, 20, 10, 5, 2],
}


def service_detector(settings: Settings) -> de.Detector:
    """The service's own drift code on the service's own profiles, at a given threshold of
    the interest test (its default signal)."""

    def detect(data: de.StreamData, threshold: float) -> list[int]:
        tuned = settings.model_copy(
            update={"drift_signal": "interests", "drift_interest_threshold": threshold}
        )
        return [i for i, point in enumerate(drift_history(data.profiles, tuned)) if point.detected]

    return detect


def embedding_detector(settings: Settings) -> de.Detector:
    """The same code on the profile embeddings, at a given ``drift_z``; the threshold's floor
    moves with it (at the default z, the default floor), so one setting spans its sensitivity."""
    floor_per_z = settings.drift_min_threshold / settings.drift_z

    def detect(data: de.StreamData, z: float) -> list[int]:
        tuned = settings.model_copy(
            update={
                "drift_signal": "embedding",
                "drift_z": z,
                "drift_min_threshold": z * floor_per_z,
            }
        )
        return [i for i, point in enumerate(drift_history(data.profiles, tuned)) if point.detected]

    return detect


def profile_streams(
    services: Services, streams: list[de.Stream], items: dict
) -> list[de.StreamData]:
    """Store every stream as a user, profile it through the service, embed each window's items."""
    store = services.store
    store.upsert_items(items.values())
    for stream in streams:
        store.add_events(stream.events)
    users = [s.stream_id for s in streams]
    with tqdm(total=len(users), desc="profiling streams", disable=not sys.stderr.isatty()) as bar:
        services.profiler.refresh_users(users, on_progress=bar.update)
    used = sorted({e.item_id for s in streams for e in s.events if e.item_id in items})
    vectors = dict(zip(used, services.embedder.encode([items[i].embedding_text() for i in used])))
    size = services.settings.window_spec.size
    result = []
    for stream in streams:
        profiles = services.profiler.history(stream.stream_id)
        means = [
            np.mean([vectors[e.item_id] for e in stream.events[i : i + size]], axis=0)
            for i in range(0, len(stream.events), size)
        ]
        result.append(de.StreamData(stream, profiles, np.stack(means)))
    return result


def detectors(settings: Settings) -> dict[str, de.Detector]:
    return {
        "service": service_detector(settings),
        # The ablation: the service's other signal.
        "service: profile embedding": embedding_detector(settings),
        "adwin": de.adwin,
        "page_hinkley": de.page_hinkley,
        "mean_embedding": de.mean_embedding_test,
        "periodic": de.periodic,
    }


def namespaced(dataset: MovieLens) -> MovieLens:
    """The data set with its item, user and event ids prefixed by its name, so that two sets
    can share one store."""
    name = dataset.name
    items = [replace(item, item_id=f"{name}:{item.item_id}") for item in dataset.items]
    events = [
        replace(
            e,
            event_id=f"{name}:{e.event_id}",
            user_id=f"{name}:{e.user_id}",
            item_id=f"{name}:{e.item_id}",
        )
        for e in dataset.events
    ]
    return MovieLens(name, items, events)


def split_streams(
    dataset: MovieLens, size: int, users: int | None, seed: int
) -> tuple[dict[str, int], list[de.Stream], list[de.Stream]]:
    """How many users qualify and are used in each half, and the tuning and test streams of
    one data set."""
    items = {item.item_id: item for item in dataset.items}
    histories = de.eligible_users(dataset.events, size)
    chosen = sorted(histories)
    random.Random(seed).shuffle(chosen)
    chosen = chosen[:users] if users else chosen
    half = len(chosen) // 2
    tastes = de.taste_vectors(histories, items)
    tuning = de.build_streams(histories, chosen[:half], tastes, size, seed)
    test = de.build_streams(histories, chosen[half:], tastes, size, seed + 1)
    counts = {"eligible": len(histories), "tuning": half, "test": len(chosen) - half}
    return counts, tuning, test


def evaluate(data_dirs: list[Path], users: int | None, embedder: str | None, seed: int) -> dict:
    datasets = [load_movielens(folder) for folder in data_dirs]
    if len(datasets) > 1:
        datasets = [namespaced(d) for d in datasets]
    items = {item.item_id: item for d in datasets for item in d.items}
    with tempfile.TemporaryDirectory(prefix="iprof-drift-") as folder:
        settings = Settings(
            data_dir=Path(folder) / "data", index_dir=Path(folder) / "index", embed_model=embedder
        )
        size = settings.window_spec.size
        users_per_set: dict[str, dict[str, int]] = {}
        tuning_streams: list[de.Stream] = []
        test_streams: list[de.Stream] = []
        for dataset in datasets:
            counts, tuning_part, test_part = split_streams(dataset, size, users, seed)
            users_per_set[dataset.name] = counts
            tuning_streams += tuning_part
            test_streams += test_part
        started = time.perf_counter()
        services = build_services(settings, load_item_index=False)
        tuning = profile_streams(services, tuning_streams, items)
        test = profile_streams(services, test_streams, items)
        services.close()
        profiled_s = time.perf_counter() - started
    results, calibrated, crossed = {}, {}, {}
    for name, detector in detectors(settings).items():
        calibrated[name] = de.calibrate(detector, GRIDS[name], tuning)
        results[name] = de.evaluate_detector(detector, calibrated[name], test)
        crossed[name] = de.cross_fitted(detector, GRIDS[name], tuning, test)[0]
        print(f"{name:32} setting {calibrated[name]:<8g} {results[name]}", flush=True)
    return {
        "datasets": [d.name for d in datasets],
        "protocol": PROTOCOL,
        "window": str(settings.window_spec),
        "users": users_per_set,
        "streams": {"tuning": len(tuning), "test": len(test)},
        "windows_test": int(sum(len(d.item_means) for d in test)),
        "changes_test": int(sum(len(d.stream.changes) for d in test)),
        "calibrated_settings": {k: float(v) for k, v in calibrated.items()},
        "detectors": {name: score.as_dict() for name, score in results.items()},
        # Each half held out once (calibrated on the other), pooled: less noisy than one split.
        "detectors_cross_fitted": {name: score.as_dict() for name, score in crossed.items()},
        "seconds_profiling": round(profiled_s, 1),
        "_test_streams": test,  # for the plot; dropped before writing
    }


PROTOCOL = (
    f"each user's history after onboarding (first {de.ONBOARDING_SECONDS / 3600:g} h dropped), "
    f"users with >= {de.MIN_WINDOWS} windows left; streams of {de.MIN_WINDOWS}-"
    f"{de.STREAM_WINDOWS} windows: stable, shuffled, spliced, gradual, A-B-A; "
    f"calibrated to <= {de.TARGET_FALSE_ALARMS:g} false alarms per 100 windows on half of the "
    f"users, scored on the other half; a hit is a detection 0..{de.TOLERANCE} windows after a "
    "change"
)


def plot(report: dict, threshold: float, path: Path) -> None:
    """Service drift scores over windows for a few spliced and stable streams, detections marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = Settings(drift_signal="interests", drift_interest_threshold=threshold)
    streams = report["_test_streams"]
    picks = [d for d in streams if d.stream.kind == "spliced"][:3]
    picks += [d for d in streams if d.stream.kind == "stable"][:3]
    figure, axes = plt.subplots(2, 3, figsize=(12, 6), sharey=True)
    for axis, data in zip(axes.flat, picks):
        points = drift_history(data.profiles, settings)
        windows = list(range(len(points)))
        scores = [p.score if p.score is not None else np.nan for p in points]
        axis.plot(windows, scores, marker="o", label="drift score")
        axis.plot(windows, [p.threshold for p in points], linestyle="--", label="threshold")
        flagged = [i for i, p in enumerate(points) if p.detected]
        axis.scatter(
            flagged,
            [scores[i] for i in flagged],
            marker="X",
            s=120,
            color="red",
            label="detection",
            zorder=3,
        )
        for change in data.stream.changes:
            axis.axvline(change, color="grey", linestyle=":", label="injected change")
        axis.set_title(data.stream.stream_id)
        axis.set_xlabel("window")
    axes[0][0].set_ylabel("chi-square of interest counts against the reference")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="upper center", ncol=4)
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Drift detection against peer detectors.")
    parser.add_argument(
        "--data",
        type=Path,
        action="append",
        required=True,
        help="a MovieLens folder; give it again for a second set",
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path, help="write the drift-score plot (PNG) here")
    parser.add_argument("--users", type=int, help="use at most this many eligible users")
    parser.add_argument("--embedder", help="default: the bundled MiniLM; 'hashing' for smoke runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for folder in args.data:
        if not folder.is_dir():
            parser.error(f"--data {folder}: no such directory")
    try:
        report = evaluate(args.data, args.users, args.embedder, args.seed)
    except FileNotFoundError as error:  # a directory that is not MovieLens
        parser.error(str(error))
    for title, key in (("one split", "detectors"), ("cross-fitted", "detectors_cross_fitted")):
        print(f"\n{title:26} {'F1':>6} {'delay':>6} {'miss':>6} {'FA/100':>7}")
        for name, s in report[key].items():
            delay = "-" if s["mean_delay"] is None else f"{s['mean_delay']:.2f}"
            print(
                f"{name:26} {s['f1']:6.3f} {delay:>6} {s['miss_rate']:6.3f} "
                f"{s['false_alarms_per_100']:7.2f}"
            )
    if args.plot:
        plot(report, report["calibrated_settings"]["service"], args.plot)
    report.pop("_test_streams")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
