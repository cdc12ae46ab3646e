"""Recommendation quality on MovieLens: the service against baselines, side by side, one run.

Usage:
    python scripts/evaluate.py --data ../shared/data/ml-latest-small [--out FILE.json]
        [--plot FILE.png] [--ablation] [--users N] [--embedder hashing] [--seed 0]
        [--interest-weight W] [--new-item-boost B] [--new-item-boosts 1.2,1.4]

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

Two service settings are chosen per data set, as EASE's λ is, on a validation split carved
from the training part (each user's last 20% of training events), by the one-standard-error
rule over the evaluated users (``choose_on_validation``); the test part is never looked at.
The interest searches' fusion weight (``Settings.fusion_interests``, among
``INTEREST_WEIGHTS``; ``--interest-weight`` fixes it instead) and the boost with which new
items take places among the first ten (``Settings.new_item_boost``, among
``NEW_ITEM_BOOSTS``, ``service/retrieval/new_items.py``; ``--new-item-boost`` fixes it). With
``--ablation`` the service is also scored without new items, and ``--new-item-boosts`` adds a
row per other boost, on both protocols, to show the trade between them.

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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
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
    one_standard_error_choice,
    per_user,
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
# The new-item boosts tried there (0: no new item among the first ten).
NEW_ITEM_BOOSTS = (0.0, 1.2, 1.4, 1.6, 2.0)


def service_ranker(
    services: Services,
    users: list[str],
    weights: FusionWeights | None = None,
    new_item_boost: float | None = None,
) -> Ranker:
    """Profile every evaluated user through the service, as `iprof refresh` does (once: later
    calls find the profiles and candidate lists current), then ask its recommender, with other
    fusion weights or new-item boost for the ablation rows."""
    services.refresh_users(users)
    recommender = services.recommender
    settings = services.settings
    if weights is not None or new_item_boost is not None:
        recommender = Recommender(
            services.store,
            services.embedder,
            services.index.get,
            weights,
            drift_earlier_weight=settings.drift_earlier_weight,
            window=settings.window_spec,
            new_item_boost=settings.new_item_boost if new_item_boost is None else new_item_boost,
        )
        # The service's writer, which closing the services flushes: one store, one writer.
        recommender.lists_writer = services.recommender.lists_writer
    return lambda user: [
        r.item_id for r in recommender.recommend(services.profiler.current(user), 50)
    ]


# The new-item rows: without any new item in the first ten places (boost 0, slots kept), and
# without new items at all.
NO_NEW_IN_FIRST_TEN = "service: without new items in the first ten"
NO_NEW_ITEMS = "service: without new items"


def new_item_rankers(
    services: Services, users: list[str], weights: FusionWeights, boosts: Sequence[float] = ()
) -> dict:
    rankers = {
        NO_NEW_IN_FIRST_TEN: service_ranker(services, users, weights, new_item_boost=0.0),
        NO_NEW_ITEMS: service_ranker(
            services, users, replace(weights, new_items=False), new_item_boost=0.0
        ),
    }
    for boost in boosts:
        name = f"service: new-item boost {boost:g}"
        rankers[name] = service_ranker(services, users, weights, new_item_boost=boost)
    return rankers


def ablations(default: FusionWeights) -> dict[str, FusionWeights]:
    """One signal alone (at its default weight where the chosen one is 0: alone, any weight
    ranks the same) and the fusion without it."""
    rows = {}
    for signal in SIGNALS:
        only = {other: 0.0 for other in SIGNALS if other != signal}
        alone = getattr(default, signal) or getattr(FusionWeights(), signal)
        rows[f"service: {signal} only"] = replace(default, **only, **{signal: alone})
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


@dataclass
class Choice:
    """The fusion settings chosen on the validation split, and each candidate's mean NDCG@10
    there (empty where the setting was given)."""

    interests: float
    new_item_boost: float
    tried: dict[str, dict[str, float]] = field(default_factory=dict)


def choose_on_validation(
    dataset,
    split: Split,
    users: set[str],
    embedder: Embedder,
    interests: float | None,
    new_item_boost: float | None,
) -> Choice:
    """The interest weight and the new-item boost, each by the one-standard-error rule on a
    validation split carved from the training part (each user's last 20% of training events):
    the interest weight by NDCG@10 on it; the boost by NDCG@10 over all its held-out events
    once 20% of the items have lost their training interactions, as a catalog with new items
    has (``service/evaluation/cold.py``). The test part is never looked at. A setting given
    (not None) is kept."""
    validation = temporal_split(e for events in split.train.values() for e in events)
    chosen = Choice(interests or 0.0, new_item_boost or 0.0)
    if interests is None:
        test = {user: validation.test[user] for user in sorted(users) if user in validation.test}
        chosen.interests, chosen.tried["interests"] = _choose(
            dataset,
            validation.train,
            test,
            embedder,
            "interests",
            INTEREST_WEIGHTS,
            lambda services, weight: service_ranker(
                services, sorted(test), replace(FusionWeights(), interests=weight), 0.0
            ),
        )
    if new_item_boost is None:
        cold = cold_item_split(validation, [item.item_id for item in dataset.items])
        # Every held-out event counts, on old items and new ones alike.
        test = {
            u: validation.test[u] for u in sorted(users) if u in cold.train and u in validation.test
        }
        fusion = replace(FusionWeights(), interests=chosen.interests)
        chosen.new_item_boost, chosen.tried["new_item_boost"] = _choose(
            dataset,
            cold.train,
            test,
            embedder,
            "new-item boost",
            NEW_ITEM_BOOSTS,
            lambda services, boost: service_ranker(services, sorted(test), fusion, boost),
        )
    return chosen


def _choose(dataset, train, test, embedder, name, settings, ranker) -> tuple[float, dict]:  # type: ignore[no-untyped-def]
    """The one-standard-error choice among ``settings``, each scored by ``ranker`` (services,
    setting) on a service trained on ``train``; and each setting's mean NDCG@10."""
    found = {}
    with tempfile.TemporaryDirectory(prefix="iprof-validation-") as folder:
        services = load_service(Path(folder), dataset, train, embedder)
        for setting in settings:
            found[setting] = per_user(ranker(services, setting), test)["ndcg@10"]
            print(f"validation: {name} {setting:<4g} NDCG@10 {found[setting].mean():.4f}")
        services.close()
    choice = one_standard_error_choice(found)
    print(f"validation: {name} {choice:g} chosen", flush=True)
    return choice, {f"{setting:g}": round(float(v.mean()), 4) for setting, v in found.items()}


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
    new_item_boosts: Sequence[float] = (),
    new_item_boost: float | None = None,
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
    choice = choose_on_validation(
        dataset, split, set(test), embedder, interest_weight, new_item_boost
    )
    fusion = replace(FusionWeights(), interests=choice.interests)
    boost = choice.new_item_boost
    with tempfile.TemporaryDirectory(prefix="iprof-eval-") as folder:
        services = load_service(Path(folder), dataset, split.train, embedder)
        vectors = item_vectors(services, data)
        run("centroid", lambda: baselines.embedding_centroid(data, split.train, vectors))
        run("service", lambda: service_ranker(services, sorted(test), fusion, boost))
        if ablation:
            for name, weights in ablations(fusion).items():
                run(name, lambda w=weights: service_ranker(services, sorted(test), w, boost))
            extra = new_item_rankers(services, sorted(test), fusion, new_item_boosts)
            for name, ranker in extra.items():
                run(name, lambda r=ranker: r)
        services.close()
    report = {
        "dataset": dataset.name,
        "protocol": PROTOCOL,
        "users_evaluated": len(test),
        "ease_lambda": lam,
        "fusion_interests": choice.interests,
        "new_item_boost": boost,
        # Mean NDCG@10 of each setting tried on the validation split (none where it was given).
        "validation": choice.tried,
        "embedder": embedder_name or "sentence-transformers/all-MiniLM-L6-v2",
        "methods": results,
        "seconds": timings,
    }
    if cold:
        boosts = new_item_boosts if ablation else ()
        report.update(
            cold_items(dataset, split, set(test), embedder, vectors, timings, fusion, boost, boosts)
        )
    return report


def cold_items(
    dataset, split, users, embedder, vectors, timings, weights, boost, boosts=()
) -> dict:  # type: ignore[no-untyped-def]
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
        rankers["service"] = service_ranker(services, sorted(test), weights, boost)
        rankers.update(new_item_rankers(services, sorted(test), weights, boosts))
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
        "--new-item-boosts",
        type=lambda text: [float(b) for b in text.split(",") if b.strip()],
        default=[],
        help="comma-separated new-item boosts to score beside the service's (with --ablation)",
    )
    parser.add_argument(
        "--new-item-boost",
        type=float,
        help="the new-item boost (default: chosen on a validation split)",
    )
    parser.add_argument(
        "--interest-weight",
        type=float,
        help="the interest searches' fusion weight (default: chosen on a validation split)",
    )
    args = parser.parse_args(argv)
    for given, option in (
        (args.interest_weight, "--interest-weight"),
        (args.new_item_boost, "--new-item-boost"),
    ):
        if given is not None and given < 0:
            parser.error(f"{option}: must be 0 or more")
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
            args.new_item_boosts,
            args.new_item_boost,
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
