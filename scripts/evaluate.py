"""Recommendation quality on MovieLens: the service against baselines, side by side, one run.

Usage:
    python scripts/evaluate.py --data ../shared/data/ml-latest-small [--out FILE.json]
        [--plot FILE.png] [--ablation] [--users N] [--embedder hashing] [--seed 0]

Detects ml-latest-small (ratings.csv, movies.csv, tags.csv), ml-100k (u.data, u.item) or
RecBole's ml-100k (ml-100k.inter, ml-100k.item). Each user's events sorted by time, the last
20% held out; every method ranks all items except the user's training items; Recall@10,
Recall@50 and NDCG@10 averaged over users. Methods:
popularity, item-kNN (cosine), EASE (λ chosen on a validation split carved from the training
part), the centroid of the user's last 20 item embeddings, and the service itself: the training
events loaded into its store, its index built, each user profiled through its own code and its
own recommender asked. ``--users`` evaluates a random sample (all users still train);
``--embedder hashing`` swaps MiniLM for the fast fake (CI smoke runs only). ``--ablation``
adds two rows per signal of the service's fusion: that signal alone, and the fusion without it.
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
from service.evaluation import baselines
from service.evaluation.protocol import (
    Interactions,
    Ranker,
    Split,
    score,
    temporal_split,
)
from service.ingest.movielens import load_movielens
from service.retrieval.recommender import FusionWeights, Recommender

PROTOCOL = (
    "per-user temporal split, last 20% held out; rank all items except the user's training "
    "items; Recall@K = hits / min(K, held-out); NDCG@10 binary; mean over users"
)


# One row per signal of the service's fusion: that signal alone, and the fusion without it.
SIGNALS = ("collaborative", "interests", "profile", "popularity")


def service_ranker(
    services: Services, users: list[str], weights: FusionWeights | None = None
) -> Ranker:
    """Profile every evaluated user through the service, as `iprof refresh` does (once: later
    calls find the profiles and candidate lists current), then ask its recommender, with other
    fusion weights for the ablation rows."""
    services.refresh_users(users)
    recommender = services.recommender
    if weights is not None:
        recommender = Recommender(services.store, services.embedder, services.index.get, weights)
    return lambda user: [
        r.item_id for r in recommender.recommend(services.profiler.current(user), 50)
    ]


def ablations() -> dict[str, FusionWeights]:
    default = FusionWeights()
    rows = {}
    for signal in SIGNALS:
        only = {other: 0.0 for other in SIGNALS if other != signal}
        rows[f"service: {signal} only"] = replace(default, **only)
        rows[f"service: without {signal}"] = replace(default, **{signal: 0.0})
    return rows


def load_service(folder: Path, dataset, split: Split, embedder: str | None) -> Services:
    settings = Settings(data_dir=folder / "data", index_dir=folder / "index", embed_model=embedder)
    services = build_services(settings, load_item_index=False)
    services.store.upsert_items(dataset.items)
    services.store.add_events([e for events in split.train.values() for e in events])
    services.index.rebuild(services.store, progress=sys.stderr.isatty())
    return services


def evaluate(
    data_dir: Path, users: int | None, embedder: str | None, seed: int, ablation: bool = False
) -> dict:
    dataset = load_movielens(data_dir)
    split = temporal_split(dataset.events)
    test = split.test
    if users is not None and users < len(test):
        chosen = random.Random(seed).sample(sorted(test), users)
        test = {user: test[user] for user in chosen}
    item_ids = [item.item_id for item in dataset.items]
    data = Interactions(split.train, item_ids)
    results, timings = {}, {}

    def run(name: str, make) -> None:  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        ranker = make()
        bar = tqdm(total=len(test), desc=name, unit="user", disable=not sys.stderr.isatty())
        results[name] = score(ranker, test, on_user=lambda: bar.update(1))
        bar.close()
        timings[name] = round(time.perf_counter() - started, 1)
        print(f"{name:30} {results[name]}  ({timings[name]} s)", flush=True)

    run("popularity", lambda: baselines.popularity(data))
    run("item_knn", lambda: baselines.item_knn(data))
    lam = baselines.tune_ease(split, item_ids)
    run("ease", lambda: baselines.ease(data, lam))
    with tempfile.TemporaryDirectory(prefix="iprof-eval-") as folder:
        services = load_service(Path(folder), dataset, split, embedder)
        index = services.index.get()
        vectors = np.zeros((len(item_ids), index.manifest.dimension), dtype=np.float32)
        rows = [data.item_index[i] for i in index.item_ids]
        vectors[rows] = index.vectors
        run("centroid", lambda: baselines.embedding_centroid(data, split.train, vectors))
        run("service", lambda: service_ranker(services, sorted(test)))
        if ablation:
            for name, weights in ablations().items():
                run(name, lambda w=weights: service_ranker(services, sorted(test), w))
        services.close()
    return {
        "dataset": dataset.name,
        "protocol": PROTOCOL,
        "users_evaluated": len(test),
        "ease_lambda": lam,
        "embedder": embedder or "sentence-transformers/all-MiniLM-L6-v2",
        "methods": results,
        "seconds": timings,
    }


METRICS = ("recall@10", "recall@50", "ndcg@10")


def plot(report: dict, path: Path) -> None:
    """The metric table as grouped bars, one group per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["methods"])
    figure, axis = plt.subplots(figsize=(max(8, 0.9 * len(names)), 4.5))
    width = 0.8 / len(METRICS)
    for offset, metric in enumerate(METRICS):
        values = [report["methods"][name][metric] for name in names]
        axis.bar([i + offset * width for i in range(len(names))], values, width, label=metric)
    axis.set_xticks([i + width for i in range(len(names))], names, rotation=35, ha="right")
    axis.set_ylabel("mean over users")
    axis.set_title(f"{report['dataset']}: {report['users_evaluated']} users, temporal split")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Recommendation quality against baselines.")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--users", type=int, help="evaluate a random sample of users")
    parser.add_argument("--embedder", help="default: the bundled MiniLM; 'hashing' for smoke runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ablation", action="store_true", help="add a row per fusion signal: alone and without"
    )
    parser.add_argument("--plot", type=Path, help="write the metric table as bars (PNG) here")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"--data {args.data}: no such directory")
    try:
        report = evaluate(args.data, args.users, args.embedder, args.seed, args.ablation)
    except FileNotFoundError as error:  # a directory that is not MovieLens
        parser.error(str(error))
    print(f"\n{'method':30} {'recall@10':>10} {'recall@50':>10} {'ndcg@10':>10}")
    for name, metrics in report["methods"].items():
        values = [metrics[key] for key in METRICS]
        print(f"{name:30}" + "".join(f" {value:10.4f}" for value in values))
    if args.plot:
        plot(report, args.plot)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
