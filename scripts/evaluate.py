"""Recommendation quality on MovieLens: the service against baselines, side by side, one run.

Usage:
    python scripts/evaluate.py --data ../shared/data/ml-latest-small [--out FILE.json]
        [--plot FILE.png] [--ablation] [--users N] [--embedder hashing] [--seed 0]
        [--interest-weight W]

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

The interest searches' weight in the fusion (``Settings.fusion_interests``) is chosen per data
set, as EASE's λ is: on a validation split carved from the training part (each user's last 20%
of training events), among ``INTEREST_WEIGHTS``, by NDCG@10 over the evaluated users; the test
part is never looked at. ``--interest-weight`` fixes it instead.

The cold-item protocol (``service/evaluation/cold.py``) follows in the same run: 20% of the
items (fixed seed) lose all their training interactions, and service, centroid and popularity
are scored on the held-out events on those items (JSON ``"cold_items"``), also for the users
left with at most 5 training events (``"cold_items_few_events"``). ``--no-cold`` skips it.
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
from service.embedding.encoder import Embedder, load_embedder
from service.evaluation import baselines
from service.evaluation.cold import COLD_SEED, COLD_SHARE, FEW_EVENTS, cold_item_split
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
# The interest searches' fusion weights tried on the validation split (the collaborative
# model's weight is 4).
INTEREST_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)


def service_ranker(
    services: Services, users: list[str], weights: FusionWeights | None = None
) -> Ranker:
    """Profile every evaluated user through the service, as `iprof refresh` does (once: later
    calls find the profiles and candidate lists current), then ask its recommender, with other
    fusion weights for the ablation rows."""
    services.refresh_users(users)
    recommender = services.recommender
    if weights is not None:
        settings = services.settings
        recommender = Recommender(
            services.store,
            services.embedder,
            services.index.get,
            weights,
            drift_earlier_weight=settings.drift_earlier_weight,
            window=settings.window_spec,
        )
    return lambda user: [
        r.item_id for r in recommender.recommend(services.profiler.current(user), 50)
    ]


def without_slots(weights: FusionWeights) -> dict[str, FusionWeights]:
    return {"service: without new-item slots": replace(weights, new_items=False)}


def ablations(default: FusionWeights) -> dict[str, FusionWeights]:
    rows = {}
    for signal in SIGNALS:
        only = {other: 0.0 for other in SIGNALS if other != signal}
        rows[f"service: {signal} only"] = replace(default, **only)
        rows[f"service: without {signal}"] = replace(default, **{signal: 0.0})
    return rows


class RememberingEmbedder:
    """The embedder, remembering what it encoded: the cold-item run builds a second index of
    the same catalog, and MiniLM over every item twice would double the run."""

    def __init__(self, embedder: Embedder) -> None:
        self.inner = embedder
        self.model_id = embedder.model_id
        self.dimension = embedder.dimension
        self._known: dict[str, np.ndarray] = {}

    def encode(self, texts, *, progress: bool = False) -> np.ndarray:  # type: ignore[no-untyped-def]
        missing = list(dict.fromkeys(t for t in texts if t not in self._known))
        if missing:
            self._known.update(zip(missing, self.inner.encode(missing, progress=progress)))
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._known[text] for text in texts])


def load_service(folder: Path, dataset, train: dict, embedder: Embedder) -> Services:
    settings = Settings(data_dir=folder / "data", index_dir=folder / "index")
    services = build_services(settings, embedder=embedder, load_item_index=False)
    services.store.upsert_items(dataset.items)
    services.store.add_events([e for events in train.values() for e in events])
    services.index.rebuild(services.store, progress=sys.stderr.isatty())
    return services


def choose_interest_weight(
    dataset, split: Split, users: set[str], embedder: Embedder
) -> tuple[float, dict[str, float]]:
    """The interest weight with the best NDCG@10 on a validation split carved from the
    training part (a tie goes to the smaller weight), and each weight's NDCG@10 there."""
    validation = temporal_split(e for events in split.train.values() for e in events)
    test = {user: validation.test[user] for user in sorted(users) if user in validation.test}
    found = {}
    with tempfile.TemporaryDirectory(prefix="iprof-validation-") as folder:
        services = load_service(Path(folder), dataset, validation.train, embedder)
        for weight in INTEREST_WEIGHTS:
            weights = replace(FusionWeights(), interests=weight)
            found[weight] = score(service_ranker(services, sorted(test), weights), test)["ndcg@10"]
            print(f"validation: interests {weight:<4g} NDCG@10 {found[weight]:.4f}", flush=True)
        services.close()
    best = max(INTEREST_WEIGHTS, key=lambda weight: found[weight])  # the first of a tie
    return best, {f"{weight:g}": ndcg for weight, ndcg in found.items()}


