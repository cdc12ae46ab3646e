"""Recommendation quality on MovieLens: the service against tuned baselines, side by side, on
two splits, with every choice made on validation and the test part read once, at the end.

Usage:
    python scripts/eval/evaluate.py --data ../shared/data/ml-latest-small [--out FILE.json]
        [--protocol per-user|global|both] [--ablation] [--users N] [--embedder hashing]
        [--seed 0] [--interest-weight W]

Detects ml-latest-small (ratings.csv, movies.csv, tags.csv), ml-100k (u.data, u.item) or
RecBole's ml-100k (ml-100k.inter, ml-100k.item). The splits, the locked test part and the
intervals are ``service/evaluation/protocol.py``; item text holds only the tags applied before
the cut. Per split, in this order:

1. **Tuning** (the test part locked: reading it raises). On the validation part, by rules
   fixed before any run: each baseline's setting by its best mean NDCG@10
   (``service/evaluation/baselines.py``: popularity, recent popularity, item-kNN, EASE,
   recency-weighted EASE, the centroid of recent item embeddings); the service's collaborative
   settings by its own index build (``service/retrieval/collaborative_tuning.py``, the rule a
   deployed build runs on its events); the fusion's weights relative to the collaborative
   model (interests, whole profile, popularity: ``FUSION_GRID``) and the new-item slots by the
   one-standard-error rule (``choose_fusion``).
2. **The one read of the test part**: every method fitted on the final training part, scored
   per user; recall@10, recall@50, NDCG@10, catalog coverage; paired bootstrap 95% intervals of
   the service minus the best baseline (the best on the test part: the hardest comparison) and
   minus each ablation row (``--ablation``: each fusion signal alone and the fusion without it).

``--users`` evaluates a random sample of users (all users still train); ``--embedder hashing``
swaps MiniLM for the fast fake (CI smoke runs only); ``--sequential`` adds SASRec
(``service/evaluation/sequential.py``), which trains for many minutes per split.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from service.app.container import Services, build_services
from service.core.config import Settings
from service.embedding.encoder import Embedder, load_embedder
from service.evaluation import baselines
from service.evaluation.protocol import (
    METRICS,
    PROTOCOLS,
    Interactions,
    Protocol,
    Ranked,
    Ranker,
    make_protocol,
    one_standard_error_choice,
    paired_interval,
    per_user,
    rank_users,
    tuning_phase,
    verdict,
)
from service.ingest.movielens import movielens_events, movielens_items
from service.retrieval.recommender import FusionWeights

# One row per signal of the service's fusion: that signal alone, and the fusion without it.
SIGNALS = ("collaborative", "interests", "profile", "popularity")
# The fusion weights tried on the validation part, in this order (the collaborative model's
# weight, 4, is the unit the others are relative to).
INTEREST_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
# Where the search starts (the weights before this protocol; fixed, so that a change of the
# shipped defaults does not change what a rerun chooses).
FUSION_START = FusionWeights(interests=1.0, profile=0.3, popularity=0.01, new_items=True)
FUSION_GRID = (
    ("interests", INTEREST_WEIGHTS),
    ("profile", (0.0, 0.1, 0.3, 1.0)),
    ("popularity", (0.0, 0.01, 0.1, 0.5)),
)


def service_ranker(
    services: Services, users: list[str], weights: FusionWeights | None = None
) -> Ranker:
    """Profile every evaluated user through the service, as `iprof refresh` does (once: later
    calls find the profiles and candidate lists current), then ask its recommender, with other
    fusion weights for the ablation rows."""
    services.refresh_users(users)
    recommender = services.recommender
    if weights is not None:  # sharing the service's lists, which closing the services flushes
        recommender = recommender.weighted(weights)
    return lambda user: [
        r.item_id for r in recommender.recommend(services.profiler.current(user), 50)
    ]


def ablations(default: FusionWeights) -> dict[str, FusionWeights]:
    """One signal alone (at its default weight where the chosen one is 0: alone, any weight
    ranks the same) and the fusion without it."""
    rows = {}
    for signal in SIGNALS:
        only = {other: 0.0 for other in SIGNALS if other != signal}
        alone = getattr(default, signal) or getattr(FUSION_START, signal)
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


def load_service(folder: Path, items, train: dict, embedder: Embedder) -> Services:  # type: ignore[no-untyped-def]
    """The service on these training events, its index built as `iprof build-index` builds it
    (the collaborative settings chosen on the events by the build's own rule)."""
    settings = Settings(data_dir=folder / "data", index_dir=folder / "index")
    services = build_services(settings, embedder=embedder, load_item_index=False)
    services.store.items.upsert(items)
    services.store.events.add([e for events in train.values() for e in events])
    services.index.rebuild(services.store, progress=sys.stderr.isatty())
    return services


def collaborative_choice(services: Services) -> dict:
    manifest = services.index.get().manifest
    return {"config": manifest.collaborative_config, "tuning": manifest.collaborative_tuning}


def item_vectors(services: Services, data: Interactions) -> np.ndarray:
    """The index's item vectors in the order of ``data``'s items (zeros for any not indexed)."""
    index = services.index.get()
    vectors = np.zeros((len(data.item_ids), index.manifest.dimension), dtype=np.float32)
    vectors[[data.item_index[i] for i in index.item_ids]] = index.vectors
    return vectors


def tune(protocol: Protocol, items, users: set[str], embedder: Embedder, options: Options):  # type: ignore[no-untyped-def]
    """Every choice, on the validation part (the test part locked meanwhile)."""
    item_ids = [item.item_id for item in items]
    validation = {u: protocol.tuning.test[u] for u in sorted(users) if u in protocol.tuning.test}
    choices: dict = {"validation_users": len(validation)}
    with tuning_phase(), tempfile.TemporaryDirectory(prefix="iprof-validation-") as folder:
        services = load_service(Path(folder), items, protocol.tuning.train, embedder)
        choices["service_collaborative"] = collaborative_choice(services)
        vectors = item_vectors(services, Interactions(protocol.tuning.train, item_ids))
        chosen = baselines.tune_all(
            protocol.tuning, item_ids, users, lambda: vectors, options.sequential
        )
        choices["baselines"] = {
            name: {"setting": _plain(t.setting), "tried": t.tried} for name, t in chosen.items()
        }
        for name, tuned in chosen.items():
            print(f"validation: {name} {_plain(tuned.setting)} chosen", flush=True)
        fusion, choices["fusion_tried"] = choose_fusion(services, validation, options.interests)
        services.close()
    choices["fusion"] = asdict(fusion)
    return chosen, choices


def choose_fusion(
    services: Services, validation: dict[str, set[str]], interests: float | None
) -> tuple[FusionWeights, dict]:
    """The fusion's weights, relative to the collaborative model's (the unit, 4), one at a
    time in the order of ``FUSION_GRID``, each by the one-standard-error rule on validation
    NDCG@10 (among settings the data cannot tell apart, the smallest: the least change to the
    collaborative ranking); then the new-item slots (places 11 on, so they cannot change
    NDCG@10) by the same rule on recall@50. A weight given is kept."""
    fusion, tried = FUSION_START, {}
    grid = dict(FUSION_GRID)
    if interests is not None:
        fusion, grid = (
            replace(fusion, interests=interests),
            {k: v for k, v in grid.items() if k != "interests"},
        )
    for name, settings in grid.items():
        found = {
            value: _validation_scores(services, validation, replace(fusion, **{name: value}))[
                "ndcg@10"
            ]
            for value in settings
        }
        fusion = replace(fusion, **{name: one_standard_error_choice(found)})
        tried[name] = _means(found)
        print(f"validation: fusion {name} {tried[name]} -> {getattr(fusion, name):g}", flush=True)
    found = {
        float(on): _validation_scores(services, validation, replace(fusion, new_items=on))[
            "recall@50"
        ]
        for on in (False, True)
    }
    fusion = replace(fusion, new_items=bool(one_standard_error_choice(found)))
    tried["new_items (recall@50)"] = _means(found)
    print(f"validation: new-item slots {tried['new_items (recall@50)']} -> {fusion.new_items}")
    return fusion, tried


def _validation_scores(services: Services, validation: dict, fusion: FusionWeights) -> dict:
    return per_user(service_ranker(services, sorted(validation), fusion), validation)


def _means(found: dict) -> dict[str, float]:
    return {f"{setting:g}": round(float(np.mean(v)), 4) for setting, v in found.items()}


def _plain(setting: object) -> object:
    if is_dataclass(setting) and not isinstance(setting, type):
        return asdict(setting)
    return list(setting) if isinstance(setting, tuple) else setting


def score_test(protocol: Protocol, items, users: set[str], embedder, chosen, choices, options):  # type: ignore[no-untyped-def]
    """The one read of the test part: every method fitted on the final training part."""
    test = protocol.test.read()
    test = {user: test[user] for user in sorted(users) if user in test}
    item_ids = [item.item_id for item in items]
    results: dict[str, Ranked] = {}
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="iprof-eval-") as folder:
        services = load_service(Path(folder), items, protocol.train, embedder)
        choices["service_collaborative_final"] = collaborative_choice(services)
        vectors = item_vectors(services, Interactions(protocol.train, item_ids))
        made = baselines.rankers(chosen, protocol.train, item_ids, sorted(test), vectors)
        for name, make in made.items():
            results[name] = timed(name, make, test, timings, len(item_ids))
        fusion = FusionWeights(**choices["fusion"])
        results["service"] = timed(
            "service",
            lambda: service_ranker(services, sorted(test), fusion),
            test,
            timings,
            len(item_ids),
        )
        if options.ablation:
            for name, weights in ablations(fusion).items():
                make_row: Callable[[], Ranker] = lambda w=weights: service_ranker(  # noqa: E731
                    services, sorted(test), w
                )
                results[name] = timed(name, make_row, test, timings, len(item_ids))
        services.close()
    return test, results, timings


