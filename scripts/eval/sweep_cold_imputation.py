"""Can new items enter the first ten places without costing the others? A measured trade-off.

Usage:
    python scripts/eval/sweep_cold_imputation.py --data ../shared/data/ml-latest-small
        [--neighbours 5,10] [--sharpness 4,8] [--boost 1.1,1.2,1.4,1.5,1.6,1.8,2]
        [--embedder hashing]

A new item (no interaction the collaborative model knows of) gets an imputed collaborative
score: the mean of its ``--neighbours`` nearest modelled items' scores (nearest by the item
index's vectors, weighted by similarity ** ``--sharpness``; the service's own
``compute_neighbourhoods``), times ``--boost``. Items are then ranked by the collaborative
model's scores with the new items among them, on both of scripts/eval/evaluate.py's protocols (the
same split): the warm one (all training events; NDCG@10 over all held-out items) and the
cold-item one (20% of items without training interactions; scored on the held-out events on
those items). A boost of 0 is the collaborative model alone. Here every new item is placed so;
the service places only those its profile's interest searches found
(``service/retrieval/new_items.py``).
docs/EVALUATION.md ("Cold items") has the numbers and the setting the service took from them.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np

from scripts.eval.evaluate import RememberingEmbedder, load_service
from service.embedding.encoder import load_embedder
from service.evaluation.cold import cold_item_split
from service.evaluation.protocol import ndcg_at, recall_at, temporal_split
from service.ingest.movielens import load_movielens
from service.retrieval.index.search import ItemIndex
from service.retrieval.new_items import compute_neighbourhoods


def collaborative_scores(index: ItemIndex, history: list[str]) -> np.ndarray:
    """The model's scores for the history, as index rows (0 for items it does not model)."""
    assert index.collaborative is not None
    totals = index.collaborative.score_all(history)
    scores = np.zeros(len(index), dtype=np.float64)
    known = index.collaborative_rows >= 0
    scores[index.collaborative_rows[known]] = totals[known]
    return scores


def sweep(index: ItemIndex, train: dict, test: dict, settings: list[tuple]) -> dict:
    near = {
        (k, sharpness): compute_neighbourhoods(index, k, sharpness) for k, sharpness, _ in settings
    }
    new = np.flatnonzero(index.new_to_model)
    results: dict = {setting: [] for setting in settings}
    for user in sorted(test):
        history = [e.item_id for e in sorted(train[user], key=lambda e: e.ts)]
        scores = collaborative_scores(index, history)
        seen = index.rows_of(history)
        for k, sharpness, boost in settings:
            ranked = scores.copy()
            hood = near[k, sharpness]
            modelled = index.collaborative_rows[hood.neighbours]  # as index rows
            imputed = (scores[modelled] * hood.weights).sum(axis=1)
            ranked[new] = boost * imputed if boost else -1.0
            ranked[seen[seen >= 0]] = -np.inf
            top = np.argpartition(-ranked, 50)[:50]
            top = top[np.argsort(-ranked[top])]
            items = [index.item_ids[row] for row in top]
            new_in_top = int(index.new_to_model[top[:10]].sum())
            results[k, sharpness, boost].append(
                (ndcg_at(items, test[user], 10), recall_at(items, test[user], 50), new_in_top)
            )
    return {setting: np.mean(values, axis=0) for setting, values in results.items()}


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--neighbours", type=floats, default=[5, 10])
    parser.add_argument("--sharpness", type=floats, default=[4, 8])
    parser.add_argument("--boost", type=floats, default=[1.1, 1.2, 1.4, 1.5, 1.6, 1.8, 2.0])
    parser.add_argument("--embedder")
    args = parser.parse_args(argv)
    dataset = load_movielens(args.data)
    split = temporal_split(dataset.events)
    cold = cold_item_split(split, [item.item_id for item in dataset.items])
    boosts = [0.0, *args.boost]
    settings = list(itertools.product([int(k) for k in args.neighbours], args.sharpness, boosts))
    embedder = RememberingEmbedder(load_embedder(args.embedder))
    print(
        f"{'protocol':8} {'k':>3} {'sharp':>5} {'boost':>5} {'ndcg@10':>8} {'recall@50':>9}"
        f" {'new in top 10':>13}"
    )
    for protocol, (train, test) in {
        "warm": (split.train, split.test),
        "cold": (cold.train, cold.test),
    }.items():
        with tempfile.TemporaryDirectory(prefix="iprof-cold-sweep-") as folder:
            services = load_service(Path(folder), dataset.items, train, embedder)
            for (k, sharpness, boost), (ndcg, recall, new) in sweep(
                services.index.get(), train, test, settings
            ).items():
                print(
                    f"{protocol:8} {k:3d} {sharpness:5g} {boost:5g} {ndcg:8.4f} {recall:9.4f}"
                    f" {new:13.2f}",
                    flush=True,
                )
            services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