def item_vectors(services: Services, data: Interactions) -> np.ndarray:
    """The index's item vectors in the order of ``data``'s items (zeros for any not indexed)."""
    index = services.index.get()
    vectors = np.zeros((len(data.item_ids), index.manifest.dimension), dtype=np.float32)
    vectors[[data.item_index[i] for i in index.item_ids]] = index.vectors
    return vectors


def timed_scores(name: str, make, test: dict, timings: dict) -> dict:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    ranker = make()
    bar = tqdm(total=len(test), desc=name, unit="user", disable=not sys.stderr.isatty())
    result = score(ranker, test, on_user=lambda: bar.update(1))
    bar.close()
    timings[name] = round(time.perf_counter() - started, 1)
    print(f"{name:30} {result}  ({timings[name]} s)", flush=True)
    return result


def evaluate(
    data_dir: Path,
    users: int | None,
    embedder_name: str | None,
    seed: int,
    ablation: bool = False,
    cold: bool = True,
    interest_weight: float | None = None,
) -> dict:
    dataset = load_movielens(data_dir)
    split = temporal_split(dataset.events)
    test = split.test
    if users is not None and users < len(test):
        chosen = random.Random(seed).sample(sorted(test), users)
        test = {user: test[user] for user in chosen}
    item_ids = [item.item_id for item in dataset.items]
    data = Interactions(split.train, item_ids)
    embedder = RememberingEmbedder(load_embedder(embedder_name))
    results, timings = {}, {}

    def run(name: str, make) -> None:  # type: ignore[no-untyped-def]
        results[name] = timed_scores(name, make, test, timings)

    run("popularity", lambda: baselines.popularity(data))
    run("item_knn", lambda: baselines.item_knn(data))
    lam = baselines.tune_ease(split, item_ids)
    run("ease", lambda: baselines.ease(data, lam))
    validation: dict[str, float] = {}
    if interest_weight is None:
        interest_weight, validation = choose_interest_weight(dataset, split, set(test), embedder)
    fusion = replace(FusionWeights(), interests=interest_weight)
    with tempfile.TemporaryDirectory(prefix="iprof-eval-") as folder:
        services = load_service(Path(folder), dataset, split.train, embedder)
        vectors = item_vectors(services, data)
        run("centroid", lambda: baselines.embedding_centroid(data, split.train, vectors))
        run("service", lambda: service_ranker(services, sorted(test), fusion))
        if ablation:
            for name, weights in {**ablations(fusion), **without_slots(fusion)}.items():
                run(name, lambda w=weights: service_ranker(services, sorted(test), w))
        services.close()
    report = {
        "dataset": dataset.name,
        "protocol": PROTOCOL,
        "users_evaluated": len(test),
        "ease_lambda": lam,
        "fusion_interests": interest_weight,
        # NDCG@10 of each interest weight on the validation split (empty: the weight was given).
        "fusion_interests_validation": validation,
        "embedder": embedder_name or "sentence-transformers/all-MiniLM-L6-v2",
        "methods": results,
        "seconds": timings,
    }
    if cold:
        report.update(cold_items(dataset, split, set(test), embedder, vectors, timings, fusion))
    return report


