"""The fusion's weights and its new-item slots, swept on both protocols in one run.

Usage:
    python scripts/sweep_fusion.py --data ../shared/data/ml-latest-small [--users N]
        [--interests 0.25,0.5,1] [--profile 0,0.1,0.3] [--popularity 0,0.15] [--validation]
        [--embedder hashing]

The same split, services and metrics as scripts/evaluate.py: the warm protocol (all training
events) and the cold-item protocol (20% of items without training interactions); for each
combination the full service on both, with and without the new-item slots. With
``--validation`` everything is scored on a validation split carved from the training part
(each user's last 20% of training events): the test part is never looked at.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from scripts.evaluate import RememberingEmbedder, load_service, service_ranker
from service.embedding.encoder import load_embedder
from service.evaluation.cold import cold_item_split
from service.evaluation.protocol import score, temporal_split
from service.ingest.movielens import load_movielens
from service.retrieval.recommender import FusionWeights


def rows(interests: list[float], profile: list[float], popularity: list[float]) -> dict:
    default = FusionWeights()
    found = {}
    for new in (False, True):
        found[f"interests only, new-item slots {new}"] = replace(
            default, new_items=new, profile=0.0, collaborative=0.0, popularity=0.0
        )
        found[f"collaborative only, new-item slots {new}"] = replace(
            default, new_items=new, profile=0.0, interests=0.0, popularity=0.0
        )
    for i, p, pop, new in itertools.product(interests, profile, popularity, (False, True)):
        found[f"service, interests {i:g} profile {p:g} popularity {pop:g} slots {new}"] = replace(
            default, interests=i, profile=p, popularity=pop, new_items=new
        )
    return found


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--users", type=int)
    parser.add_argument("--interests", type=floats, default=[0.25, 0.5, 1.0])
    parser.add_argument("--profile", type=floats, default=[0.0, 0.1, 0.3])
    parser.add_argument("--popularity", type=floats, default=[0.0, 0.15])
    parser.add_argument("--embedder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validation", action="store_true", help="score on a validation split")
    args = parser.parse_args(argv)
    dataset = load_movielens(args.data)
    split = temporal_split(dataset.events)
    if args.validation:
        split = temporal_split(e for events in split.train.values() for e in events)
    users = sorted(split.test)
    if args.users and args.users < len(users):
        users = sorted(random.Random(args.seed).sample(users, args.users))
    cold = cold_item_split(split, [item.item_id for item in dataset.items])
    protocols = {
        "warm": (split.train, {u: split.test[u] for u in users}),
        "cold": (cold.train, {u: cold.test[u] for u in users if u in cold.test}),
    }
    embedder = RememberingEmbedder(load_embedder(args.embedder))
    for protocol, (train, test) in protocols.items():
        with tempfile.TemporaryDirectory(prefix="iprof-sweep-") as folder:
            services = load_service(Path(folder), dataset, train, embedder)
            for name, weights in rows(args.interests, args.profile, args.popularity).items():
                result = score(service_ranker(services, sorted(test), weights), test)
                print(f"{protocol} ({len(test)} users)  {name:60} {result}", flush=True)
            services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