def timed(name: str, make, test: dict, timings: dict, catalog: int) -> Ranked:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    ranker = make()
    bar = tqdm(total=len(test), desc=name, unit="user", disable=not sys.stderr.isatty())
    ranked = rank_users(ranker, test, on_user=lambda: bar.update(1))
    bar.close()
    timings[name] = round(time.perf_counter() - started, 1)
    print(f"{name:34} {ranked.summary(catalog)}  ({timings[name]} s)", flush=True)
    return ranked


BASELINES = (
    "popularity",
    "recent_popularity",
    "item_knn",
    "ease",
    "recency_ease",
    "centroid",
    "sasrec",
)


def intervals(results: dict[str, Ranked]) -> dict:
    """Service minus the best baseline (best mean NDCG@10 on the test part) and minus each
    other row, per metric, with the verdict the interval allows."""
    present = [name for name in BASELINES if name in results]
    best = max(present, key=lambda name: float(results[name].metrics["ndcg@10"].mean()))
    service = results["service"].metrics
    report: dict = {"best_baseline": best, "service_minus": {}}
    for name, ranked in results.items():
        if name == "service":
            continue
        report["service_minus"][name] = {
            metric: {
                **(i := paired_interval(service[metric], ranked.metrics[metric])),
                "verdict": verdict(i),
            }
            for metric in METRICS
        }
    return report