def cold_items(dataset, split, users: set, embedder, vectors, timings, weights) -> dict:  # type: ignore[no-untyped-def]
    """The cold-item protocol over the evaluated ``users``: a second store and index, trained
    without any interaction on the cold items."""
    item_ids = [item.item_id for item in dataset.items]
    cold = cold_item_split(split, item_ids)
    test = {user: items for user, items in cold.test.items() if user in users}
    few = [user for user in cold.few_event_users() if user in test]
    data = Interactions(cold.train, item_ids)
    rankers = {}
    with tempfile.TemporaryDirectory(prefix="iprof-cold-") as folder:
        services = load_service(Path(folder), dataset, cold.train, embedder)
        rankers["service"] = service_ranker(services, sorted(test), weights)
        for name, changed in without_slots(weights).items():
            rankers[name] = service_ranker(services, sorted(test), changed)
        rankers["centroid"] = baselines.embedding_centroid(data, cold.train, vectors)
        rankers["popularity"] = baselines.popularity(data)
        methods = {
            name: timed_scores(f"cold items: {name}", lambda r=r: r, test, timings)
            for name, r in rankers.items()
        }
        few_methods = (
            {
                name: score(ranker, {user: test[user] for user in few})
                for name, ranker in rankers.items()
            }
            if few
            else {}
        )
        services.close()
    return {
        "cold_items": methods,
        "cold_items_protocol": {
            "cold_share": COLD_SHARE,
            "seed": COLD_SEED,
            "cold_items": len(cold.cold),
            "users": len(test),
            "held_out_events": sum(len(items) for items in test.values()),
            "users_without_training_events": cold.dropped_users,
        },
        "cold_items_few_events": {
            "at_most_training_events": FEW_EVENTS,
            "users": len(few),
            "methods": few_methods,
        },
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


def cold_tables(report: dict) -> list[tuple[str, dict]]:
    if "cold_items" not in report:
        return []
    protocol, few = report["cold_items_protocol"], report["cold_items_few_events"]
    tables = [(f"cold items ({protocol['users']} users)", report["cold_items"])]
    if few["methods"]:
        tables.append((f"cold, <= {FEW_EVENTS} events ({few['users']})", few["methods"]))
    return tables


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
    parser.add_argument(
        "--no-cold", action="store_true", help="skip the cold-item protocol (a second index)"
    )
    parser.add_argument("--plot", type=Path, help="write the metric table as bars (PNG) here")
    parser.add_argument(
        "--interest-weight",
        type=float,
        help="the interest searches' fusion weight (default: chosen on a validation split)",
    )
    args = parser.parse_args(argv)
    if args.interest_weight is not None and args.interest_weight < 0:
        parser.error("--interest-weight: must be 0 or more")
    if not args.data.is_dir():
        parser.error(f"--data {args.data}: no such directory")
    try:
        report = evaluate(
            args.data,
            args.users,
            args.embedder,
            args.seed,
            args.ablation,
            not args.no_cold,
            args.interest_weight,
        )
    except FileNotFoundError as error:  # a directory that is not MovieLens
        parser.error(str(error))
    print(f"\n{'method':30} {'recall@10':>10} {'recall@50':>10} {'ndcg@10':>10}")
    for name, metrics in report["methods"].items():
        values = [metrics[key] for key in METRICS]
        print(f"{name:30}" + "".join(f" {value:10.4f}" for value in values))
    for title, methods in cold_tables(report):
        print(f"\n{title:30} {'recall@10':>10} {'recall@50':>10} {'ndcg@10':>10}")
        for name, metrics in methods.items():
            values = [metrics[key] for key in METRICS]
            print(f"{name:30}" + "".join(f" {value:10.4f}" for value in values))
    if args.plot:
        plot(report, args.plot)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