@dataclass(frozen=True)
class Options:
    users: int | None = None  # a random sample of the scored users (all users still train)
    seed: int = 0
    ablation: bool = False
    interests: float | None = None  # the interest weight, fixed instead of chosen
    sequential: bool = False  # SASRec among the baselines (minutes of training; not yet tuned well)


def evaluate_protocol(data_dir: Path, name: str, embedder: Embedder, options: Options) -> dict:
    events = list(movielens_events(data_dir))
    protocol = make_protocol(events, name)
    # Item text as it stood at the cut: only tags applied before it.
    items = movielens_items(data_dir, keep_tag=lambda user, ts: ts < protocol.cut_of(user))
    evaluated = set(protocol.users)
    if options.users is not None and options.users < len(evaluated):
        evaluated = set(random.Random(options.seed).sample(sorted(evaluated), options.users))
    chosen, choices = tune(protocol, items, evaluated, embedder, options)
    test, results, timings = score_test(
        protocol, items, evaluated, embedder, chosen, choices, options
    )
    catalog = len(items)
    return {
        "protocol": name,
        "users_evaluated": len(test),
        "held_out_events": sum(len(v) for v in test.values()),
        "choices": choices,
        "methods": {method: ranked.summary(catalog) for method, ranked in results.items()},
        "intervals": intervals(results),
        "seconds": timings,
    }


def evaluate(
    data_dir: Path, protocols: Sequence[str], embedder_name: str | None, options: Options
) -> dict:
    embedder = RememberingEmbedder(load_embedder(embedder_name))
    report: dict = {
        "dataset": data_dir.name,
        "embedder": embedder_name or "sentence-transformers/all-MiniLM-L6-v2",
        "protocols": {},
    }
    for name in protocols:
        report["protocols"][name] = evaluate_protocol(data_dir, name, embedder, options)
    return report


COLUMNS = (*METRICS, "coverage@10")


def print_tables(report: dict) -> None:
    for name, part in report["protocols"].items():
        print(f"\n{report['dataset']}, {name} split: {part['users_evaluated']} users")
        print(f"{'method':34}" + "".join(f" {column:>11}" for column in COLUMNS))
        for method, metrics in part["methods"].items():
            print(f"{method:34}" + "".join(f" {metrics[c]:11.4f}" for c in COLUMNS))
        best = part["intervals"]["best_baseline"]
        print(f"service minus the best baseline ({best}), 95% paired bootstrap interval:")
        for metric, i in part["intervals"]["service_minus"][best].items():
            span = f"[{i['low']:+.4f}, {i['high']:+.4f}]"
            print(f"  {metric:10} {i['difference']:+.4f} {span} {i['verdict']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Recommendation quality against tuned baselines.")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--protocol", choices=(*PROTOCOLS, "both"), default="both")
    parser.add_argument("--users", type=int, help="evaluate a random sample of users")
    parser.add_argument("--embedder", help="default: the bundled MiniLM; 'hashing' for smoke runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ablation", action="store_true", help="add a row per fusion signal: alone and without"
    )
    parser.add_argument(
        "--interest-weight",
        type=float,
        help="the interest searches' fusion weight (default: chosen on the validation part)",
    )
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="add SASRec to the baselines (trains for many minutes; docs/EVALUATION.md)",
    )
    args = parser.parse_args(argv)
    if args.interest_weight is not None and args.interest_weight < 0:
        parser.error("--interest-weight: must be 0 or more")
    if not args.data.is_dir():
        parser.error(f"--data {args.data}: no such directory")
    protocols = PROTOCOLS if args.protocol == "both" else (args.protocol,)
    try:
        options = Options(
            args.users, args.seed, args.ablation, args.interest_weight, args.sequential
        )
        report = evaluate(args.data, protocols, args.embedder, options)
    except FileNotFoundError as error:  # a directory that is not MovieLens
        parser.error(str(error))
    print_tables(report)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
